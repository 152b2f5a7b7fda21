"""The progress and provenance schema, once (torch-free, standard library only).

The engine's `Progress` writes these events, the Slicer module's parser reads them, and the
output header carries these provenance keys. A new stage or provenance key is added here and
nowhere else; `Progress.update` refuses a stage this module does not know.

`--progress jsonl` writes one JSON object per line on stdout:
  {"stage": "adapt", "step": 120, "steps": 400, "loss": 0.013, "eta_s": 41}
  ... {"stage": "done", "output": "/abs/out.nrrd", "seconds": 73.2, "provenance": {...}}
  or  {"stage": "error", "message": "..."}
"""
from __future__ import annotations

import json
from typing import Any, Iterable

# Work stages in run order, with the share of a whole run each takes (one progress bar over
# all stages) and the words the GUI shows. Optional stages (profile, vae, synth, export) may
# be skipped; the bar never moves backwards (so vae-pairs' vae and synth share the start of
# adapt's span: adapt then moves the bar once it passes them).
STAGE_TABLE: tuple[tuple[str, float, float, str], ...] = (
    ("load", 0.00, 0.04, "Loading"),
    ("profile", 0.04, 0.05, "Estimating the slice profile"),
    ("vae", 0.05, 0.30, "Training the VAE on this volume"),
    ("synth", 0.30, 0.35, "Synthesising thin-slice volumes"),
    ("adapt", 0.05, 0.80, "Fine-tuning on this volume"),
    ("export", 0.80, 0.82, "Exporting the adapted network"),
    ("infer", 0.82, 0.95, "Computing new slices"),
    ("check", 0.95, 0.98, "Checking data consistency"),
    ("write", 0.98, 1.00, "Writing result"),
    # `intersr fuse` (several stacks): load, register, prior, fuse, write; spans shared with
    # the single-volume stages it never runs
    ("register", 0.04, 0.25, "Registering the stacks"),
    ("prior", 0.25, 0.60, "Super-resolving each stack"),
    ("fuse", 0.60, 0.98, "Combining the stacks"),
)
RUN_STAGES: tuple[str, ...] = tuple(row[0] for row in STAGE_TABLE)
# "train": `intersr train` (pre-training); "batch": `intersr batch`, volumes finished of all
STAGES: tuple[str, ...] = (*RUN_STAGES, "train", "batch")
STAGE_SPANS: dict[str, tuple[float, float]] = {row[0]: (row[1], row[2]) for row in STAGE_TABLE}
DONE, ERROR, LOG = "done", "error", "log"
TERMINAL = (DONE, ERROR)
STAGE_LABELS: dict[str, str] = {row[0]: row[3] for row in STAGE_TABLE}
STAGE_LABELS.update({DONE: "Done", ERROR: "Failed", "cancelled": "Cancelled",
                     "start": "Starting"})

# Fields of events (besides "stage"): what each may carry.
EVENT_FIELDS = {
    "progress": ("step", "steps", "eta_s", "loss", "message"),  # any work stage
    "batch": ("step", "steps", "eta_s", "failed", "volume", "status"),
    DONE: ("output", "seconds", "data_consistency_db", "provenance"),
    ERROR: ("message",),
    LOG: ("message",),  # not emitted by the engine: the parser's name for a non-JSON line
}

# Provenance: every output says what made it (NRRD key/value fields, NIfTI description, the
# Slicer node's description and attributes). Keys in display order.
PROVENANCE_PREFIX = "intersr_"
PROVENANCE_KEYS: tuple[str, ...] = (
    "note", "method", "version", "backend", "weights_sha256", "profile", "factor",
    "input_spacing_mm", "output_spacing_mm", "thickness_mm", "adapt_steps", "adapt_final_loss",
    "pretrained_planes",
    "vae_steps", "vae_final_l1", "synthetic_slices", "data_consistency_db", "warnings",
    "stacks", "inputs", "stack_transforms", "stack_profiles", "registration",
    "slice_axis", "input_sha256", "options", "map",
)
SYNTHESISED_NOTE = "slices synthesised by InterSliceSR, not acquired"
FUSED_NOTE = "synthesised by InterSliceSR from {n} stacks, not acquired"

# How a result is marked in DICOM (the CLI's DICOM output and the Slicer node's attributes for
# Slicer's DICOM export): it must never pass for an acquired series.
SYNTHESISED = "InterSliceSR synthesised"
DICOM_IMAGE_TYPE = "DERIVED\\SECONDARY"


def series_description(source_description: str, fallback: str = "") -> str:
    """'<input's description> - InterSliceSR synthesised', within DICOM's 64 characters (LO)."""
    base = (source_description or fallback or "").strip()
    room = 64 - len(SYNTHESISED) - 3
    return f"{base[:room].rstrip()} - {SYNTHESISED}" if base else SYNTHESISED


def derivation_description(provenance: dict[str, Any]) -> str:
    """DICOM DerivationDescription (ST, at most 1024 characters): the provenance, short keys."""
    items = "; ".join(f"{short_key(k)}={v}" for k, v in provenance.items()
                      if short_key(k) != "note")
    return ("Slices synthesised by InterSliceSR (inter-slice super-resolution), not acquired: "
            + items)[:1024]


def provenance(**values: Any) -> dict[str, str]:
    """Header fields (prefixed keys, string values) from short keys; unknown keys are an error."""
    unknown = sorted(set(values) - set(PROVENANCE_KEYS))
    if unknown:
        raise KeyError(f"not in the provenance schema: {', '.join(unknown)} "
                       "(add them to intersr.protocol.PROVENANCE_KEYS)")
    values.setdefault("note", SYNTHESISED_NOTE)
    return {PROVENANCE_PREFIX + key: str(values[key]) for key in PROVENANCE_KEYS if key in values}


def short_key(key: str) -> str:
    key = str(key)
    return key[len(PROVENANCE_PREFIX):] if key.startswith(PROVENANCE_PREFIX) else key


def ordered(keys: Iterable[str]) -> list[str]:
    """Short provenance keys in display order (schema keys first, others sorted after)."""
    keys = list(keys)
    known = [k for k in PROVENANCE_KEYS if k in keys]
    return known + sorted(k for k in keys if k not in known)


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown progress stage {stage!r}; add it to intersr.protocol.STAGES")
    return stage


def parse_line(line: str) -> dict:
    """One line of engine output -> one event dict (never raises).

    Anything that is not a JSON object with a "stage" (human log lines on a merged stderr)
    becomes {"stage": "log", "message": line}; unknown keys and stages are kept.
    """
    text = line.rstrip("\r\n")
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            event = json.loads(stripped)
        except ValueError:
            event = None
        if isinstance(event, dict) and isinstance(event.get("stage"), str):
            return event
    return {"stage": LOG, "message": text}


def read_nrrd_provenance(path: str) -> dict[str, str]:
    """`intersr_*` key/value fields (`key:=value`) from a NRRD header (empty if unreadable)."""
    result: dict[str, str] = {}
    try:
        with open(path, "rb") as handle:
            for raw in handle:
                line = raw.decode("latin-1").rstrip("\r\n")
                if not line:
                    break  # end of the header
                if ":=" in line:
                    key, value = line.split(":=", 1)
                    if key.startswith(PROVENANCE_PREFIX):
                        result[key] = value
    except OSError:
        pass
    return result
