"""Command line: `intersr run | demo | bench | train`."""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from . import __version__
from .errors import Cancelled, InterSRError
from .progress import Progress

SAMPLE = Path(__file__).resolve().parent.parent / "Resources" / "SampleData" / \
    "KmeansTest_T1UCharRaw.nii.gz"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def add_run_options(parser: argparse.ArgumentParser) -> None:
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument("--spacing", type=_number, metavar="MM",
                      help="output spacing along the slice axis (default: finest in-plane)")
    grid.add_argument("--factor", type=_number, metavar="F",
                      help="slice spacing / output spacing (any real >= 1)")
    parser.add_argument("--thickness", type=_number, metavar="MM",
                        help="slice profile FWHM in mm (default: estimated from the volume)")
    parser.add_argument("--profile", choices=("auto", "gauss", "box", "sinc"), default="auto",
                        help="slice profile shape: auto (default, estimated from the volume), "
                        "gauss, box or sinc (windowed-sinc RF pulse); with a thickness "
                        "(--thickness or DICOM SliceThickness) it forces the profile")
    parser.add_argument("--device", default="auto", help="auto (default), cuda or cpu")
    parser.add_argument("--method", choices=("self-supervised", "vae-pairs"),
                        default="self-supervised",
                        help="what the network is fine-tuned on: in-plane pairs of the volume "
                        "(default) or pairs from VAE-synthesised thin-slice volumes (Xuan et al.)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--adapt-steps", type=int, metavar="N", help="adaptation step budget")
    budget.add_argument("--adapt-seconds", type=_number, metavar="S",
                        help="adaptation time budget (default: 180 s on CPU, 120 s on CUDA)")
    budget.add_argument("--no-adapt", action="store_true", help="use the shipped weights as they are")
    parser.add_argument("--progress", choices=("bar", "jsonl", "none"), default="bar")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="process label-map-like input anyway")
    parser.add_argument("--weights", metavar="PATH", help="weights file or folder (default: shipped)")


def options_from(args: argparse.Namespace):
    from .pipeline import RunOptions
    return RunOptions(spacing=args.spacing, factor=args.factor, thickness=args.thickness,
                      device=args.device, adapt_steps=args.adapt_steps,
                      adapt_seconds=args.adapt_seconds, no_adapt=args.no_adapt, seed=args.seed,
                      force=args.force, weights=args.weights, method=args.method,
                      profile=args.profile)


def _raise_cancel(signum, frame):
    raise Cancelled(f"cancelled by signal {signal.Signals(signum).name}")


def cmd_run(args: argparse.Namespace, input_path: str, output_path: str) -> int:
    from .pipeline import describe, run
    progress = Progress(args.progress)
    start = time.monotonic()
    try:
        result = run(input_path, output_path, options_from(args), progress)
    except (InterSRError, KeyboardInterrupt) as exc:
        error = exc if isinstance(exc, InterSRError) else Cancelled("cancelled by the user")
        progress.error(str(error))
        return error.exit_code
    except MemoryError:
        progress.error("ran out of memory; choose a coarser --spacing or crop the volume")
        return 3
    progress.log(f"intersr: {describe(result)}")
    progress.done(str(Path(output_path).resolve()), time.monotonic() - start,
                  data_consistency_db=round(result.data_consistency_db, 3),
                  provenance=result.provenance)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intersr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"intersr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="super-resolve one thick-slice volume")
    run.add_argument("input", help="NRRD, NIfTI, MHA file or a DICOM series folder")
    run.add_argument("output", help="output file (.nrrd, .nii, .nii.gz, .mha)")
    add_run_options(run)

    demo = sub.add_parser("demo", help="run on the embedded sample (2x2x3 mm T1)")
    demo.add_argument("--output", default="demo-out/sample_isotropic.nrrd")
    add_run_options(demo)

    bench = sub.add_parser("bench", help="PSNR/SSIM/time against linear, B-spline, Lanczos")
    bench.add_argument("data", nargs="?", help="folder of near-isotropic volumes "
                       "(default ../shared/data/mr when present)")
    bench.add_argument("--out", default="bench-out", help="folder for JSON, Markdown and PNGs")
    bench.add_argument("--adapt-steps", type=int, default=None,
                       help="adaptation steps per simulated case (default 350)")
    bench.add_argument("--seeds", type=int, default=None,
                       help="seeds per simulated case (default 3: median and spread)")
    bench.add_argument("--adapt-seconds", type=float, default=None,
                       help="adaptation budget per case (default: the bench's own)")
    bench.add_argument("--crop", type=int, default=None, help="max voxels per axis of each crop")
    bench.add_argument("--cases", default=None, help="comma-separated case names to run")
    bench.add_argument("--volumes", default=None, help="comma-separated file names to use")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--timing", action="store_true",
                       help="time default `intersr run` on a thick volume (x4) instead")
    bench.add_argument("--real", action="store_true",
                       help="run on each thick-slice volume of DATA instead: contract geometry "
                       "and data consistency against B-spline")
    bench.add_argument("--timing-size", default="181,215,44",
                       help="x,y,z of the --timing volume (181,215,44 at 1x1x4 mm; others at "
                       "0.5x0.5x2 mm)")

    from .train import add_train_parser
    add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_cancel)
    if args.command == "run":
        return cmd_run(args, args.input, args.output)
    if args.command == "demo":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        code = cmd_run(args, str(SAMPLE), args.output)
        if code == 0:
            print(f"intersr demo: the isotropic sample is in {Path(args.output).resolve()}",
                  file=sys.stderr)
        return code
    if args.command == "bench":
        from .bench import main as bench_main
        return bench_main(args)
    if args.command == "train":
        return args.train_func(args)
    parser.error(f"unknown command {args.command}")
    return 2
