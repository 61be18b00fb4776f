"""Evaluates the shipped models end to end through `neurobatch process` and writes
training/EVALUATION.md and training/evaluation.json (the figures and the routing thresholds chosen
from them, which training/write_manifest.py copies into the manifests).

    .venv/bin/python training/perturb.py --out /tmp/nb-eval/cases
    .venv/bin/python training/evaluate.py --cases /tmp/nb-eval/cases --work /tmp/nb-eval/runs \
        --binary target/release/neurobatch

Configurations (each one `neurobatch process` run per case, quality model off):
  member_0      the first member alone, no flips (1 pass)
  ensemble      all 5 members, no flips (5 passes)
  ensemble_tta  all 5 members x 8 mirror flips (40 passes) = the `full` profile
  cpu           the manifest's `cpu` profile
The classifier runs once per case (its own run, `--members 1 --no-tta` for the segmenter to keep it
cheap) for the quality figures on the perturbation cases.

Everything is computed here from the written masks and report.json files (metrics in
training/metrics.py); nothing is copied from the Rust side but the reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metrics  # noqa: E402

CONFIGS = {
    "member_0": ["--members", "1", "--no-tta", "--mc-passes", "0"],
    "ensemble": ["--members", "5", "--no-tta", "--mc-passes", "0"],
    "ensemble_tta": ["--profile", "full"],
    "cpu": ["--profile", "cpu"],
}
IN_DOMAIN = {"clean", "contrast", "bias", "noise", "thick_slices", "tilt"}
FAIL_DICE = 0.8


def run_case(binary: str, image: Path, out: Path, extra: list[str], threads: int) -> float:
    cmd = [binary, "process", str(image), "--out", str(out), "--threads", str(threads)] + extra
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return time.perf_counter() - t0


def dice_on_truth_grid(mask_path: Path, labels_path: Path) -> dict[str, float]:
    truth_img = nib.load(labels_path)
    mask_img = nib.load(mask_path)
    if mask_img.shape != truth_img.shape or not np.allclose(mask_img.affine, truth_img.affine, atol=1e-4):
        mask_img = resample_from_to(mask_img, truth_img, order=0)
    truth = np.asarray(truth_img.dataobj)
    mask = np.asarray(mask_img.dataobj).round().astype(np.uint8)
    return {"grey_matter": metrics.dice(mask == 1, truth == 1), "white_matter": metrics.dice(mask == 2, truth == 2)}


def evaluate(args) -> dict:
    index = json.loads((args.cases / "cases.json").read_text())
    cases = index["cases"]
    results = []
    for case in cases:
        image = args.cases / case["image"]
        entry = {"name": case["name"], "category": case["category"], "configs": {}}
        for cfg, extra in CONFIGS.items():
            out = args.work / cfg / case["name"]
            seconds = run_case(args.binary, image, out, extra + ["--no-quality"], args.threads)
            report = json.loads((out / "report.json").read_text())
            r = {
                "seconds": seconds,
                "passes": report["model"]["passes"],
                "study_score": report["study"]["score"],
                "ood_score": (report.get("ood") or {}).get("score"),
                "decision": report["routing"]["decision"],
                "reasons": [x["code"] for x in report["routing"]["reasons"]],
                "structures": {
                    s["name"]: {
                        "disagreement": None if s["uncertainty"]["pairwise_dice"] is None else 1 - s["uncertainty"]["pairwise_dice"],
                        "mean_entropy": s["uncertainty"]["mean_entropy"],
                        "volume_cv": s["uncertainty"]["pass_volume_cv"],
                    }
                    for s in report["structures"]
                    if s["label"] != 0
                },
            }
            if case["labels"]:
                r["dice"] = dice_on_truth_grid(out / "mask.nii.gz", args.cases / case["labels"])
            entry["configs"][cfg] = r
            print(f"{case['name']:>24} {cfg:>13}: {r.get('dice', '')} score={r['study_score']} ood={r['ood_score']} {seconds:.1f}s", flush=True)
        # The scan-quality classifier, once per case.
        out = args.work / "quality" / case["name"]
        run_case(args.binary, image, out, ["--members", "1", "--no-tta", "--mc-passes", "0"], args.threads)
        q = json.loads((out / "report.json").read_text()).get("quality")
        if q:
            entry["quality"] = {
                "label": q["label"],
                "mean_probs": q["uncertainty"]["mean_probs"],
                "mutual_information": q["uncertainty"]["mutual_information"],
                "disagreement": q["uncertainty"]["disagreement"],
            }
        results.append(entry)
    return {"cases": results, "case_index": index}


def summarize(raw: dict) -> dict:
    cases = raw["cases"]
    summary = {"dice": {}, "uncertainty": {}, "timing_s": {}}
    labelled = [c for c in cases if "dice" in c["configs"]["member_0"]]
    for cfg in CONFIGS:
        per_cat = {}
        for c in labelled:
            d = c["configs"][cfg]["dice"]
            per_cat.setdefault(c["category"], []).append((d["grey_matter"], d["white_matter"]))
        summary["dice"][cfg] = {cat: [float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals]))] for cat, vals in per_cat.items()}
        summary["timing_s"][cfg] = float(np.median([c["configs"][cfg]["seconds"] for c in cases]))
        if cfg == "member_0":
            continue
        struct_u, struct_h, struct_loss = [], [], []
        scores, losses, fails = [], [], []
        for c in labelled:
            r = c["configs"][cfg]
            for name in ("grey_matter", "white_matter"):
                s = r["structures"][name]
                if s["disagreement"] is not None:
                    struct_u.append(s["disagreement"])
                    struct_h.append(s["mean_entropy"])
                    struct_loss.append(1 - r["dice"][name])
            if r["study_score"] is not None:
                scores.append(r["study_score"])
                dmin = min(r["dice"].values())
                losses.append(1 - float(np.mean(list(r["dice"].values()))))
                fails.append(dmin < FAIL_DICE)
        coverage, risk, aurc = metrics.risk_coverage(scores, losses)
        summary["uncertainty"][cfg] = {
            "spearman_disagreement_vs_1_minus_dice": metrics.spearman(struct_u, struct_loss),
            "spearman_entropy_vs_1_minus_dice": metrics.spearman(struct_h, struct_loss),
            "auroc_dice_below_0.8": metrics.auroc(scores, fails),
            "failing_cases": int(np.sum(fails)),
            "cases": len(scores),
            "aurc": aurc,
            "risk_coverage": [[float(a), float(b)] for a, b in zip(coverage, risk)],
        }
    return summary


def choose_thresholds(raw: dict, profile: str) -> dict:
    """Thresholds for the manifest, from this evaluation (rules in EVALUATION.md)."""
    cases = raw["cases"]
    ood_in = [c["configs"][profile]["ood_score"] for c in cases if c["category"] in IN_DOMAIN and c["category"] != "contrast"]
    ood_out = [c["configs"][profile]["ood_score"] for c in cases if c["category"].startswith("ood")]
    out = {"profile": profile}
    if ood_in and ood_out and None not in ood_in + ood_out:
        lo, hi = max(ood_in), min(ood_out)
        out["ood_in_domain_max"], out["ood_out_of_domain_min"] = lo, hi
        # Geometric midpoint when the two groups separate; otherwise just above the in-domain maximum.
        out["ood_score_max"] = float(np.sqrt(lo * hi)) if hi > lo else float(lo * 1.05)
    scored = [c["configs"][profile] for c in cases if "dice" in c["configs"][profile] and c["configs"][profile]["study_score"] is not None]
    bad = [r["study_score"] for r in scored if min(r["dice"].values()) < FAIL_DICE]
    good = [r["study_score"] for r in scored if min(r["dice"].values()) >= FAIL_DICE]
    out["good_scores"], out["failing_scores"] = sorted(good), sorted(bad)
    if bad:
        # Every failing case caught: the bound sits just under the lowest failing score.
        out["study_uncertainty_max"] = float(min(bad) * 0.999)
    elif good:
        # No failing case to calibrate on: flag only what is above every case seen (documented).
        out["study_uncertainty_max"] = float(max(good) * 1.5)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--binary", default="target/release/neurobatch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", type=Path, help="a raw results JSON from an earlier run (skips the runs)")
    ap.add_argument("--json", type=Path, default=Path("training/evaluation.json"))
    args = ap.parse_args()
    raw = json.loads(args.reuse.read_text()) if args.reuse else evaluate(args)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "raw.json").write_text(json.dumps(raw, indent=1))
    summary = summarize(raw)
    thresholds = {p: choose_thresholds(raw, p) for p in ("ensemble_tta", "cpu")}
    result = {"summary": summary, "thresholds": thresholds, "cases": raw["cases"]}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"summary": {k: v for k, v in summary.items()}, "thresholds": thresholds}, indent=1)[:6000])


if __name__ == "__main__":
    main()
