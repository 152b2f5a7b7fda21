"""Command line: `intersr run | demo | info | bench | train`.

Importing this module (and `intersr --help`, `intersr info`) loads no torch: the run options
come from the torch-free `intersr.options`; the engine is imported only when a command runs.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from . import __version__, options
from .errors import Cancelled, InterSRError
from .progress import Progress
from .resources import SAMPLE


def _raise_cancel(signum, frame):
    raise Cancelled(f"cancelled by signal {signal.Signals(signum).name}")


def cmd_run(args: argparse.Namespace, input_path: str, output_path: str) -> int:
    progress = Progress(args.progress)
    start = time.monotonic()
    try:
        run_options = options.from_namespace(args)
        from .pipeline import describe, run
        result = run(input_path, output_path, run_options, progress)
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


def cmd_info(args: argparse.Namespace) -> int:
    from .info import collect, format_text
    import json
    info = collect(probe_torch=not args.no_probe)
    print(json.dumps(info) if args.json else format_text(info))
    return 0


def _add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="PSNR/SSIM/time against linear, B-spline, Lanczos")
    bench.add_argument("data", nargs="?", help="folder of near-isotropic volumes "
                       "(default ../shared/data/mr when present)")
    bench.add_argument("--out", default="bench-out", help="folder for JSON, Markdown and PNGs")
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
    bench.add_argument("--backends", action="store_true",
                       help="time inference with torch and with ONNX Runtime on the same volumes "
                       "instead (256x256x40 and 512x512x80 at x4; see --sizes)")
    bench.add_argument("--sizes", default=None,
                       help="with --backends: x,y,z sizes separated by ';'")


def build_parser(with_train: bool = False) -> argparse.ArgumentParser:
    """The parser; the training commands are only built when `train` runs (they need torch)."""
    parser = argparse.ArgumentParser(prog="intersr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"intersr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="super-resolve one thick-slice volume")
    run.add_argument("input", help="NRRD, NIfTI, MHA file or a DICOM series folder")
    run.add_argument("output", help="output file (.nrrd, .nii, .nii.gz, .mha)")
    options.add_arguments(run)

    demo = sub.add_parser("demo", help="run on the embedded sample (2x2x3 mm T1)")
    demo.add_argument("--output", default="demo-out/sample_isotropic.nrrd")
    options.add_arguments(demo)

    info = sub.add_parser("info", help="versions, backends, devices and GPUs (no torch import)")
    info.add_argument("--json", action="store_true", help="one JSON object on stdout")
    info.add_argument("--no-probe", action="store_true",
                      help="do not start a subprocess to ask torch about CUDA")

    _add_bench(sub)
    if with_train:
        from .train import add_train_parser
        add_train_parser(sub)
    else:
        sub.add_parser("train", help="re-create the shipped weights (see docs/training.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(with_train=bool(argv) and argv[0] == "train")
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
    if args.command == "info":
        return cmd_info(args)
    if args.command == "bench":
        if args.backends:
            from .bench_backends import main as backends_main
            return backends_main(args)
        from .bench import main as bench_main
        return bench_main(args)
    if args.command == "train":
        return args.train_func(args)
    parser.error(f"unknown command {args.command}")
    return 2
