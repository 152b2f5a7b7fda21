"""The progress protocol: one reporter, three renderings (bar, jsonl, none).

jsonl writes one JSON object per line on stdout (the Slicer module parses it); everything
meant for people goes to stderr, so stdout stays machine-readable. Stage names and event
fields are the schema in `intersr.protocol`.
"""
from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO

from .protocol import DONE, ERROR, check_stage


class Progress:
    """Emit stage events. `update(stage, step, steps, **extra)` also computes an ETA."""

    def __init__(self, mode: str = "bar", stream: TextIO | None = None,
                 log: TextIO | None = None):
        if mode not in ("bar", "jsonl", "none"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self.stream = stream if stream is not None else sys.stdout
        self.log_stream = log if log is not None else sys.stderr
        self._stage_start: dict[str, float] = {}
        self._last_bar = 0.0
        self._bar_open = False

    def log(self, message: str) -> None:
        """A human message on stderr (and an event with a message in jsonl mode)."""
        self._close_bar()
        print(message, file=self.log_stream, flush=True)

    def update(self, stage: str, step: int, steps: int, **extra: Any) -> None:
        check_stage(stage)
        now = time.monotonic()
        start = self._stage_start.setdefault(stage, now)
        event: dict[str, Any] = {"stage": stage, "step": int(step), "steps": int(steps)}
        if step > 0 and steps > 0:
            event["eta_s"] = round((now - start) / step * max(steps - step, 0), 1)
        for key, value in extra.items():
            if isinstance(value, float):
                value = round(value, 6) if math.isfinite(value) else None
            event[key] = value
        if self.mode == "jsonl":
            self._emit(event)
        elif self.mode == "bar":
            self._bar(event, force=step >= steps)

    def done(self, output: str, seconds: float, **extra: Any) -> None:
        event = {"stage": DONE, "output": output, "seconds": round(seconds, 2), **extra}
        if self.mode == "jsonl":
            self._emit(event)
        elif self.mode == "bar":
            self._close_bar()
            print(f"wrote {output} in {seconds:.1f} s", file=self.log_stream, flush=True)

    def error(self, message: str) -> None:
        if self.mode == "jsonl":
            self._emit({"stage": ERROR, "message": message})
        self._close_bar()
        print(f"intersr: error: {message}", file=self.log_stream, flush=True)

    def _emit(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()

    def _bar(self, event: dict[str, Any], force: bool) -> None:
        now = time.monotonic()
        tty = self.log_stream.isatty()
        if not force and now - self._last_bar < (0.2 if tty else 5.0):
            return
        self._last_bar = now
        step, steps = event["step"], max(event["steps"], 1)
        width = 30
        filled = int(width * min(step / steps, 1.0))
        text = f"{event['stage']:>6} [{'#' * filled}{'.' * (width - filled)}] {step}/{steps}"
        if "loss" in event and event["loss"] is not None:
            text += f" loss {event['loss']:.4f}"
        if event.get("failed"):
            text += f" ({event['failed']} failed)"
        if "eta_s" in event:
            text += f" eta {event['eta_s']:.0f}s"
        if tty:
            print("\r" + text, end="\n" if force else "", file=self.log_stream, flush=True)
            self._bar_open = not force
        else:
            print(text, file=self.log_stream, flush=True)

    def _close_bar(self) -> None:
        if self._bar_open:
            print(file=self.log_stream, flush=True)
            self._bar_open = False
