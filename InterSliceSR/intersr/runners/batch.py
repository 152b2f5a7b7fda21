"""`intersr batch` as a function: one `intersr run` per volume of a cohort, on a pool or Ray.

Each volume is a task: the command line `python -m intersr run IN OUT ... --progress jsonl` in
its own process (runners/pool.py runs tasks and knows nothing else), so a crash or a corrupt
file fails that volume only and the others go on. With `resume`, a volume is skipped when its
output exists and its provenance records this input's sha256 and these options. Each output
gets a JSON sidecar with its provenance; the report lists every volume.
"""
from __future__ import annotations

import csv
import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import InputError
from ..options import RunOptions, engine_args, validate
from ..progress import Progress
from ..volumes.read import input_sha256
from . import cohort as cohorts
from . import pool
from .pipeline import run_options_text

REPORT_COLUMNS = ("input", "output", "status", "seconds", "slice_axis", "factor", "profile",
                  "error")
STATUSES = ("done", "skipped", "failed", "cancelled")  # skipped: complete already (--resume)


@dataclass
class BatchReport:
    """One row per volume (REPORT_COLUMNS), in cohort order."""

    rows: list[dict[str, Any]]
    output_dir: str
    seconds: float = 0.0
    workers: str = ""
    report: Optional[str] = None

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def summary(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in STATUSES if self.count(s)]
        return (f"{len(self.rows)} volumes in {self.seconds:.1f} s ({self.workers}): "
                + ", ".join(parts or ["none"]))


def task_command(item: cohorts.Item, options: RunOptions, threads: int,
                 python: str | None = None) -> list[str]:
    """The command line of one volume's task."""
    return [python or sys.executable, "-m", "intersr", "run", str(item.input), str(item.output),
            *engine_args(options), "--threads", str(threads), "--progress", "jsonl"]


def header_provenance(path: Path) -> dict[str, str]:
    """`intersr_*` fields of an output's header, short keys (NRRD, MHA; NIfTI has none)."""
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}
    return {key[len("intersr_"):]: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()
            if key.startswith("intersr_")}


def current_provenance(item: cohorts.Item, options_text: str) -> dict[str, str] | None:
    """The provenance of an output that is complete and current (this input, these options),
    from its sidecar or else its header (then the sidecar is written); None otherwise."""
    if not item.output.is_file():
        return None
    recorded = cohorts.read_sidecar(item)
    from_header = not recorded
    if from_header:
        recorded = header_provenance(item.output)
    if not recorded or recorded.get("options") != options_text \
            or recorded.get("input_sha256") != input_sha256(item.input):
        return None
    if from_header:
        cohorts.write_sidecar(item, {"intersr_" + k: v for k, v in recorded.items()})
    return recorded


def make_row(item: cohorts.Item, status: str, seconds: float = 0.0,
             provenance: dict[str, str] | None = None, error: str = "") -> dict[str, Any]:
    prov = {k.removeprefix("intersr_"): v for k, v in (provenance or {}).items()}
    return {"input": str(item.input), "output": str(item.output), "status": status,
            "seconds": round(seconds, 2), "slice_axis": prov.get("slice_axis", ""),
            "factor": prov.get("factor", ""),
            "profile": prov.get("profile", "").split("; adapted to", 1)[0],
            "error": error}


def write_report(report: BatchReport, path: str | os.PathLike) -> Path:
    """The report as JSON (summary and rows) or CSV (rows), by the file's suffix; atomically."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(report.rows)
        temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        temp.write_text(text.getvalue(), encoding="utf-8")
        os.replace(temp, path)
    else:
        cohorts.write_json(path, {"output_dir": report.output_dir,
                                  "seconds": round(report.seconds, 2),
                                  "workers": report.workers,
                                  "counts": {s: report.count(s) for s in STATUSES},
                                  "volumes": report.rows})
    return path


def check_report_path(report: str | os.PathLike | None, output_dir: str | os.PathLike) -> None:
    if report is None:
        return
    path = Path(report)
    if path.suffix.lower() not in (".json", ".csv"):
        raise InputError(f"--report {path}: name a .json or .csv file")
    out = Path(output_dir).resolve()
    folder = path.parent.resolve()
    if not (folder.is_dir() or folder == out or out in folder.parents):
        raise InputError(f"--report {path}: folder {path.parent} does not exist")


def batch(inputs: str | os.PathLike | Sequence[str | os.PathLike],
          output_dir: str | os.PathLike, options: RunOptions | None = None, *,
          workers: int | None = None, ray: str | None = None, resume: bool = False,
          report: str | os.PathLike | None = None, progress: Progress | None = None,
          python: str | None = None) -> BatchReport:
    """Super-resolve every volume of INPUTS into OUTPUT_DIR; returns the report (failed
    volumes are rows with status "failed", never an exception). Interrupted, the running
    volumes are cancelled, the report is written, and the interruption is raised again."""
    start = time.monotonic()
    options = validate(options if options is not None else RunOptions())
    progress = progress or Progress("none")
    check_report_path(report, output_dir)
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1 (got {workers})")
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    cohort = cohorts.discover(inputs, output_dir)
    cohorts.prepare(cohort)
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)  # OUTPUT_DIR or below it
    options_text = run_options_text(options)
    rows: dict[str, dict[str, Any]] = {}
    todo: list[cohorts.Item] = []
    for item in cohort.items:
        recorded = current_provenance(item, options_text) if resume else None
        if recorded is not None:
            rows[item.key] = make_row(item, "skipped", provenance=recorded)
        else:
            todo.append(item)
    gpus = [] if options.device == "cpu" else pool.gpu_ids()
    count, threads = pool.plan_workers(len(todo), workers, options.threads,
                                       gpus if ray is None else ())
    where = (f"Ray {ray}, {threads} thread(s) per volume" if ray else
             f"{count} worker(s) x {threads} thread(s)" + (f", GPUs {','.join(gpus)}"
                                                           if gpus else ""))
    progress.log(f"intersr batch: {len(cohort.items)} volumes, {len(rows)} complete already, "
                 f"{len(todo)} to run on {where}")
    by_key = {item.key: item for item in todo}
    tasks = []
    for item in todo:
        item.output.parent.mkdir(parents=True, exist_ok=True)
        tasks.append(pool.Task(item.key, task_command(item, options, threads, python),
                               pool.thread_env(threads), cpus=threads,
                               gpus=0 if options.device == "cpu" else 1))
    state = {"finished": 0, "failed": 0}

    def finished(outcome: pool.Outcome) -> None:
        item = by_key[outcome.key]
        if outcome.ok:
            provenance = outcome.final.get("provenance") or {}
            cohorts.write_sidecar(item, provenance)
            row = make_row(item, "done", outcome.seconds, provenance)
        else:
            row = make_row(item, "cancelled" if outcome.cancelled else "failed",
                           outcome.seconds, error=outcome.error())
        rows[item.key] = row
        state["finished"] += 1
        state["failed"] += row["status"] == "failed"
        progress.log(f"intersr batch: [{state['finished']}/{len(todo)}] " + volume_line(row, item))
        progress.update("batch", state["finished"], len(todo), failed=state["failed"],
                        volume=item.key, status=row["status"])

    result = BatchReport([], str(cohort.output_dir), workers=where,
                         report=str(report) if report else None)
    try:
        if tasks:
            progress.update("batch", 0, len(todo), failed=0)
            if ray:
                pool.run_ray(tasks, ray, finished)
            else:
                pool.run_local(tasks, count, finished, gpus)
    finally:
        result.rows = [rows.get(item.key) or make_row(item, "cancelled", error="cancelled")
                       for item in cohort.items]
        result.seconds = time.monotonic() - start
        if report:
            write_report(result, report)
    return result


def volume_line(row: dict[str, Any], item: cohorts.Item) -> str:
    """The per-volume line: status, name, seconds, and what the run found or why it failed."""
    if row["status"] != "done":
        return f"{row['status']} {item.key}: {row['error']}"
    return (f"done {item.key} in {row['seconds']:.1f} s (slice axis {row['slice_axis']}, "
            f"x{row['factor']}, {row['profile']})")
