"""Does the feature-space OOD distance help the quality estimator? Measured on the training split
alone, by cross-validation, before anything is built into the worker or shipped (issue 13).

    .venv/bin/python training/explore_feature_ood.py --work RUNS --tag cpu-features [--repeats 5]

Reads the runs of training/routing_eval.py made with a model folder whose members have the
`features` output (training/add_features_output.py, manifest `[output] features`): each case's
WORK/<tag>/<case>/result.json (quality features, truth) and report.json (`model.members[i].features`,
each member's bottleneck features pooled over the brain by the engine).

For each of --repeats shuffles of 5-fold cross-validation on the labelled training cases: in every
fold, per member, a Ledoit-Wolf covariance (scikit-learn) is fitted on the fold's good training
cases (min-tissue Dice >= 0.85, the cases the model handles: "in distribution" for its features;
clean scans alone reach about 0.89, so a stricter line leaves almost none) and every case gets its
Mahalanobis distance; the signal is log of the members' mean distance.
The shipped estimator's model (gradient-boosted trees per tissue, fit_quality.py's settings) is
fitted on the fold's training cases with and without that one extra feature and predicts the held-out
fold. Printed: out-of-fold failure-detection AUROC (min-tissue Dice < 0.85) of the predicted min
Dice, the smallest review rate of good cases at which at most 5 % of the accepted fail (a best
case over bounds, to compare the two estimators), Spearman per tissue, mean absolute error, and the
distance's own AUROC, as mean and range over
the repeats. No threshold is set and no test case is read: this decides whether the signal is worth
building, nothing else.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.covariance import LedoitWolf
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_quality import FAIL_DICE, SEED, TISSUES, feature_matrix, load_runs, truth_of  # noqa: E402

IN_DISTRIBUTION_DICE = FAIL_DICE


def member_features(work: Path, tag: str, name: str):
    report = json.loads((work / tag / name / "report.json").read_text())
    vectors = [m.get("features") for m in report["model"]["members"]]
    return None if any(v is None for v in vectors) else np.asarray(vectors, dtype=np.float64)


def fit_trees(x, y, **settings):
    """fit_quality.py's trees; `settings` override its GradientBoostingRegressor arguments."""
    args = dict(loss="huber", n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8,
                min_samples_leaf=5, random_state=SEED) | settings
    return GradientBoostingRegressor(**args).fit(x, y)


def distances(feats, fit_rows, eval_rows):
    """log of the members' mean Mahalanobis distance, each member's covariance fitted on fit_rows."""
    out = np.zeros(len(eval_rows))
    for m in range(feats.shape[1]):
        lw = LedoitWolf().fit(feats[fit_rows, m])
        out += np.sqrt(lw.mahalanobis(feats[eval_rows, m]))
    return np.log(out / feats.shape[1])


def good_reviewed(pred_min, fail, alpha=0.05):
    """The smallest review rate among good cases of any bound on the predicted min Dice that keeps
    the failing fraction among the accepted at or below alpha (out-of-fold predictions; a best
    case to compare estimators by, not a threshold anyone ships)."""
    best = 1.0
    for lam in np.unique(pred_min):
        accepted = pred_min >= lam
        if accepted.any() and fail[accepted].mean() <= alpha:
            best = min(best, float((~accepted & ~fail).sum() / (~fail).sum()))
    return best


def cv_figures(pred, y, fail) -> dict:
    """Out-of-fold figures of one repeat: failure AUROC of the predicted min Dice, the best-case review
    rate of good cases, Spearman per tissue, mean absolute error."""
    return {
        "auroc": roc_auc_score(fail, -pred.min(axis=1)),
        "good reviewed": good_reviewed(pred.min(axis=1), fail),
        **{f"spearman {t}": spearmanr(pred[:, i], y[:, i]).statistic for i, t in enumerate(TISSUES)},
        "mae": float(np.abs(pred - y).mean()),
    }


def print_figures(figures: dict, width: int = 15):
    """Each variant's figures as mean [min, max] over the repeats."""
    for k, rows in figures.items():
        cols = {c: [r[c] for r in rows] for c in rows[0]}
        text = ", ".join(f"{c} {np.mean(v):.3f} [{min(v):.3f}, {max(v):.3f}]" for c, v in cols.items())
        print(f"{k:{width}s} {text}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--tag", default="cpu-features")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    runs = [r for r in load_runs(args.work, args.tag)
            if r.get("split") == "train" and r["labelled"] and "error" not in r and r.get("group") is None]
    names = sorted(next(r["features"] for r in runs if r.get("features")))
    x, ok = feature_matrix(runs, names)
    feats = [member_features(args.work, args.tag, r["name"]) for r in runs]
    keep = ok & np.array([f is not None for f in feats])
    runs = [r for r, k in zip(runs, keep) if k]
    x = x[keep]
    feats = np.stack([f for f, k in zip(feats, keep) if k])  # [cases, members, F]
    y = np.array([[truth_of(r)[t]["dice"] for t in TISSUES] for r in runs])
    fail = y.min(axis=1) < FAIL_DICE
    print(f"{len(runs)} labelled training cases, {fail.sum()} failing (min-tissue Dice < {FAIL_DICE}); "
          f"{feats.shape[1]} members x {feats.shape[2]} pooled features; {x.shape[1]} quality features")

    figures = {"base": [], "with distance": [], "distance alone": []}
    for rep in range(args.repeats):
        pred = {k: np.zeros_like(y) for k in ("base", "with distance")}
        dist = np.zeros(len(runs))
        for tr, te in KFold(5, shuffle=True, random_state=SEED + rep).split(x):
            ref = tr[y[tr].min(axis=1) >= IN_DISTRIBUTION_DICE]
            d_tr, d_te = distances(feats, ref, tr), distances(feats, ref, te)
            dist[te] = d_te
            for i in range(len(TISSUES)):
                pred["base"][te, i] = fit_trees(x[tr], y[tr, i]).predict(x[te])
                xd_tr, xd_te = np.column_stack([x[tr], d_tr]), np.column_stack([x[te], d_te])
                pred["with distance"][te, i] = fit_trees(xd_tr, y[tr, i]).predict(xd_te)
        for k, p in pred.items():
            figures[k].append(cv_figures(p, y, fail))
        figures["distance alone"].append({"auroc": roc_auc_score(fail, dist),
                                          "spearman min dice": spearmanr(-dist, y.min(axis=1)).statistic})
    print_figures(figures)


if __name__ == "__main__":
    main()
