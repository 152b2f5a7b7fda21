"""`intersr bench --batch`: `intersr batch` on 8 volumes (and a corrupt file) against single runs.

Measures, each as whole processes: every volume alone (`intersr run`, with the threads a
batch worker gets), then `intersr batch --workers W` (wall time against the sum of single runs
divided by W), the same again with `--resume` (nothing left to do), and with `--ray auto`
(when Ray is installed; its wall time includes starting the local Ray instance).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

from ..resources import SAMPLE
from ..runners.pool import plan_workers

VOLUMES = 8
DEFAULT_STEPS = 10  # adaptation steps per volume (the budget is fixed, so runs are comparable)


def make_cohort(folder: Path, crop: int, volumes: int = VOLUMES) -> list[Path]:
    """`volumes` crops of the embedded sample (2x2x3 mm T1) in two sub-folders, plus one
    corrupt file that the batch must report."""
    image = sitk.ReadImage(str(SAMPLE))
    size = [min(crop, image.GetSize()[0]), min(crop, image.GetSize()[1]),
            min(max(crop // 3, 8), image.GetSize()[2])]
    paths = []
    for i in range(volumes):
        shift = ((i % 4) - 1.5, (i // 4) - 0.5, (i % 3) - 1)  # about the centre, apart
        start = [min(max(0, (full - n) // 2 + int(d * n / 4)), full - n)
                 for full, n, d in zip(image.GetSize(), size, shift)]
        path = folder / f"site{i % 2}" / f"vol{i}.nrrd"
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.RegionOfInterest(image, size, start), str(path))
        paths.append(path)
    (folder / "site1" / "corrupt.nii.gz").write_bytes(b"\x1f\x8b truncated")
    return paths


def timed(argv: list[str]) -> tuple[float, int, str]:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True)
    return time.monotonic() - start, proc.returncode, proc.stderr


def main(args) -> int:
    workers = args.workers or 2
    steps = args.adapt_steps if args.adapt_steps is not None else DEFAULT_STEPS
    crop = args.crop or 64
    threads = plan_workers(VOLUMES, workers)[1]
    run_flags = ["--adapt-steps", str(steps), "--seed", "0", "--device", args.device]
    intersr = [sys.executable, "-m", "intersr"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"volumes": VOLUMES, "workers": workers, "threads_per_worker": threads,
                    "adapt_steps": steps, "crop": crop, "cpus": os.cpu_count(),
                    "command": " ".join(["intersr", "bench", "--batch", "--workers",
                                         str(workers), "--adapt-steps", str(steps), "--crop",
                                         str(crop)])}
    with tempfile.TemporaryDirectory(prefix="intersr-bench-batch-") as tmp:
        tmp = Path(tmp)
        paths = make_cohort(tmp / "study", crop)
        singles = []
        for path in paths:
            seconds, code, err = timed([*intersr, "run", str(path), str(tmp / f"{path.stem}.nrrd"),
                                        *run_flags, "--threads", str(threads), "--progress",
                                        "none"])
            if code:
                print(f"intersr bench: single run of {path} failed: {err}", file=sys.stderr)
                return 1
            singles.append(round(seconds, 2))
            print(f"single {path.name}: {seconds:.1f} s", file=sys.stderr)
        result["single_seconds"] = singles
        result["ideal_seconds"] = round(sum(singles) / workers, 2)
        modes = [("pool", ["--workers", str(workers)], "pool")]
        modes.append(("resume", ["--workers", str(workers), "--resume"], "pool"))
        if args.no_ray:
            result["ray"] = "not measured (--no-ray)"
        else:
            import importlib.util
            if importlib.util.find_spec("ray") is not None:
                modes.append(("ray", ["--ray", "auto", "--workers", str(workers)], "ray"))
            else:
                result["ray"] = "not measured: Ray is not installed (pip install 'intersr[ray]')"
        for name, flags, folder in modes:
            report = tmp / f"{name}.json"
            seconds, code, err = timed([*intersr, "batch", str(tmp / "study"), str(tmp / folder),
                                        *run_flags, *flags, "--report", str(report),
                                        "--progress", "none"])
            counts = json.loads(report.read_text())["counts"] if report.exists() else {}
            result[name] = {"seconds": round(seconds, 2), "exit_code": code, "counts": counts}
            print(f"{name}: {seconds:.1f} s, exit code {code}, {counts}", file=sys.stderr)
    pool = result["pool"]["seconds"]
    result["pool_over_ideal"] = round(pool / result["ideal_seconds"], 3)
    (out / "batch.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    rows = [f"| sum of single runs / {r['workers']} workers | {r['ideal_seconds']:.1f} s | "
            f"{len(r['single_seconds'])} runs, {r['threads_per_worker']} thread(s) each |",
            f"| `intersr batch --workers {r['workers']}` | {r['pool']['seconds']:.1f} s | "
            f"{r['pool_over_ideal']:.2f} x ideal; {r['pool']['counts']} |",
            f"| same, `--resume` | {r['resume']['seconds']:.1f} s | {r['resume']['counts']} |"]
    if isinstance(r.get("ray"), dict):
        rows.append(f"| `intersr batch --ray auto` | {r['ray']['seconds']:.1f} s | "
                    f"{r['ray']['counts']} (includes starting Ray: about 10 s) |")
    else:
        rows.append(f"| `intersr batch --ray auto` | - | {r.get('ray')} |")
    return "\n".join([f"`{r['command']}` ({r['volumes']} volumes of "
                      f"{r['crop']}x{r['crop']}, {r['adapt_steps']} adaptation steps, "
                      f"{r['cpus']} CPUs)", "", "| run | wall | notes |", "|---|---|---|", *rows])
