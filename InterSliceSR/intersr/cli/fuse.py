"""`intersr fuse STACK STACK [...] --output OUT`: several thick series of one exam -> one volume.

The run options that make sense for fusion come from the one declaration (`options.py`); the
network is fine-tuned on each stack only when a budget (--budget, --adapt-steps, --adapt-seconds)
is given: by default the shipped network alone is the prior (runners/fuse.py, `fine_tunes`);
the few that only fusion has (the stack list's thicknesses, reference, field of view,
registration) are declared here, once, and mapped onto `runners.fuse.FuseSettings`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import options
from ..errors import InputError
from ..progress import Progress
from .watchdog import following_parent


def thickness_list(text: str) -> tuple[float | None, ...]:
    """`3` (every stack) or `3,4.5,0` (one per stack; 0 = from the header, else estimated)."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {part!r}") from None
        if not value >= 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"a thickness must be >= 0 mm, got {part}")
        values.append(value or None)
    return tuple(values)


def add_fuse_parser(sub, parents: list) -> None:
    fuse = sub.add_parser("fuse", parents=parents,
                          help="combine several thick stacks of one exam into one volume",
                          description=__doc__.splitlines()[0])
    fuse.add_argument("stacks", nargs="+", metavar="STACK",
                      help="two or more stacks (NRRD, NIfTI, MHA or DICOM series folders); "
                           "the first is the reference unless --reference says otherwise")
    fuse.add_argument("--output", required=True, help="output file (.nrrd, .nii, .nii.gz, .mha)")
    fuse.add_argument("--thickness", dest="stack_thickness", type=thickness_list, default=(),
                      metavar="MM[,MM...]",
                      help="slice thickness (profile FWHM) in mm: one for all stacks or one per "
                           "stack, 0 = from the header (DICOM SliceThickness), else estimated")
    fuse.add_argument("--reference", type=int, default=0, metavar="N",
                      help="index (0-based) of the stack whose frame the output takes")
    fuse.add_argument("--fov", choices=("reference", "union"), default="reference",
                      help="output field of view: the reference stack's, or the union of all")
    fuse.add_argument("--no-register", action="store_true",
                      help="trust the headers: no rigid registration between the stacks")
    options.add_arguments(fuse, only=options.FUSE_OPTIONS)


def settings_from(args: argparse.Namespace):
    from ..runners.fuse import FuseSettings

    thickness = tuple(args.stack_thickness)
    if len(thickness) == 1:
        thickness = thickness * len(args.stacks)
    if thickness and len(thickness) != len(args.stacks):
        raise InputError(f"--thickness gives {len(thickness)} values for "
                         f"{len(args.stacks)} stacks: give one, or one per stack")
    return FuseSettings(reference=args.reference, fov=args.fov, register=not args.no_register,
                        thicknesses=thickness)


def cmd_fuse(args: argparse.Namespace, progress: Progress) -> int:
    from ..runners.fuse import describe, fuse_files

    start = time.monotonic()
    run_options = options.from_namespace(args)
    with following_parent(run_options, args.output, progress):
        result = fuse_files(args.stacks, args.output, run_options, settings_from(args), progress)
    progress.log(f"intersr: {describe(result)}")
    progress.done(str(Path(args.output).resolve()), time.monotonic() - start,
                  provenance=result.provenance)
    return 0
