"""The fault suite: what `intersr run` and the Slicer glue promise when things go wrong.

Read it as the product's promise. Every refused case (FAULTS) asserts, in one place
(`test_fault_is_refused_cleanly`): the documented exit code, its specific message on stderr,
a final `--progress jsonl` event {"stage": "error", "message": ...} with that message, no
traceback, and that the whole working folder (inputs, output folder) is byte-identical
afterwards: nothing left behind, the input untouched. Accepted cases (ACCEPTED) look odd but
are valid input: they must succeed, with a correct output and the input untouched. The rest
needs real processes (signals, encodings, concurrency) or the Slicer glue.

docs/faults.md is generated from this file: `python Testing/test_faults.py > docs/faults.md`.
Everything runs on tiny volumes (24 x 24 x 6) in-process where it can.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT, SAMPLE, sample_crop  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "InterSliceSR")}
BUDGET_FLAGS = ("--no-adapt", "--adapt-steps", "--adapt-seconds")


# ------------------------------------------------------------------------ inputs
def tiny_array(dtype=np.int16) -> np.ndarray:
    """A real 24 x 24 x 6 crop of the sample T1 scan, numpy order (slices, rows, cols)."""
    return sitk.GetArrayFromImage(sample_crop((24, 24, 6), (50, 50, 26))).astype(dtype)


def image_of(array: np.ndarray, spacing=(2.0, 2.0, 3.0), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    return image


def tiny(folder: Path, name="in.nrrd", array=None, spacing=(2.0, 2.0, 3.0), **kwargs) -> Path:
    path = folder / name
    image = image_of(tiny_array() if array is None else array, spacing)
    sitk.WriteImage(image, str(path), **kwargs)
    return path


def truncated(folder: Path, name: str, compress=False) -> Path:
    path = tiny(folder, "whole_" + name, array=tiny_array(np.float32), useCompression=compress)
    data = path.read_bytes()
    cut = folder / name
    cut.write_bytes(data[: len(data) * 2 // 3])
    path.unlink()
    return cut


def edited_nrrd(folder: Path, field_name: bytes, value: bytes) -> Path:
    """A valid NRRD with one header field replaced (broken geometry that writers refuse)."""
    path = tiny(folder, array=tiny_array(np.float32))
    data = path.read_bytes()
    start = data.index(field_name)
    end = data.index(b"\n", start)
    path.write_bytes(data[:start] + field_name + b" " + value + data[end:])
    return path


def dicom_series(folder: Path, array: np.ndarray, uid: str, description: str,
                 thickness: str = "3.0", z0: float = 0.0) -> None:
    """A minimal MR DICOM series, one file per slice."""
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        piece = sitk.GetImageFromArray(array[k].astype(np.int16))
        piece.SetSpacing((2.0, 2.0))
        tags = {"0008|0060": "MR", "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
                "0020|000e": uid, "0020|000d": uid + ".1", "0008|0018": f"{uid}.{k + 2}",
                "0008|103e": description, "0020|0037": "1\\0\\0\\0\\1\\0",
                "0020|0032": f"0\\0\\{z0 + 3.0 * k:.3f}", "0020|0013": str(k + 1),
                "0028|0030": "2\\2", "0018|0050": thickness}
        for key, value in tags.items():
            piece.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{description.replace(' ', '_')}_{k:03d}.dcm"))
        writer.Execute(piece)


def two_series(folder: Path) -> Path:
    dicom = folder / "dicom"
    base = tiny_array()
    dicom_series(dicom, base[:3], "1.2.826.0.1.3680043.2.1125.7.1", "localizer", z0=100.0)
    dicom_series(dicom, np.concatenate([base, base]), "1.2.826.0.1.3680043.2.1125.7.2",
                 "T1 axial")
    return dicom


def args(inp, out, *options) -> list[str]:
    """INPUT OUTPUT OPTIONS, with --no-adapt unless the case sets a budget (keeps it fast)."""
    extra = [] if any(o in BUDGET_FLAGS for o in options) else ["--no-adapt"]
    return [str(inp), str(out), *map(str, options), *extra]


def out_dir(folder: Path) -> Path:
    path = folder / "out"
    path.mkdir(exist_ok=True)
    return path


# ------------------------------------------------------------------------ the table
@dataclass
class Fault:
    group: str
    name: str
    code: int
    message: str
    make: Callable[[Path], list[str]]
    setup: Callable | None = None  # (monkeypatch, folder) -> None: in-process simulation
    skip: str = ""  # a reason when the case cannot run here

    @property
    def id(self) -> str:
        return f"{self.group}-{self.name}".replace(" ", "_")


FAULTS: list[Fault] = []


def fault(group, name, code, message, setup=None, skip=""):
    def register(make):
        FAULTS.append(Fault(group, name, code, message, make, setup, skip))
        return make
    return register


ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


# -- malformed files
@fault("malformed", "truncated .nii", 2, "truncated")
def _(d): return args(truncated(d, "t.nii"), out_dir(d) / "o.nrrd")
@fault("malformed", "truncated .nii.gz", 2, "truncated")
def _(d): return args(truncated(d, "t.nii.gz"), out_dir(d) / "o.nrrd")
@fault("malformed", "truncated .nrrd", 2, "truncated")
def _(d): return args(truncated(d, "t.nrrd"), out_dir(d) / "o.nrrd")
@fault("malformed", "truncated gzip .nrrd", 2, "truncated")
def _(d): return args(truncated(d, "t.nrrd", compress=True), out_dir(d) / "o.nrrd")
@fault("malformed", "truncated .mha", 2, "truncated")
def _(d): return args(truncated(d, "t.mha"), out_dir(d) / "o.nrrd")
@fault("malformed", "truncated compressed .mha", 2, "truncated")
def _(d): return args(truncated(d, "t.mha", compress=True), out_dir(d) / "o.nrrd")


@fault("malformed", ".mhd without its data file", 2, "data file t.raw is missing")
def _(d):
    tiny(d, "t.mhd")
    (d / "t.raw").unlink()
    return args(d / "t.mhd", out_dir(d) / "o.nrrd")


@fault("malformed", "wrong magic", 2, "cannot read")
def _(d):
    (d / "junk.nrrd").write_bytes(b"this is not an image\n" * 20)
    return args(d / "junk.nrrd", out_dir(d) / "o.nrrd")


@fault("malformed", "empty file", 2, "is an empty file")
def _(d):
    (d / "empty.nii.gz").touch()
    return args(d / "empty.nii.gz", out_dir(d) / "o.nrrd")


@fault("malformed", "folder without DICOM", 2, "no DICOM series found")
def _(d):
    (d / "folder").mkdir()
    (d / "folder" / "notes.txt").write_text("no images here")
    return args(d / "folder", out_dir(d) / "o.nrrd")


@fault("malformed", "DICOM folder with two series", 2, "holds 2 DICOM series")
def _(d): return args(two_series(d), out_dir(d) / "o.nrrd")


@fault("malformed", "negative DICOM SliceThickness", 2, "DICOM SliceThickness (-3.0)")
def _(d):
    dicom_series(d / "dicom", tiny_array(), "1.2.826.0.1.3680043.2.1125.7.3", "neg", "-3.0")
    return args(d / "dicom", out_dir(d) / "o.nrrd")


@fault("malformed", "input not found", 2, "input not found")
def _(d): return args(d / "nope.nrrd", out_dir(d) / "o.nrrd")


# -- geometry
@fault("geometry", "2-D image", 2, "2-D image")
def _(d):
    sitk.WriteImage(image_of(tiny_array()[0], (2.0, 2.0)), str(d / "flat.nrrd"))
    return args(d / "flat.nrrd", out_dir(d) / "o.nrrd")


@fault("geometry", "4-D image", 2, "4-D image")
def _(d):
    crop = image_of(tiny_array())
    sitk.WriteImage(sitk.JoinSeries([crop, crop]), str(d / "four.nrrd"))
    return args(d / "four.nrrd", out_dir(d) / "o.nrrd")


@fault("geometry", "vector image", 2, "vector image with 3 components")
def _(d):
    crop = image_of(tiny_array())
    sitk.WriteImage(sitk.Compose([crop, crop, crop]), str(d / "rgb.nrrd"))
    return args(d / "rgb.nrrd", out_dir(d) / "o.nrrd")


@fault("geometry", "degenerate direction", 2, "direction cosines are degenerate")
def _(d): return args(edited_nrrd(d, b"space directions:", b"(2,0,0) (2,0,0) (0,0,3)"),
                      out_dir(d) / "o.nrrd")


@fault("geometry", "sheared direction", 2, "not orthonormal")
def _(d): return args(edited_nrrd(d, b"space directions:", b"(2,0,0) (1,2,0) (0,0,3)"),
                      out_dir(d) / "o.nrrd")


@fault("geometry", "zero spacing", 2, "Zero-valued spacing")
def _(d): return args(edited_nrrd(d, b"space directions:", b"(2,0,0) (0,2,0) (0,0,0)"),
                      out_dir(d) / "o.nrrd")


@fault("geometry", "one slice", 2, "fewer than 2 voxels")
def _(d): return args(tiny(d, array=tiny_array()[:1]), out_dir(d) / "o.nrrd")


@fault("geometry", "in-plane axes too short to adapt", 2, "too short to adapt")
def _(d): return args(tiny(d, array=tiny_array(np.float32)[:, :3, :3], spacing=(0.5, 0.5, 3.0)),
                      out_dir(d) / "o.nrrd", "--adapt-steps", 2)


@fault("geometry", "already isotropic", 2, "already isotropic")
def _(d): return args(tiny(d, spacing=(2.0, 2.0, 2.0)), out_dir(d) / "o.nrrd")


@fault("geometry", "factor beyond 16", 2, "beyond what the network supports")
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd", "--spacing", 0.1)


# -- intensities
@fault("intensities", "NaN voxels", 2, "non-finite voxels")
def _(d):
    array = tiny_array(np.float32)
    array[2, 3, 4] = np.nan
    return args(tiny(d, array=array), out_dir(d) / "o.nrrd")


@fault("intensities", "infinite voxels", 2, "non-finite voxels")
def _(d):
    array = tiny_array(np.float32)
    array[1, 1, 1] = -np.inf
    return args(tiny(d, array=array), out_dir(d) / "o.nrrd")


@fault("intensities", "constant image", 2, "input is constant")
def _(d): return args(tiny(d, array=np.full((6, 24, 24), 7, np.int16)), out_dir(d) / "o.nrrd")


@fault("intensities", "label map", 2, "looks like a label map")
def _(d):
    labels = (tiny_array() // 40).astype(np.uint8)
    return args(tiny(d, array=labels), out_dir(d) / "o.nrrd")


@fault("types", "complex voxels", 2, "complex voxels")
def _(d):
    crop = image_of(tiny_array(np.float32))
    sitk.WriteImage(sitk.RealAndImaginaryToComplex(crop, crop), str(d / "cx.nii"))
    return args(d / "cx.nii", out_dir(d) / "o.nrrd")


# -- names and paths
@fault("paths", "OUTPUT is INPUT", 2, "is the input file")
def _(d): return args(tiny(d), d / "in.nrrd")


@fault("paths", "OUTPUT is INPUT via a symlink", 2, "is the input file")
def _(d):
    inp = tiny(d)
    (d / "link.nrrd").symlink_to(inp)
    return args(inp, d / "link.nrrd")


@fault("paths", "OUTPUT is INPUT via a hard link", 2, "is the input file")
def _(d):
    inp = tiny(d)
    os.link(inp, d / "hard.nrrd")
    return args(inp, d / "hard.nrrd")


def _chdir(monkeypatch, d):
    monkeypatch.chdir(d)


@fault("paths", "OUTPUT is INPUT via a relative path", 2, "is the input file", setup=_chdir)
def _(d):
    inp = tiny(d)
    (d / "sub").mkdir()
    return args(inp, "sub/../in.nrrd")


@fault("paths", "--confidence is OUTPUT", 2, "is OUTPUT; give the confidence map its own")
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd", "--confidence", out_dir(d) / "o.nrrd")


@fault("paths", "--confidence is INPUT", 2, "is INPUT; give the confidence map its own")
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd", "--confidence", d / "in.nrrd")


@fault("paths", "--confidence in a missing folder", 2, "does not exist")
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd", "--confidence", d / "nowhere" / "c.nrrd")


@fault("paths", "output name too long", 2, "file name is 300 bytes long")
def _(d): return args(tiny(d), out_dir(d) / ("x" * 295 + ".nrrd"))


@fault("paths", "output path too long", 2, "too long")
def _(d): return args(tiny(d), out_dir(d) / (("d" * 200 + "/") * 25) / "o.nrrd")


@fault("paths", "input path too long", 2, "File name too long")
def _(d): return args(Path(str(d / ("d" * 200)) * 25 + ".nrrd"), out_dir(d) / "o.nrrd")


@fault("paths", "non-UTF-8 input name", 2, "is not valid UTF-8")
def _(d):
    path = Path(os.fsdecode(bytes(d / "in") + b"\xff.nrrd"))
    tiny(d).rename(path)
    return args(path, out_dir(d) / "o.nrrd")


@fault("paths", "non-UTF-8 output name", 2, "is not valid UTF-8")
def _(d): return args(tiny(d), Path(os.fsdecode(bytes(out_dir(d)) + b"/r\xe9sultat.nrrd")))


@fault("paths", "FIFO as input", 2, "not a regular file")
def _(d):
    os.mkfifo(d / "pipe.nrrd")
    return args(d / "pipe.nrrd", out_dir(d) / "o.nrrd")


@fault("paths", "missing output folder", 2, "output folder does not exist")
def _(d): return args(tiny(d), d / "missing" / "o.nrrd")


@fault("paths", "output folder is a file", 2, "output folder does not exist")
def _(d): return args(tiny(d), d / "in.nrrd" / "o.nrrd")


@fault("paths", "output is a folder", 2, "is a folder")
def _(d):
    (out_dir(d) / "o.nrrd").mkdir()
    return args(tiny(d), out_dir(d) / "o.nrrd")


@fault("paths", "unsupported output extension", 2, "unsupported extension")
def _(d): return args(tiny(d), out_dir(d) / "o.png")


@fault("paths", "unwritable output folder", 2, "output folder is not writable",
       skip="root may write anywhere" if ROOT_USER else "")
def _(d):
    folder = out_dir(d)
    folder.chmod(0o555)
    return args(tiny(d), folder / "o.nrrd")


@fault("paths", "folder refuses the write", 5, "could not write",
       skip="" if ROOT_USER else "the folder check refuses it before any work")
def _(d):  # /proc accepts no new files, not even from root; found only at the end
    return args(tiny(d), "/proc/intersr-fault-test.nrrd")


# -- options
for _name, _opts, _message in [
    ("factor below 1", ("--factor", 0.5), "--factor must be >= 1"),
    ("factor NaN", ("--factor", "nan"), "--factor must be a finite number"),
    ("spacing 0", ("--spacing", 0), "--spacing must be > 0"),
    ("spacing negative", ("--spacing", -1), "--spacing must be > 0"),
    ("spacing coarser than slices", ("--spacing", 5), "coarser than the slice spacing"),
    ("thickness 0", ("--thickness", 0), "--thickness must be > 0"),
    ("thickness negative", ("--thickness", -2), "--thickness must be > 0"),
    ("thickness infinite", ("--thickness", "inf"), "--thickness must be a finite number"),
    ("adapt-seconds NaN", ("--adapt-seconds", "nan"), "--adapt-seconds must be a finite number"),
    ("adapt-seconds infinite", ("--adapt-seconds", "inf"),
     "--adapt-seconds must be a finite number"),
    ("adapt-seconds negative", ("--adapt-seconds", -1), "--adapt-seconds must be >= 0"),
    ("adapt-steps negative", ("--adapt-steps", -5), "--adapt-steps must be >= 0"),
    ("seed negative", ("--seed", -1), "--seed must be >= 0"),
    ("seed huge", ("--seed", 2**70), "--seed must be <= 4294967295"),
    ("seed not a number", ("--seed", "abc"), "--seed"),
    ("unknown flag", ("--colour", "red"), "unrecognized arguments: --colour red"),
    ("spacing and factor together", ("--spacing", 1, "--factor", 2), "--spacing"),
    ("unknown device", ("--device", "tpu"), "'tpu'"),
    ("unknown profile", ("--profile", "trapezoid"),
     "unknown profile 'trapezoid': use auto, gauss, box or sinc (--profile)"),
    ("unknown method", ("--method", "gan"),
     "unknown method 'gan': use self-supervised, vae-pairs or vae-combined (--method)"),
    ("unknown backend", ("--backend", "tensorrt"),
     "unknown backend 'tensorrt': use auto, torch or onnxruntime (--backend)"),
]:
    fault("options", _name, 2, _message)(
        lambda d, o=_opts: args(tiny(d), out_dir(d) / "o.nrrd", *o))


def _no_gpu_skip() -> str:
    try:
        import torch
        return "a CUDA GPU is present" if torch.cuda.is_available() else ""
    except ImportError:
        return "no torch"


@fault("resources", "CUDA requested without a GPU", 3, "no CUDA GPU is available",
       skip=_no_gpu_skip())
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd", "--device", "cuda")


# -- weights
def _models(monkeypatch, d):
    monkeypatch.setenv("INTERSR_MODELS_DIR", str(d / "models"))


@fault("weights", "no shipped weights", 4, "the weights are missing", setup=_models)
def _(d):
    (d / "models").mkdir()
    return args(tiny(d), out_dir(d) / "o.nrrd")


@fault("weights", "malformed manifest", 4, "is not valid JSON", setup=_models)
def _(d):
    (d / "models").mkdir()
    (d / "models" / "weights.json").write_text('{"weights": [{"file": ')
    return args(tiny(d), out_dir(d) / "o.nrrd")


@fault("weights", "weights file altered", 4, "is altered or corrupted", setup=_models)
def _(d):
    import shutil
    from intersr.networks.weights import MANIFEST, models_dir
    shutil.copytree(models_dir(), d / "models")
    manifest = json.loads((d / "models" / MANIFEST).read_text())
    weights = d / "models" / manifest["weights"][0]["file"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return args(tiny(d), out_dir(d) / "o.nrrd")


@fault("weights", "--weights none without adaptation", 2, "untrained network's guess")
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd", "--weights", "none")


@fault("weights", "--weights file that does not exist", 4, "no-such-weights.pt")
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd", "--weights", d / "no-such-weights.pt")


@fault("weights", "--weights folder without manifest", 4, "no weights.json")
def _(d):
    (d / "w").mkdir()
    return args(tiny(d), out_dir(d) / "o.nrrd", "--weights", d / "w")


# -- resources (simulated in-process)
def _tight_memory(monkeypatch, d):
    import psutil

    class Tight:
        available = 64 * 2**20
        total = 128 * 2**20

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tight())


@fault("resources", "not enough memory (refused up front)", 3, "GB of memory but only",
       setup=_tight_memory)
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd")


def _memory_error(monkeypatch, d):
    from intersr.runners import pipeline

    def explode(*a, **k):
        raise MemoryError()
    monkeypatch.setattr(pipeline, "super_resolve", explode)


@fault("resources", "MemoryError during inference", 3, "ran out of memory",
       setup=_memory_error)
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd")


def _file_size_limit(monkeypatch, d):
    """A full disk, as the writer sees it: writes beyond 2 kB fail (RLIMIT_FSIZE), the
    SIGXFSZ that would kill the process is ignored; both restored after the case."""
    from intersr.volumes import write as volume

    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    real = volume.sitk.WriteImage

    def limited(*a, **k):
        old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, limits[1]))
        try:
            return real(*a, **k)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
            signal.signal(signal.SIGXFSZ, old)

    class Sitk:
        def __getattr__(self, name):
            return getattr(sitk, name)
        WriteImage = staticmethod(limited)
    monkeypatch.setattr(volume, "sitk", Sitk())


def _probe_full(monkeypatch, d):
    """The probe that names a full disk sees the same limit."""
    _file_size_limit(monkeypatch, d)
    from intersr.volumes import write as volume
    real = volume.disk_full_reason

    def probe(folder, needed):
        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, limits[1]))
        try:
            return real(folder, needed)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
            signal.signal(signal.SIGXFSZ, old)
    monkeypatch.setattr(volume, "disk_full_reason", probe)


for _suffix in (".nrrd", ".nii", ".nii.gz", ".mha"):
    fault("resources", f"disk full writing {_suffix}", 3, "not enough disk space",
          setup=_probe_full)(lambda d, s=_suffix: args(tiny(d), out_dir(d) / ("o" + s)))


# -- signals, in-process: the signal arrives while the run is at a given stage
def _signal_at(stage: str, signum: int):
    def setup(monkeypatch, d):
        from intersr.progress import Progress
        real = Progress.update

        sent = []

        def update(self, name, step, steps, **extra):
            real(self, name, step, steps, **extra)
            if name == stage and not sent:
                sent.append(signum)
                os.kill(os.getpid(), signum)
                time.sleep(0.5)  # the handler runs at the next bytecode
        monkeypatch.setattr(Progress, "update", update)
    return setup


for _stage in ("load", "adapt", "infer", "check", "write"):
    for _sig in (signal.SIGTERM, signal.SIGINT):
        fault("signals", f"{_sig.name} during {_stage}", 130, "cancelled",
              setup=_signal_at(_stage, _sig))(
            lambda d, s=_stage: args(tiny(d), out_dir(d) / "o.nrrd",
                                     *(("--adapt-steps", 2) if s == "adapt" else ())))
fault("signals", "SIGHUP during infer", 130, "cancelled by signal SIGHUP",
      setup=_signal_at("infer", signal.SIGHUP))(lambda d: args(tiny(d), out_dir(d) / "o.nrrd"))


def _signal_inside_writer(monkeypatch, d):
    from intersr.volumes import write as volume
    real = sitk.WriteImage

    def write_then_signal(*a, **k):
        real(*a, **k)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)

    class Sitk:
        def __getattr__(self, name):
            return getattr(sitk, name)
        WriteImage = staticmethod(write_then_signal)
    monkeypatch.setattr(volume, "sitk", Sitk())


@fault("signals", "SIGTERM while the temporary output is written", 130, "cancelled",
       setup=_signal_inside_writer)
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd")


# -- bugs: an unexpected exception is reported, never a bare traceback
def _bug(monkeypatch, d):
    from intersr.runners import pipeline

    def broken(*a, **k):
        raise ZeroDivisionError("simulated bug")
    monkeypatch.setattr(pipeline, "data_consistency_db", broken)


@fault("bugs", "unexpected exception", 1, "internal error: ZeroDivisionError: simulated bug",
       setup=_bug)
def _(d): return args(tiny(d), out_dir(d) / "o.nrrd")


# ------------------------------------------------------------------------ checks
def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder`: files by sha256, links by target, others by kind."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            key = os.path.relpath(path, folder)
            if stat.S_ISLNK(info.st_mode):
                entries[key] = "link:" + os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    entries[key] = hashlib.sha256(handle.read()).hexdigest()
            else:
                entries[key] = "dir" if stat.S_ISDIR(info.st_mode) else "special"
    return entries


def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    from intersr.cli import app as cli
    code = cli.main(["run", *argv, "--progress", "jsonl"])
    out, err = capsys.readouterr()
    return code, out, err


def last_event(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, "no JSON events on stdout"
    return json.loads(lines[-1])


@pytest.mark.parametrize("case", FAULTS, ids=lambda c: c.id)
def test_fault_is_refused_cleanly(case, tmp_path, capsys, monkeypatch):
    if case.skip:
        pytest.skip(case.skip)
    work = tmp_path / "work"
    work.mkdir()
    argv = case.make(work)
    if case.setup:
        case.setup(monkeypatch, work)
    before = snapshot(work)
    try:
        code, out, err = run_in_process(argv, capsys)
    finally:
        if (work / "out").exists():
            (work / "out").chmod(0o755)
    assert code == case.code, err
    assert case.message in err, err
    assert err.count("intersr: error:") == 1 and "Traceback" not in err, err
    event = last_event(out)
    assert event["stage"] == "error" and case.message in event["message"], event
    assert snapshot(work) == before  # nothing left behind, input byte-identical


# ------------------------------------------------------------------------ accepted inputs
@dataclass
class Accepted:
    group: str
    name: str
    verdict: str
    make: Callable[[Path], list[str]]
    check: Callable[[Path, str, str], None]
    skip: str = ""

    @property
    def id(self) -> str:
        return f"{self.group}-{self.name}".replace(" ", "_")


ACCEPTED: list[Accepted] = []


def accepted(group, name, verdict, check, skip=""):
    def register(make):
        ACCEPTED.append(Accepted(group, name, verdict, make, check, skip))
        return make
    return register


def _read(path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def _only_output(d: Path, name: str) -> Path:
    files = sorted(p.name for p in (d / "out").iterdir())
    assert files == [name], files
    return d / "out" / name


def _multi_series_check(d, out, err):
    image = _read(_only_output(d, "o.nrrd"))
    assert image.GetSize() == (24, 24, 18)  # the 12-slice series, x1.5, not the localizer


@accepted("malformed", "one file of a multi-series DICOM folder",
          "processes the series that file belongs to", _multi_series_check)
def _(d):
    folder = two_series(d)
    return args(sorted(folder.glob("T1_axial_*.dcm"))[0], out_dir(d) / "o.nrrd")


def _upper_check(name: str, kind: str):
    def check(d, out, err):
        path = _only_output(d, name)
        head = path.read_bytes()[:4]
        if kind == "gzip":
            assert head[:2] == b"\x1f\x8b"
        else:
            assert head.startswith(b"Obje")  # MetaImage: one file, header "ObjectType"
        reader = sitk.ImageFileReader()  # ITK itself cannot probe upper-case .MHA
        reader.SetFileName(str(path))
        reader.SetImageIO("MetaImageIO" if kind == "mha" else "NiftiImageIO")
        assert reader.Execute().GetSize() == (24, 24, 9)
    return check


@accepted("paths", "upper-case .NII.GZ output", "a gzip NIfTI under that name",
          _upper_check("O.NII.GZ", "gzip"))
def _(d): return args(tiny(d), out_dir(d) / "O.NII.GZ")


@accepted("paths", "upper-case .MHA output", "one .MHA file, no .mhd/.raw orphans",
          _upper_check("O.MHA", "mha"))
def _(d): return args(tiny(d), out_dir(d) / "O.MHA")


@accepted("paths", "upper-case .MHA input", "read as MetaImage",
          lambda d, out, err: _only_output(d, "o.nrrd"))
def _(d):
    tiny(d, "x.mha")
    (d / "x.mha").rename(d / "X.MHA")
    return args(d / "X.MHA", out_dir(d) / "o.nrrd")


@accepted("paths", "output name of 250 bytes", "written (the temporary name is short)",
          lambda d, out, err: _only_output(d, "y" * 245 + ".nrrd"))
def _(d): return args(tiny(d), out_dir(d) / ("y" * 245 + ".nrrd"))


def _warned(d, out, err):
    assert "the output is not isotropic" in err
    provenance = last_event(out)["provenance"]
    assert "not isotropic" in provenance["intersr_warnings"]


@accepted("geometry", "two equally thick axes", "processed with a warning (output not "
          "isotropic), also in the provenance", _warned)
def _(d): return args(tiny(d, spacing=(1.0, 3.0, 3.0)), out_dir(d) / "o.nrrd")


def _warned_thick_inplane(d, out, err):
    _warned(d, out, err)
    assert "the 2.5 mm in-plane axis is itself thick, so only the 0.5 mm one teaches" in err
    assert "planes beside the 0.5 mm one keep the pretrained network" in err
    image = _read(_only_output(d, "o.nrrd"))
    assert image.GetMetaData("intersr_pretrained_planes") == "beside the 0.5 mm in-plane axis"


@accepted("geometry", "one in-plane axis itself thick (0.5 x 2.5 mm pixels, 5 mm slices)",
          "processed with a warning that names the axis adaptation does not learn from; planes "
          "beside the fine axis keep the pretrained network (in the provenance)",
          _warned_thick_inplane)
def _(d): return args(tiny(d, spacing=(0.5, 5.0, 2.5)), out_dir(d) / "o.nrrd", "--adapt-steps", 4)


@accepted("geometry", "anisotropic in-plane spacing", "processed with a warning (output not "
          "isotropic), also in the provenance", _warned)
def _(d): return args(tiny(d, spacing=(0.8, 1.6, 3.0)), out_dir(d) / "o.nrrd")


def _flipped_check(d, out, err):
    image = _read(_only_output(d, "o.nrrd"))
    assert image.GetDirection()[0] == pytest.approx(-1.0)


@accepted("geometry", "negative spacing (MetaImage)", "read as a flipped axis; the direction "
          "is kept", _flipped_check)
def _(d):
    path = tiny(d, "n.mha", array=tiny_array(np.float32))
    data = path.read_bytes().replace(b"ElementSpacing = 2 2 3", b"ElementSpacing = -2 2 3")
    path.write_bytes(data)
    return args(path, out_dir(d) / "o.nrrd")


def _untrained(d, out, err):
    provenance = last_event(out)["provenance"]
    assert provenance["intersr_weights_sha256"].startswith("none")
    assert "--weights none" in err


@accepted("weights", "--weights none with adaptation", "an untrained start on purpose, said "
          "so on stderr and in the provenance", _untrained)
def _(d): return args(tiny(d, array=tiny_array(np.float32)), out_dir(d) / "o.nrrd",
                      "--weights", "none", "--adapt-steps", 2)


def _same_type(dtype):
    def check(d, out, err):
        image = _read(_only_output(d, "o.nrrd"))
        assert sitk.GetArrayViewFromImage(image).dtype == np.dtype(dtype)
    return check


for _dtype in (np.uint8, np.int8, np.uint16, np.int32, np.float64):
    accepted("types", f"{np.dtype(_dtype).name} voxels", "processed; the output keeps the "
             "voxel type", _same_type(_dtype))(
        lambda d, t=_dtype: args(tiny(d, array=_typed(t)), out_dir(d) / "o.nrrd"))


def _typed(dtype) -> np.ndarray:
    array = tiny_array(np.float64)
    if np.dtype(dtype).kind == "i" and np.dtype(dtype).itemsize == 1:
        array = array - 105  # int8 holds -128 .. 127
    return array.astype(dtype)


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.id)
def test_odd_but_valid_input_is_processed(case, tmp_path, capsys):
    if case.skip:
        pytest.skip(case.skip)
    work = tmp_path / "work"
    work.mkdir()
    argv = case.make(work)
    before = {k: v for k, v in snapshot(work).items() if not k.startswith("out")}
    code, out, err = run_in_process(argv, capsys)
    assert code == 0, err
    assert last_event(out)["stage"] == "done"
    case.check(work, out, err)
    after = {k: v for k, v in snapshot(work).items() if not k.startswith("out")}
    assert after == before


# ------------------------------------------------------------------------ intensity invariance
def _run_array(folder: Path, array: np.ndarray, name: str) -> np.ndarray:
    from intersr.cli import app as cli
    path = tiny(folder, name + ".nrrd", array=array)
    target = folder / (name + "_out.nrrd")
    assert cli.main(["run", str(path), str(target), "--no-adapt", "--progress", "none"]) == 0
    return sitk.GetArrayFromImage(_read(target)).astype(np.float64)


def test_intensity_offset_and_scale_do_not_change_the_result(tmp_path):
    """The same anatomy stored with +65280 (uint16), +32500 (int16) or x1000 (float) gives
    the same result up to that offset/scale (issue 8 item 5: the offset used to give garbage
    with a good-looking data-consistency figure)."""
    base = tiny_array(np.float64)  # values 0 .. ~210
    reference = _run_array(tmp_path, base.astype(np.float32), "base")
    span = base.max() - base.min()
    shifted = _run_array(tmp_path, (base + 65280).astype(np.uint16), "u16") - 65280
    int16 = _run_array(tmp_path, (base + 32500).astype(np.int16), "i16") - 32500
    scaled = _run_array(tmp_path, (base * 1000).astype(np.float32), "x1000") / 1000
    for other in (shifted, int16, scaled):
        assert np.abs(other - reference).max() <= 0.01 * span + 0.5  # rounding to integers
        assert np.abs(other - reference).mean() <= 0.002 * span + 0.5


def test_normaliser_is_offset_and_scale_invariant():
    """metrics.normaliser maps the 0.5th/99.5th percentiles to 0/1: any a*x + b (a > 0)
    normalises to the same volume."""
    from intersr.acquisition.metrics import normaliser
    base = tiny_array(np.float64)
    ref = normaliser(base).apply(base)
    for a, b in ((1.0, 65280.0), (1000.0, 0.0), (0.001, -5.0), (3.0, 1e6)):
        moved = a * base + b
        np.testing.assert_allclose(normaliser(moved).apply(moved), ref, atol=1e-4)


def test_label_map_check_counts_every_voxel():
    """Issue 8 item 9: the check sampled every n-th voxel and miscounted distinct values."""
    from intersr.volumes.read import distinct_values
    values = (np.arange(4_200_000) % 100).astype(np.int32)  # a stride of 2 sees only 50
    assert distinct_values(values, limit=65) == 65
    assert distinct_values(values.astype(np.uint16), limit=1000) == 100
    assert distinct_values(np.array([5, 5, 9], np.int64), limit=10) == 2


# ------------------------------------------------------------------------ real processes
def engine(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "intersr", "run", *argv],
                          capture_output=True, env=ENV, timeout=300, **kwargs)


def test_debug_shows_the_traceback_of_an_internal_error(tmp_path, capsys, monkeypatch):
    """`--debug` adds the traceback to the internal-error message (exit 1), nothing else."""
    work = tmp_path / "work"
    work.mkdir()
    _bug(monkeypatch, work)
    from intersr.cli import app as cli
    code = cli.main(["run", *args(tiny(work), out_dir(work) / "o.nrrd"), "--debug"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" in err and "ZeroDivisionError: simulated bug" in err
    assert list((work / "out").iterdir()) == []


def test_progress_reader_gone(tmp_path, capsys, monkeypatch):
    """The reader of `--progress jsonl` went away (stdout is a broken pipe): cancelled, exit
    130, the message on stderr, no traceback, nothing left behind."""
    from intersr.cli import app as cli

    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    inp = tiny(tmp_path)
    out_dir(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setattr(sys, "stdout", Closed())
    code = cli.main(["run", *args(inp, tmp_path / "out" / "o.nrrd"), "--progress", "jsonl"])
    err = capsys.readouterr().err
    assert code == 130
    assert "broken pipe on stdout" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_non_utf8_name_in_a_real_process(tmp_path):
    """It used to abort the process (exit 134) inside ITK."""
    inp = tiny(tmp_path)
    bad = bytes(tmp_path) + b"/in\xff.nrrd"
    os.rename(inp, bad)
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "intersr", "run", bad,
                           bytes(tmp_path) + b"/o.nrrd", "--progress", "jsonl", "--no-adapt"],
                          capture_output=True, env=ENV, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert b"not valid UTF-8" in proc.stderr and b"Traceback" not in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["stage"] == "error"
    assert snapshot(tmp_path) == before


def test_disk_full_in_a_real_process(tmp_path):
    """RLIMIT_FSIZE makes every write beyond 4 kB fail as on a full disk (EFBIG); the
    NIfTI writer used to report success with a truncated file."""
    inp = tiny(tmp_path)
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

    proc = subprocess.run([sys.executable, "-B", "-m", "intersr", "run", str(inp),
                           str(tmp_path / "out" / "o.nii"), "--no-adapt", "--progress", "jsonl"],
                          capture_output=True, text=True, env=ENV, timeout=300,
                          preexec_fn=limit)
    assert proc.returncode == 3, proc.stderr
    assert "not enough disk space" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["stage"] == "error"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("started_with_sigint_ignored", [False, True])
def test_sigint_in_a_real_process_during_adaptation(tmp_path, started_with_sigint_ignored):
    """Ctrl-C in a real process while it adapts: exit 130, an error event, nothing left; also
    for a process started in the background (a shell's `&` leaves SIGINT ignored)."""
    inp = tiny(tmp_path)
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) \
        if started_with_sigint_ignored else None
    proc = subprocess.Popen([sys.executable, "-m", "intersr", "run", str(inp),
                             str(tmp_path / "out" / "o.nrrd"), "--adapt-seconds", "120",
                             "--progress", "jsonl"], preexec_fn=ignore,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    for line in proc.stdout:
        if json.loads(line)["stage"] == "adapt":
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert json.loads(rest.strip().splitlines()[-1])["stage"] == "error"
    assert "cancelled" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_two_runs_writing_the_same_output(tmp_path):
    """Concurrency: each run writes its own temporary file and renames it; the output is one
    complete result, never a mix, and no temporary file remains."""
    inp = tiny(tmp_path)
    target = tmp_path / "out" / "o.nrrd"
    target.parent.mkdir()
    procs = [subprocess.Popen([sys.executable, "-m", "intersr", "run", str(inp), str(target),
                               "--no-adapt", "--seed", str(seed), "--progress", "none"],
                              stderr=subprocess.PIPE, env=ENV) for seed in (0, 1)]
    for proc in procs:
        proc.wait(timeout=300)
        assert proc.returncode == 0, proc.stderr.read()
    assert sorted(p.name for p in target.parent.iterdir()) == ["o.nrrd"]
    assert _read(target).GetSize() == (24, 24, 9)


# ------------------------------------------------------------------------ weights loading
def test_crafted_pickle_is_never_unpickled(tmp_path, capsys):
    """Issue 8 item 1: `train --init` / `--resume` loaded with weights_only=False, so a crafted
    file ran code. Now: refused with exit 4, and the payload never runs."""
    import torch
    from intersr.cli import app as cli
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    (tmp_path / "data" / "mr").mkdir(parents=True)
    (tmp_path / "data" / "mr" / "scan.nii.gz").write_bytes(SAMPLE.read_bytes())
    base = ["train", "mr", "--data", str(tmp_path / "data"), "--steps", "1", "--batch", "1",
            "--output", str(tmp_path / "o.pt"), "--progress", "jsonl"]
    assert cli.main(base + ["--init", str(tmp_path / "evil.pt")]) == 4
    torch.save({"model": Payload(), "step": 1}, tmp_path / "evil.ckpt")
    assert cli.main(base + ["--checkpoint", str(tmp_path / "evil.ckpt"), "--resume"]) in (2, 4)
    err = capsys.readouterr().err
    assert "refused --init weights" in err and "Traceback" not in err
    assert not marker.exists()
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.parametrize("option,value", [("--blur-jitter", "-0.2"), ("--blur-jitter", "nan"),
                                          ("--blur-jitter", "abc"), ("--accumulate", "0"),
                                          ("--workers", "-1"), ("--workers", "two"),
                                          ("--device", "tpu")])
def test_train_refuses_a_bad_training_option_before_loading_anything(tmp_path, capsys, option,
                                                                      value):
    """`train mr --blur-jitter` is a spread, `--accumulate` at least 1, `--workers` at least 0,
    `--device` one of auto, cpu, cuda: anything else is refused by the argument parser (exit 2,
    a message naming the option), no output written."""
    from intersr.cli import app as cli
    (tmp_path / "data" / "mr").mkdir(parents=True)
    (tmp_path / "data" / "mr" / "scan.nii.gz").write_bytes(SAMPLE.read_bytes())
    argv = ["train", "mr", "--data", str(tmp_path / "data"), "--steps", "1", "--batch", "1",
            "--output", str(tmp_path / "o.pt"), "--checkpoint", str(tmp_path / "o.ckpt"),
            "--progress", "none", option, value]
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_train_pack_without_volumes_says_so_and_writes_nothing(tmp_path, capsys):
    """`train pack` of an empty training folder: exit 2, a message naming the folder and what
    to run, no pack (and no partial pack) written."""
    from intersr.cli import app as cli
    (tmp_path / "data" / "mr").mkdir(parents=True)
    assert cli.main(["train", "pack", "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "no MR volumes" in err and "fetch-data" in err and "Traceback" not in err
    assert list((tmp_path / "data").iterdir()) == [tmp_path / "data" / "mr"]


@pytest.mark.parametrize("content", [b"not a zip file", None])
def test_train_refuses_a_corrupt_or_foreign_pack(tmp_path, capsys, content):
    """A `mr.npz` that is not a zip, or a zip of other arrays (no names or spacings): exit 2,
    a message that names the pack and says to write it again; the pack is left as it was and
    nothing is written."""
    from intersr.cli import app as cli
    (tmp_path / "data").mkdir()
    pack = tmp_path / "data" / "mr.npz"
    if content is None:
        np.savez(pack, array0=np.zeros((4, 4, 4)))
    else:
        pack.write_bytes(content)
    before = pack.read_bytes()
    code = cli.main(["train", "mr", "--data", str(tmp_path / "data"), "--steps", "1",
                     "--output", str(tmp_path / "o.pt"), "--checkpoint", str(tmp_path / "o.ckpt"),
                     "--progress", "none"])
    assert code == 2
    err = capsys.readouterr().err
    assert "is not a pack written by `intersr train pack`" in err and "Traceback" not in err
    assert pack.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_train_on_cuda_without_a_gpu_says_so_before_loading_anything(tmp_path, capsys):
    """`train mr --device cuda` where PyTorch sees no CUDA device: the same resources error
    as `intersr run` gives (exit 3, one device rule), before the volumes are read, nothing
    written."""
    import torch
    from intersr.cli import app as cli
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    (tmp_path / "data" / "mr").mkdir(parents=True)
    (tmp_path / "data" / "mr" / "scan.nii.gz").write_bytes(SAMPLE.read_bytes())
    code = cli.main(["train", "mr", "--data", str(tmp_path / "data"), "--steps", "1",
                     "--output", str(tmp_path / "o.pt"), "--checkpoint", str(tmp_path / "o.ckpt"),
                     "--progress", "none", "--device", "cuda"])
    assert code == 3
    err = capsys.readouterr().err
    assert "--device cuda" in err and "no CUDA GPU is available" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ------------------------------------------------------------------------ the Slicer glue
@pytest.fixture
def glue(tmp_path):
    """A real MRML scene with one thick volume node, a logic core and its temporary root."""
    slicer = pytest.importorskip("slicer")
    import slicer.util
    sys.path.insert(0, str(ROOT / "InterSliceSR"))
    from InterSliceSRLib.logic import InterSliceSRLogicCore
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName("T1 thick")
    scene.AddNode(node)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(tiny_array(np.float32)))
    node.SetSpacing(2.0, 2.0, 3.0)
    root = tmp_path / "tmp-root"
    root.mkdir()
    core = InterSliceSRLogicCore(tempRoot=str(root))
    before = slicer.util.arrayFromVolume(node).copy()
    state = {"scene": scene, "node": node, "logic": core, "root": root,
             "count": scene.GetNumberOfNodes(), "before": before, "util": slicer.util}
    yield state
    if core.isRunning:
        core.cancel()
    scene.Clear(True)


def _alive(pid) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _clean(glue, nodes_added=0):
    assert list(glue["root"].rglob("*")) == []
    assert glue["scene"].GetNumberOfNodes() == glue["count"] + nodes_added
    assert not type(glue["logic"]).anyRunning()


def _start_long(glue):
    from InterSliceSRLib.logic import RunParameters
    glue["logic"].start(glue["node"], RunParameters(device="cpu", adaptSteps=1_000_000))
    return glue["logic"].enginePid


def test_slicer_cancel_adds_nothing(glue):
    """Cancel: the engine's process tree ends, nothing is added, temporary files go."""
    pid = _start_long(glue)
    assert glue["logic"].cancel() and glue["logic"].state == "cancelled"
    assert not _alive(pid)
    _clean(glue)
    np.testing.assert_array_equal(glue["util"].arrayFromVolume(glue["node"]), glue["before"])


def test_slicer_killed_engine_is_reported_as_out_of_memory(glue):
    """A crash by SIGKILL (what the out-of-memory killer sends) says "killed (out of
    memory?)", not "exited with code -9" and a command line."""
    pid = _start_long(glue)
    os.kill(pid, signal.SIGKILL)
    assert glue["logic"].wait(timeout=60) == "failed"
    message = glue["logic"].errorMessage
    assert "killed (SIGKILL)" in message and "out of memory?" in message
    assert "-m intersr" not in message
    _clean(glue)


def test_slicer_input_removed_during_a_run(glue):
    """The input node removed mid-run: the engine is stopped at once (it used to run to the
    end and fail with an AttributeError), nothing is added."""
    pid = _start_long(glue)
    glue["scene"].RemoveNode(glue["node"])
    assert glue["logic"].wait(timeout=30) == "failed"
    assert "was removed from the scene" in glue["logic"].errorMessage
    assert not _alive(pid)
    _clean(glue, nodes_added=-1)


def test_slicer_scene_closed_during_a_run(glue):
    """The scene closed mid-run: same as a removed input, nothing is added to the new scene."""
    pid = _start_long(glue)
    glue["scene"].Clear(False)
    assert glue["logic"].wait(timeout=30) == "failed"
    assert "scene was closed" in glue["logic"].errorMessage
    assert not _alive(pid)
    assert glue["scene"].GetNumberOfNodes() == 0
    assert list(glue["root"].rglob("*")) == []


def _with_file_limit(limit: int, action):
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limits[1]))
    try:
        return action()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, old)


def test_slicer_disk_full_for_the_temporary_input(glue):
    """Disk full while the input is written for the engine: said so, nothing is left."""
    from InterSliceSRLib.logic import RunError, RunParameters
    with pytest.raises(RunError, match="not enough disk space"):
        _with_file_limit(2048, lambda: glue["logic"].start(
            glue["node"], RunParameters(device="cpu", adaptSteps=0)))
    assert glue["logic"].state == "failed"
    _clean(glue)


def test_slicer_disk_full_in_the_engine(glue):
    """Disk full when the engine writes its result: the engine's own message reaches the
    user (exit 3), nothing is added."""
    from InterSliceSRLib.logic import RunParameters
    noise = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32) * 100
    glue["util"].updateVolumeFromArray(glue["node"], noise)  # does not compress
    _with_file_limit(40_000, lambda: glue["logic"].start(
        glue["node"], RunParameters(device="cpu", adaptSteps=0)))
    assert glue["logic"].wait(timeout=300) == "failed"
    assert "not enough disk space" in glue["logic"].errorMessage
    _clean(glue)


# ------------------------------------------------------------------------ docs
def markdown() -> str:
    """docs/faults.md: exit codes, then every case of this suite with its verdict."""
    from intersr import errors
    lines = ["# Faults: what `intersr run` does when something goes wrong", "",
             "Generated from `Testing/test_faults.py` (`python Testing/test_faults.py > "
             "docs/faults.md`); every row is a test that runs in CI.", "",
             "The contract: for every failure a specific message on stderr (`intersr: error: "
             "...`), a documented exit code, with `--progress jsonl` a final "
             "`{\"stage\": \"error\", \"message\": ...}` event, no traceback unless `--debug`, "
             "nothing left behind (OUTPUT is written under a temporary name and renamed only "
             "when complete and verified) and the input byte-identical.", "",
             "## Exit codes", "", "| code | meaning |", "|---|---|"]
    codes = [(0, "success: OUTPUT was written completely"),
             (1, "internal error (a bug): the message says so; `--debug` shows the traceback"),
             (errors.InputError.exit_code, "bad input or options (also command-line usage)"),
             (errors.ResourceError.exit_code, "resources: memory, disk space, device"),
             (errors.WeightsError.exit_code, "weights missing, malformed, altered or unsafe"),
             (errors.OutputError.exit_code, "OUTPUT could not be written (not a full disk)"),
             (errors.BatchFailed.exit_code, "`intersr batch`: some volumes failed; the others "
              "were written and the report lists each"),
             (errors.Cancelled.exit_code, "cancelled: SIGINT, SIGTERM or SIGHUP")]
    lines += [f"| {c} | {m} |" for c, m in codes]
    lines += ["", "SIGKILL cannot be caught: OUTPUT is then absent or complete (never partial), "
              "but a `.intersr-PID.partial.*` file may remain if the kill hit the final write.",
              "", f"## Refused ({len(FAULTS)} cases)", "",
              "| class | case | exit | message contains |", "|---|---|---|---|"]
    for case in FAULTS:
        note = f" (skipped where {case.skip})" if case.skip else ""
        lines.append(f"| {case.group} | {case.name}{note} | {case.code} | "
                     f"`{case.message.replace('|', '/')}` |")
    lines += ["", f"## Accepted: odd but valid ({len(ACCEPTED)} cases)", "",
              "| class | case | verdict |", "|---|---|---|"]
    lines += [f"| {c.group} | {c.name} | {c.verdict} |" for c in ACCEPTED]
    lines += ["", "## Real processes, intensities, weights and the Slicer glue", "",
              "| test | promise |", "|---|---|"]
    this = sys.modules[__name__]
    for name in sorted(dir(this)):
        test = getattr(this, name)
        if name.startswith("test_") and name not in ("test_fault_is_refused_cleanly",
                                                     "test_odd_but_valid_input_is_processed"):
            doc = " ".join((test.__doc__ or "").strip().split("\n\n")[0].split())
            lines.append(f"| `{name}` | {doc or name[5:].replace('_', ' ')} |")
    return "\n".join(lines) + "\n"


def test_docs_list_every_case():
    """docs/faults.md is this suite's table, regenerated (no case undocumented)."""
    assert (ROOT / "docs" / "faults.md").read_text() == markdown()


if __name__ == "__main__":
    print(markdown(), end="")
