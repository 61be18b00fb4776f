"""Generated labelled shifts: degraded, warped MNI152 T1 scans with their ground truth, plus
out-of-distribution inputs and FOV-invariance triples, split into train / cal / test by disjoint
seeds (run with `.venv/bin/python`; deterministic, whatever --jobs).

    .venv/bin/python training/shifts.py --out DIR --split {train,cal,test} --count N \
        [--ood K] [--invariance M] [--jobs J] [--start I]

writes DIR/<name>.nii.gz (float32), DIR/<name>_labels.nii.gz (uint8: 0 background, 1 grey matter,
2 white matter) and DIR/cases.json (a JSON list, merged by name with an existing one; a case whose
entry and files exist is skipped, so runs can be resumed or extended with --start).

Names: <split>_<i:04d> (labelled, i = I .. I+N-1), <split>_ood_<kind>_<k:02d> (no labels),
<split>_inv_<k:02d>_{base,padded,cropped} (invariance triples).

Seeds (numpy default_rng), BASE = {train: 600000, cal: 700000, test: 800000}:
  labelled case i          BASE + i                            (i < 50000)
  OOD kind j, number k     BASE + 50000 + 100 k + j            (j: 0 non_brain, 1 non_t1, 2 noise; k < 100)
  invariance triple k      BASE + 60000 + k                    (k < 40000)
The three splits' ranges are disjoint from each other, from training's seeds (0-4, 11-13, 20, 30,
41-43, 1000, 7000, 8000) and from perturb.py's (424242 + i).

Each labelled case: one random affine + smooth elastic warp of the template (T1 cubic, GM/WM maps
linear, labels = argmax of the warped maps), then with probability 0.88 one to three shifts in the
fixed order fov_partial, fov_padded, gamma, bias, motion, noise, resolution_iso | resolution_aniso,
then a global gain. Where the labels live: on the image's grid, except after a resolution shift,
where they stay on the 1 mm grid (cropped/padded like the image by the FOV shifts) and the image is
on a coarser grid covering the same field of view (evaluate.py resamples the mask to the labels).
The parameter ranges are in training/README.md ("Generated shifts").
"""
import argparse
import json
import math
import os
import sys
import time
from multiprocessing import Pool

import nibabel as nib
import numpy as np
import scipy.fft
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from perturb import DIPY_B0, labels_of, rician, shepp_logan_3d  # noqa: E402
from prepare_data import brain_mask, load_template  # noqa: E402

BASE = {"train": 600000, "cal": 700000, "test": 800000}
OOD_KINDS = ("non_brain", "non_t1", "noise")
SHIFT_TYPES = ("fov_partial", "fov_padded", "gamma", "bias", "motion", "noise", "resolution_iso",
               "resolution_aniso")
MAX_CASES, MAX_OOD, MAX_INV = 50000, 100, 40000
PAD = 12  # zero padding around the template for the spline coefficients (mode grid-constant)
CTRL = 6  # elastic control grid per axis

_T = None  # per-process template cache


def template():
    """Template arrays (cached per process): T1 (0-255) spline coefficients, GM/WM maps, brain mask."""
    global _T
    if _T is None:
        maps, aff, _ = load_template()
        t1 = maps["t1"] * np.float32(255.0)
        brain = brain_mask(maps["t1"]).astype(bool)
        lab = labels_of(maps["gm"], maps["wm"])
        idx = np.argwhere(brain)
        _T = {
            "aff": aff, "shape": t1.shape, "t1": t1,
            "coef": ndimage.spline_filter(np.pad(t1, PAD), 3, output=np.float32, mode="grid-constant"),
            "gm": np.pad(maps["gm"], PAD), "wm": np.pad(maps["wm"], PAD),
            "brain": np.pad(brain.astype(np.float32), PAD),
            "bbox": (idx.min(0), idx.max(0)),
            "means": {c: float(t1[brain & (lab == v)].mean()) for c, v in (("csf", 0), ("gm", 1), ("wm", 2))},
        }
    return _T


# ----------------------------------------------------------------------------------------- helpers

def log_uniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def rotation(deg):
    a, b, c = np.deg2rad(deg)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def translate(aff, offset):
    """Affine of a grid whose voxel 0 is voxel `offset` of `aff`'s grid."""
    out = aff.copy()
    out[:3, 3] = aff[:3, :3] @ np.asarray(offset, np.float64) + aff[:3, 3]
    return out


def zoom_matrix(n, m=CTRL):
    """(n, m) weights of a cubic ndimage.zoom from m to n samples along one axis (zoom is separable)."""
    return ndimage.zoom(np.eye(m), (n / m, 1), order=3).astype(np.float32)


def smooth_field(ctrl, w):
    """Separable cubic upsampling of a control grid: sum w0[i,a] w1[j,b] w2[k,c] ctrl[a,b,c]."""
    out = np.einsum("kc,abc->abk", w[2], ctrl)
    out = np.einsum("jb,abk->ajk", w[1], out)
    return np.einsum("ia,ajk->ijk", w[0], out)


def warp_template(rng):
    """Random affine (about the brain's centre) + elastic displacement, applied to the template.
    Returns (t1 0-255 float32, labels uint8, brain bool) on the template grid, and the parameters."""
    T = template()
    shape = T["shape"]
    rot = rng.uniform(-10, 10, 3)
    scale = 1 + rng.uniform(-0.08, 0.08, 3)
    trans = rng.uniform(-6, 6, 3)
    esd = rng.uniform(0, 2.5)
    ctrl = (rng.normal(0, 1, (3, CTRL, CTRL, CTRL)) * esd).astype(np.float32)
    m = rotation(rot) @ np.diag(scale)  # sampling map: y = c + M (x - c) + t + d(x), voxels = mm
    lo, hi = T["bbox"]
    c = (lo + hi) / 2.0
    minv = np.linalg.inv(m)
    corners = np.array([[(lo, hi)[(q >> a) & 1][a] for a in range(3)] for q in range(8)], np.float64)
    xs = c + (corners - c - trans) @ minv.T
    margin = np.abs(minv).sum(1) * 1.5 * float(np.abs(ctrl).max()) + 10
    blo = np.clip(np.floor(xs.min(0) - margin), 0, np.array(shape) - 1).astype(int)
    bhi = np.clip(np.ceil(xs.max(0) + margin), 0, np.array(shape) - 1).astype(int)
    ax = [np.arange(blo[a], bhi[a] + 1, dtype=np.float32) for a in range(3)]
    w = [zoom_matrix(shape[a])[blo[a]:bhi[a] + 1] for a in range(3)]
    bshape = tuple(len(v) for v in ax)
    grid = np.empty((3,) + bshape, np.float32)
    for a in range(3):
        g = grid[a]
        g[...] = smooth_field(ctrl[a], w)
        g += (m[a, 0] * (ax[0] - c[0]))[:, None, None]
        g += (m[a, 1] * (ax[1] - c[1]))[None, :, None]
        g += (m[a, 2] * (ax[2] - c[2]))[None, None, :]
        g += np.float32(c[a] + trans[a] + PAD)

    def sample(arr, order, pts):
        return ndimage.map_coordinates(arr, pts, order=order, mode="grid-constant", cval=0.0,
                                       prefilter=False, output=np.float32)

    # the brain mask on the whole box; T1 and GM/WM only within 2 voxels of it (0 outside, as in
    # the skull-stripped template: its GM/WM labels are empty outside its brain mask)
    near = sample(T["brain"], 1, grid)
    bmask = near > 0.5
    sel = ndimage.binary_dilation(near > 0, iterations=2)
    pts = grid[:, sel]
    del grid
    box = tuple(slice(blo[a], bhi[a] + 1) for a in range(3))
    t1b = np.zeros(bshape, np.float32)
    t1b[sel] = np.clip(sample(T["coef"], 3, pts), 0, None)
    labb = np.zeros(bshape, np.uint8)
    labb[sel] = labels_of(sample(T["gm"], 1, pts), sample(T["wm"], 1, pts))
    t1 = np.zeros(shape, np.float32)
    t1[box] = t1b
    lab = np.zeros(shape, np.uint8)
    lab[box] = labb
    brain = np.zeros(shape, bool)
    brain[box] = bmask | (labb > 0)
    params = {"rotation_deg": rot.tolist(), "scale": scale.tolist(), "translation_mm": trans.tolist(),
              "elastic_sd_mm": float(esd), "elastic_control_grid": CTRL,
              "form": "sampling map y = c + R S (x - c) + t + d(x), c = brain bbox centre, "
                      "d = cubic zoom of N(0, sd) control values"}
    return t1, lab, brain, params


def extent(mask, axis):
    other = tuple(a for a in range(3) if a != axis)
    idx = np.nonzero(mask.any(axis=other))[0]
    return int(idx[0]), int(idx[-1])


class Scan:
    """The image, its labels (and brain mask) with their affines while shifts are applied."""

    def __init__(self, img, lab, brain, aff):
        self.img, self.lab, self.brain = img, lab, brain
        self.aff = self.lab_aff = aff

    def crop(self, sl):
        offset = [s.start or 0 for s in sl]
        self.img, self.lab, self.brain = self.img[sl], self.lab[sl], self.brain[sl]
        self.aff = self.lab_aff = translate(self.aff, offset)

    def pad(self, widths):
        self.img = np.pad(self.img, widths)
        self.lab = np.pad(self.lab, widths)
        self.brain = np.pad(self.brain, widths)
        self.aff = self.lab_aff = translate(self.aff, [-w[0] for w in widths])


# ------------------------------------------------------------------------------------------ shifts

def fov_partial(s, rng):
    axis, side = int(rng.integers(3)), int(rng.integers(2))
    frac = rng.uniform(0.05, 0.35)
    lo, hi = extent(s.brain, axis)
    cut = max(1, int(round(frac * (hi - lo + 1))))
    brain_before = int(s.brain.sum())
    sl = [slice(None)] * 3
    sl[axis] = slice(lo + cut, None) if side == 0 else slice(0, hi + 1 - cut)
    n = s.img.shape[axis]
    s.crop(tuple(sl))
    return {"axis": axis, "side": ("low", "high")[side], "fraction_of_brain_extent": float(frac),
            "cut_voxels_of_brain": cut, "removed_voxels": n - s.img.shape[axis],
            "brain_voxels_removed_fraction": 1 - float(s.brain.sum()) / brain_before}


def fov_padded(s, rng):
    sides = rng.choice(6, size=int(rng.integers(1, 4)), replace=False)
    widths = [[0, 0], [0, 0], [0, 0]]
    for sd in sorted(int(v) for v in sides):
        widths[sd // 2][sd % 2] = int(rng.integers(8, 61))
    s.pad(widths)
    return {"pad_voxels": widths}


def gamma(s, rng):
    g = log_uniform(rng, 0.35, 2.8)
    s.img = (255.0 * (np.clip(s.img, 0, None) / np.float32(255.0)) ** np.float32(g)).astype(np.float32)
    return {"gamma": g}


def bias(s, rng):
    shape = s.img.shape
    if rng.uniform() < 0.5:
        deg = int(rng.integers(1, 4))
        target = log_uniform(rng, 1.2, 4.0)
        terms = [(p, q, r) for p in range(4) for q in range(4) for r in range(4) if 1 <= p + q + r <= deg]
        coef = rng.normal(0, 1, len(terms))
        u = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
        field = np.zeros(shape, np.float32)
        for r in range(deg + 1):
            plane = np.zeros(shape[:2], np.float32)
            for (p, q, rr), cf in zip(terms, coef):
                if rr == r:
                    plane += np.float32(cf) * np.outer(u[0] ** p, u[1] ** q)
            field += plane[:, :, None] * (u[2] ** r)[None, None, :]
        vals = field[s.brain]
        lo, hi = float(vals.min()), float(vals.max())
        k = math.log(target) / (hi - lo)
        field = np.exp(np.float32(k) * (field - np.float32((lo + hi) / 2)))
        s.img = s.img * field
        return {"form": "polynomial", "degree": deg, "terms": [list(t) for t in terms],
                "coefficients": (coef * k).tolist(), "max_min_ratio_brain": target,
                "field": "exp(sum c x^p y^q z^r - centre), x, y, z in [-1, 1] over the grid"}
    a = rng.uniform(0.1, 0.5)
    ua, va = (int(v) for v in rng.choice(3, 2, replace=False))
    f = rng.uniform(0.3, 1.2, 2)
    ph = rng.uniform(0, 2 * math.pi, 2)
    su = np.sin(2 * np.pi * f[0] * np.arange(shape[ua]) / shape[ua] + ph[0])
    cv = np.cos(2 * np.pi * f[1] * np.arange(shape[va]) / shape[va] + ph[1])
    plane = (1 + a * np.outer(su, cv)).astype(np.float32)  # axes (ua, va)
    wa = 3 - ua - va
    proj = s.brain.any(axis=wa)
    if ua > va:
        proj = proj.T
    vals = plane[proj]
    ratio = float(vals.max() / vals.min())
    full = np.expand_dims(plane if ua < va else plane.T, wa)
    s.img = s.img * full
    return {"form": "sinusoidal", "amplitude": float(a), "axes": [ua, va], "cycles_per_fov": f.tolist(),
            "phases": ph.tolist(), "max_min_ratio_brain": ratio,
            "field": "1 + a sin(2 pi f0 u + p0) cos(2 pi f1 v + p1), u, v = index / size"}


def motion(s, rng):
    shape = s.img.shape
    pe = int(rng.integers(3))
    n = shape[pe]
    k = scipy.fft.fftn(s.img.astype(np.float32), workers=1)
    sl = [slice(None)] * 3
    if rng.uniform() < 0.5:
        frac = rng.uniform(0.05, 0.5)
        acq = rng.choice(n, size=max(1, int(round(frac * n))), replace=False)
        ro = int(rng.choice([a for a in range(3) if a != pe]))
        mag, ang = rng.uniform(0.5, 6.0), rng.uniform(0, 2 * math.pi)
        shift = np.zeros(3)
        shift[pe], shift[ro] = mag * math.cos(ang), mag * math.sin(ang)
        lines = np.sort((acq - n // 2) % n)  # acquisition order (centred k) -> FFT storage index
        sl[pe] = lines
        ramp_pe = np.exp(-2j * np.pi * scipy.fft.fftfreq(n)[lines] * shift[pe]).astype(np.complex64)
        ramp_ro = np.exp(-2j * np.pi * scipy.fft.fftfreq(shape[ro]) * shift[ro]).astype(np.complex64)
        bshape = [1, 1, 1]
        bshape[pe] = len(lines)
        ramp = ramp_pe.reshape(bshape)
        bshape = [1, 1, 1]
        bshape[ro] = shape[ro]
        ramp = ramp * ramp_ro.reshape(bshape)
        k[tuple(sl)] *= ramp
        params = {"mode": "rigid_shift", "pe_axis": pe, "fraction_of_lines": float(frac),
                  "lines": len(lines), "inplane_axes": sorted([pe, ro]),
                  "shift_voxels": float(mag), "shift_vector": shift.tolist()}
    else:
        every = int(rng.integers(2, 5))
        phase = rng.uniform(0.3, 1.5)
        start = int(rng.integers(every))
        lines = np.sort((np.arange(start, n, every) - n // 2) % n)
        sl[pe] = lines
        k[tuple(sl)] *= np.complex64(np.exp(1j * phase))
        params = {"mode": "periodic_phase", "pe_axis": pe, "every_nth_line": every, "first_line": start,
                  "phase_rad": float(phase), "lines": len(lines)}
    s.img = np.abs(scipy.fft.ifftn(k, workers=1)).astype(np.float32)
    return params


def noise(s, rng):
    snr = log_uniform(rng, 2.5, 40.0)
    wm = s.lab == 2
    ref = float(s.img[wm].mean()) if wm.any() else float(s.img[s.brain].mean())
    sd = ref / snr
    s.img = rician(s.img, sd, rng).astype(np.float32)
    return {"kind": "rician", "snr_wm": snr, "sd": sd, "wm_mean": ref}


def resolution_iso(s, rng):
    sp = rng.uniform(1.3, 3.0)
    sigma = math.sqrt(sp * sp - 1) / 2.3548
    img = ndimage.gaussian_filter(s.img, sigma)
    n = np.array(s.img.shape)
    m = np.maximum(1, np.round(n / sp)).astype(int)
    c0 = -0.5 + (n - m * sp) / 2 + sp / 2  # first new voxel centre, in old voxel coordinates
    s.img = ndimage.affine_transform(img, np.full(3, sp), offset=c0, output_shape=tuple(m), order=1,
                                     mode="nearest", output=np.float32)
    aff = translate(s.aff, c0)
    aff[:3, :3] = s.aff[:3, :3] * sp
    s.aff = aff
    return {"spacing_mm": float(sp), "blur_sigma_voxels": sigma, "shape": m.tolist()}


def resolution_aniso(s, rng):
    t = int(rng.choice([3, 4, 5, 6]))
    axis = int(rng.integers(3))
    img = np.moveaxis(s.img, axis, 0)
    nz = img.shape[0] // t
    img = img[: nz * t].reshape((nz, t) + img.shape[1:]).mean(axis=1)
    s.img = np.ascontiguousarray(np.moveaxis(img, 0, axis), dtype=np.float32)
    aff = translate(s.aff, [(t - 1) / 2.0 if a == axis else 0 for a in range(3)])
    aff[:3, axis] = s.aff[:3, axis] * t
    s.aff = aff
    return {"axis": axis, "slab_voxels": t, "shape": list(s.img.shape)}


SHIFTS = {"fov_partial": fov_partial, "fov_padded": fov_padded, "gamma": gamma, "bias": bias,
          "motion": motion, "noise": noise, "resolution_iso": resolution_iso,
          "resolution_aniso": resolution_aniso}


def choose_shifts(rng):
    if rng.uniform() < 0.12:
        return []
    k = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    while True:
        sel = set(int(v) for v in rng.choice(len(SHIFT_TYPES), k, replace=False))
        if not {6, 7} <= sel:
            return [SHIFT_TYPES[i] for i in sorted(sel)]


# ------------------------------------------------------------------------------------------ output

def save(arr, aff, path, dtype):
    img = nib.Nifti1Image(np.asarray(arr, dtype), aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    img.header.set_xyzt_units("mm")
    tmp = path[: -len(".nii.gz")] + ".part.nii.gz"
    nib.save(img, tmp)
    os.replace(tmp, path)


def write_case(out, name, img, aff, lab=None, lab_aff=None):
    save(img, aff, os.path.join(out, f"{name}.nii.gz"), np.float32)
    entry = {"name": name, "image": f"{name}.nii.gz", "labels": None,
             "image_shape": list(img.shape),
             "image_spacing_mm": np.sqrt((aff[:3, :3] ** 2).sum(0)).round(6).tolist()}
    if lab is not None:
        save(lab, lab_aff, os.path.join(out, f"{name}_labels.nii.gz"), np.uint8)
        entry.update({"labels": f"{name}_labels.nii.gz", "labels_shape": list(lab.shape),
                      "labels_on_image_grid": bool(lab.shape == img.shape and np.allclose(aff, lab_aff)),
                      "tissue_voxels": {"gm": int((lab == 1).sum()), "wm": int((lab == 2).sum())}})
    return entry


def labelled_case(out, split, i):
    seed = BASE[split] + i
    rng = np.random.default_rng(seed)
    T = template()
    t1, lab, brain, warp = warp_template(rng)
    s = Scan(t1, lab, brain, T["aff"])
    shifts = []
    for typ in choose_shifts(rng):
        shifts.append({"type": typ, **SHIFTS[typ](s, rng)})
    gain = log_uniform(rng, 0.3, 5.0)
    s.img = s.img * np.float32(gain)
    name = f"{split}_{i:04d}"
    entry = write_case(out, name, s.img, s.aff, s.lab, s.lab_aff)
    entry.update({"split": split, "category": "+".join(x["type"] for x in shifts) or "clean",
                  "shifts": shifts, "gain": gain, "warp": warp, "seed": seed})
    return [entry]


# --------------------------------------------------------------------------------------------- OOD

def random_grid(rng):
    shape = tuple(int(v) for v in rng.integers(100, 221, 3))
    sp = rng.uniform(0.8, 2.0, 3)
    aff = np.diag(list(sp) + [1.0])
    aff[:3, 3] = -(np.array(shape) - 1) / 2 * sp
    return shape, aff, sp


def random_shapes(shape, rng, count):
    """`count` random ellipsoids / boxes (coordinates in [-1, 1]), each painted over or added."""
    out = np.zeros(shape, np.float32)
    n = np.array(shape)
    desc = []
    for _ in range(count):
        kind = "ellipsoid" if rng.uniform() < 0.5 else "box"
        centre = rng.uniform(-0.7, 0.7, 3)
        axes = rng.uniform(0.05, 0.5, 3)
        r = rotation(rng.uniform(-90, 90, 3))
        val = float(rng.uniform(-0.4, 1.0))
        add = bool(rng.uniform() < 0.5)
        half = np.abs(r) @ axes  # world offset = R (axes * body coordinates)
        lo = np.clip(np.floor((centre - half + 1) / 2 * (n - 1)), 0, n - 1).astype(int)
        hi = np.clip(np.ceil((centre + half + 1) / 2 * (n - 1)), 0, n - 1).astype(int)
        g = [np.linspace(-1, 1, n[a], dtype=np.float32)[lo[a]:hi[a] + 1] - centre[a] for a in range(3)]
        loc = [sum(r[b, a] * g[b].reshape([-1 if q == b else 1 for q in range(3)]) for b in range(3)) / axes[a]
               for a in range(3)]  # body coordinates R^T (x - centre) / axes
        inside = (loc[0] ** 2 + loc[1] ** 2 + loc[2] ** 2 <= 1) if kind == "ellipsoid" else (
            (np.abs(loc[0]) <= 1) & (np.abs(loc[1]) <= 1) & (np.abs(loc[2]) <= 1))
        box = out[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
        if add:
            box[inside] += val
        else:
            box[inside] = val
        desc.append({"kind": kind, "centre": centre.tolist(), "semi_axes": axes.tolist(), "value": val,
                     "mode": "add" if add else "paint"})
    return np.clip(out, 0, None), desc


def ood_non_brain(rng, k):
    shape, aff, sp = random_grid(rng)
    p = {"grid_shape": list(shape), "spacing_mm": sp.tolist()}
    if k % 2 == 0:
        base = shepp_logan_3d(shape)
        levels = np.unique(np.round(base, 4))
        new = rng.uniform(0, 1, len(levels)).astype(np.float32)
        new[levels == 0] = 0
        img = new[np.searchsorted(levels, np.round(base, 4))]
        rot, scale = rng.uniform(-30, 30, 3), rng.uniform(0.75, 1.25, 3)
        shift = rng.uniform(-0.1, 0.1, 3) * np.array(shape)
        esd = rng.uniform(0.01, 0.04) * min(shape)
        m = rotation(rot) @ np.diag(scale)
        c = (np.array(shape) - 1) / 2
        ctrl = rng.normal(0, esd, (3, 4, 4, 4)).astype(np.float32)
        ax = [np.arange(n, dtype=np.float32) - np.float32(c[a]) for a, n in enumerate(shape)]
        grid = np.stack([smooth_field(ctrl[a], [zoom_matrix(n, 4) for n in shape]) for a in range(3)])
        for a in range(3):
            grid[a] += np.float32(c[a] + shift[a])
            for b in range(3):
                grid[a] += (np.float32(m[a, b]) * ax[b]).reshape([-1 if q == b else 1 for q in range(3)])
        img = ndimage.map_coordinates(img, grid, order=0, mode="constant", cval=0.0)
        extra, desc = random_shapes(shape, rng, int(rng.integers(0, 5)))
        img = np.maximum(img, extra)
        p.update({"form": "shepp_logan", "levels_remapped": new.tolist(), "rotation_deg": rot.tolist(),
                  "scale": scale.tolist(), "shift_voxels": shift.tolist(), "elastic_sd_voxels": float(esd),
                  "extra_shapes": desc,
                  "what": "perturb.shepp_logan_3d, intensity levels redrawn, random affine + elastic warp "
                          "(moves each ellipsoid), plus 0-4 random shapes"})
    else:
        img, desc = random_shapes(shape, rng, int(rng.integers(5, 21)))
        p.update({"form": "random_shapes", "shapes": desc})
    scale = rng.uniform(50, 1000)
    img = img / max(float(img.max()), 1e-6) * scale
    if rng.uniform() < 0.5:
        sd = rng.uniform(0.01, 0.05) * scale
        img = rician(img, sd, rng)
        p["rician_sd"] = float(sd)
    p["max_intensity"] = float(scale)
    return img, aff, p


def ood_non_t1(rng, k):
    T = template()
    variant = ("t2_like", "flair_like", "dwi_b0")[k % 3]
    p = {"form": variant}
    if variant == "dwi_b0":
        b0 = nib.load(DIPY_B0)
        img = np.asarray(b0.dataobj, np.float32).reshape(b0.shape[:3])
        aff = b0.affine.copy()
        p["source"] = "dipy data/files/S0_10slices.nii.gz"
        ref = float(np.percentile(img, 99))
    else:
        t1, lab, brain, warp = warp_template(rng)
        aff = T["aff"]
        p["warp"] = warp
        if variant == "t2_like":
            img = np.where(brain, 255.0 - t1, 0.0).astype(np.float32)
            p["what"] = "255 - t1 inside the warped brain mask (CSF bright, WM dark), 0 outside"
        else:
            mu = T["means"]
            ys = [0.0, rng.uniform(0.03, 0.2), rng.uniform(0.75, 1.0), rng.uniform(0.4, 0.65)]
            xs = [0.0, mu["csf"], mu["gm"], mu["wm"]]
            ys.append(ys[3] * rng.uniform(0.6, 1.0))
            xs.append(255.0)
            img = (255.0 * np.interp(t1, xs, ys)).astype(np.float32)
            img[~brain] = 0
            p.update({"curve_x_t1": xs, "curve_y": [float(v) for v in ys],
                      "what": "t1 through a piecewise-linear non-monotonic curve: CSF dark, GM bright, "
                              "WM darker than GM"})
        ref = float(img[brain].mean())
    gain = log_uniform(rng, 0.3, 5.0)
    if rng.uniform() < 0.7:
        snr = log_uniform(rng, 5, 40)
        img = rician(img, ref / snr, rng)
        p["rician_snr"] = snr
    p["gain"] = gain
    return np.asarray(img, np.float32) * np.float32(gain), aff, p


def ood_noise(rng, k):
    shape, aff, sp = random_grid(rng)
    dist = ("gaussian", "rician", "uniform")[k % 3]
    p = {"distribution": dist, "grid_shape": list(shape), "spacing_mm": sp.tolist()}
    if dist == "gaussian":
        mu, sd = rng.uniform(0, 200), rng.uniform(5, 100)
        img = rng.normal(mu, sd, shape)
        p.update({"mean": mu, "sd": sd})
    elif dist == "rician":
        mu, sd = rng.uniform(0, 200), rng.uniform(5, 100)
        img = rician(np.full(shape, mu), sd, rng)
        p.update({"mean": mu, "sd": sd})
    else:
        hi = rng.uniform(50, 500)
        img = rng.uniform(0, hi, shape)
        p["high"] = hi
    sigma = float(rng.uniform(0, 2)) if rng.uniform() < 0.5 else 0.0
    if sigma > 0:
        img = ndimage.gaussian_filter(img, sigma)
    p["smoothing_sigma_voxels"] = sigma
    return img, aff, p


OOD = {"non_brain": ood_non_brain, "non_t1": ood_non_t1, "noise": ood_noise}


def ood_case(out, split, kind, k):
    j = OOD_KINDS.index(kind)
    seed = BASE[split] + 50000 + 100 * k + j
    img, aff, p = OOD[kind](np.random.default_rng(seed), k)
    name = f"{split}_ood_{kind}_{k:02d}"
    entry = write_case(out, name, np.asarray(img, np.float32), aff)
    entry.update({"split": split, "category": f"ood_{kind}", "shifts": [{"type": f"ood_{kind}", **p}],
                  "seed": seed})
    return [entry]


# -------------------------------------------------------------------------------------- invariance

def invariance_case(out, split, k):
    seed = BASE[split] + 60000 + k
    rng = np.random.default_rng(seed)
    T = template()
    t1, lab, brain, warp = warp_template(rng)
    s = Scan(t1, lab, brain, T["aff"])
    mild = ("none", "noise", "gamma")[int(rng.integers(3))]
    shifts = []
    if mild == "noise":
        snr = log_uniform(rng, 15, 40)
        ref = float(s.img[s.lab == 2].mean())
        s.img = rician(s.img, ref / snr, rng).astype(np.float32)
        shifts.append({"type": "noise", "kind": "rician", "snr_wm": snr, "sd": ref / snr, "wm_mean": ref})
    elif mild == "gamma":
        g = log_uniform(rng, 0.8, 1.25)
        s.img = (255.0 * (s.img / np.float32(255.0)) ** np.float32(g)).astype(np.float32)
        shifts.append({"type": "gamma", "gamma": g})
    gain = log_uniform(rng, 0.3, 5.0)
    s.img = s.img * np.float32(gain)
    group = f"{split}_inv_{k:02d}"
    common = {"split": split, "category": "fov_invariance", "gain": gain, "warp": warp, "seed": seed,
              "group": group}
    entries = []
    # padded: 2-4 sides, 20-60 zero voxels each
    widths = [[0, 0], [0, 0], [0, 0]]
    for sd in sorted(int(v) for v in rng.choice(6, size=int(rng.integers(2, 5)), replace=False)):
        widths[sd // 2][sd % 2] = int(rng.integers(20, 61))
    # cropped: 2-4 sides cut to the brain's bounding box + 3 voxels (background only)
    keep = s.brain | (s.lab > 0)
    bounds = [list(extent(keep, a)) for a in range(3)]
    sides = sorted(int(v) for v in rng.choice(6, size=int(rng.integers(2, 5)), replace=False))
    sl = [[0, n] for n in s.img.shape]
    for sd in sides:
        a, hi = sd // 2, sd % 2
        if hi:
            sl[a][1] = min(s.img.shape[a], bounds[a][1] + 4)
        else:
            sl[a][0] = max(0, bounds[a][0] - 3)
    crop = tuple(slice(a, b) for a, b in sl)
    variants = [
        ("base", s.img, s.lab, s.aff, []),
        ("padded", np.pad(s.img, widths), np.pad(s.lab, widths), translate(s.aff, [-w[0] for w in widths]),
         [{"type": "fov_padded", "pad_voxels": widths}]),
        ("cropped", s.img[crop], s.lab[crop], translate(s.aff, [a for a, _ in sl]),
         [{"type": "fov_cropped_background", "sides": sides, "margin_voxels": 3,
           "kept_index_ranges": [[a, b] for a, b in sl]}]),
    ]
    assert s.lab[crop].astype(np.int64).sum() == s.lab.astype(np.int64).sum()
    for variant, img, lab, aff, extra in variants:
        name = f"{group}_{variant}"
        e = write_case(out, name, img, aff, lab, aff)
        e.update({**common, "variant": variant, "shifts": shifts + extra})
        entries.append(e)
    return entries


# -------------------------------------------------------------------------------------------- main

def run_task(task):
    t0 = time.perf_counter()
    kind, out, split = task[0], task[1], task[2]
    if kind == "case":
        entries = labelled_case(out, split, task[3])
    elif kind == "ood":
        entries = ood_case(out, split, task[3], task[4])
    else:
        entries = invariance_case(out, split, task[3])
    return entries, time.perf_counter() - t0


def task_names(task):
    kind, split = task[0], task[2]
    if kind == "case":
        return [(f"{split}_{task[3]:04d}", True)]
    if kind == "ood":
        return [(f"{split}_ood_{task[3]}_{task[4]:02d}", False)]
    return [(f"{split}_inv_{task[3]:02d}_{v}", True) for v in ("base", "padded", "cropped")]


def write_index(path, cases):
    tmp = path + ".part"
    with open(tmp, "w") as f:
        json.dump([cases[n] for n in sorted(cases)], f, indent=1)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", required=True, choices=sorted(BASE))
    ap.add_argument("--count", type=int, required=True, help="labelled cases")
    ap.add_argument("--start", type=int, default=0, help="index of the first labelled case")
    ap.add_argument("--ood", type=int, default=0, help="OOD inputs of each kind")
    ap.add_argument("--invariance", type=int, default=0, help="FOV-invariance triples")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    if args.start < 0 or args.count < 0 or args.start + args.count > MAX_CASES:
        ap.error(f"labelled indices must lie in [0, {MAX_CASES}) to keep the seed ranges disjoint")
    if not 0 <= args.ood <= MAX_OOD or not 0 <= args.invariance <= MAX_INV:
        ap.error(f"--ood must be <= {MAX_OOD} and --invariance <= {MAX_INV}")
    os.makedirs(args.out, exist_ok=True)
    index = os.path.join(args.out, "cases.json")
    cases = {}
    if os.path.exists(index):
        with open(index) as f:
            old = json.load(f)
        cases = {c["name"]: c for c in (old["cases"] if isinstance(old, dict) else old)}
    tasks = [("case", args.out, args.split, i) for i in range(args.start, args.start + args.count)]
    tasks += [("ood", args.out, args.split, kind, k) for k in range(args.ood) for kind in OOD_KINDS]
    tasks += [("inv", args.out, args.split, k) for k in range(args.invariance)]

    def done(task):
        for name, labelled in task_names(task):
            files = [f"{name}.nii.gz"] + ([f"{name}_labels.nii.gz"] if labelled else [])
            if name not in cases or not all(os.path.exists(os.path.join(args.out, f)) for f in files):
                return False
        return True

    todo = [t for t in tasks if not done(t)]
    print(f"{len(tasks) - len(todo)} of {len(tasks)} tasks already done; {len(todo)} to run "
          f"with {args.jobs} job(s)", flush=True)
    t0 = time.perf_counter()
    pool = Pool(args.jobs) if args.jobs > 1 else None
    results = pool.imap_unordered(run_task, todo) if pool else map(run_task, todo)
    for n, (entries, secs) in enumerate(results, 1):
        for e in entries:
            cases[e["name"]] = e
            print(f"{e['name']}: {e['category']} image {tuple(e['image_shape'])} "
                  f"labels {tuple(e['labels_shape']) if e['labels'] else None} ({secs:.1f} s)", flush=True)
        if n % 20 == 0:
            write_index(index, cases)
    if pool:
        pool.close()
        pool.join()
    write_index(index, cases)
    print(f"done: {len(todo)} tasks in {time.perf_counter() - t0:.0f} s; {len(cases)} entries in {index}")


if __name__ == "__main__":
    main()
