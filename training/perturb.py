"""Held-out evaluation cases: perturbed versions of the MNI152 T1 and inputs the models should not
be trusted with (run with `.venv/bin/python`; deterministic; seeds disjoint from training's).

    .venv/bin/python training/perturb.py --out DIR

writes DIR/<case>.nii.gz (float32), DIR/<case>_labels.nii.gz (uint8 0 background, 1 grey matter,
2 white matter, on the 1 mm template grid) and DIR/cases.json (one entry per case: name, image,
labels or null, category, parameters, seed). Every perturbation is documented in training/README.md.
None of these functional forms is used in training (training uses exp of a trilinearly upsampled
random coarse grid as bias field, for example; here polynomial and sinusoidal fields).
"""
import argparse
import json
import os
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prepare_data import brain_mask, load_template  # noqa: E402

SEED = 424242  # training uses 0-4, 11-13, 1000, 7000, 8000
DIPY_B0 = os.path.join(sys.prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}",
                       "site-packages", "dipy", "data", "files", "S0_10slices.nii.gz")


def labels_of(gm, wm):
    bg = np.clip(1 - gm - wm, 0, 1)
    return np.argmax(np.stack([bg, gm, wm]), axis=0).astype(np.uint8)


def coords(shape):
    """Voxel coordinates normalized to [-1, 1] per axis."""
    return np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")


def rician(img, sd, rng):
    return np.sqrt((img + rng.normal(0, sd, img.shape)) ** 2 + rng.normal(0, sd, img.shape) ** 2)


def rotate(vol, deg, axes, order):
    """Rotate about the volume centre in the plane of `axes`, same grid (a head tilt)."""
    return ndimage.rotate(vol, deg, axes=axes, reshape=False, order=order, mode="constant", cval=0.0)


def shepp_logan_3d(shape):
    """3-D Shepp-Logan-style phantom: (intensity, centre, semi-axes, rotation about z in degrees),
    coordinates in [-1, 1] (Kak & Slaney's ellipsoids with the modified intensities)."""
    ells = [(1.0, (0, 0, 0), (0.69, 0.92, 0.81), 0), (-0.8, (0, -0.0184, 0), (0.6624, 0.874, 0.78), 0),
            (-0.2, (0.22, 0, 0), (0.11, 0.31, 0.22), -18), (-0.2, (-0.22, 0, 0), (0.16, 0.41, 0.28), 18),
            (0.1, (0, 0.35, -0.15), (0.21, 0.25, 0.41), 0), (0.1, (0, 0.1, 0.25), (0.046, 0.046, 0.05), 0),
            (0.1, (0, -0.1, 0.25), (0.046, 0.046, 0.05), 0), (0.1, (-0.08, -0.605, 0), (0.046, 0.023, 0.05), 0),
            (0.1, (0, -0.605, 0), (0.023, 0.023, 0.02), 0), (0.1, (0.06, -0.605, 0), (0.023, 0.046, 0.02), 0)]
    x, y, z = coords(shape)
    out = np.zeros(shape, np.float32)
    for val, (cx, cy, cz), (a, b, c), rot in ells:
        t = np.deg2rad(rot)
        xr = (x - cx) * np.cos(t) + (y - cy) * np.sin(t)
        yr = -(x - cx) * np.sin(t) + (y - cy) * np.cos(t)
        out[(xr / a) ** 2 + (yr / b) ** 2 + ((z - cz) / c) ** 2 <= 1] += val
    return np.clip(out, 0, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    maps, aff, _ = load_template()
    t1 = maps["t1"].astype(np.float64) * 255.0
    gm, wm = maps["gm"].astype(np.float64), maps["wm"].astype(np.float64)
    brain = brain_mask(maps["t1"]).astype(bool)
    lab = labels_of(gm, wm)
    wm_mean = float(t1[lab == 2].mean())
    shape = t1.shape
    cases = []

    def write(name, category, img, labels, params, affine=aff, seed=None):
        img_path = f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(img, np.float32), affine), os.path.join(args.out, img_path))
        lab_path = None
        if labels is not None:
            lab_path = f"{name}_labels.nii.gz"
            nib.save(nib.Nifti1Image(labels.astype(np.uint8), aff), os.path.join(args.out, lab_path))
        cases.append({"name": name, "image": img_path, "labels": lab_path, "category": category,
                      "params": params, "seed": seed})
        print(f"{name}: {np.asarray(img).shape}", flush=True)

    write("clean", "clean", t1, lab, {})
    # contrast changes
    for gamma in (0.5, 2.0):
        write(f"contrast_gamma_{gamma}", "contrast", 255.0 * (t1 / 255.0) ** gamma, lab, {"gamma": gamma})
    inv = np.where(brain, 255.0 - t1, 0.0)  # T2-like: CSF bright, WM dark, outside the brain 0
    write("contrast_inverted", "contrast", inv, lab, {"form": "255 - t1 inside the brain mask, 0 outside"})
    # bias fields (functional forms not used in training)
    x, y, z = coords(shape)
    poly = 1 + 0.35 * x + 0.25 * y - 0.3 * z + 0.2 * x * y - 0.25 * z ** 2 + 0.15 * x ** 2
    write("bias_polynomial", "bias", t1 * poly, lab,
          {"field": "1 + 0.35x + 0.25y - 0.3z + 0.2xy - 0.25z^2 + 0.15x^2 (x,y,z in [-1,1])",
           "field_min": float(poly.min()), "field_max": float(poly.max())})
    sinus = 1 + 0.4 * np.sin(np.pi * x + 0.5) * np.cos(0.8 * np.pi * z)
    write("bias_sinusoidal", "bias", t1 * sinus, lab,
          {"field": "1 + 0.4 sin(pi x + 0.5) cos(0.8 pi z)", "field_min": float(sinus.min()),
           "field_max": float(sinus.max())})
    # noise: Rician, sd = mean white-matter intensity / SNR
    for i, snr in enumerate((20, 10, 5)):
        rng = np.random.default_rng(SEED + i)
        write(f"noise_snr{snr}", "noise", rician(t1, wm_mean / snr, rng), lab,
              {"kind": "rician", "snr_wm": snr, "sd": wm_mean / snr}, seed=SEED + i)
    # thick slices: 5 mm slabs averaged along k (z), written at 1 x 1 x 5 mm
    nz = shape[2] // 5
    thick = t1[:, :, : nz * 5].reshape(shape[0], shape[1], nz, 5).mean(axis=3)
    aff_thick = aff.copy()
    aff_thick[:3, 2] = aff[:3, 2] * 5
    aff_thick[:3, 3] = aff[:3, :3] @ np.array([0, 0, 2.0]) + aff[:3, 3]  # slab centre of voxels 0..4
    write("thick_5mm", "thick_slices", thick, lab, {"slab_mm": 5, "written_spacing": [1, 1, 5]},
          affine=aff_thick)
    # head tilt: image and tissue maps rotated together about the grid centre
    for deg, axes, plane in ((10, (1, 2), "pitch (j-k plane)"), (20, (1, 2), "pitch (j-k plane)"),
                             (15, (0, 1), "yaw (i-j plane)")):
        img = rotate(t1, deg, axes, order=3).clip(min=0)
        rl = labels_of(rotate(gm, deg, axes, order=1), rotate(wm, deg, axes, order=1))
        write(f"tilt_{deg}deg_{'pitch' if axes == (1, 2) else 'yaw'}", "tilt", img, rl,
              {"degrees": deg, "plane": plane, "labels": "rotated gm/wm maps (linear), then argmax"})
    # inputs the model should not be trusted with
    write("ood_phantom", "ood_non_brain", 255.0 * shepp_logan_3d(shape), None,
          {"form": "3-D Shepp-Logan-style ellipsoid phantom on the template grid"})
    b0 = nib.load(DIPY_B0)
    write("ood_dwi_b0", "ood_diffusion", np.asarray(b0.dataobj, np.float32).reshape(b0.shape[:3]), None,
          {"source": "dipy data/files/S0_10slices.nii.gz (a diffusion b0, 128x128x10, 2 mm in-plane)"},
          affine=b0.affine)
    rng = np.random.default_rng(SEED + 10)
    cor = t1.copy()
    cor[:, :, 1::2] = 0  # every other axial slice zeroed (half the slices)
    for _ in range(12):  # random-value blocks
        c = [rng.integers(0, n - 24) for n in shape]
        cor[c[0]:c[0] + 24, c[1]:c[1] + 24, c[2]:c[2] + 24] = rng.uniform(0, 255, (24, 24, 24))
    write("ood_corrupted", "ood_corrupted", cor, lab,
          {"form": "every other axial slice zeroed, 12 random-value 24^3 blocks"}, seed=SEED + 10)
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"seed": SEED, "template": "MNI152 2009c sym (nilearn)", "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
