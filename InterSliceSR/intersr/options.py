"""The run options, declared once (torch-free).

Everything that names, defaults or checks a run option derives from `OPTIONS`: the argparse
flags of `intersr run|demo` (`add_arguments`), the engine's `RunOptions` dataclass, the command
line the Slicer module sends (`engine_args`), and the mapping from the module's parameter node
(`from_parameters`). Adding an option here adds it everywhere; nowhere else may declare one.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Callable, Mapping, Optional

from .errors import InputError

DEVICES = ("auto", "cuda", "cpu")
BACKENDS = ("auto", "torch", "onnxruntime")
PROFILES = ("auto", "gauss", "box", "sinc")
METHODS = ("self-supervised", "vae-pairs", "vae-combined")  # each registered in methods/__init__.py
# The Slicer module offers the two methods of the papers; the combination measured no better
# than self-supervised (docs/vae.md) and stays a command-line option for the ablation.
GUI_METHODS = ("self-supervised", "vae-pairs")
PROGRESS_MODES = ("bar", "jsonl", "none")
OUTPUT_FORMATS = ("auto", "dicom")  # auto: by OUTPUT (a name ending in "/" is a DICOM folder)
MAX_FACTOR = 16.0  # the network's positional encoding covers factors up to this


@dataclass(frozen=True)
class Budget:
    """An adaptation budget: stop at whichever comes first (None: no limit of that kind)."""

    seconds: Optional[float]
    steps: Optional[int]


# Budget presets per device type. "balanced" is the default of both the engine and the GUI.
# Chosen from the measured quality-vs-budget curve (docs/benchmarks.md, "Quality vs adaptation
# budget"): on held-out volumes the mismatch gain is flat after ~150 steps and the matched gain
# grows to ~500; the step count binds on a quiet 2-core CPU (~7 steps/s), the time caps a slower
# machine. The GPU presets take 32 planes a step (ADAPT_BATCH), so fewer steps see as many
# samples; an H100 ran ~45 steps/s before (not re-measured: no GPU was lent for this change).
BUDGET_PRESETS: dict[str, dict[str, Budget]] = {
    "fast": {"cpu": Budget(25.0, 150), "cuda": Budget(2.0, 50)},
    "balanced": {"cpu": Budget(75.0, 500), "cuda": Budget(4.0, 150)},
    "best": {"cpu": Budget(300.0, 2000), "cuda": Budget(60.0, 3000)},
}
DEFAULT_PRESET = "balanced"
# Slicer's budget selector offers the presets plus "seconds" (a custom time budget).
GUI_BUDGETS = (*BUDGET_PRESETS, "seconds")
# Adaptation batch size per device type (the GPU has the memory for more planes per step).
ADAPT_BATCH = {"cpu": 8, "cuda": 32}


@dataclass(frozen=True)
class Option:
    """One run option: its single declaration."""

    name: str  # attribute of RunOptions; the flag is --name-with-dashes
    kind: type  # float, int, str or bool
    default: Any
    help: str
    choices: tuple = ()
    metavar: Optional[str] = None
    group: Optional[str] = None  # options of one group are mutually exclusive
    minimum: Optional[float] = None
    above: bool = False  # minimum is exclusive (value must be > minimum)
    maximum: Optional[float] = None
    param: Optional[str] = None  # the Slicer parameter node's name, when it has this option
    cli: bool = True  # False: internal (benchmark / scripts), no flag
    engine: bool = True  # False: a CLI-only concern (--progress), never sent by the Slicer module

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def annotation(self) -> Any:
        return self.kind if self.default is not None or self.kind is bool else Optional[self.kind]


OPTIONS: tuple[Option, ...] = (
    Option("spacing", float, None, "output spacing along the slice axis in mm (default: the "
           "finest in-plane spacing, i.e. isotropic)", metavar="MM", group="grid", minimum=0,
           above=True, param="targetSpacing"),
    Option("factor", float, None, "slice spacing / output spacing (any real number from 1 to "
           f"{MAX_FACTOR:g})", metavar="F", group="grid", minimum=1, maximum=MAX_FACTOR),
    Option("thickness", float, None, "slice profile FWHM in mm (default: DICOM SliceThickness "
           "or the slice spacing)", metavar="MM", minimum=0, above=True, param="sliceThickness"),
    Option("profile", str, "auto", "slice profile shape: auto (estimated from the volume), "
           "gauss, box or sinc", choices=PROFILES, param="profile"),
    Option("method", str, "self-supervised", "what the network is fine-tuned on: in-plane "
           "pairs of the volume (self-supervised), pairs from VAE-synthesised thin-slice volumes "
           "(vae-pairs, Xuan et al.), or both (vae-combined); see docs/vae.md", choices=METHODS, param="method"),
    Option("device", str, "auto", "compute device: auto (CUDA when available), cuda or cpu",
           choices=DEVICES, param="device"),
    Option("backend", str, "auto", "inference backend: auto, torch or onnxruntime",
           choices=BACKENDS, param="backend"),
    Option("budget", str, None, "adaptation budget preset: " + ", ".join(
        f"{name} ({p['cpu'].seconds:g} s CPU / {p['cuda'].seconds:g} s CUDA, at most "
        f"{p['cuda'].steps} steps)" for name, p in BUDGET_PRESETS.items())
        + f"; default {DEFAULT_PRESET}", choices=tuple(BUDGET_PRESETS), group="budget",
        param="budget"),
    Option("adapt_steps", int, None, "adaptation step budget (no time limit)", metavar="N",
           group="budget", minimum=0),
    Option("adapt_seconds", float, None, "adaptation time budget in seconds (no step limit)",
           metavar="S", group="budget", minimum=0),
    Option("no_adapt", bool, False, "no adaptation: the shipped network as it is (seconds)",
           group="budget"),
    Option("seed", int, 0, "random seed (adaptation sampling, initial weights)", minimum=0,
           maximum=2**32 - 1, param="seed"),
    Option("force", bool, False, "process label-map-like input anyway"),
    Option("weights", str, None, "weights file or folder with weights.json (default: the "
           "shipped ones), or 'none' to train from scratch", metavar="PATH|none"),
    Option("parent_pid", int, None, "the program that launched this run (the Slicer module "
           "passes its own): when it ends, the run is cancelled and its partial output removed "
           "within 5 s; the run also takes a lower priority and leaves one CPU core free",
           metavar="PID", minimum=1),
    Option("uncompressed", bool, False, "write OUTPUT without compression (faster to write "
           "and to load; the Slicer module's temporary result)"),
    Option("output_format", str, "auto", "auto: by OUTPUT's extension (.nrrd, .nii, .nii.gz, "
           ".mha), a name ending in '/' being a DICOM folder; dicom: OUTPUT is a new folder for a "
           "DICOM series (DERIVED\\SECONDARY, patient and study tags from a DICOM input)",
           choices=OUTPUT_FORMATS, engine=False),
    Option("confidence", str, None, "also write a confidence map to PATH (a file beside "
           "OUTPUT, same grid): per voxel, the expected absolute error of the output in "
           "normalised intensity (0..1 = the input's 0.5th..99.5th percentile), calibrated on "
           "the benchmark; never OUTPUT or INPUT", metavar="PATH", engine=False),
    Option("threads", int, None, "CPU threads of this run (default: every core); `intersr "
           "batch` gives each worker its share", metavar="N", minimum=1, engine=False),
    Option("progress", str, "bar", "progress on stderr (bar), JSON lines on stdout (jsonl) or "
           "none", choices=PROGRESS_MODES, engine=False),
    Option("design", str, "inr", "network design when training from scratch", cli=False,
           engine=False),
)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

RunOptions = make_dataclass(
    "RunOptions", [(o.name, o.annotation, field(default=o.default)) for o in OPTIONS],
    namespace={"__doc__": "Values of every run option (see intersr.options.OPTIONS).",
               "__module__": __name__})


# ------------------------------------------------------------------------------ validation
def _coerce(option: Option, value: Any) -> Any:
    if value is None:
        return None
    if option.kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"{option.flag} is a switch (true or false), not {value!r}")
        return value
    try:
        if option.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if option.kind is float:
            return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{option.flag} needs {'a whole' if option.kind is int else 'a'} "
                         f"number, not {value!r}") from None
    return str(value)


def check_value(option: Option, value: Any) -> Any:
    """One option's value, coerced and checked; raises InputError with a specific message."""
    value = _coerce(option, value)
    if value is None:
        return None
    if option.choices and value not in option.choices:
        choices = ", ".join(option.choices[:-1]) + " or " + option.choices[-1]
        raise InputError(f"unknown {option.name} {value!r}: use {choices} ({option.flag})")
    if option.kind in (int, float):
        if not math.isfinite(value):
            raise InputError(f"{option.flag} must be a finite number (got {value})")
        low, text = option.minimum, (f"{value:g}" if isinstance(value, float) else str(value))
        if low is not None and (value <= low if option.above else value < low):
            raise InputError(f"{option.flag} must be {'>' if option.above else '>='} {low:g} "
                             f"(got {text})" + _why(option))
        if option.maximum is not None and value > option.maximum:
            high = f"{option.maximum:g}" if isinstance(option.maximum, float) else option.maximum
            raise InputError(f"{option.flag} must be <= {high} (got {text})")
    return value


def _why(option: Option) -> str:
    if option.name == "factor":
        return "; InterSliceSR only makes slices thinner"
    return ""


def is_set(option: Option, value: Any) -> bool:
    """Given by the user: a switch that is on, or any value (0 included) for the others."""
    return value is True if option.kind is bool else value is not None


def validate(options: Any) -> Any:
    """Check every value and every exclusive group; returns the options (coerced in place)."""
    groups: dict[str, list[str]] = {}
    for option in OPTIONS:
        value = check_value(option, getattr(options, option.name))
        setattr(options, option.name, value)
        if option.group and is_set(option, value):
            groups.setdefault(option.group, []).append(option.flag)
    for flags in groups.values():
        if len(flags) > 1:
            raise InputError(f"give only one of {', '.join(flags)}")
    return options


def make(**values: Any) -> Any:
    """A validated RunOptions; unknown names are an error (no silent typo)."""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise InputError(f"unknown run option(s): {', '.join(unknown)}")
    return validate(RunOptions(**values))


def budget_for(options: Any, device_type: str) -> Budget:
    """The adaptation budget a run uses on `device_type` ("cpu" or "cuda")."""
    if options.no_adapt:
        return Budget(0.0, 0)
    if options.adapt_steps is not None or options.adapt_seconds is not None:
        return Budget(options.adapt_seconds, options.adapt_steps)
    return BUDGET_PRESETS[options.budget or DEFAULT_PRESET][device_type]


def cpu_threads(options: Any) -> int:
    """CPU threads a run uses: --threads (batch workers' share), else every core, or all but
    one for a launching program (--parent-pid)."""
    if options.threads:
        return int(options.threads)
    cores = os.cpu_count() or 1
    return max(1, cores - 1) if options.parent_pid else cores


def ort_threads(options: Any) -> int:
    """ONNX Runtime's intra-op threads: cpu_threads when a launcher or --threads limits the run,
    else 0 (ONNX Runtime's own default)."""
    return cpu_threads(options) if options.parent_pid or options.threads else 0


def adapts(options: Any) -> bool:
    """False when the options ask for no adaptation at all."""
    return not (options.no_adapt or options.adapt_steps == 0 or options.adapt_seconds == 0)


# ------------------------------------------------------------------------------ argparse
def _parse(option: Option) -> Callable[[str], Any]:
    """argparse only converts; `validate` checks (so a bad value is a jsonl error event too)."""
    def parse(text: str) -> Any:
        try:
            return _coerce(option, text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace(option.flag + " ", "", 1)) from None
    parse.__name__ = option.kind.__name__
    return parse


def add_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """The run options as argparse flags (exclusive groups included); `only`: just these."""
    groups: dict[str, Any] = {}
    for option in OPTIONS:
        if not option.cli or (only is not None and option.name not in only):
            continue
        target: Any = parser
        if option.group:
            if option.group not in groups:
                groups[option.group] = parser.add_mutually_exclusive_group()
            target = groups[option.group]
        if option.kind is bool:
            target.add_argument(option.flag, action="store_true", help=option.help)
            continue
        target.add_argument(option.flag, type=_parse(option), default=option.default,
                            metavar=option.metavar or ("{" + ",".join(option.choices) + "}"
                                                       if option.choices else None),
                            help=option.help + (f" (default: {option.default})"
                                                if option.default not in (None, False) else ""))


def from_namespace(args: argparse.Namespace) -> Any:
    """RunOptions from parsed flags (options without a flag keep their defaults)."""
    return validate(RunOptions(**{o.name: getattr(args, o.name) for o in OPTIONS
                                  if o.cli and hasattr(args, o.name)}))


# ------------------------------------------------------------------------------ engine arguments
def _text(value: Any) -> str:
    return format(value, ".10g") if isinstance(value, float) else str(value)


def engine_args(options: Any, only: tuple[str, ...] | None = None) -> list[str]:
    """Flags for `intersr run` that reproduce `options` (defaults are left out); `only`: just
    these options (e.g. FUSE_OPTIONS for `intersr fuse`)."""
    validate(options)
    args: list[str] = []
    for option in OPTIONS:
        if not (option.cli and option.engine) or (only is not None and option.name not in only):
            continue
        value = getattr(options, option.name)
        if value is None or value == option.default:
            continue
        args += [option.flag] if option.kind is bool else [option.flag, _text(value)]
    return args


def param_name(option: Option) -> str:
    """The Slicer side's name of an option: the parameter node's, or the camelCase name."""
    if option.param:
        return option.param
    head, *rest = option.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


ENGINE_OPTIONS: tuple[Option, ...] = tuple(o for o in OPTIONS if o.cli and o.engine)
# The run options `intersr fuse` takes too (its stack list, thicknesses, reference, field of
# view and registration are its own: cli/fuse.py).
FUSE_OPTIONS: tuple[str, ...] = ("spacing", "profile", "device", "backend", "budget", "adapt_steps",
                                 "adapt_seconds", "no_adapt", "seed", "force", "weights",
                                 "progress", "parent_pid", "uncompressed", "threads")
BUDGET_SECONDS_PARAM = "budgetSeconds"  # the GUI's custom time budget (budget == "seconds")


def from_parameters(values: Mapping[str, Any]) -> Any:
    """RunOptions from the Slicer side's values, keyed by `param_name`.

    The parameter node stores "automatic" as 0 for spacing and thickness; the GUI's budget
    "seconds" comes with `budgetSeconds`; an explicit step/seconds budget or no-adapt (console
    API) overrides the GUI's preset. These conventions are resolved here, once.
    """
    kwargs: dict[str, Any] = {}
    for option in ENGINE_OPTIONS:
        value = values.get(param_name(option))
        if option.kind is float and value is not None and float(value) == 0 \
                and option.name in ("spacing", "thickness", "factor"):
            value = None  # 0 = automatic
        if value is not None:
            kwargs[option.name] = value
    if kwargs.get("budget") == "seconds":
        seconds = values.get(BUDGET_SECONDS_PARAM)
        if seconds is None or not float(seconds) > 0:
            raise InputError("the 'seconds' budget needs a positive number of seconds")
        kwargs["budget"] = None
        kwargs.setdefault("adapt_seconds", float(seconds))
    if any(is_set(BY_NAME[name], kwargs.get(name))
           for name in ("adapt_steps", "adapt_seconds", "no_adapt")):
        kwargs.pop("budget", None)
    return make(**kwargs)


def replace(options: Any, **changes: Any) -> Any:
    """A validated copy with some values changed (a group's other members are cleared)."""
    values = {f.name: getattr(options, f.name) for f in fields(options)}
    for name in changes:
        group = BY_NAME[name].group if name in BY_NAME else None
        if group:
            for other in OPTIONS:
                if other.group == group:
                    values[other.name] = other.default
    values.update(changes)
    return make(**values)
