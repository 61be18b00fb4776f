"""Runs `neurobatch process` over the generated cases of `training/shifts.py` and records, per case,
what the routing needs to be fitted and judged: the report's quality features, OOD signals, routing
decision and quality estimate, and the truth (per-tissue Dice and volumes against the labels).

    .venv/bin/python training/routing_eval.py --cases /tmp/nb-routing/cases --work /tmp/nb-routing/runs \
        --profile cpu [--names train_0000,train_0001] [--classifier] [--keep-model-grid] [--tag TAG] \
        [--tiling windows|whole]

One result per case in WORK/<tag or profile>/<case>/result.json (the run is resumable: a case with a
result is skipped); `collect()` reads them back for training/fit_quality.py. The maps the runs write
(entropy, mutual information) are deleted once the figures are taken; the mask is kept.

Dice and volumes are measured on the labels' grid: a mask on another grid (coarser or anisotropic
scans) is resampled to it with nearest neighbour, as training/evaluate.py does.
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

NAMES = {1: "grey_matter", 2: "white_matter"}
FAIL_DICE = 0.85


def truth_figures(mask_path: Path, labels_path: Path) -> dict:
    """Dice and volumes (mL) per tissue on the labels' grid."""
    lab = nib.load(labels_path)
    mask_img = nib.load(mask_path)
    if mask_img.shape != lab.shape or not np.allclose(mask_img.affine, lab.affine, atol=1e-4):
        mask_img = resample_from_to(mask_img, lab, order=0)
    m = np.asarray(mask_img.dataobj).round().astype(np.uint8)
    t = np.asarray(lab.dataobj).astype(np.uint8)
    voxel_ml = abs(np.linalg.det(lab.affine[:3, :3])) / 1000.0
    out = {}
    for c, name in NAMES.items():
        out[name] = {
            "dice": metrics.dice(m == c, t == c),
            "volume_ml": float((m == c).sum() * voxel_ml),
            "true_volume_ml": float((t == c).sum() * voxel_ml),
        }
    return out


def run_case(args, case: dict, out: Path) -> dict:
    cmd = [str(args.binary), "process", str(args.cases / case["image"]), "--out", str(out),
           "--model", str(args.model), "--profile", args.profile]
    if args.classifier:
        cmd += ["--quality-model", str(args.classifier_model)]
    else:
        cmd += ["--no-quality"]
    if args.keep_model_grid:
        cmd += ["--keep-model-grid"]
    if args.tiling:
        cmd += ["--tiling", args.tiling]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    result = {"name": case["name"], "split": case.get("split"), "category": case["category"],
              "shifts": case.get("shifts", []), "group": case.get("group"), "variant": case.get("variant"),
              "labelled": bool(case.get("labels")), "seconds": seconds, "profile": args.profile}
    if res.returncode != 0:
        # A study the pipeline refuses is a failed job with its reason, not a routed one.
        result["error"] = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"
        return result
    report = json.loads((out / "report.json").read_text())
    q = report.get("quality")
    result.update({
        "features": report["quality_features"],
        "ood": report.get("ood"),
        "study_score": report["study"]["score"],
        "decision": report["routing"]["decision"],
        "reasons": report["routing"]["reasons"],
        "quality_estimate": report.get("quality_estimate"),
        "classifier": None if q is None else {"label": q["label"], "p_degraded": q["uncertainty"]["mean_probs"][1]},
        "quality_error": report.get("quality_error"),
        "timings_ms": report["timings_ms"],
        "passes": report["model"]["passes"],
        "tiling": report["model"].get("tiling"),
    })
    if case.get("labels"):
        result["truth"] = truth_figures(out / "mask.nii.gz", args.cases / case["labels"])
        result["min_dice"] = min(v["dice"] for v in result["truth"].values())
    for name in ("entropy.nii.gz", "mutual_information.nii.gz", "image.nii.gz"):
        (out / name).unlink(missing_ok=True)
    return result


def collect(work: Path, tag: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((work / tag).glob("*/result.json"))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--tag", help="results folder under --work (default: the profile)")
    ap.add_argument("--binary", type=Path, default=Path("target/release/neurobatch"))
    ap.add_argument("--model", type=Path, default=Path("models/brain-tissue"))
    ap.add_argument("--classifier", action="store_true", help="also run the scan-quality classifier")
    ap.add_argument("--classifier-model", type=Path, default=Path("models/scan-quality"))
    ap.add_argument("--keep-model-grid", action="store_true")
    ap.add_argument("--tiling", choices=["windows", "whole"], help="override the profile's tiling")
    ap.add_argument("--split", action="append", help="only cases of these splits")
    ap.add_argument("--names", help="comma-separated case names (default: all)")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args()
    cases = json.loads((args.cases / "cases.json").read_text())
    if args.split:
        cases = [c for c in cases if c.get("split") in args.split]
    if args.names:
        want = set(args.names.split(","))
        cases = [c for c in cases if c["name"] in want]
    if args.limit:
        cases = cases[: args.limit]
    tag = args.tag or args.profile
    done = 0
    for case in cases:
        out = args.work / tag / case["name"]
        if (out / "result.json").exists():
            continue
        out.mkdir(parents=True, exist_ok=True)
        result = run_case(args, case, out)
        (out / "result.json").write_text(json.dumps(result, indent=1))
        done += 1
        md = result.get("min_dice")
        print(f"{case['name']:24s} {case['category']:32s} {result['seconds']:6.1f} s "
              f"{result.get('decision', 'error'):7s} min Dice {'-' if md is None else f'{md:.3f}'}", flush=True)
    print(f"{done} cases run, results in {args.work / tag}")


if __name__ == "__main__":
    main()
