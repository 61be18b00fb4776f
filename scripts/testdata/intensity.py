"""Test data and references for `imaging::stats`, `imaging::mask` and `imaging::harmonize`.

data: raw float32 volumes under .testdata/intensity/ (see `_common.write_raw_f32`):
  mni_t1            the nilearn MNI152 2009 T1 (uint8 on disk, exact in float32)
  mni_t1_noisy      the same with Rician noise (sigma 6, seeded): a background that is not 0
  *_scipy_mask      the scipy.ndimage foreground pipeline's mask of mni_t1 / mni_t1_noisy
  brain_mask        (GM + WM probability > 0.5) from nilearn's MNI maps: the explicit mask
                    passed to both intensity-normalization and neurobatch
  nyul_{0..3}       MNI T1 at half resolution under four monotone transforms, bias fields
                    and noise (the Nyul training set), with nyul_{0..3}_mask
refs: JSON under imaging/tests/fixtures/intensity/:
  stats.json        numpy finite-value summaries and np.percentile (linear), whole and masked
  mask.json         the scipy.ndimage foreground pipeline (Otsu threshold from a numpy port of
                    skimage.filters.threshold_otsu, 256 bins; scipy.ndimage.label with its default
                    6-connected structure; scipy.ndimage.binary_fill_holes): threshold, counts,
                    per-slice marginals of the masks stored under .testdata
  harmonize.json    intensity-normalization 3.0.1 (z-score, WhiteStripe T1/T2, Nyul) and numpy
                    (percentile clip) on the same inputs and the same explicit mask
  bias.json         the bias-field estimate of `imaging::bias` in numpy (`bias_field` below, the
                    same algorithm) on bias_{polynomial,sinusoidal,none}: half-resolution MNI T1
                    times a known field (bias_mask = the half-resolution brain mask), with the
                    known log field at the sample indices
  smooth.json       scipy.ndimage.gaussian_filter (mode "reflect", truncate 4) of the MNI T1 with the
                    anti-aliasing sigma of 1 mm -> 2 mm and an anisotropic one (values at sampled
                    indices, whole sums), and of a tiny 3x2x5 volume whose kernels outgrow it (all values)
`bench` (not run by setup.sh) times the reference implementations of the benchmarked operations.
"""

import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _bias import bias_field  # noqa: E402

AREA = "intensity"
PERCENTILES = [0.0, 0.5, 1.0, 2.5, 10.0, 25.0, 33.3, 50.0, 75.0, 90.0, 97.5, 99.0, 99.5, 100.0]


def f32(a):
    return np.asarray(a, dtype=np.float32)


def mni():
    img = nib.load(_common.mni_t1())
    return f32(img.get_fdata()), img.affine


def noisy(t1):
    rng = np.random.default_rng(20140101)
    sigma = 6.0
    re = t1.astype(np.float64) + rng.normal(0.0, sigma, t1.shape)
    im = rng.normal(0.0, sigma, t1.shape)
    return f32(np.sqrt(re * re + im * im))


def brain_mask():
    gm = nib.load(_common.mni_gm()).get_fdata()
    wm = nib.load(_common.mni_wm()).get_fdata()
    return (gm + wm) > 127.5  # the maps are probabilities scaled to 0..255


def nyul_set(t1, brain):
    """Four monotone intensity remappings of the half-resolution MNI T1 (the 'scanners')."""
    small = t1[::2, ::2, ::2].astype(np.float64)
    mask = brain[::2, ::2, ::2]
    nx, ny, nz = small.shape
    x, y, z = np.meshgrid(np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), np.linspace(-1, 1, nz), indexing="ij")
    rng = np.random.default_rng(1999)
    out = [
        3.0 * small**1.2 + 10.0,
        800.0 * (small / 255.0) ** 0.7 * (1.0 + 0.15 * x - 0.1 * z),
        1.7 * small + 30.0 + rng.normal(0.0, 4.0, small.shape),
        np.expm1(small / 64.0) * 40.0 * (1.0 + 0.1 * y * y),
    ]
    return [(f32(v), mask) for v in out]


# --- bias fields (imaging::bias) -------------------------------------------------------------


def half_res(t1, brain):
    return t1[::2, ::2, ::2].astype(np.float64), brain[::2, ::2, ::2]


def known_fields(shape):
    """Multiplicative fields on a grid, x, y, z in [-1, 1] over the whole grid."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return {
        "none": np.ones(shape),
        "polynomial": 1 + 0.35 * x + 0.25 * y - 0.3 * z + 0.2 * x * y - 0.25 * z**2 + 0.15 * x**2,
        "sinusoidal": 1 + 0.4 * np.sin(np.pi * x + 0.5) * np.cos(0.8 * np.pi * z),
    }


def bias_refs(t1, brain):
    small, mask = half_res(t1, brain)
    out = {"indices": samples(small.shape, mask, n=400)}
    for name, field in known_fields(small.shape).items():
        vol = f32(small * field)
        est, info = bias_field(vol, mask)
        truth = np.log(field)
        truth = truth - truth[mask & (vol > 0)].mean()
        inside = mask & (vol > 0)
        info["log_field"] = at(est, out["indices"])
        info["true_log_field"] = at(truth, out["indices"])
        # How well numpy recovers the known field inside the mask (sd of the log residual).
        info["residual_sd"] = float(np.std((est - truth)[inside]))
        info["true_sd"] = float(np.std(truth[inside]))
        out[name] = info
    return out


def smooth_refs(t1):
    idx = _common.sample_indices(t1.shape, 1500, 11)
    out = {"indices": idx, "mni": []}
    aa = float(np.sqrt(3.0) / (2.0 * np.sqrt(2.0 * np.log(2.0))))  # 1 mm seen at 2 mm
    for sigma in ([aa, aa, aa], [0.5, 1.3, 0.0]):
        y = ndimage.gaussian_filter(t1, sigma, mode="reflect", truncate=4.0)
        out["mni"].append({"sigma": sigma, "values": at(y, idx), "sum": float(y.astype(np.float64).sum())})
    tiny = f32(np.sin(np.arange(30, dtype=np.float64)).reshape((3, 2, 5), order="F") * 100.0)
    sigma = [2.0, 0.6, 1.1]
    y = ndimage.gaussian_filter(tiny, sigma, mode="reflect", truncate=4.0)
    out["tiny"] = {"shape": list(tiny.shape), "sigma": sigma, "input": at(tiny, list(range(30))), "values": at(y, list(range(30)))}
    return out


def data(out: Path) -> None:
    d = out / AREA
    t1, aff = mni()
    nz = noisy(t1)
    _common.write_raw_f32(d / "mni_t1", t1, aff)
    _common.write_raw_f32(d / "mni_t1_noisy", nz, aff)
    # The scipy foreground masks are too large for a committed fixture: they live here, and
    # mask.json pins them (voxel count and per-slice marginals).
    for name, vol in [("mni_t1", t1), ("mni_t1_noisy", nz)]:
        _common.write_raw_f32(d / f"{name}_scipy_mask", scipy_foreground(vol)[3], aff)
    brain = brain_mask()
    _common.write_raw_f32(d / "brain_mask", brain, aff)
    half = aff @ np.diag([2.0, 2.0, 2.0, 1.0])
    for i, (v, m) in enumerate(nyul_set(t1, brain)):
        _common.write_raw_f32(d / f"nyul_{i}", v, half)
        _common.write_raw_f32(d / f"nyul_{i}_mask", m, half)
    small, mask = half_res(t1, brain)
    for name, field in known_fields(small.shape).items():
        _common.write_raw_f32(d / f"bias_{name}", f32(small * field), half)
    _common.write_raw_f32(d / "bias_mask", mask, half)


# --- references -----------------------------------------------------------------------------


def fortran_flat(a):
    return np.asarray(a).ravel(order="F")


def samples(shape, mask, n=1200, seed=7):
    """Half spread over the grid, half inside the mask (where harmonization matters)."""
    grid = _common.sample_indices(shape, n // 2, seed)
    inside = np.flatnonzero(fortran_flat(mask))
    rng = np.random.default_rng(seed + 1)
    pick = rng.choice(inside, size=min(n // 2, inside.size), replace=False)
    return sorted(set(grid) | {int(i) for i in pick})


def summary(values):
    v = np.asarray(values, dtype=np.float64)
    fin = v[np.isfinite(v)]
    return {
        "count": int(fin.size),
        "nan": int(np.isnan(v).sum()),
        "posinf": int(np.isposinf(v).sum()),
        "neginf": int(np.isneginf(v).sum()),
        "min": float(fin.min()),
        "max": float(fin.max()),
        "mean": float(fin.mean()),
        "std": float(fin.std()),
        "percentiles": [float(p) for p in np.percentile(fin, PERCENTILES)],
    }


def stats_refs(t1, nz, brain):
    flat = fortran_flat(t1).astype(np.float64)
    rng = np.random.default_rng(42)
    picks = rng.choice(flat.size, size=300, replace=False)
    nan_i, pinf_i, ninf_i = (sorted(int(i) for i in picks[k::3]) for k in range(3))
    broken = flat.copy()
    broken[nan_i], broken[pinf_i], broken[ninf_i] = np.nan, np.inf, -np.inf
    bm = fortran_flat(brain)
    return {
        "percentiles": PERCENTILES,
        "mni_t1": summary(flat),
        "mni_t1_noisy": summary(fortran_flat(nz)),
        "mni_t1_noisy_in_brain": summary(fortran_flat(nz)[bm]),
        "nonfinite": {"nan": nan_i, "posinf": pinf_i, "neginf": ninf_i, "summary": summary(broken),
                      "in_brain": summary(broken[bm])},
    }


def otsu_skimage_port(values, nbins=256):
    """skimage.filters.threshold_otsu (0.25) for a float image, ported to numpy: skimage is not
    installed. Float images take skimage.exposure.histogram's np.histogram path over
    (min, max) with bin centres at the edge midpoints."""
    values = np.asarray(values, dtype=np.float64)
    if np.all(values == values[0]):
        return float(values[0])
    counts, edges = np.histogram(values, bins=nbins, range=(values.min(), values.max()))
    centers = (edges[:-1] + edges[1:]) / 2.0
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    mean1 = np.cumsum(counts * centers) / weight1
    mean2 = (np.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
    variance12 = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centers[np.argmax(variance12)])


def scipy_foreground(vol):
    """Otsu → largest connected component (scipy.ndimage.label's default structure:
    6-connectivity) → binary_fill_holes (also 6-connected)."""
    finite = np.isfinite(vol)
    thr = otsu_skimage_port(vol[finite].astype(np.float64))
    fg = finite & (vol > thr)
    labels, n = ndimage.label(fg)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    filled = ndimage.binary_fill_holes(largest)
    return thr, int(n), int(sizes.max()), filled


def marginals(mask):
    """Voxel counts per slice along each axis: pins the stored scipy mask to this fixture."""
    return [[int(x) for x in mask.sum(axis=tuple(a for a in range(3) if a != ax))] for ax in range(3)]


def mask_refs(t1, nz):
    out = {}
    for name, vol in [("mni_t1", t1), ("mni_t1_noisy", nz)]:
        thr, ncomp, largest, filled = scipy_foreground(vol)
        out[name] = {
            "otsu_threshold": thr,
            "components": ncomp,
            "largest_component_voxels": largest,
            "mask_voxels": int(filled.sum()),
            "marginals": marginals(filled),
        }
    return out


def in_img(vol, aff):
    from intensity_normalization.adapters.images import create_image

    # The NIfTI path of intensity-normalization: nibabel's get_fdata gives float64.
    return create_image(nib.Nifti1Image(np.asarray(vol, dtype=np.float32), aff))


def at(vol, idx):
    # 8 significant digits: far below the 1e-3 tolerance, and keeps the fixture small.
    return [float(f"{x:.8g}") for x in fortran_flat(np.asarray(vol, dtype=np.float64))[idx]]


def harmonize_refs(t1, nz, brain, aff):
    from intensity_normalization.domain.models import Modality
    from intensity_normalization.normalizers.individual.whitestripe import WhiteStripeNormalizer
    from intensity_normalization.normalizers.individual.zscore import ZScoreNormalizer
    from intensity_normalization.normalizers.population.nyul import NyulNormalizer

    idx = samples(t1.shape, brain)
    mimg = in_img(brain.astype(np.float32), aff)
    out = {"indices": idx, "mask_voxels": int(brain.sum())}
    for name, vol in [("mni_t1", t1), ("mni_t1_noisy", nz)]:
        img = in_img(vol, aff)
        z = ZScoreNormalizer().fit(img, mimg)
        zr = z.transform(img, mimg).get_data()
        res = {"zscore": {"mean": z.mean, "std": z.std, "values": at(zr, idx)}}
        for contrast, modality in [("t1", Modality.T1), ("t2", Modality.T2)]:
            ws = WhiteStripeNormalizer(width=0.05, modality=modality).fit(img, mimg)
            wr = ws.transform(img, mimg).get_data()
            res[f"whitestripe_{contrast}"] = {
                "mean": ws.mean,
                "std": ws.std,
                "stripe_voxels": int(ws.whitestripe_mask.sum()),
                "values": at(wr, idx),
            }
        fg = vol[brain].astype(np.float64)
        lo, hi = np.percentile(fg, [0.5, 99.5])
        pr = np.clip((vol.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
        res["percentile"] = {"lower_value": float(lo), "upper_value": float(hi), "values": at(pr, idx)}
        out[name] = res

    half = aff @ np.diag([2.0, 2.0, 2.0, 1.0])
    train = nyul_set(t1, brain)
    nyul = NyulNormalizer()
    nyul.fit_population([in_img(v, half) for v, _ in train], [in_img(m.astype(np.float32), half) for _, m in train])
    applied = {}
    for name, vol in [("mni_t1", t1), ("mni_t1_noisy", nz)]:
        r = nyul.transform(in_img(vol, aff), mimg).get_data()
        applied[name] = {
            "landmarks": [float(x) for x in np.percentile(vol[brain].astype(np.float64), nyul.percentiles)],
            "values": at(r, idx),
        }
    out["nyul"] = {
        "percentiles": [float(p) for p in nyul.percentiles],
        "standard_scale": [float(s) for s in nyul.standard_scale],
        "train_mask_voxels": [int(m.sum()) for _, m in train],
        "applied": applied,
    }
    return out


def config_ref():
    import tomllib

    with open(_common.REPO / "config" / "harmonization.toml", "rb") as f:
        return tomllib.load(f)


def refs(out: Path) -> None:
    d = out / AREA
    t1, aff = mni()
    nz = noisy(t1)
    brain = brain_mask()
    _common.write_json(d / "stats.json", stats_refs(t1, nz, brain))
    _common.write_json(d / "mask.json", mask_refs(t1, nz))
    _common.write_json(d / "harmonize.json", harmonize_refs(t1, nz, brain, aff))
    _common.write_json(d / "bias.json", bias_refs(t1, brain))
    _common.write_json(d / "smooth.json", smooth_refs(t1))
    # The example config as Python's tomllib reads it: the Rust test deserializes this into
    # `HarmonizeConfig`, so the committed example cannot drift from the type.
    _common.write_json(d / "config.json", config_ref())


def bench() -> None:
    """Reference timings for docs/harmonization.md (median of 5 runs)."""
    from intensity_normalization.normalizers.individual.zscore import ZScoreNormalizer
    from intensity_normalization.normalizers.population.nyul import NyulNormalizer

    t1, aff = mni()
    brain = brain_mask()
    img, mimg = in_img(t1, aff), in_img(brain.astype(np.float32), aff)
    half = aff @ np.diag([2.0, 2.0, 2.0, 1.0])
    train = nyul_set(t1, brain)
    nyul = NyulNormalizer()
    nyul.fit_population([in_img(v, half) for v, _ in train], [in_img(m.astype(np.float32), half) for _, m in train])

    def timeit(name, fn):
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        print(f"{name}: {1e3 * sorted(ts)[2]:.1f} ms")

    timeit("zscore fit+transform (intensity-normalization)", lambda: ZScoreNormalizer().fit(img, mimg).transform(img, mimg))
    timeit("nyul transform (intensity-normalization)", lambda: nyul.transform(img, mimg))
    timeit("foreground mask (numpy otsu + scipy.ndimage)", lambda: scipy_foreground(t1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["bench"]:
        bench()
    else:
        _common.cli(data, refs)
