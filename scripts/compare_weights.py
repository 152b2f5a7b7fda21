"""Two sets of weights (or settings) on the same bench cases: gain over B-spline per case, and
median [min, max] per set, from result files of `scripts/vae_ablation.py` or
`intersr bench --adapt-steps 0` (JSON).

    .venv/bin/python scripts/compare_weights.py OLD.json:METHOD NEW.json:METHOD [--label-old A --label-new B]

METHOD is the column to read: pretrained, self-supervised, ... ("intersr" for a bench result).
Only the cases present in both files are compared; B-spline and the true-profile
deconvolution are read from the NEW file (the same thick volumes, so the same numbers).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load(spec: str) -> dict[tuple[str, str], dict]:
    name, method = spec.rsplit(":", 1)
    rows = {}
    for r in json.loads(Path(name).read_text())["results"]:
        m = r["methods"]
        if method in m:
            rows[(r["volume"], r["case"])] = {"set": r["set"], "split": r["split"],
                                              "value": m[method]["psnr_fg"],
                                              "bspline": m["bspline"]["psnr_fg"],
                                              "deconv": m["deconv"]["psnr_fg"]}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--label-old", default="old")
    parser.add_argument("--label-new", default="new")
    args = parser.parse_args()
    old, new = load(args.old), load(args.new)
    keys = [k for k in new if k in old]
    a, b = args.label_old, args.label_new
    print(f"| set | case | volume | split | {a} over B-spline | {b} over B-spline | {b} - {a} "
          f"| {b} over deconv |\n|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list] = {}
    for k in keys:
        o, n = old[k], new[k]
        go, gn = o["value"] - o["bspline"], n["value"] - n["bspline"]
        gd = n["value"] - n["deconv"]
        groups.setdefault((n["set"], n["split"]), []).append((go, gn, gd))
        print(f"| {n['set']} | {k[1]} | {k[0]} | {n['split']} | {go:+.2f} | {gn:+.2f} | "
              f"{gn - go:+.2f} | {gd:+.2f} |")

    def cell(values) -> str:
        return f"{np.median(values):+.2f} [{min(values):+.2f}, {max(values):+.2f}]"

    print(f"\n| set | split | n | {a} over B-spline | {b} over B-spline | {b} - {a} | "
          f"{b} over deconv |\n|---|---|---|---|---|---|---|")
    for (set_name, split), rows in sorted(groups.items()):
        go, gn, gd = (np.array(c) for c in zip(*rows))
        print(f"| {set_name} | {split} | {len(rows)} | {cell(go)} | {cell(gn)} | {cell(gn - go)} "
              f"| {cell(gd)} |")


if __name__ == "__main__":
    main()
