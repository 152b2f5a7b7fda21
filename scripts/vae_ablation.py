"""Quality per bench case (docs/benchmarks.md, docs/vae.md): B-spline, the true-profile
deconvolution, the pretrained network alone, self-supervised (default), vae-pairs and the
combination, on the bench's own simulated x4 cases (intersr.bench.cases.CASES: matched Gaussian and
mismatched box / RF-pulse / thick / gap profiles), same run, same metrics.

Every learned method starts from the shipped weights with the same step budget (the VAE trains
for as many steps again, see vae_pairs.vae_config) and the same seed; the slice profile is
estimated from each thick volume (`--profile auto`) exactly as `intersr run` does. Held-out
volumes (intersr.resources.HELD_OUT) are reported apart from those seen in pre-training. The
sub-mm cases (`--cases submm_box_5mm,submm_sinc_5mm`, intersr.bench.cases.SUBMM_CASES) run on
their own volumes (SUBMM_VOLUMES, whatever --volumes says) and crop (SUBMM_CROP).
Results are appended case by case to --out (JSON), so an interrupted run resumes.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/vae_ablation.py --out bench-out/cases.json
    .venv/bin/python scripts/vae_ablation.py --report --out bench-out/cases.json[,MORE.json]
(a result of `intersr bench --adapt-steps 0` may be listed too: its InterSliceSR column is
reported as "pretrained")

Two reports over result files (no case is run):

    .venv/bin/python scripts/vae_ablation.py --compare OLD.json:METHOD NEW.json:METHOD [--label-old A --label-new B]
    .venv/bin/python scripts/vae_ablation.py --seeds SEED0.json SEEDS.json [--method M] [--all]

--compare: two sets of weights (or settings, or methods) on the same cases: gain over B-spline
per case, and median [min, max] per set and split; METHOD is the column to read (pretrained,
self-supervised, ...; "intersr" for a bench result); only cases present in both files;
B-spline and the deconvolution are read from NEW. --seeds: one method over several seeds
(a file holds one run, or {"runs": [...]} several): the gain over B-spline per case as the
median over the seeds with its spread (max - min), then median [min, max] per set and split;
--all keeps cases that not every seed has.

The method's time on the 181x215x44 x4 volume is the bench's own timing:
    .venv/bin/intersr bench --timing --method vae-pairs --out OUT
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from intersr.bench.cases import (BENCH_ADAPT_STEPS, BENCH_CROP, CASES,
                                  SUBMM_CASES, SUBMM_CROP, SUBMM_VOLUMES, Case, _split,
                                  crop_to_anatomy, filled_in_crop, find_volumes)
from intersr.bench.quality import oracle_case, run_case
from intersr.resources import HELD_OUT

METHODS = ("bspline", "deconv", "pretrained", "self-supervised", "vae-pairs", "vae-combined",
           "oracle")
LEARNED = ("self-supervised", "vae-pairs", "vae-combined")


def score_case(reference: sitk.Image, case: Case, methods: list[str], steps: int,
               seed: int, done: dict, weights: str | None = None, device: str = "cpu",
               curve: tuple[int, ...] = (), oracle_steps: int | None = None,
               exclude: tuple = ()) -> dict:
    """The bench's run_case once per learned method; baselines from the first call.

    curve: shorter budgets of the default method scored from the same adaptation."""
    rows = dict(done)
    for method in methods:
        if method in rows or method in ("bspline", "deconv"):
            continue
        if method == "oracle":  # the supervised ceiling; its curve holds the same budget's
            rows[method] = oracle_case(reference, case, oracle_steps or steps, seed, device,
                                       keep_at=(steps,), exclude=exclude, weights=weights)
            continue
        learned = method if method in LEARNED else "self-supervised"
        result = run_case(reference, case, steps if method in LEARNED else 0, (seed,),
                          device, exclude, None, method=learned, weights=weights,
                          curve=curve if method == "self-supervised" else ())
        for base in ("bspline", "deconv"):
            rows.setdefault(base, dict(result[base]))
        mine = result["intersr"]
        rows[method] = {"psnr_fg": mine["psnr_fg"], "ssim_fg": mine["ssim_fg"],
                        "seconds": round(mine["seconds"], 1),
                        "profile": mine["profile"]["provenance"],
                        **({"curve": mine["curve"]} if "curve" in mine else {})}
    if "bspline" not in rows:  # the baselines come with a run of the network alone
        result = run_case(reference, case, 0, (seed,), device, exclude, None, weights=weights)
        for base in ("bspline", "deconv"):
            rows[base] = dict(result[base])
    return rows


def table(results: list[dict], methods: list[str]) -> str:
    """Markdown: per-case rows, then medians per (set, held-out/seen)."""
    learned = [m for m in methods if m not in ("bspline", "deconv")]
    lines = ["| set | case | volume | split | " + " | ".join(f"{m} dB" for m in methods)
             + " | " + " | ".join(f"{m} s" for m in learned) + " |",
             "|" + "---|" * (4 + len(methods) + len(learned))]
    for r in results:
        rows = r["methods"]
        lines.append(f"| {r['set']} | {r['case']} | {r['volume']} | {r['split']} | "
                     + " | ".join(f"{rows[m]['psnr_fg']:.2f}" if m in rows else "-"
                                  for m in methods) + " | "
                     + " | ".join(f"{rows[m]['seconds']:.0f}" if m in rows else "-"
                                  for m in learned) + " |")
    lines += ["", "Gain over B-spline (dB): median [min, max] per set and split", "",
              "| set | split | n | " + " | ".join(learned) + " | deconv |",
              "|" + "---|" * (4 + len(learned))]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["set"], r["split"]), []).append(r["methods"])
    for (set_name, split), sel in sorted(groups.items()):
        cells = []
        for m in learned + ["deconv"]:
            gains = [s[m]["psnr_fg"] - s["bspline"]["psnr_fg"] for s in sel if m in s]
            cells.append(f"{np.median(gains):+.2f} [{min(gains):+.2f}, {max(gains):+.2f}]"
                         if gains else "-")
        lines.append(f"| {set_name} | {split} | {len(sel)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def runs(name: str) -> list[dict]:
    """The runs in a result file: one, or several under "runs" (e.g. one per seed)."""
    saved = json.loads(Path(name).read_text())
    return saved["runs"] if "runs" in saved else [saved]


def load(spec: str, run: dict | None = None) -> dict[tuple[str, str], dict]:
    """FILE:METHOD -> (volume, case) -> set, split and the PSNR of METHOD, B-spline, deconv."""
    name, method = spec.rsplit(":", 1)
    rows = {}
    for r in (run or runs(name)[0])["results"]:
        m = r["methods"]
        if method in m:
            rows[(r["volume"], r["case"])] = {"set": r["set"], "split": r["split"],
                                              "value": m[method]["psnr_fg"],
                                              "bspline": m["bspline"]["psnr_fg"],
                                              "deconv": m["deconv"]["psnr_fg"]}
    return rows


def cell(values) -> str:
    return f"{np.median(values):+.2f} [{min(values):+.2f}, {max(values):+.2f}]"


def compare(old_spec: str, new_spec: str, a: str, b: str) -> None:
    """Per case and per (set, split): OLD and NEW over B-spline, NEW - OLD, NEW over deconv."""
    old, new = load(old_spec), load(new_spec)
    print(f"| set | case | volume | split | {a} over B-spline | {b} over B-spline | {b} - {a} "
          f"| {b} over deconv |\n|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list] = {}
    for k in [k for k in new if k in old]:
        o, n = old[k], new[k]
        go, gn = o["value"] - o["bspline"], n["value"] - n["bspline"]
        gd = n["value"] - n["deconv"]
        groups.setdefault((n["set"], n["split"]), []).append((go, gn, gd))
        print(f"| {n['set']} | {k[1]} | {k[0]} | {n['split']} | {go:+.2f} | {gn:+.2f} | "
              f"{gn - go:+.2f} | {gd:+.2f} |")
    print(f"\n| set | split | n | {a} over B-spline | {b} over B-spline | {b} - {a} | "
          f"{b} over deconv |\n|---|---|---|---|---|---|---|")
    for (set_name, split), rows in sorted(groups.items()):
        go, gn, gd = (np.array(c) for c in zip(*rows))
        print(f"| {set_name} | {split} | {len(rows)} | {cell(go)} | {cell(gn)} | {cell(gn - go)} "
              f"| {cell(gd)} |")


def seed_spread(files: list[str], method: str, every: bool) -> None:
    """One method over seeds: per-case median and spread, then per (set, split)."""
    per_case: dict[tuple[str, str, str, str], list[float]] = {}
    all_runs = [run for name in files for run in runs(name)]
    for run in all_runs:
        for (volume, case), row in load(f"-:{method}", run).items():
            per_case.setdefault((row["set"], row["split"], case, volume), []).append(
                row["value"] - row["bspline"])
    per_case = {k: v for k, v in per_case.items() if every or len(v) == len(all_runs)}
    print(f"| set | split | case | volume | seeds | {method} over B-spline, median | "
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


def curve_report(files: list[str], png: str | None, rate: float | None) -> None:
    """Gain over B-spline against the adaptation budget, per (set, split): the network alone
    (budget 0), every --curve budget and the run's own. Files: results of `--curve` runs
    (several: their cases and budgets are merged, a case's B-spline read from each file)."""
    gains: dict[tuple[str, str], dict[int, list[float]]] = {}
    for name in files:
        saved = json.loads(Path(name).read_text())
        for r in saved["results"]:
            m = r["methods"]
            by = gains.setdefault((r["set"], r["split"]), {})
            base = m["bspline"]["psnr_fg"]
            points = [(0, m["pretrained"]["psnr_fg"])] if "pretrained" in m else []
            if "self-supervised" in m:
                points += [(c["steps"], c["psnr_fg"]) for c in m["self-supervised"].get("curve", [])]
                points.append((saved["steps"], m["self-supervised"]["psnr_fg"]))
            for steps, value in points:
                by.setdefault(steps, []).append(value - base)
    print("| set | split | budget (steps) | seconds at the default run's rate | n | gain over "
          "B-spline, median [min, max] |\n|---|---|---|---|---|---|")
    for (set_, split), by in sorted(gains.items()):
        for steps, values in sorted(by.items()):
            secs = f"{steps / rate:.0f}" if rate else "-"
            print(f"| {set_} | {split} | {steps or 'network alone'} | {secs} | {len(values)} | "
                  f"{cell(values)} |")
    if png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        for (set_, split), by in sorted(gains.items()):
            xs = sorted(by)
            x = [k / rate if rate else k for k in xs]
            med = [float(np.median(by[k])) for k in xs]
            ax.plot(x, med, "o-", label=f"{set_}, {split} (n={max(len(by[k]) for k in xs)})")
            ax.fill_between(x, [min(by[k]) for k in xs], [max(by[k]) for k in xs], alpha=0.15)
        ax.set_xlabel("adaptation time on the 2-core CPU, s (steps / default run's rate)"
                      if rate else "adaptation steps")
        ax.set_ylabel("PSNR gain over B-spline, dB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title("Quality vs adaptation budget (median, band: min-max)", fontsize=9)
        fig.tight_layout()
        fig.savefig(png)
        print(f"wrote {png}")


def write_results(out: Path, args, curve: tuple[int, ...], results: list[dict]) -> None:
    out.write_text(json.dumps({"steps": args.steps, "crop": args.crop, "curve": curve,
                               "seed": args.seed, "device": args.device,
                               "gpu_config": args.gpu_config, "weights": args.weights,
                               "results": results}, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/mr")
    parser.add_argument("--out", default="vae-ablation.json")
    parser.add_argument("--steps", type=int, default=BENCH_ADAPT_STEPS,
                        help="SR (and VAE) steps per case")
    parser.add_argument("--crop", type=int, default=BENCH_CROP)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--volumes", default=",".join(HELD_OUT),
                        help="comma-separated file names (default: the held-out volumes)")
    parser.add_argument("--cases", default=",".join(c.name for c in CASES
                                                    if c.factor == 4),
                        help="comma-separated bench case names (default: every x4 case)")
    parser.add_argument("--split", help="label every row's split so (e.g. 'held-out' with "
                        "--weights runs/leaveout_models: volumes that network never saw)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default=None,
                        help="weights file or folder with weights.json (default: the shipped "
                             "ones), e.g. an earlier release's for an A/B comparison")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where adaptation runs (results on cuda are labelled so; the "
                             "adaptation batch differs, options.ADAPT_BATCH)")
    parser.add_argument("--gpu-config", action="store_true",
                        help="adapt with the CUDA preset's batch (options.ADAPT_BATCH['cuda']) "
                             "on this device: the GPU default's quality, checked on a CPU")
    parser.add_argument("--compare", nargs=2, metavar=("OLD:METHOD", "NEW:METHOD"),
                        help="only compare two result files, case by case")
    parser.add_argument("--label-old", default="old")
    parser.add_argument("--label-new", default="new")
    parser.add_argument("--seeds", nargs="+", metavar="FILE",
                        help="only report one method (--method) over these result files' seeds")
    parser.add_argument("--method", default="self-supervised", help="the method --seeds reads")
    parser.add_argument("--all", action="store_true",
                        help="--seeds: also cases that not every seed has")
    parser.add_argument("--curve", default="",
                        help="shorter step budgets (multiples of 25) also scored for "
                             "self-supervised, from the same adaptation, e.g. 75,150,300")
    parser.add_argument("--oracle-steps", type=int,
                        help="oracle: train up to this many steps (early stopping as "
                             "adaptation); its score at --steps is kept too (default --steps)")
    parser.add_argument("--curve-report", nargs="+", metavar="FILE",
                        help="only report gain vs budget from --curve result files")
    parser.add_argument("--png", help="--curve-report: also plot it here")
    parser.add_argument("--rate", type=float,
                        help="--curve-report: adaptation steps per second of a default run "
                             "(the timing bench's), to show budgets in seconds")
    parser.add_argument("--report", action="store_true",
                        help="only print the tables of the results already in --out")
    args = parser.parse_args()
    methods = args.methods.split(",")
    if args.compare:
        compare(*args.compare, args.label_old, args.label_new)
        return 0
    if args.seeds:
        seed_spread(args.seeds, args.method, args.all)
        return 0
    if args.curve_report:
        curve_report(args.curve_report, args.png, args.rate)
        return 0
    curve = tuple(int(v) for v in args.curve.split(",") if v)
    if args.gpu_config:
        from intersr.options import ADAPT_BATCH
        ADAPT_BATCH[args.device] = ADAPT_BATCH["cuda"]
    if args.report:  # --out may list several result files: the rows of one case are merged
        merged: dict[tuple, dict] = {}
        for name in args.out.split(","):
            saved = json.loads(Path(name).read_text())
            for r in saved["results"]:
                row = merged.setdefault((r["volume"], r["case"]), {**r, "methods": {}})
                methods_of = dict(r["methods"])
                if saved.get("adapt_steps") == 0 and "intersr" in methods_of:
                    # an `intersr bench --adapt-steps 0` result: its InterSliceSR column is
                    # the pretrained network
                    methods_of["pretrained"] = methods_of.pop("intersr")
                row["methods"].update({k: v for k, v in methods_of.items()
                                       if k in methods})
        print(table(list(merged.values()), methods))
        return 0
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.exists() else {}
    if saved and (saved.get("steps"), saved.get("crop")) != (args.steps, args.crop):
        raise SystemExit(f"{out} holds a run with steps {saved.get('steps')} and crop "
                         f"{saved.get('crop')}: give the same or another --out")
    results = saved.get("results", [])
    for r in results if args.split else ():  # this file's rows all get the given label
        r["split"] = args.split
    by_key = {(r["volume"], r["case"]): r for r in results}
    names = args.volumes.split(",")
    paths = sorted(find_volumes(Path(args.data), names), key=lambda p: names.index(p.name))
    cases = [c for c in CASES + SUBMM_CASES if c.name in args.cases.split(",")]
    for case in cases:  # one case over all volumes, then the next
        submm = case in SUBMM_CASES  # its own volumes (sub-mm 2-D series) and crop
        for path in [Path(args.data) / v for v in SUBMM_VOLUMES] if submm else paths:
            stem = path.name.split(".")[0]
            row = by_key.get((stem, case.name))
            if row and curve and "curve" not in row["methods"].get("self-supervised", {}):
                row["methods"].pop("self-supervised", None)  # scored without its curve
            if row and all(m in row["methods"] for m in methods):
                continue
            image, start = crop_to_anatomy(sitk.ReadImage(str(path)),
                                           SUBMM_CROP if submm else args.crop)
            exclude = filled_in_crop(path.name, start)
            rows = score_case(image, case, methods, args.steps, args.seed,
                              row["methods"] if row else {}, args.weights, args.device, curve,
                              args.oracle_steps, exclude)
            if row is None:
                row = {"volume": stem, "set": case.set, "case": case.name,
                       "split": args.split or _split(stem), "methods": rows}
                results.append(row)
                by_key[(stem, case.name)] = row
            row["methods"] = rows
            print(stem, case.name, {m: round(r["psnr_fg"], 2) for m, r in rows.items()},
                  flush=True)
            write_results(out, args, curve, results)
    if args.split and results:
        write_results(out, args, curve, results)
    print(table(results, methods))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
