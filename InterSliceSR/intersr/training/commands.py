"""Re-create the shipped weights: `intersr train fetch-data | pack | video | mr`.

Stage 1 (video): spatio-temporal planes (time x width) of real video clips; a run of k*m
frames is reduced to m frames by the degradation model along time, and the network learns to
restore the frames in between. Stage 2 (MR): planes of real MR volumes, thick slices simulated
along any fine axis with factors 2-8 and a profile drawn from the whole family. Checkpoints are
written every 200 steps; `--resume` continues from them (docs/training.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..networks.backends import pick_device
from ..networks.network import NetConfig
from ..networks.weights import models_dir, save_weights
from ..progress import Progress
from .data import SHIPPED, fetch_data, load_clips, load_mr, mr_batch, pack_mr, video_batch
from .fit import fit, initial, set_source


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
    torch.set_num_threads(args.threads)
    device = pick_device(args.device).type
    load, make_batch = STAGES[args.stage]
    source = load(Path(args.data))
    model = initial(args)
    extra = {"blur_jitter": args.blur_jitter} if getattr(args, "blur_jitter", 0.0) else {}
    set_source(make_batch, source, args.batch, extra)
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
