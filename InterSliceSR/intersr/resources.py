"""Package data: the shipped weights, their manifest and the sample scan (torch-free).

They live inside the `intersr` package (`intersr/data/`), so a wheel, an editable install and
the Slicer extension (whose CMake installs these same files) all find them the same way.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import WeightsError

# Volumes of ../shared/data/mr held out from every training stage: the bench's held-out
# column, the ablations and the model card score on these.
HELD_OUT = ("brain_t2w_arc_m2208.nii.gz", "brain_t1gd_skullstripped_mrgd.nii.gz",
            "brain_t1_stroke_8bit.nii.gz", "brain_t2_stroke.nii.gz",
            "brain_flair_stroke_8bit.nii.gz")

DATA_DIR = Path(__file__).resolve().parent / "data"
SAMPLE = DATA_DIR / "sample" / "KmeansTest_T1UCharRaw.nii.gz"
MANIFEST = "weights.json"


def models_dir() -> Path:
    """The shipped models folder (INTERSR_MODELS_DIR overrides it, e.g. for tests)."""
    override = os.environ.get("INTERSR_MODELS_DIR")
    return Path(override) if override else DATA_DIR / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.exists():
        raise WeightsError(f"no {MANIFEST} in {folder}: the weights are missing (reinstall "
                           "intersr or the extension, or give --weights none to train from "
                           "scratch)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise WeightsError(f"{path} is not valid JSON ({exc}); reinstall intersr") from None


def manifest_entry(folder: Path, file: str | None = None, key: str = "file") -> dict:
    """The manifest entry for `file` (default: the first one)."""
    entries = read_manifest(folder).get("weights", [])
    entry = next((e for e in entries if file in (None, e.get(key))), None)
    if entry is None:
        raise WeightsError(f"{file or 'a weights entry'} is not listed in {folder / MANIFEST}")
    return entry


def verified(folder: Path, name: str, sha256: str) -> Path:
    """`folder/name`, after checking it exists and has the manifest's sha256."""
    path = folder / name
    if not path.exists():
        raise WeightsError(f"weights file missing: {path} (listed in {folder / MANIFEST}); "
                           "reinstall intersr or the extension, or restore the file")
    digest = sha256_of(path)
    if digest != sha256:
        raise WeightsError(f"weights file {path} is altered or corrupted: sha256 {digest[:12]}... "
                           f"does not match {sha256[:12]}... in {folder / MANIFEST}")
    return path


def shipped_onnx(folder: Path | None = None) -> tuple[Path, str, dict]:
    """The shipped network's ONNX export: (path, sha256 of the shipped weights, entry).

    The manifest records the ONNX file's own sha256 and the sha256 of the weights it was
    exported from; a stale export (weights re-shipped, ONNX not) is an error.
    """
    folder = folder or models_dir()
    entry = manifest_entry(folder)
    onnx = entry.get("onnx")
    if not onnx:
        raise WeightsError(f"{folder / MANIFEST} lists no ONNX export of {entry['file']}; "
                           "re-export it (python -m intersr.networks.weights) or use the torch backend")
    if onnx.get("source_sha256") != entry["sha256"]:
        raise WeightsError(f"the ONNX export {onnx['file']} was made from other weights than "
                           f"{entry['file']} (sha256 {entry['sha256'][:12]}...); re-export it "
                           "(python -m intersr.networks.weights)")
    return verified(folder, onnx["file"], onnx["sha256"]), entry["sha256"], entry
