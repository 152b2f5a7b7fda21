"""A cohort: the volumes `intersr batch` processes and where each output goes.

INPUTS may be folders (every volume file and DICOM series in them, recursively), a BIDS
dataset root (its anatomical images; the outputs form a BIDS derivatives dataset), CSV or text
lists of paths, or single volumes. Outputs mirror the inputs' layout under OUTPUT_DIR; each
gets a JSON sidecar with its provenance (written by the batch once the output is complete).
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .. import __version__
from ..errors import InputError
from ..volumes.dicom import _is_dicom_file
from ..volumes.read import IMAGE_IO_BY_SUFFIX

CODE_URL = "https://github.com/intersr/SlicerInterSliceSR"
LIST_SUFFIXES = (".csv", ".tsv", ".txt", ".lst")
VOLUME_SUFFIXES = tuple(suffix for suffix, _ in IMAGE_IO_BY_SUFFIX)
# output format per input format (single files, so that the engine writes them atomically)
OUTPUT_SUFFIX = {".nii.gz": ".nii.gz", ".nii": ".nii", ".nrrd": ".nrrd", ".nhdr": ".nrrd",
                 ".mha": ".mha", ".mhd": ".mha"}
DICOM_OUTPUT = ".nrrd"
BIDS_DESC = "isotropic"  # the desc- entity of BIDS outputs
NOT_VOLUMES = (".json", ".txt", ".csv", ".tsv", ".md", ".raw", ".zraw", ".bval", ".bvec",
               ".png", ".jpg", ".pdf", ".html", ".py", ".sh")


@dataclass
class Item:
    """One volume of the cohort: its input, its output, a name for reports, its source."""

    input: Path
    output: Path
    key: str
    source: str  # the Sources entry of the sidecar (a BIDS URI for BIDS inputs)

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.output)


@dataclass
class Cohort:
    items: list[Item]
    output_dir: Path
    bids_root: Optional[Path] = None


def volume_suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s)), "")


def sidecar_path(output: Path) -> Path:
    suffix = volume_suffix(output) or output.suffix
    return output.with_name(output.name[:len(output.name) - len(suffix)] + ".json")


def is_bids_root(path: Path) -> bool:
    return path.is_dir() and (path / "dataset_description.json").is_file()


def discover(inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike) -> Cohort:
    """Every volume the inputs name, each with its output path (sorted, names unique)."""
    out = Path(output_dir).resolve()
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no INPUTS given")
    for path in paths:
        if not path.exists():
            raise InputError(f"input not found: {path}")
    bids = [p for p in paths if is_bids_root(p)]
    if bids:
        if len(paths) > 1:
            raise InputError("a BIDS dataset root must be the only INPUT (its derivatives "
                             "dataset is OUTPUT_DIR)")
        return Cohort(bids_items(bids[0], out), out, bids[0].resolve())
    pairs: list[tuple[Path, Path]] = []  # (input, output relative to OUTPUT_DIR)
    for path in paths:
        if path.is_dir():
            pairs += [(p, rel) for p, rel in folder_inputs(path, out)]
        elif path.name.lower().endswith(LIST_SUFFIXES):
            pairs += list_inputs(path)
        else:
            pairs.append((path, Path(output_name(path))))
    items = [Item(p, out / rel, rel.as_posix(), str(p.resolve())) for p, rel in pairs]
    return Cohort(unique(sorted(items, key=lambda i: (str(i.output), str(i.input)))), out)


def output_name(path: Path, series: int = 0) -> str:
    """OUTPUT's file name for an input file or DICOM folder (DICOM series become NRRD)."""
    suffix = volume_suffix(path)
    if suffix and not path.is_dir():
        return path.name[:len(path.name) - len(suffix)] + OUTPUT_SUFFIX[suffix]
    name = path.parent.name if path.is_file() else path.resolve().name  # a DICOM series
    return f"{name}_{series}{DICOM_OUTPUT}" if series else name + DICOM_OUTPUT


def folder_inputs(root: Path, skip: Path) -> list[tuple[Path, Path]]:
    """(input, relative output) for every volume file and DICOM series under `root`."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (here / d).resolve() != skip)
        rel = here.relative_to(root)
        dicom = False
        for name in sorted(files):
            path = here / name
            if name.startswith("."):
                continue
            if volume_suffix(path):
                found.append((path, rel / output_name(path)))
            elif not name.lower().endswith(NOT_VOLUMES) and _is_dicom_file(path):
                dicom = True
        if dicom:
            found += [(series, rel.parent / output_name(series, i) if rel.parts else
                       Path(output_name(series, i)))
                      for i, series in dicom_series(here)]
    return found


def dicom_series(folder: Path) -> list[tuple[int, Path]]:
    """The folder itself when it holds one series (or none readable: the run says why), else
    one file of each series (numbered from 1), which the engine reads as that series."""
    import SimpleITK as sitk
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if len(series) <= 1:
        return [(0, folder)]
    return [(i, Path(reader.GetGDCMSeriesFileNames(str(folder), uid)[0]))
            for i, uid in enumerate(series, 1)]


def list_inputs(listing: Path) -> list[tuple[Path, Path]]:
    """Paths from a CSV (column `input` or `path`, else the first) or a text list (one a
    line, `#` comments); relative paths are relative to the list's folder. Outputs mirror
    the inputs' layout below their common folder."""
    try:
        text = listing.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list {listing}: {exc}") from None
    lines = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    if listing.suffix.lower() in (".csv", ".tsv"):
        rows = list(csv.reader(lines, delimiter="\t" if listing.suffix.lower() == ".tsv" else ","))
        header = [cell.strip().lower() for cell in rows[0]] if rows else []
        column = next((header.index(n) for n in ("input", "path") if n in header), None)
        rows = rows[1:] if column is not None else rows
        names = [row[column or 0].strip() for row in rows if row and row[column or 0].strip()]
    else:
        names = [l.strip() for l in lines]
    paths = [p if p.is_absolute() else listing.parent / p for p in map(Path, names)]
    if not paths:
        raise InputError(f"the list {listing} names no inputs")
    common = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    return [(p, p.resolve().parent.relative_to(common) / output_name(p)) for p in paths]


def unique(items: list[Item]) -> list[Item]:
    """Give colliding outputs (a.nrrd and a.nii in one folder, two lists) distinct names."""
    seen: set[str] = set()
    for item in items:
        stem, n = str(item.sidecar)[:-len(".json")], 1
        while stem.lower() in seen:
            n += 1
            stem = str(item.sidecar)[:-len(".json")] + f"_{n}"
        seen.add(stem.lower())
        if n > 1:
            suffix = volume_suffix(item.output)
            item.output = Path(stem + suffix)
            item.key = item.key[:len(item.key) - len(suffix)] + f"_{n}{suffix}"
    return items


# ------------------------------------------------------------------------------ BIDS
def bids_items(root: Path, out: Path) -> list[Item]:
    """The dataset's anatomical NIfTI images -> sub-*/[ses-*/]anat/*_desc-isotropic_<suffix>."""
    root = root.resolve()
    try:
        from bids import BIDSLayout
    except ImportError:  # pybids is optional: the standard layout, without its checks
        files = sorted({*root.glob("sub-*/anat/sub-*.nii*"),
                        *root.glob("sub-*/ses-*/anat/sub-*.nii*")})
    else:
        layout = BIDSLayout(str(root), validate=False, derivatives=False)
        files = sorted(Path(f) for f in layout.get(datatype="anat", return_type="filename",
                                                   extension=[".nii", ".nii.gz"]))
    items = []
    for path in files:
        rel = path.resolve().relative_to(root)
        if out in path.resolve().parents or rel.parts[0] == "derivatives":
            continue
        suffix = volume_suffix(path)
        entities, _, label = path.name[:len(path.name) - len(suffix)].rpartition("_")
        kept = [e for e in entities.split("_") if not e.startswith("desc-")]
        name = "_".join([*kept, f"desc-{BIDS_DESC}", label]) + suffix
        items.append(Item(path, out / rel.parent / name, (rel.parent / name).as_posix(),
                          f"bids:raw:{rel.as_posix()}"))
    return items


def write_json(path: Path, data: dict) -> None:
    """Atomically (a temporary name, then a rename)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    temp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, path)


def prepare(cohort: Cohort) -> None:
    """Create OUTPUT_DIR; for BIDS inputs, its dataset_description.json (a derivatives dataset)."""
    cohort.output_dir.mkdir(parents=True, exist_ok=True)
    if cohort.bids_root is None:
        return
    path = cohort.output_dir / "dataset_description.json"
    if path.exists():
        try:
            made_by = [g.get("Name") for g in
                       json.loads(path.read_text(encoding="utf-8")).get("GeneratedBy", [])]
        except (ValueError, AttributeError, OSError):
            made_by = []
        if "InterSliceSR" not in made_by:
            raise InputError(f"{cohort.output_dir} already holds another dataset ({path}); "
                             "choose an OUTPUT_DIR of its own, e.g. derivatives/intersr")
    try:
        raw = json.loads((cohort.bids_root / "dataset_description.json")
                         .read_text(encoding="utf-8"))
    except (ValueError, OSError):
        raw = {}
    write_json(path, {
        "Name": f"InterSliceSR isotropic volumes of {raw.get('Name', cohort.bids_root.name)}",
        "BIDSVersion": raw.get("BIDSVersion", "1.9.0"),
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "InterSliceSR", "Version": __version__, "CodeURL": CODE_URL,
                         "Description": "inter-slice super-resolution of thick-slice "
                         "anatomical images (desc-isotropic)"}],
        "SourceDatasets": [{"URL": cohort.bids_root.as_uri()}],
        "DatasetLinks": {"raw": cohort.bids_root.as_uri()},
    })


def write_sidecar(item: Item, provenance: dict[str, str]) -> None:
    """The output's JSON sidecar: its source and the provenance its header carries."""
    write_json(item.sidecar, {
        "Description": "slices synthesised by InterSliceSR (inter-slice super-resolution), "
                       "not acquired",
        "Sources": [item.source],
        "InterSliceSR": {k.removeprefix("intersr_"): v for k, v in provenance.items()},
    })


def read_sidecar(item: Item) -> dict[str, str]:
    """The provenance a sidecar records (short keys; empty when missing or unreadable)."""
    try:
        data = json.loads(item.sidecar.read_text(encoding="utf-8")).get("InterSliceSR", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}
