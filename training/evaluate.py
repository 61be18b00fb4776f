"""Evaluates the shipped models end to end through `neurobatch process`, and writes
training/evaluation.json (every figure, and the routing thresholds chosen from them, which
training/write_manifest.py copies into the manifests). training/report_evaluation.py turns that
JSON into training/EVALUATION.md.

    .venv/bin/python training/perturb.py --out /tmp/nb-eval/cases
    .venv/bin/python training/evaluate.py --cases /tmp/nb-eval/cases --work /tmp/nb-eval/runs \
        --binary target/release/neurobatch [--tta8 clean,noise_snr10,tilt_20deg_pitch]

One `neurobatch process` run per case (all 5 members; mirror flips about the left-right axis, i.e.
10 passes; quality classifier on) writes its report, its mask and, with `--save-passes`, every
pass's probabilities on the inference grid. The configurations compared are subsets of those
passes, aggregated here exactly as the engine does (mean of the passes on the inference grid,
trilinear to the scan's grid with background 1 outside, argmax):
  member_0      member 0, no flip                       (1 pass)
  ensemble      members 0-4, no flip                    (5 passes)
  ensemble_tta  members 0-4 x {none, left-right}        (10 passes; = the run itself)
  cpu           the manifest's `cpu` profile's passes   (when they are a subset of the run)
For the cases named in --tta8 a second run uses all 8 mirror flips (40 passes, the `full`
profile): `ensemble_tta8`. With --mc-passes N (default 4) a third run per case keeps dropout on:
  ensemble_mc   members 0-4 x N MC-dropout passes, no flip (5N passes)
and runs the scan-quality classifier with N MC-dropout passes too (a copy of its folder with the
manifest's mc_dropout_passes changed), next to the shipped deterministic classifier of the first run.
The cases in --ablate-bias also run without the model's bias-field correction (a copy of the folder
without [bias_correction]; 5 members, no flip): `ensemble_no_bias_correction`. The run's own mask and study score are compared with the aggregation of
the same passes here (a consistency check of this script against the Rust report).

Uncertainty definitions are the accumulator's (worker/src/uncertainty/mod.rs): per structure,
disagreement = 1 - pooled pairwise Dice of the passes' argmax maps; study score = the same over all
foreground classes together.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metrics  # noqa: E402

FAIL_DICE = 0.8
CLASSES = 3
NAMES = {1: "grey_matter", 2: "white_matter"}


def run_process(binary, image, out, extra, threads):
    cmd = [binary, "process", str(image), "--out", str(out), "--threads", str(threads)] + extra
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return time.perf_counter() - t0


def load_passes(folder: Path):
    meta = json.loads((folder / "passes.json").read_text())
    dims = tuple(meta["dims"])
    n = int(np.prod(dims))
    passes = []
    for p in meta["passes"]:
        raw = np.fromfile(folder / p["file"], dtype="<f4").reshape(CLASSES, n)
        passes.append((p, raw))
    return dims, np.asarray(meta["affine"]), passes


def to_native(mean: np.ndarray, dims, grid_affine, native_img):
    """Mean probabilities (channel-major, Fortran voxels) on the inference grid -> labels on the scan's grid."""
    shape = native_img.shape[:3]
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world = native_img.affine[:3, :3] @ ijk + native_img.affine[:3, 3:4]
    inv = np.linalg.inv(grid_affine)
    g = inv[:3, :3] @ world + inv[:3, 3:4]
    best, labels = None, None
    for c in range(CLASSES):
        vol = mean[c].reshape(dims, order="F")
        v = ndimage.map_coordinates(vol, g, order=1, mode="constant", cval=1.0 if c == 0 else 0.0)
        if best is None:
            best, labels = v, np.zeros(v.shape, np.uint8)
        else:
            better = v > best
            best = np.where(better, v, best)
            labels[better] = c
    return labels.reshape(shape, order="C")


def pooled_dice(argmaxes: np.ndarray, classes) -> float | None:
    """1 - pooled pairwise Dice over `classes` of P argmax maps (P x V)."""
    p = argmaxes.shape[0]
    if p < 2:
        return None
    num = den = 0.0
    for c in classes:
        n = (argmaxes == c).sum(axis=0).astype(np.float64)
        num += (n * (n - 1)).sum()
        den += (p - 1) * n.sum()
    return None if den == 0 else float(num / den)


def entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -(np.where(p > 0, p * np.log(p), 0.0)).sum(axis=0)


def aggregate(passes, dims, grid_affine, native_img, truth):
    probs = np.stack([raw for _, raw in passes]).astype(np.float64)
    mean = probs.mean(axis=0)
    labels_grid = mean.argmax(axis=0)
    argmaxes = probs.argmax(axis=1)
    agreement = pooled_dice(argmaxes, [1, 2])
    h = entropy(mean)
    out = {
        "passes": len(passes),
        "study_score": None if agreement is None else 1 - agreement,
        "structures": {},
    }
    for c, name in NAMES.items():
        d = pooled_dice(argmaxes, [c])
        inside = labels_grid == c
        out["structures"][name] = {
            "disagreement": None if d is None else 1 - d,
            "mean_entropy": float(h[inside].mean()) if inside.any() else None,
        }
    labels = to_native(mean, dims, grid_affine, native_img)
    out["labels"] = labels
    if truth is not None:
        t = truth if truth.shape == labels.shape else None
        out["dice"] = {name: metrics.dice(labels == c, t == c) for c, name in NAMES.items()} if t is not None else None
    return out


def truth_on_scan_grid(case_dir: Path, case, native_img):
    if not case["labels"]:
        return None
    lab = nib.load(case_dir / case["labels"])
    if lab.shape == native_img.shape[:3] and np.allclose(lab.affine, native_img.affine, atol=1e-4):
        return np.asarray(lab.dataobj).astype(np.uint8)
    return None


def dice_on_truth_grid(labels_native, native_img, case_dir, case):
    """Dice on the 1 mm template grid (for inputs written on another grid, e.g. 5 mm slices)."""
    lab = nib.load(case_dir / case["labels"])
    mask_img = nib.Nifti1Image(labels_native.astype(np.uint8), native_img.affine)
    if mask_img.shape != lab.shape or not np.allclose(mask_img.affine, lab.affine, atol=1e-4):
        mask_img = resample_from_to(mask_img, lab, order=0)
    m = np.asarray(mask_img.dataobj).round().astype(np.uint8)
    t = np.asarray(lab.dataobj).astype(np.uint8)
    return {name: metrics.dice(m == c, t == c) for c, name in NAMES.items()}


def configs_of(passes, cpu_profile):
    by = {(p["member"], tuple(p["flip"])): (p, raw) for p, raw in passes if p.get("mc_pass") is None}
    ident = (False, False, False)
    members = sorted({p["member"] for p, _ in passes})
    out = {
        "member_0": [by[(0, ident)]],
        "ensemble": [by[(m, ident)] for m in members],
        "ensemble_tta": list(passes),
    }
    if cpu_profile:
        flips = [tuple(f) for f in flip_subsets(cpu_profile.get("tta_axes", []))]
        want = [(m, f) for m in range(cpu_profile["members"]) for f in flips]
        if all(w in by for w in want) and cpu_profile.get("mc_dropout_passes", 0) == 0:
            out["cpu"] = [by[w] for w in want]
    return out


def flip_subsets(axes):
    import itertools

    out = [(False, False, False)]
    for k in range(1, len(axes) + 1):
        for combo in itertools.combinations(axes, k):
            f = [False, False, False]
            for a in combo:
                f[a] = True
            out.append(tuple(f))
    return out


def evaluate_case(args, case, manifest, extra, tag):
    image = args.cases / case["image"]
    out = args.work / tag / case["name"]
    seconds = run_process(args.binary, image, out, extra + ["--save-passes", str(out / "passes")], args.threads)
    report = json.loads((out / "report.json").read_text())
    native_img = nib.load(image)
    dims, grid_affine, passes = load_passes(out / "passes")
    truth = truth_on_scan_grid(args.cases, case, native_img)
    cpu = manifest["inference"].get("profiles", {}).get("cpu")
    results = {}
    whole_run = tag in ("mc", "nobias")
    configs = {"ensemble_tta": list(passes)} if whole_run else configs_of(passes, cpu if tag == "lr" else None)
    for name, subset in configs.items():
        if tag != "lr" and name != "ensemble_tta":
            continue
        agg = aggregate(subset, dims, grid_affine, native_img, truth)
        labels = agg.pop("labels")
        if case["labels"] and agg.get("dice") is None:
            agg["dice"] = dice_on_truth_grid(labels, native_img, args.cases, case)
        if name == "ensemble_tta":
            rust_mask = np.asarray(nib.load(out / "mask.nii.gz").dataobj)
            agg["consistency"] = {
                "mask_agreement_with_rust": float((rust_mask == labels).mean()),
                "study_score_rust": report["study"]["score"],
            }
        results[{"lr": name, "tta8": "ensemble_tta8", "mc": "ensemble_mc", "nobias": "ensemble_no_bias_correction"}[tag]] = agg
    for shutil_path in (out / "passes").glob("pass_*.f32"):
        shutil_path.unlink()  # the raw passes are large; the figures are kept
    q = report.get("quality")
    return {
        "seconds": seconds,
        "bias_field": report.get("bias_field"),
        "ood_score": (report.get("ood") or {}).get("score"),
        "ood_signals": (report.get("ood") or {}).get("signals"),
        "decision": report["routing"]["decision"],
        "reasons": [r["code"] for r in report["routing"]["reasons"]],
        "quality_error": report.get("quality_error"),
        "quality": None if q is None else {"label": q["label"], "mean_probs": q["uncertainty"]["mean_probs"],
                                          "mutual_information": q["uncertainty"]["mutual_information"],
                                          "disagreement": q["uncertainty"]["disagreement"]},
        "configs": results,
    }


def without_bias_correction(folder: Path, dest: Path) -> Path:
    """The model folder without its [bias_correction] table (the ablation)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(folder, dest)
    text = (dest / "manifest.toml").read_text()
    text, n = re.subn(r"(?ms)^\[bias_correction\]\n(?:[a-z_]+ = [^\n]*\n)*", "", text, count=1)
    if n != 1:
        raise SystemExit(f"{folder}/manifest.toml has no [bias_correction] table")
    (dest / "manifest.toml").write_text(text)
    return dest


def mc_quality_copy(folder: Path, dest: Path, passes: int) -> Path:
    """The scan-quality folder with `mc_dropout_passes = passes` (members are the same files)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(folder, dest)
    text = (dest / "manifest.toml").read_text()
    text, n = re.subn(r"(?m)^mc_dropout_passes = \d+$", f"mc_dropout_passes = {passes}", text, count=1)
    if n != 1:
        raise SystemExit(f"{folder}/manifest.toml has no mc_dropout_passes line")
    (dest / "manifest.toml").write_text(text)
    return dest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--binary", default="target/release/neurobatch")
    ap.add_argument("--model", type=Path, default=Path("models/brain-tissue"))
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per session (0: the engine chooses lanes and threads from the cores)")
    ap.add_argument("--tta8", default="clean,noise_snr10,tilt_20deg_pitch")
    ap.add_argument("--mc-passes", type=int, default=4, help="MC-dropout passes per member of the third run (0: no run)")
    ap.add_argument("--quality-model", type=Path, default=Path("models/scan-quality"))
    ap.add_argument("--ablate-bias", default="clean,bias_polynomial,bias_sinusoidal",
                    help="cases also run without the manifest's [bias_correction] (5 members, no flip)")
    ap.add_argument("--only", default=None, help="comma-separated case names (default: all)")
    ap.add_argument("--json", type=Path, default=Path("training/evaluation.json"))
    ap.add_argument("--resume", action="store_true", help="keep the cases already in --json")
    args = ap.parse_args()
    manifest = tomllib.loads((args.model / "manifest.toml").read_text())
    index = json.loads((args.cases / "cases.json").read_text())
    cases = index["cases"]
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c["name"] in keep]
    common = ["--model", str(args.model), "--members", str(len(manifest["members"])), "--mc-passes", "0"]
    # Written after every case, so an interrupted evaluation resumes where it stopped.
    results = json.loads(args.json.read_text())["cases"] if args.resume and args.json.exists() else []
    done = {r["name"] for r in results}
    no_bias = None
    if args.ablate_bias and "bias_correction" in manifest:
        no_bias = without_bias_correction(args.model, args.work / "no-bias-correction")
    quality_mc = None
    if args.mc_passes:
        quality_mc = mc_quality_copy(args.quality_model, args.work / "scan-quality-mc", args.mc_passes)
    for case in cases:
        if case["name"] in done:
            continue
        r = evaluate_case(args, case, manifest, common + ["--tta-axes", "0"], "lr")
        if args.mc_passes:
            mc = ["--model", str(args.model), "--members", str(len(manifest["members"])), "--no-tta",
                  "--mc-passes", str(args.mc_passes), "--quality-model", str(quality_mc)]
            rmc = evaluate_case(args, case, manifest, mc, "mc")
            r["configs"].update(rmc["configs"])
            r["seconds_mc"] = rmc["seconds"]
            r["quality_mc"] = rmc["quality"]
        if case["name"] in set(args.ablate_bias.split(",")) and no_bias is not None:
            nb = ["--model", str(no_bias), "--members", str(len(manifest["members"])), "--no-tta", "--mc-passes", "0",
                  "--no-quality"]
            r["configs"].update(evaluate_case(args, case, manifest, nb, "nobias")["configs"])
        if case["name"] in set(args.tta8.split(",")):
            r8 = evaluate_case(args, case, manifest, common + ["--tta-axes", "0,1,2", "--no-quality"], "tta8")
            r["configs"].update(r8["configs"])
            r["seconds_tta8"] = r8["seconds"]
        r.update({"name": case["name"], "category": case["category"], "params": case["params"]})
        results.append(r)
        brief = {k: v.get("dice") for k, v in r["configs"].items()}
        print(f"{case['name']:>22}: {r['seconds']:.0f}s ood={r['ood_score']} {r['decision']} {brief}", flush=True)
        args.json.write_text(json.dumps({"model": str(args.model), "cases": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
