"""numpy port of `imaging::bias::estimate` (the bias-field correction the shipped brain-tissue
model runs before harmonization): the reference the Rust tests compare with (intensity.py writes
imaging/tests/fixtures/intensity/bias.json from it) and the Python side of
training/reference/compare_pipeline.py. numpy only, so any of the project's environments can import it.
"""

import numpy as np


def legendre_table(u, degree):
    out = [np.ones_like(u), u]
    for n in range(1, degree):
        out.append(((2 * n + 1) * u * out[n] - n * out[n - 1]) / (n + 1))
    return out[: degree + 1]


def bias_field(vol, mask, degree=3, classes=3, max_iterations=50, tolerance=1e-3):
    """numpy port of imaging::bias::estimate: returns (log field on the whole grid, info)."""
    vol = np.asarray(vol, dtype=np.float32)
    sel = (mask != 0) & np.isfinite(vol) & (vol > 0)
    idx = np.nonzero(sel)
    # Fortran order, as the Rust side visits the samples.
    order = np.lexsort((idx[0], idx[1], idx[2]))
    idx = tuple(a[order] for a in idx)
    logx = np.log(vol[idx].astype(np.float64))
    lo = [int(a.min()) for a in idx]
    hi = [int(a.max()) for a in idx]
    extent = [h - l + 1 for l, h in zip(lo, hi)]
    terms = [(i, j, k) for i in range(degree + 1) for j in range(degree + 1 - i) for k in range(degree + 1 - i - j)
             if i < extent[0] and j < extent[1] and k < extent[2]]
    tables = []
    for a in range(3):
        u = 2.0 * (np.arange(vol.shape[a]) - lo[a]) / max(hi[a] - lo[a], 1) - 1.0
        tables.append(legendre_table(u, degree))
    basis = np.stack([tables[0][i][idx[0]] * tables[1][j][idx[1]] * tables[2][k][idx[2]] for i, j, k in terms], 1)
    gram = basis.T @ basis
    n = logx.size
    b = np.zeros(n)
    centres = np.quantile(logx, (np.arange(classes) + 0.5) / classes)
    cls = np.zeros(n, dtype=int)
    converged = False
    for it in range(1, max_iterations + 1):
        c = logx - b
        for _ in range(10):
            new = np.argmin(np.abs(c[:, None] - centres[None, :]), axis=1)
            changed = np.any(new != cls)
            cls = new
            centres = np.array([c[cls == m].mean() if np.any(cls == m) else centres[m] for m in range(classes)])
            if not changed:
                break
        coef = np.linalg.solve(gram, basis.T @ (logx - centres[cls]))
        nb = basis @ coef
        mean = nb.mean()
        nb -= mean
        coef[0] -= mean
        moved = np.abs(nb - b).max()
        b = nb
        if moved < tolerance:
            converged = True
            break
    full = sum(c * tables[0][i][:, None, None] * tables[1][j][None, :, None] * tables[2][k][None, None, :]
               for c, (i, j, k) in zip(coef, terms))
    full = np.clip(full, b.min(), b.max())
    info = {"iterations": it, "converged": converged, "samples": int(n), "terms": [list(t) for t in terms],
            "coefficients": [float(c) for c in coef], "log_range": [float(b.min()), float(b.max())]}
    return full, info


def correct(vol, mask, **params):
    """`vol / field` (float32) and the fit's info, as `BiasField::correct` does."""
    log_field, info = bias_field(vol, mask, **params)
    v = np.asarray(vol, dtype=np.float32)
    out = np.where(np.isfinite(v), (v.astype(np.float64) / np.exp(log_field)), v).astype(np.float32)
    return out, info
