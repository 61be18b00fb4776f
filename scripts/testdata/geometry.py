"""Test data and references for imaging::orientation and imaging::resample.

Inputs (`data`, under .testdata/geometry/, raw f32 volumes so the Rust tests
do not depend on the NIfTI reader):
  mni_t1          MNI152 2009 T1 (nilearn), 1 mm, RAS
  mni_labels      the T1 quantized into 5 classes (0..4): a label map for nearest-neighbour checks
  mni_gm, mni_wm  MNI GM and WM probability maps scaled to [0, 1]
  mni_t1_2mm, mni_labels_2mm
                  scipy's 2 mm versions of mni_t1 / mni_labels (inputs for 2 mm -> 1 mm)
  t1_las, t1_lps, t1_pir, t1_rai, t1_oblique
                  the T1 stored in other voxel orders (nibabel `as_reoriented`), and an
                  oblique one (the LPS data under an affine rotated ~20 deg)

References (`refs`, under imaging/tests/fixtures/geometry/):
  orientation.json  nibabel `io_orientation`/`aff2axcodes`/`as_closest_canonical` of each
                    variant (canonical shape, affine, an exact whole-volume checksum and
                    values at sample indices), plus `io_orientation` of 100 random affines
  resample.json     scipy.ndimage.affine_transform (order 1 and 0, mode="constant", cval=0)
                    on the output grids the Rust side builds (see `grid_for_spacing`), with
                    values at ~2000 sample indices, sums and exact checksums

Grid rule (mirrored in imaging::resample::TargetGrid::with_spacing): keep the
direction cosines, scale each affine column to the new spacing, keep the centre
of voxel (0,0,0) where it was (MONAI `Spacing`'s default alignment; nibabel's
`vox2out_vox` also puts voxel 0 on the first input voxel centre), and take
n_out = ceil((n_in - 1) * s_in / s_out - 1e-6) + 1 voxels so every input voxel
centre is covered (nibabel's `vox2out_vox` rule).
"""

import json
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import aff2axcodes, axcodes2ornt, io_orientation, ornt_transform
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

AREA = "geometry"
VARIANTS = {"t1_las": "LAS", "t1_lps": "LPS", "t1_pir": "PIR", "t1_rai": "RAI"}
LABEL_EDGES = [1, 60, 120, 180]
N_SAMPLES = 2000


def rot(axis, deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(4)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def load_f32(path):
    img = nib.load(path)
    return np.asarray(img.dataobj).astype(np.float32), img.affine.astype(np.float64)


def mni_inputs():
    t1, aff = load_f32(_common.mni_t1())
    gm, _ = load_f32(_common.mni_gm())
    wm, _ = load_f32(_common.mni_wm())
    labels = np.digitize(t1, LABEL_EDGES).astype(np.float32)
    return t1, labels, gm / np.float32(255), wm / np.float32(255), aff


def variants(t1, aff):
    """Voxel-order variants of the RAS T1: name -> (data, affine)."""
    img = nib.Nifti1Image(t1, aff)
    out = {}
    for name, codes in VARIANTS.items():
        v = img.as_reoriented(ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(codes)))
        assert aff2axcodes(v.affine) == tuple(codes), (name, aff2axcodes(v.affine))
        out[name] = (np.asarray(v.dataobj), v.affine)
    lps_data, lps_aff = out["t1_lps"]
    # ~20 deg about z and 8 deg about x: still closest to LPS, but truly oblique.
    oblique = rot(2, 20.0) @ rot(0, 8.0) @ lps_aff
    assert aff2axcodes(oblique) == ("L", "P", "S")
    out["t1_oblique"] = (lps_data, oblique)
    return out


def grid_for_spacing(shape, affine, spacing):
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    ratio = np.asarray(spacing, dtype=np.float64) / zooms
    out_aff = affine.copy()
    out_aff[:3, :3] = affine[:3, :3] * ratio
    out_shape = [int(math.ceil((n - 1) / r - 1e-6)) + 1 for n, r in zip(shape[:3], ratio)]
    return out_shape, out_aff


def oblique_grid():
    """A 1.5 mm grid rotated ~20 deg, centred on the MNI volume's centre."""
    shape = [120, 140, 110]
    lin = (rot(2, 17.0) @ rot(1, -11.0) @ rot(0, 9.0))[:3, :3] * 1.5
    centre_world = np.array([0.0, -18.0, 18.0])
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = centre_world - lin @ ((np.array(shape) - 1) / 2.0)
    return shape, aff


def affine_transform(data, in_aff, out_shape, out_aff, order):
    """scipy.ndimage with the full 3x3 matrix (the general geometric_transform path)."""
    t = np.linalg.inv(in_aff) @ out_aff
    return ndi.affine_transform(
        data, t[:3, :3], offset=t[:3, 3], output_shape=tuple(out_shape), order=order, mode="constant", cval=0.0
    )


def checksum(arr) -> str:
    """sum((i + 1) * bits(v_i)) mod 2^64 over the Fortran-ordered f32 voxels: an exact
    whole-volume fingerprint the Rust test recomputes (no hashing crate there)."""
    bits = np.asarray(arr, dtype="<f4").ravel(order="F").view(np.uint32).astype(np.uint64)
    weights = np.arange(1, bits.size + 1, dtype=np.uint64)
    return str(int((weights * bits).sum(dtype=np.uint64)))


def fvals(arr, idx):
    flat = np.asarray(arr, dtype=np.float32).ravel(order="F")
    return [float(flat[i]) for i in idx]


def data(out: Path) -> None:
    d = out / AREA
    t1, labels, gm, wm, aff = mni_inputs()
    _common.write_raw_f32(d / "mni_t1", t1, aff)
    _common.write_raw_f32(d / "mni_labels", labels, aff)
    _common.write_raw_f32(d / "mni_gm", gm, aff)
    _common.write_raw_f32(d / "mni_wm", wm, aff)
    shape2, aff2 = grid_for_spacing(t1.shape, aff, [2.0, 2.0, 2.0])
    _common.write_raw_f32(d / "mni_t1_2mm", affine_transform(t1, aff, shape2, aff2, 1), aff2)
    _common.write_raw_f32(d / "mni_labels_2mm", affine_transform(labels, aff, shape2, aff2, 0), aff2)
    for name, (v, a) in variants(t1, aff).items():
        _common.write_raw_f32(d / name, v, a)


def orientation_refs(t1, aff):
    cases = {}
    for name, (v, a) in variants(t1, aff).items():
        img = nib.Nifti1Image(v, a)
        can = nib.as_closest_canonical(img)
        cdata = np.asarray(can.dataobj)
        idx = _common.sample_indices(cdata.shape, n=400, seed=1)
        cases[name] = {
            "input_shape": list(v.shape),
            "input_affine": a.tolist(),
            "axcodes": "".join(aff2axcodes(a)),
            "io_orientation": io_orientation(a).astype(int).tolist(),
            "canonical_shape": list(cdata.shape),
            "canonical_affine": can.affine.tolist(),
            "canonical_axcodes": "".join(aff2axcodes(can.affine)),
            "canonical_checksum": checksum(cdata),
            "sample_indices": idx,
            "sample_values": fvals(cdata, idx),
        }
    # io_orientation on random affines: permutation, flips, anisotropic zooms and
    # small shears and rotations up to 30 deg about random axes (rounded first, so Rust reads the exact matrix).
    rng = np.random.default_rng(7)
    random_affines = []
    for _ in range(100):
        perm = rng.permutation(3)
        flips = rng.choice([-1.0, 1.0], size=3)
        base = np.zeros((3, 3))
        base[perm, np.arange(3)] = flips * rng.uniform(0.5, 3.0, size=3)
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = math.radians(rng.uniform(0.0, 30.0))
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        r = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)
        shear = np.eye(3) + np.triu(rng.uniform(-0.15, 0.15, size=(3, 3)), 1)
        a = np.eye(4)
        a[:3, :3] = np.round(r @ base @ shear, 6)
        a[:3, 3] = np.round(rng.uniform(-100, 100, size=3), 3)
        random_affines.append(
            {"affine": a.tolist(), "io_orientation": io_orientation(a).astype(int).tolist(), "axcodes": "".join(aff2axcodes(a))}
        )
    return {"variants": cases, "random_affines": random_affines}


def resample_case(inputs, in_aff, out_shape, out_aff, idx_seed):
    """inputs: {"linear": [(name, data)], "nearest": [(name, data)]}."""
    idx = _common.sample_indices(out_shape, n=N_SAMPLES, seed=idx_seed)
    t = np.linalg.inv(in_aff) @ out_aff
    case = {"output_shape": list(out_shape), "output_affine": out_aff.tolist(), "sample_indices": idx}
    # Nearest-neighbour ties: sampled output voxels whose input coordinate sits exactly
    # half-way between two voxels on some axis (scipy rounds them up: floor(x + 0.5)).
    ijk = np.array(np.unravel_index(idx, out_shape, order="F"), dtype=np.float64)
    coords = t[:3, :3] @ ijk + t[:3, 3:4]
    case["nearest_exact_half_ties_in_samples"] = int(np.any(np.abs(coords - np.floor(coords) - 0.5) == 0, axis=0).sum())
    for kind, order in (("linear", 1), ("nearest", 0)):
        for name, arr in inputs.get(kind, []):
            res = affine_transform(arr, in_aff, out_shape, out_aff, order)
            case[f"{kind}_{name}"] = {
                "sum": float(res.astype(np.float64).sum()),
                "checksum": checksum(res),
                "sample_values": fvals(res, idx),
            }
    return case


def resample_refs(t1, labels, gm, wm, aff):
    cases = {}
    shape2, aff2 = grid_for_spacing(t1.shape, aff, [2.0, 2.0, 2.0])
    t1_2mm = affine_transform(t1, aff, shape2, aff2, 1)
    labels_2mm = affine_transform(labels, aff, shape2, aff2, 0)
    cases["to_2mm"] = {
        "input": "mni",
        "spacing": [2.0, 2.0, 2.0],
        **resample_case({"linear": [("t1", t1), ("gm", gm), ("wm", wm)], "nearest": [("labels", labels)]}, aff, shape2, aff2, 11),
    }
    shape1, aff1 = grid_for_spacing(shape2, aff2, [1.0, 1.0, 1.0])
    assert shape1 == list(t1.shape) and np.allclose(aff1, aff)
    cases["2mm_to_1mm"] = {
        "input": "mni_2mm",
        "spacing": [1.0, 1.0, 1.0],
        **resample_case({"linear": [("t1", t1_2mm)], "nearest": [("labels", labels_2mm)]}, aff2, shape1, aff1, 12),
    }
    spacing = [1.5, 0.75, 3.0]
    shape_a, aff_a = grid_for_spacing(t1.shape, aff, spacing)
    cases["anisotropic"] = {
        "input": "mni",
        "spacing": spacing,
        **resample_case({"linear": [("t1", t1)], "nearest": [("labels", labels)]}, aff, shape_a, aff_a, 13),
    }
    shape_o, aff_o = oblique_grid()
    cases["oblique_grid"] = {
        "input": "mni",
        **resample_case({"linear": [("t1", t1), ("gm", gm), ("wm", wm)], "nearest": [("labels", labels)]}, aff, shape_o, aff_o, 14),
    }
    return {"cases": cases, "input_range": {"t1": float(t1.max() - t1.min()), "gm": 1.0, "wm": 1.0}}


def refs(out: Path) -> None:
    t1, labels, gm, wm, aff = mni_inputs()
    d = out / AREA
    d.mkdir(parents=True, exist_ok=True)
    # Compact JSON: the fixtures are thousands of numbers and must stay small.
    for name, obj in (("orientation", orientation_refs(t1, aff)), ("resample", resample_refs(t1, labels, gm, wm, aff))):
        with open(d / f"{name}.json", "w") as f:
            json.dump(obj, f, separators=(",", ":"), sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    _common.cli(data, refs)
