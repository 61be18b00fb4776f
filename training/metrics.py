"""Evaluation metrics for training/evaluate.py, in plain numpy (no scikit-learn in either venv).

Definitions (each matches the usual library one; the unit test at the bottom checks the edge cases):
- dice(a, b): 2|a∩b| / (|a| + |b|); 1.0 when both are empty.
- auroc(scores, positives): probability that a random positive scores above a random negative,
  ties counting 1/2 (Mann–Whitney U / (n_pos · n_neg), = sklearn.metrics.roc_auc_score);
  None when either class is empty.
- spearman(x, y): Pearson correlation of average ranks (= scipy.stats.spearmanr's rho).
- risk_coverage(scores, losses): studies sorted by ascending uncertainty score; at coverage k/n the
  k most certain are accepted and the risk is their mean loss; AURC = mean risk over k = 1..n
  (Geifman & El-Yaniv 2017; the area under the curve of the discrete coverages).
- ece(confidences, correct, bins=15): Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| over 15 equal-width
  confidence bins on [0, 1] (Guo et al. 2017), right-closed bins with 0 in the first.
"""

from __future__ import annotations

import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(bool)
    b = b.astype(bool)
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(a, b).sum() / denom)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def auroc(scores, positives) -> float | None:
    scores = np.asarray(scores, dtype=float)
    positives = np.asarray(positives, dtype=bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    r = _ranks(scores)
    u = r[positives].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def spearman(x, y) -> float | None:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def risk_coverage(scores, losses):
    scores = np.asarray(scores, dtype=float)
    losses = np.asarray(losses, dtype=float)
    order = np.argsort(scores, kind="mergesort")
    cum = np.cumsum(losses[order])
    k = np.arange(1, len(scores) + 1)
    risk = cum / k
    coverage = k / len(scores)
    return coverage, risk, float(risk.mean())


def ece(confidences, correct, bins: int = 15) -> float:
    conf = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


if __name__ == "__main__":
    # Self-check against hand-computed values and scipy where it is available.
    assert dice(np.array([1, 1, 0]), np.array([1, 0, 0])) == 2 / 3
    assert dice(np.zeros(3), np.zeros(3)) == 1.0
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert auroc([0.5, 0.5], [0, 1]) == 0.5
    assert auroc([1, 2], [0, 0]) is None
    _, risk, aurc = risk_coverage([0.3, 0.1, 0.2], [1.0, 0.0, 0.5])
    assert np.allclose(risk, [0.0, 0.25, 0.5]) and abs(aurc - 0.25) < 1e-12
    assert abs(ece([0.9, 0.9, 0.6], [1, 0, 1]) - (2 / 3 * 0.4 + 1 / 3 * 0.4)) < 1e-12
    try:
        from scipy.stats import spearmanr

        rng = np.random.default_rng(0)
        a, b = rng.normal(size=50), rng.normal(size=50).round(1)
        assert abs(spearman(a, b) - spearmanr(a, b).statistic) < 1e-12
    except ImportError:
        pass
    print("metrics ok")
