"""Sliding windows against whole-grid passes (issue 16): the same cases through `neurobatch process`
with `--tiling windows` and `--tiling whole`, alternated case by case, and what changes.

    .venv/bin/python training/compare_tiling.py --cases /work/nb-routing/cases --work /work/nb-tiling \
        --split test --limit 24 [--profile cpu] [--out training/.cache/tiling.json]

Per case and tiling: wall time of the whole `process` run and its `inference` stage (report.json's
timings), Dice of each tissue against the labels, the routing decision, the predicted Dice and the
OOD score; between the two: Dice of the two masks per tissue, the largest |Δp| of the ensemble-mean
probabilities on the model grid, and the largest difference of the quality features. The runs are
resumable (routing_eval.run_case writes result.json per case).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metrics  # noqa: E402
import routing_eval  # noqa: E402

TILINGS = ("windows", "whole")


def run(args, case: dict, tiling: str) -> dict:
    out = args.work / tiling / case["name"]
    done = out / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    ns = argparse.Namespace(binary=args.binary, cases=args.cases, model=args.model, profile=args.profile,
                            classifier=False, keep_model_grid=True, tiling=tiling)
    result = routing_eval.run_case(ns, case, out)
    done.write_text(json.dumps(result, indent=1))
    return result


def between(args, name: str) -> dict:
    a, b = (args.work / t / name for t in TILINGS)
    ma = np.asarray(nib.load(a / "mask.nii.gz").dataobj)
    mb = np.asarray(nib.load(b / "mask.nii.gz").dataobj)
    dp = 0.0
    for c in range(3):
        pa = np.asarray(nib.load(a / "model_grid" / f"probability_{c}.nii.gz").dataobj)
        pb = np.asarray(nib.load(b / "model_grid" / f"probability_{c}.nii.gz").dataobj)
        dp = max(dp, float(np.abs(pa - pb).max()))
    return {"mask_dice": {n: metrics.dice(ma == c, mb == c) for c, n in routing_eval.NAMES.items()},
            "max_abs_dp": dp}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--binary", type=Path, default=Path("target/release/neurobatch"))
    ap.add_argument("--model", type=Path, default=Path("models/brain-tissue"))
    ap.add_argument("--out", type=Path, default=Path("training/.cache/tiling.json"))
    args = ap.parse_args()
    cases = [c for c in json.loads((args.cases / "cases.json").read_text())
             if c.get("split") == args.split and c.get("labels")]
    cases = cases[: args.limit] if args.limit else cases
    rows = []
    for i, case in enumerate(cases):
        # Alternate which tiling runs first, so neither always gets the warmer page cache.
        order = TILINGS if i % 2 == 0 else TILINGS[::-1]
        res = {t: run(args, case, t) for t in order}
        if any("error" in r for r in res.values()):
            print(f"{case['name']}: error {[r.get('error') for r in res.values()]}", flush=True)
            continue
        row = {"name": case["name"], "shifts": case.get("shifts", []), **between(args, case["name"])}
        for t, r in res.items():
            row[t] = {"seconds": r["seconds"], "inference_ms": next(t["ms"] for t in r["timings_ms"] if t["stage"] == "inference"),
                      "dice": {n: v["dice"] for n, v in r["truth"].items()}, "decision": r["decision"],
                      "predicted": (r.get("quality_estimate") or {}).get("predicted_dice"),
                      "ood": (r.get("ood") or {}).get("score"), "tiling": r.get("tiling"),
                      "features": r["features"]}
        fa, fb = row["windows"].pop("features"), row["whole"].pop("features")
        row["max_feature_diff"] = {k: abs(fa[k] - fb[k]) for k in fa if isinstance(fa[k], (int, float))}
        rows.append(row)
        print(f"{case['name']:12s} windows {row['windows']['seconds']:5.1f} s whole {row['whole']['seconds']:5.1f} s "
              f"GM {row['windows']['dice']['grey_matter']:.4f}/{row['whole']['dice']['grey_matter']:.4f} "
              f"WM {row['windows']['dice']['white_matter']:.4f}/{row['whole']['dice']['white_matter']:.4f} "
              f"mask Dice {min(row['mask_dice'].values()):.4f} max|dp| {row['max_abs_dp']:.3f} "
              f"{row['windows']['decision']}/{row['whole']['decision']}", flush=True)
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    summary = {
        "cases": len(rows),
        "median_seconds": {t: med([r[t]["seconds"] for r in rows]) for t in TILINGS},
        "median_inference_ms": {t: med([r[t]["inference_ms"] for r in rows]) for t in TILINGS},
        "mean_dice": {t: {n: statistics.fmean(r[t]["dice"][n] for r in rows) for n in routing_eval.NAMES.values()}
                      for t in TILINGS},
        "whole_minus_windows_dice": {n: {"min": min(r["whole"]["dice"][n] - r["windows"]["dice"][n] for r in rows),
                                         "max": max(r["whole"]["dice"][n] - r["windows"]["dice"][n] for r in rows)}
                                     for n in routing_eval.NAMES.values()} if rows else {},
        "min_mask_dice": min((min(r["mask_dice"].values()) for r in rows), default=None),
        "max_abs_dp": max((r["max_abs_dp"] for r in rows), default=None),
        "decisions_changed": sum(r["windows"]["decision"] != r["whole"]["decision"] for r in rows),
        "tilings_reported": sorted({str(r[t]["tiling"]) for r in rows for t in TILINGS}),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
