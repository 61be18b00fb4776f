"""Turns training/evaluation.json (written by training/evaluate.py) into the summary figures, the
routing thresholds and training/EVALUATION.md.

    .venv/bin/python training/report_evaluation.py [--json training/evaluation.json] \
        [--timings training/timings.json] [--out training/EVALUATION.md]

Threshold rules (the manifests cite them):
- ood_score_max: the geometric midpoint between the largest OOD score of the in-domain cases
  (clean, bias, noise, thick slices, tilt, gamma contrast) and the smallest of the inputs the model
  must not be trusted with (non-brain phantom, diffusion b0, corrupted scan), when the two groups
  separate; otherwise 5 % above the in-domain maximum (and the overlap is reported).
- study_uncertainty_max: the review rate is set by the cases that fail (min tissue Dice < 0.8):
  the bound sits just below the lowest study score of a failing case, so every failing case of
  this evaluation is routed to review; the resulting review rate among the passing cases is
  reported. With no failing case, the bound is 1.5 x the largest score seen (reported as such).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metrics  # noqa: E402

IN_DOMAIN = {"clean", "bias", "noise", "thick_slices", "tilt"}
CONFIG_ORDER = ["member_0", "ensemble", "ensemble_tta", "cpu", "ensemble_tta8"]
FAIL = 0.8


def dice_of(r):
    d = r.get("dice")
    return None if d is None else (d["grey_matter"], d["white_matter"])


def summarize(cases):
    out = {"dice": {}, "uncertainty": {}}
    for cfg in CONFIG_ORDER:
        rows = {}
        for c in cases:
            r = c["configs"].get(cfg)
            if r is None or dice_of(r) is None:
                continue
            rows.setdefault(c["name"], dice_of(r))
        if rows:
            out["dice"][cfg] = rows
    for cfg in ["ensemble", "ensemble_tta", "cpu", "ensemble_tta8"]:
        su, sh, sl, scores, losses, fails = [], [], [], [], [], []
        for c in cases:
            r = c["configs"].get(cfg)
            if r is None or dice_of(r) is None:
                continue
            for name in ("grey_matter", "white_matter"):
                s = r["structures"][name]
                if s["disagreement"] is not None:
                    su.append(s["disagreement"])
                    sh.append(s["mean_entropy"])
                    sl.append(1 - r["dice"][name])
            if r["study_score"] is not None:
                scores.append(r["study_score"])
                losses.append(1 - float(np.mean(dice_of(r))))
                fails.append(min(dice_of(r)) < FAIL)
        if not scores:
            continue
        cov, risk, aurc = metrics.risk_coverage(scores, losses)
        out["uncertainty"][cfg] = {
            "structures": len(su),
            "spearman_disagreement": metrics.spearman(su, sl),
            "spearman_entropy": metrics.spearman(sh, sl),
            "cases": len(scores),
            "failing": int(np.sum(fails)),
            "auroc_fail": metrics.auroc(scores, fails),
            "aurc": aurc,
            "risk_coverage": [[round(float(a), 4), round(float(b), 4)] for a, b in zip(cov, risk)],
        }
    return out


def thresholds(cases, cfg="ensemble_tta"):
    t = {}
    ood_in = [c["ood_score"] for c in cases if c["category"] in IN_DOMAIN or c["name"].startswith("contrast_gamma")]
    ood_out = [c["ood_score"] for c in cases if c["category"].startswith("ood")]
    if ood_in and ood_out and None not in ood_in + ood_out:
        lo, hi = max(ood_in), min(ood_out)
        t["ood_in_domain_max"], t["ood_untrusted_min"] = lo, hi
        t["ood_separates"] = hi > lo
        t["ood_score_max"] = round(float(np.sqrt(lo * hi)) if hi > lo else float(lo * 1.05), 3)
    scored = [(c["configs"][cfg]["study_score"], min(dice_of(c["configs"][cfg])), c["name"])
              for c in cases if cfg in c["configs"] and dice_of(c["configs"][cfg]) and c["configs"][cfg]["study_score"] is not None]
    bad = [s for s, d, _ in scored if d < FAIL]
    good = [s for s, d, _ in scored if d >= FAIL]
    if bad:
        bound = min(bad) * 0.999
        t["rule"] = "just below the lowest study score of a case with min tissue Dice < 0.8"
    else:
        bound = max(good) * 1.5
        t["rule"] = "no failing case: 1.5 x the largest study score seen"
    t["study_uncertainty_max"] = round(float(bound), 4)
    t["review_rate_passing"] = float(np.mean([s > bound for s in good])) if good else None
    t["caught_failing"] = float(np.mean([s > bound for s in bad])) if bad else None
    t["scored_cases"] = [{"name": n, "score": s, "min_dice": d} for s, d, n in sorted(scored)]
    return t


def fmt(x, nd=3):
    return "—" if x is None else f"{x:.{nd}f}"


def markdown(ev, summary, th, quality_manifest, timings):
    cases = ev["cases"]
    lines = ["# Evaluation of the shipped models", "",
             "Regenerated by `training/evaluate.py` (runs) and `training/report_evaluation.py` (this page) — see",
             "`training/README.md` for the commands. Every figure comes from `neurobatch process` runs on the",
             "held-out cases of `training/perturb.py` (seeds disjoint from training). **The anatomy is the one",
             "subject available offline (the MNI152 2009 template) in training and evaluation alike**: these",
             "figures measure robustness to acquisition changes, not generalisation to new anatomy.", ""]
    lines += ["## Segmentation: Dice per tissue (GM / WM)", "",
              "| case | " + " | ".join(c for c in CONFIG_ORDER if c in summary["dice"]) + " |",
              "|---|" + "---|" * len([c for c in CONFIG_ORDER if c in summary["dice"]])]
    for c in cases:
        row = []
        for cfg in CONFIG_ORDER:
            if cfg not in summary["dice"]:
                continue
            d = summary["dice"][cfg].get(c["name"])
            row.append("" if d is None else f"{d[0]:.3f} / {d[1]:.3f}")
        if any(row):
            lines.append(f"| {c['name']} | " + " | ".join(row) + " |")
    lines += ["", "Configurations: `member_0` = member 0 alone; `ensemble` = 5 members; `ensemble_tta` = 5 members ×",
              "{identity, left–right mirror} (10 passes); `cpu` = the manifest's CPU profile; `ensemble_tta8` = 5 members",
              "× all 8 mirror flips (the `full` GPU profile), run on the cases listed only (CPU time).", ""]
    lines += ["## Uncertainty against error", "",
              "| config | structures | Spearman(disagreement, 1−Dice) | Spearman(mean entropy, 1−Dice) | cases | Dice<0.8 | AUROC(study score → Dice<0.8) | AURC |",
              "|---|---|---|---|---|---|---|---|"]
    for cfg, u in summary["uncertainty"].items():
        lines.append(f"| {cfg} | {u['structures']} | {fmt(u['spearman_disagreement'])} | {fmt(u['spearman_entropy'])} | "
                     f"{u['cases']} | {u['failing']} | {fmt(u['auroc_fail'])} | {fmt(u['aurc'], 4)} |")
    lines += ["", "Structure disagreement = 1 − pooled pairwise Dice between passes; study score = the same over both",
              "tissues (worker/src/uncertainty/mod.rs). Risk–coverage (ensemble_tta; coverage → mean 1−Dice of the",
              "accepted cases, most certain first): " + ", ".join(f"{a:.2f}→{b:.3f}" for a, b in summary["uncertainty"].get("ensemble_tta", {}).get("risk_coverage", [])), ""]
    lines += ["## Out-of-distribution inputs and routing", "",
              "| case | category | OOD score | decision | reasons | quality label (p degraded) |", "|---|---|---|---|---|---|"]
    for c in cases:
        q = c.get("quality") or {}
        p = q.get("mean_probs")
        lines.append(f"| {c['name']} | {c['category']} | {fmt(c['ood_score'], 2)} | {c['decision']} | {', '.join(sorted(set(c['reasons']))) or '—'} | "
                     f"{q.get('label', '—')} ({fmt(p[1] if p else None, 2)}) |")
    lines += ["", "## Thresholds", "", "```json", json.dumps({k: v for k, v in th.items() if k != "scored_cases"}, indent=1), "```", ""]
    lines += ["Study scores (ensemble_tta) by case: " + ", ".join(f"{x['name']} {x['score']:.4f} (min Dice {x['min_dice']:.3f})" for x in th["scored_cases"]), ""]
    if quality_manifest:
        figs = quality_manifest.get("evaluation", {}).get("figures", {})
        lines += ["## Scan-quality classifier (held-out generated split, from training)", "",
                  "| figure | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in sorted(figs.items())] + [""]
    if timings:
        lines += ["## Timings", "", "```json", json.dumps(timings, indent=1), "```", ""]
    lines += ["## Consistency of this evaluation with the Rust report", ""]
    agreements = [c["configs"]["ensemble_tta"]["consistency"]["mask_agreement_with_rust"] for c in cases if "ensemble_tta" in c["configs"]]
    deltas = [abs(c["configs"]["ensemble_tta"]["study_score"] - c["configs"]["ensemble_tta"]["consistency"]["study_score_rust"])
              for c in cases if c["configs"].get("ensemble_tta", {}).get("study_score") is not None]
    lines += [f"Masks aggregated here from the saved passes agree with `mask.nii.gz` on {min(agreements) * 100:.4f} %+ of voxels",
              f"(minimum over cases); study scores differ by at most {max(deltas) if deltas else float('nan'):.2e}.", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path, default=Path("training/evaluation.json"))
    ap.add_argument("--timings", type=Path, default=None)
    ap.add_argument("--quality-model", type=Path, default=Path("models/scan-quality"))
    ap.add_argument("--out", type=Path, default=Path("training/EVALUATION.md"))
    ap.add_argument("--thresholds", type=Path, default=Path("training/thresholds.json"))
    args = ap.parse_args()
    ev = json.loads(args.json.read_text())
    summary = summarize(ev["cases"])
    th = thresholds(ev["cases"])
    qm = tomllib.loads((args.quality_model / "manifest.toml").read_text()) if (args.quality_model / "manifest.toml").exists() else None
    timings = json.loads(args.timings.read_text()) if args.timings else None
    args.out.write_text(markdown(ev, summary, th, qm, timings))
    args.thresholds.write_text(json.dumps({"summary": summary, "thresholds": th}, indent=1) + "\n")
    print(json.dumps({k: v for k, v in th.items() if k != "scored_cases"}, indent=1))


if __name__ == "__main__":
    main()
