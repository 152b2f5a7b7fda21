"""Command line: `intersr run | batch | demo | fuse | info | bench | train`.

Importing this module (and `intersr --help`, `intersr info`) loads no torch: the run options
come from the torch-free `intersr.options`; the engine is imported only when a command runs.

The failure contract (docs/faults.md): every failure ends with one specific message on stderr,
an exit code from errors.py and, with `--progress jsonl`, a final `error` event; no traceback
unless `--debug`.
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from .. import __version__, options
from ..errors import CANCEL_SIGNALS, Cancelled, InputError, InterSRError, ResourceError
from ..progress import Progress
from ..resources import SAMPLE
from .fuse import add_fuse_parser, cmd_fuse
from .watchdog import following_parent

INTERNAL_ERROR = 1


class UsageError(InputError):
    """A command line argparse refused (unknown flag, missing or malformed value)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors follow the failure contract."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def cmd_run(args: argparse.Namespace, input_path: str, output_path: str,
            progress: Progress) -> int:
    start = time.monotonic()
    run_options = options.from_namespace(args)
    from ..runners.pipeline import describe, run
    with following_parent(run_options, output_path, progress):
        result = run(input_path, output_path, run_options, progress)
    progress.log(f"intersr: {describe(result)}")
    progress.done(str(Path(output_path).resolve()), time.monotonic() - start,
                  data_consistency_db=round(result.data_consistency_db, 3),
                  provenance=result.provenance)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from .info import collect, format_text
    info = collect(probe_torch=not args.no_probe)
    print(json.dumps(info) if args.json else format_text(info))
    return 0


def _add_bench(sub) -> None:
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
    bench.add_argument("--method", default="self-supervised", choices=options.METHODS,
                       help="what InterSliceSR fine-tunes on in the simulated cases (the "
                       "ablation of docs/vae.md runs each); --timing uses it too")
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
    bench.add_argument("--fusion", action="store_true",
                       help="multi-stack fusion instead: simulated 2- and 3-stack exams, "
                       "`intersr fuse` against B-spline and a classical reconstruction")
    bench.add_argument("--quick", action="store_true",
                       help="with --fusion: one held-out volume, two cases, smaller crops")
    bench.add_argument("--stacks", nargs="+", default=None, metavar="STACK",
                       help="with --fusion: real stacks of one exam (no reference): the "
                       "leave-one-stack-out consistency check instead")
    bench.add_argument("--batch", action="store_true",
                       help="time `intersr batch` on 8 crops of the sample (and a corrupt "
                       "file) against single runs, with --resume and --ray auto instead")
    bench.add_argument("--workers", type=int, default=None, help="with --batch (default 2)")
    bench.add_argument("--no-ray", action="store_true", help="with --batch: skip --ray auto")


def build_parser(with_train: bool = False) -> argparse.ArgumentParser:
    """The parser; the training commands are only built when `train` runs (they need torch)."""
    parser = _Parser(prog="intersr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"intersr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    sub = parser.add_subparsers(dest="command", required=True)
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks of failures")

    run = sub.add_parser("run", help="super-resolve one thick-slice volume", parents=[debug])
    run.add_argument("input", help="NRRD, NIfTI, MHA file or a DICOM series folder")
    run.add_argument("output", help="output file (.nrrd, .nii, .nii.gz, .mha), or a new folder "
                     "ending in '/' for a DICOM series (see --output-format)")
    options.add_arguments(run)

    from .batch import add_batch_parser
    add_batch_parser(sub, [debug])

    demo = sub.add_parser("demo", help="run on the embedded sample (2x2x3 mm T1)",
                          parents=[debug])
    demo.add_argument("--output", default="demo-out/sample_isotropic.nrrd")
    options.add_arguments(demo)

    info = sub.add_parser("info", help="versions, backends, devices and GPUs (no torch import)")
    info.add_argument("--json", action="store_true", help="one JSON object on stdout")
    info.add_argument("--no-probe", action="store_true",
                      help="do not start a subprocess to ask torch about CUDA")

    add_fuse_parser(sub, [debug])
    _add_bench(sub)
    if with_train:
        from ..training.commands import add_train_parser
        add_train_parser(sub)
    else:
        sub.add_parser("train", help="re-create the shipped weights (see docs/training.md)")
    return parser


def _cancel_on(signum, frame):
    from .watchdog import parent_gone_reason
    raise Cancelled(parent_gone_reason() or f"cancelled by signal {signal.Signals(signum).name}")


def _progress_mode(argv: list[str]) -> str:
    """The --progress mode from a raw command line (for failures before parsing finished)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--progress="):
            return arg.split("=", 1)[1]
        if arg == "--progress" and i + 1 < len(argv):
            return argv[i + 1]
    return "bar"


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure becomes a message, an exit code and an `error` event."""
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = _progress_mode(argv)
    progress = Progress(mode if mode in ("bar", "jsonl", "none") else "bar")
    debug = "--debug" in argv
    previous = {name: signal.getsignal(getattr(signal, name)) for name in CANCEL_SIGNALS}
    try:
        for name in CANCEL_SIGNALS:
            try:
                signal.signal(getattr(signal, name), _cancel_on)
            except ValueError:  # not the main thread: the caller handles signals
                previous.pop(name, None)
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            # started in the background (a shell's `&`, some launchers): Python then leaves
            # SIGINT ignored, and `kill -INT` would not cancel; a run is always cancellable
            try:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                previous["SIGINT"] = signal.SIG_IGN
            except ValueError:
                pass
        parser = build_parser(with_train="train" in argv[:2])
        args = parser.parse_args(argv)
        debug = bool(getattr(args, "debug", False))
        if hasattr(args, "progress") and args.command in ("run", "batch", "demo", "fuse"):
            progress = Progress(args.progress)
        return _dispatch(args, progress)
    except KeyboardInterrupt:
        from .watchdog import parent_gone_reason
        return _fail(progress, Cancelled(parent_gone_reason() or "cancelled by the user (SIGINT)"),
                     debug)
    except BrokenPipeError:  # whoever read the progress events is gone (stdout closed)
        _silence_stdout()
        progress.mode = "none"
        return _fail(progress, Cancelled("cancelled: the reader of the progress events went "
                                         "away (broken pipe on stdout)"), debug)
    except InterSRError as exc:
        return _fail(progress, exc, debug)
    except MemoryError as exc:
        return _fail(progress, ResourceError("ran out of memory; choose a coarser --spacing, "
                                             "crop the volume or free memory"), debug, exc)
    except SystemExit as exc:  # --help, --version, and commands that exit on purpose
        if isinstance(exc.code, str):
            return _fail(progress, InputError(exc.code), debug)
        return 0 if exc.code is None else int(exc.code)
    except Exception as exc:  # the catch-all: a bug, never a bare traceback
        message = (f"internal error: {type(exc).__name__}: {exc} (please report this; "
                   "run with --debug for the traceback)")
        progress.error(message)
        if debug:
            traceback.print_exc()
        return INTERNAL_ERROR
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def _fail(progress: Progress, error: InterSRError, debug: bool,
          cause: BaseException | None = None) -> int:
    progress.error(str(error))
    if debug:
        traceback.print_exception(cause or error)
    return error.exit_code


def _dispatch(args: argparse.Namespace, progress: Progress) -> int:
    if args.command == "run":
        return cmd_run(args, args.input, args.output, progress)
    if args.command == "batch":
        from .batch import cmd_batch
        return cmd_batch(args, progress)
    if args.command == "demo":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        code = cmd_run(args, str(SAMPLE), args.output, progress)
        if code == 0:
            print(f"intersr demo: the isotropic sample is in {Path(args.output).resolve()}",
                  file=sys.stderr)
        return code
    if args.command == "info":
        return cmd_info(args)
    if args.command == "fuse":
        return cmd_fuse(args, progress)
    if args.command == "bench":
        if args.batch:
            from ..bench.batch import main as batch_main
            return batch_main(args)
        if args.backends:
            from ..bench.backends import main as backends_main
            return backends_main(args)
        if args.fusion:
            from ..bench.fusion import main as fusion_main
            return fusion_main(args)
        from ..bench.quality import main as bench_main
        return bench_main(args)
    if args.command == "train":
        return args.train_func(args)
    raise UsageError(f"unknown command {args.command}")
