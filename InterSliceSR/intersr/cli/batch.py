"""`intersr batch INPUTS... OUTPUT_DIR [run options] [--workers N] [--ray auto|ADDRESS]
[--resume] [--report FILE]`: every volume of a folder, BIDS dataset or list, one run each.

Exit code: 0 when every volume is done (or complete already with --resume); 6 when some
failed (the others are written, the report says why each failed); 2 for bad arguments;
130 when cancelled (the running volumes are stopped and leave no partial output).
"""
from __future__ import annotations

import argparse
import time

from .. import options
from ..errors import BatchFailed
from ..progress import Progress


def add_batch_parser(sub, parents) -> None:
    batch = sub.add_parser(
        "batch", parents=parents,
        help="super-resolve every volume of a folder, a BIDS dataset or a list of paths",
        description="One `intersr run` per volume, each in its own process: a local pool "
        "(default) or a Ray cluster (--ray). A failing volume is reported and the rest go on. "
        "Exit code 0: all done; 6: some failed (see --report); 130: cancelled.")
    batch.add_argument("inputs", nargs="+", metavar="INPUTS",
                       help="folder (every volume file and DICOM series in it, recursively), "
                       "BIDS dataset root (its anat images; OUTPUT_DIR becomes a derivatives "
                       "dataset), CSV/text list of paths, or volume files")
    batch.add_argument("output_dir", metavar="OUTPUT_DIR",
                       help="where the outputs go, in the inputs' layout, each with a JSON "
                       "sidecar of its provenance")
    options.add_arguments(batch, only=tuple(n for n in options.BY_NAME if n != "confidence"))
    batch.add_argument("--workers", type=int, default=None, metavar="N",
                       help="volumes run at once (default: one per GPU; on CPUs the cores "
                       "shared out, two threads each, within the memory available); each "
                       "gets cores/N threads unless --threads says otherwise (with --ray: "
                       "the CPUs each task asks for)")
    batch.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                       help="run each volume as a task on a Ray cluster (pip install "
                       "'intersr[ray]'): auto starts a local one (or uses RAY_ADDRESS); the "
                       "nodes need this environment and shared paths")
    batch.add_argument("--resume", action="store_true",
                       help="skip volumes whose output exists and records this input's sha256 "
                       "and these options")
    batch.add_argument("--report", default=None, metavar="FILE",
                       help="write each volume's status, seconds, slice axis, factor, "
                       "estimated profile and error to FILE (.json or .csv)")


def cmd_batch(args: argparse.Namespace, progress: Progress) -> int:
    from ..runners.batch import batch
    start = time.monotonic()
    run_options = options.from_namespace(args)
    report = batch(args.inputs, args.output_dir, run_options, workers=args.workers,
                   ray=args.ray, resume=args.resume, report=args.report, progress=progress)
    progress.log(f"intersr batch: {report.summary()}"
                 + (f"; report {args.report}" if args.report else ""))
    if report.failed:
        failed = [row for row in report.rows if row["status"] == "failed"]
        first = f"{failed[0]['input']}: {failed[0]['error']}"
        raise BatchFailed(f"{len(failed)} of {len(report.rows)} volumes failed (first: {first})"
                          + (f"; the report {args.report} lists each" if args.report else
                             "; --report FILE lists each"))
    progress.done(str(report.output_dir), time.monotonic() - start,
                  volumes={status: report.count(status) for status in ("done", "skipped")})
    return 0
