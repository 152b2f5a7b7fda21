"""What the GUI shows of the engine's ``--progress jsonl`` stream.

The schema (stage names, their share of the bar, labels, the tolerant line parser) is the
engine's, in ``intersr.protocol``; this module only keeps the GUI's running state.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from intersr.protocol import STAGE_LABELS, STAGE_SPANS as _STAGE_SPAN


def format_seconds(seconds) -> str:
    try:
        seconds = max(0, int(round(float(seconds))))
    except (TypeError, ValueError):
        return ""
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class ProgressState:
    """What the GUI shows: updated with every event."""

    stage: str = "start"
    step: int = 0
    steps: int = 0
    loss: float | None = None
    eta_s: float | None = None
    fraction: float = 0.0
    message: str = ""
    log: list = field(default_factory=list)

    def update(self, event: dict) -> None:
        stage = event.get("stage", "log")
        if stage == "log":
            message = str(event.get("message", ""))
            if message:
                self.log.append(message)
            return
        if event.get("message"):
            self.message = str(event["message"])
            self.log.append(f"[{stage}] {self.message}")
        if stage in _STAGE_SPAN:
            if stage != self.stage:
                self.loss = None
                self.eta_s = None
            self.stage = stage
            self.step = _as_int(event.get("step"), 0)
            self.steps = _as_int(event.get("steps"), 0)
            if event.get("loss") is not None:
                self.loss = _as_float(event.get("loss"))
            self.eta_s = _as_float(event.get("eta_s"))
            start, stop = _STAGE_SPAN[stage]
            within = self.step / self.steps if self.steps > 0 else 0.0
            self.fraction = max(self.fraction, start + (stop - start) * min(max(within, 0.0), 1.0))
        elif stage == "done":
            self.stage, self.fraction, self.eta_s = "done", 1.0, None
        elif stage in ("error", "cancelled"):
            self.stage, self.eta_s = stage, None
        else:  # an unknown stage from a newer engine: show it, keep the bar where it is
            self.stage = stage

    @property
    def percent(self) -> int:
        return int(round(100 * self.fraction))

    def text(self) -> str:
        """One line for the progress bar, e.g. 'Fine-tuning on this volume 120/400, loss 0.0130, ETA 41 s'."""
        parts = [STAGE_LABELS.get(self.stage, self.stage)]
        if self.steps > 0 and self.stage in _STAGE_SPAN:
            parts[0] += f" {self.step}/{self.steps}"
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.eta_s is not None:
            parts.append(f"ETA {format_seconds(self.eta_s)}")
        return ", ".join(parts)


def _as_int(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _as_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
