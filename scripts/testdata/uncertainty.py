"""References for `worker::uncertainty` (streaming uncertainty accumulation).

data: nothing; the inputs are small enough to live in the fixture itself.
refs: worker/tests/fixtures/uncertainty/reference.json holds, per case, the
  per-pass class probabilities (channel-major [C][voxels], float32 values written
  as their shortest round-trip decimal) and what numpy/scipy make of them, all in
  float64 from the float32 inputs:
    - each pass renormalized per voxel (scipy.stats.entropy normalizes pk too);
    - mean probabilities, argmax labels (numpy.argmax: first class on a tie);
    - predictive entropy scipy.stats.entropy(mean), expected entropy = mean over
      passes of scipy.stats.entropy(pass), mutual information = their difference
      clamped at 0 (nats);
    - per structure: per-pass volumes from each pass's argmax (mean, CV with
      ddof=1), agreement over every pass pair computed explicitly -- the pooled
      Dice sum(2|Ai&Aj|)/sum(|Ai|+|Aj|) and IoU sum(|Ai&Aj|)/sum(|Ai|Aj|), the
      plain mean pairwise Dice (Roy et al. 2019; informative, not what the
      streaming accumulator reports), the IoU of all passes -- and mean entropy
      and mutual information over the final mask;
    - study: 1 - pooled pairwise Dice over classes >= 1, foreground means;
    - classification: the same definitions for ensembles of member vectors, and
      the fraction of members whose argmax differs from the mean's.
Cases: "correlated" (7 passes x 3 classes x 512 voxels, per-voxel Dirichlet base,
passes Dirichlet around it: agreement well below 1), "quantized" (5 passes x 4
classes x 64 voxels of multiples of 1/8: exact zeros, one-hot voxels and ties).
"""

import itertools
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import entropy

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

AREA = "uncertainty"
DIGITS = 10  # outputs are compared at 1e-5


def f32_list(a):
    """float32 values as the shortest decimals that read back as the same float32."""
    out = []
    for x in np.asarray(a, dtype=np.float32).ravel():
        s = np.format_float_positional(x, unique=True, trim="-")
        assert np.float32(float(s)) == x
        out.append(float(s))
    return out


def rounded(a):
    return [round(float(x), DIGITS) for x in np.asarray(a, dtype=np.float64).ravel()]


def opt(x):
    return None if x is None else round(float(x), DIGITS)


def normalized(p):
    """float32 [P][C][V] -> float64 renormalized per pass and voxel."""
    q = np.asarray(p, dtype=np.float64)
    return q / q.sum(axis=1, keepdims=True)


def segmentation_reference(passes, voxel_volume_ml):
    """passes: float32 array [P][C][V]."""
    P, C, V = passes.shape
    q = normalized(passes)
    mean = q.mean(axis=0)  # [C][V]
    labels = mean.argmax(axis=0)
    predictive = entropy(mean, axis=0)
    expected = np.mean([entropy(q[t], axis=0) for t in range(P)], axis=0)
    mi = np.maximum(predictive - expected, 0.0)
    assert (predictive - expected).min() > -1e-12
    pass_labels = q.argmax(axis=1)  # [P][V]

    structures = []
    fg_twice_inter = fg_pair_volume = 0
    for c in range(C):
        masks = pass_labels == c
        vols = masks.sum(axis=1) * voxel_volume_ml
        cv = None
        if P >= 2 and vols.mean() > 0:
            cv = vols.std(ddof=1) / vols.mean()
        inter = union = pair_volume = 0
        dices = []
        for i, j in itertools.combinations(range(P), 2):
            a, b = masks[i], masks[j]
            n_inter = int((a & b).sum())
            inter += n_inter
            union += int((a | b).sum())
            pair_volume += int(a.sum() + b.sum())
            if a.sum() + b.sum() > 0:
                dices.append(2 * n_inter / (a.sum() + b.sum()))
        in_all, in_any = int(masks.all(axis=0).sum()), int(masks.any(axis=0).sum())
        final = labels == c
        n = int(final.sum())
        structures.append(
            {
                "label": c,
                "voxels": n,
                "volume_ml": opt(n * voxel_volume_ml),
                "pass_volume_ml_mean": opt(vols.mean()),
                "pass_volume_cv": opt(cv),
                "pairwise_dice": opt(2 * inter / pair_volume) if pair_volume else None,
                "pairwise_iou": opt(inter / union) if union else None,
                "mean_pairwise_dice_unweighted": opt(np.mean(dices)) if dices else None,
                "all_pass_iou": opt(in_all / in_any) if (P >= 2 and in_any) else None,
                "mean_entropy": opt(predictive[final].mean()) if n else None,
                "mean_mutual_information": opt(mi[final].mean()) if n else None,
            }
        )
        if c >= 1:
            fg_twice_inter += 2 * inter
            fg_pair_volume += pair_volume
    fg = labels >= 1
    n_fg = int(fg.sum())
    study = {
        "score": opt(1 - fg_twice_inter / fg_pair_volume) if fg_pair_volume else None,
        "foreground_voxels": n_fg,
        "foreground_volume_ml": opt(n_fg * voxel_volume_ml),
        "foreground_mean_entropy": opt(predictive[fg].mean()) if n_fg else None,
        "foreground_mean_mutual_information": opt(mi[fg].mean()) if n_fg else None,
    }
    # The label comparison in the Rust test is exact: refuse near-ties that float32
    # running sums could break differently (exact ties, as in "quantized", are fine:
    # equal sums stay equal).
    top2 = np.sort(mean, axis=0)[-2:]
    gap = top2[1] - top2[0]
    assert ((gap == 0) | (gap > 1e-4)).all(), gap[(gap > 0) & (gap <= 1e-4)]
    return {
        "mean_probs": rounded(mean),
        "labels": [int(x) for x in labels],
        "predictive_entropy": rounded(predictive),
        "expected_entropy": rounded(expected),
        "mutual_information": rounded(mi),
        "structures": structures,
        "study": study,
    }


def correlated_case():
    rng = np.random.default_rng(20191124)
    P, C, V = 7, 3, 512
    base = rng.dirichlet([0.5] * C, size=V)  # [V][C]
    passes = np.stack([np.stack([rng.dirichlet(12.0 * b + 0.05) for b in base]).T for _ in range(P)])
    return "correlated", passes.astype(np.float32), 1.0 * 1.2 * 1.5 / 1000.0


def quantized_case():
    rng = np.random.default_rng(7)
    P, C, V = 5, 4, 64
    k = np.zeros((P, C, V), dtype=np.int64)
    for t in range(P):
        for v in range(V):
            if v % 4 == 0:
                k[t, (v // 4 + t % 2) % C, v] = 8  # one-hot, alternating between passes
            else:
                k[t, :, v] = rng.multinomial(8, [0.4, 0.3, 0.2, 0.1])
    return "quantized", (k / 8.0).astype(np.float32), 0.001


def classification_reference(members):
    q = normalized(np.asarray(members, dtype=np.float32)[:, :, None])[:, :, 0]  # [M][C]
    mean = q.mean(axis=0)
    label = int(mean.argmax())
    predictive = float(entropy(mean))
    expected = float(np.mean([entropy(m) for m in q]))
    return {
        "mean_probs": rounded(mean),
        "label": label,
        "predictive_entropy": opt(predictive),
        "expected_entropy": opt(expected),
        "mutual_information": opt(max(predictive - expected, 0.0)),
        "disagreement": opt(np.mean(q.argmax(axis=1) != label)),
    }


def classification_cases():
    rng = np.random.default_rng(3)
    cases = [
        ("dirichlet_5x2", rng.dirichlet([0.7, 0.7], size=5)),
        ("dirichlet_3x4", rng.dirichlet([0.5, 1.0, 2.0, 0.5], size=3)),
        ("confident_split", np.array([[0.98, 0.02], [0.03, 0.97], [0.99, 0.01], [0.9, 0.1]])),
        ("unanimous_one_hot", np.array([[0.0, 1.0, 0.0]] * 4)),
    ]
    return [(name, np.asarray(m, dtype=np.float32)) for name, m in cases]


def data(out: Path) -> None:
    """Nothing to write: the inputs are stored in the fixture."""


def refs(out: Path) -> None:
    segmentation = []
    for name, passes, voxel_ml in (correlated_case(), quantized_case()):
        P, C, V = passes.shape
        segmentation.append(
            {
                "name": name,
                "classes": C,
                "voxels": V,
                "voxel_volume_ml": voxel_ml,
                "passes": [f32_list(p) for p in passes],
                "expected": segmentation_reference(passes, voxel_ml),
            }
        )
    classification = [
        {"name": name, "members": [f32_list(m) for m in members], "expected": classification_reference(members)}
        for name, members in classification_cases()
    ]
    path = out / AREA / "reference.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generator": "scripts/testdata/uncertainty.py",
        "tolerance": 1e-5,
        "segmentation": segmentation,
        "classification": classification,
    }
    # Compact: most of the file is the input probabilities.
    path.write_text(json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    _common.cli(data, refs)
