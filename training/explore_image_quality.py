"""Do image-quality metrics inside the predicted tissues help the quality estimator? Measured on the
training split alone, by cross-validation, before anything is built into the worker (issue 13).

    .venv/bin/python training/explore_image_quality.py --work RUNS --tag cpu [--repeats 5] [--split train]
    .venv/bin/python training/explore_image_quality.py --work training/routing_runs_cpu.jsonl.gz [...]

The candidates are MRIQC's tissue metrics (Esteban et al. 2017), computed on what the engine already
holds after inference: the harmonized image on the model grid and the mean probabilities of the base
passes (`neurobatch process --keep-model-grid` writes both to `model_grid/`). Tissue statistics are
probability-weighted (each voxel counts p_c for tissue c), so no threshold enters:

- `<tissue>.intensity_cv`: σ / μ inside each tissue (residual bias and noise);
- `grey_matter/white_matter.contrast`: μ_wm − μ_gm (a gamma or contrast change moves it);
- `grey_matter/white_matter.joint_variation`: MRIQC's CJV, (σ_gm + σ_wm) / |μ_wm − μ_gm| (noise,
  blur, bias and lost contrast all raise it);
- `grey_matter/white_matter.edge_sharpness`: the mean gradient magnitude (per mm) at the grey/white
  boundary (voxels weighted by 4 p_gm p_wm) divided by |μ_wm − μ_gm| (blur, motion and low
  resolution lower it);
- `image.efc`: the entropy focus criterion of the model-grid image over its non-zero voxels
  (ghosting and blur spread the energy).

These are the names and the arithmetic of the worker's catalog (worker/src/quality/image_metrics.rs);
`image_quality()` is also what training/runs_table.py uses to add them to runs made before the
worker computed them.

For each of --repeats shuffles of 5-fold cross-validation on the split's labelled cases, the shipped
estimator's model (fit_quality.py's settings) is fitted with and without the candidates and predicts
the held-out fold; the figures are those of explore_feature_ood.py. `--fractions` fits on part of
each fold (a learning curve); `--estimators` adds two other settings of the trees. No threshold is set and no
calibration or test case is read (with the default --split train).
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explore_feature_ood import cv_figures, fit_trees, print_figures  # noqa: E402
from fit_quality import FAIL_DICE, SEED, TISSUES, feature_matrix, load_runs, truth_of  # noqa: E402
import runs_table  # noqa: E402

LABEL_NAMES = ["background", "grey_matter", "white_matter"]
IMAGE_FEATURES = ["grey_matter.intensity_cv", "white_matter.intensity_cv", "grey_matter/white_matter.contrast",
                  "grey_matter/white_matter.joint_variation", "grey_matter/white_matter.edge_sharpness", "image.efc"]


def weighted_stats(x: np.ndarray, w: np.ndarray) -> tuple[float, float] | None:
    total = float(w.sum())
    if total <= 0:
        return None
    mean = float((w * x).sum() / total)
    return mean, float(np.sqrt((w * (x - mean) ** 2).sum() / total))


def image_quality(folder: Path, label_names=LABEL_NAMES) -> dict[str, float]:
    """The worker's image-quality features (worker/src/quality/image_metrics.rs), by their catalog
    names, from a run's model_grid/ folder: NaN where the worker writes null."""
    img = nib.load(folder / "image.nii.gz")
    x = np.asarray(img.dataobj, dtype=np.float64)
    p = [np.asarray(nib.load(folder / f"probability_{c}.nii.gz").dataobj, dtype=np.float64)
         for c in range(len(label_names))]
    out = {}
    stats = {c: weighted_stats(x, p[c]) for c in range(1, len(label_names))}
    for c, st in stats.items():
        out[f"{label_names[c]}.intensity_cv"] = st[1] / st[0] if st and st[0] > 0 else np.nan
    spacing = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    present = sum(1 for st in stats.values() if st)
    grad = np.sqrt(sum(g**2 for g in np.gradient(x, *spacing))) if present > 1 else None
    for a in range(1, len(label_names)):
        for b in range(a + 1, len(label_names)):
            key = f"{label_names[a]}/{label_names[b]}"
            if stats[a] is None or stats[b] is None:
                out.update({f"{key}.{f}": np.nan for f in ("contrast", "joint_variation", "edge_sharpness")})
                continue
            gap = abs(stats[b][0] - stats[a][0])
            boundary = 4.0 * p[a] * p[b]
            den = boundary.sum()
            out[f"{key}.contrast"] = stats[b][0] - stats[a][0]
            out[f"{key}.joint_variation"] = (stats[a][1] + stats[b][1]) / gap if gap > 0 else np.nan
            out[f"{key}.edge_sharpness"] = (float((boundary * grad).sum() / den) / gap
                                           if den > 0 and gap > 0 else np.nan)
    flat = np.abs(x.ravel())
    energy = np.sqrt((flat**2).sum())
    m = np.count_nonzero(flat)  # over the non-zero voxels: zero padding changes nothing
    if energy > 0 and m >= 2:
        ratio = flat[flat > 0] / energy
        out["image.efc"] = float(-(ratio * np.log(ratio)).sum() / (np.sqrt(m) * np.log(np.sqrt(m))))
    else:
        out["image.efc"] = np.nan
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--split", default="train")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fractions", default="1.0",
                    help="comma-separated fractions of each fold's training cases to fit on (a learning curve)")
    ap.add_argument("--estimators", action="store_true", help="also two other settings of the trees")
    args = ap.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]

    runs = [r for r in load_runs(args.work, args.tag)
            if r.get("split") == args.split and r["labelled"] and "error" not in r and r.get("group") is None]
    for r in runs:  # runs made before the worker computed them: from their model_grid/ folder
        grid = args.work / args.tag / r["name"] / "model_grid" if args.work.is_dir() else None
        if r.get("features") and grid and grid.is_dir():
            runs_table.add_image_metrics(r["features"], grid)
    runs = [r for r in runs if r.get("features") and all(n in r["features"] for n in IMAGE_FEATURES)]
    names = sorted(n for n in runs[0]["features"] if n not in IMAGE_FEATURES)
    x, ok = feature_matrix(runs, names + IMAGE_FEATURES)
    runs = [r for r, k in zip(runs, ok) if k]
    x, iq = x[ok][:, : len(names)], x[ok][:, len(names):]
    y = np.array([[truth_of(r)[t]["dice"] for t in TISSUES] for r in runs])
    fail = y.min(axis=1) < FAIL_DICE
    print(f"{len(runs)} labelled {args.split} cases, {fail.sum()} failing (min-tissue Dice < {FAIL_DICE})")
    for j, c in enumerate(IMAGE_FEATURES):
        v = iq[:, j]
        good = np.isfinite(v)
        print(f"  {c:15s} AUROC for failure {roc_auc_score(fail[good], v[good]):.3f}, "
              f"Spearman with min Dice {spearmanr(v[good], y[good].min(axis=1)).statistic:+.3f}")

    xi = np.column_stack([x, iq])
    variants = {f"base ({f:.2f} of folds)": (x, f, fit_trees) for f in fractions}
    variants.update({f"with image quality ({f:.2f} of folds)": (xi, f, fit_trees) for f in fractions})
    if args.estimators:
        variants["with image quality, 600 trees lr 0.025"] = (
            xi, 1.0, partial(fit_trees, n_estimators=600, learning_rate=0.025))
        variants["with image quality, depth 2"] = (xi, 1.0, partial(fit_trees, max_depth=2))
    figures = {k: [] for k in variants}
    for rep in range(args.repeats):
        for k, (xs, frac, fit) in variants.items():
            pred = np.zeros_like(y)
            for tr, te in KFold(5, shuffle=True, random_state=SEED + rep).split(xs):
                tr = np.random.default_rng(SEED + rep).permutation(tr)[: max(10, round(frac * len(tr)))]
                for i in range(len(TISSUES)):
                    pred[te, i] = fit(xs[tr], y[tr, i]).predict(xs[te])
            figures[k].append(cv_figures(pred, y, fail))
    print_figures(figures, 36)

if __name__ == "__main__":
    main()
