"""Seeds of one method on the same bench cases: gain over B-spline per case as the median over
the seeds with its spread (max - min), then the median [min, max] of those per set and split.
Reads result files of `scripts/vae_ablation.py`, one per `--seed` (the thick volumes and the
baselines do not depend on the seed; B-spline is read from each file).

    .venv/bin/python scripts/seed_spread.py SEED0.json SEED1.json SEED2.json --method self-supervised
"""
from __future__ import annotations

import argparse

import numpy as np

from compare_weights import load  # scripts/ is on the path when run as a script


def gains(files: list[str], method: str) -> dict[tuple[str, str, str, str], list[float]]:
    """(set, split, case, volume) -> the gain over B-spline of each file (seed) that has it."""
    out: dict[tuple[str, str, str, str], list[float]] = {}
    for name in files:
        for (volume, case), row in load(f"{name}:{method}").items():
            out.setdefault((row["set"], row["split"], case, volume), []).append(
                row["value"] - row["bspline"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--method", default="self-supervised")
    parser.add_argument("--all", action="store_true",
                        help="also cases that not every file has")
    args = parser.parse_args()
    per_case = {k: v for k, v in gains(args.files, args.method).items()
                if args.all or len(v) == len(args.files)}
    print(f"| set | split | case | volume | seeds | {args.method} over B-spline, median | "
          "spread |\n|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for (set_name, split, case, volume), values in sorted(per_case.items()):
        med, spread = float(np.median(values)), float(np.ptp(values))
        groups.setdefault((set_name, split), []).append((med, spread))
        print(f"| {set_name} | {split} | {case} | {volume} | {len(values)} | {med:+.2f} | "
              f"{spread:.2f} |")
    print("\n| set | split | cases | median of the per-case medians [min, max] | "
          "spread: median [max] |\n|---|---|---|---|---|")
    for (set_name, split), rows in sorted(groups.items()):
        meds = [m for m, _ in rows]
        spreads = [s for _, s in rows]
        print(f"| {set_name} | {split} | {len(rows)} | {np.median(meds):+.2f} "
              f"[{min(meds):+.2f}, {max(meds):+.2f}] | {np.median(spreads):.2f} "
              f"[{max(spreads):.2f}] |")


if __name__ == "__main__":
    main()
