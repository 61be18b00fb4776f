"""Inputs for the end-to-end tests of `neurobatch process` (tests/process.rs).

data: under .testdata/process/:
  labels.nii.gz       ground truth on the 1 mm MNI152 2009 grid: argmax of (background =
                      clip(1 - gm - wm, 0, 1), gm, wm) from nilearn's tissue maps, uint8 0/1/2
  bias_noise.nii.gz   the MNI T1 (float32) times a smooth multiplicative field
                      exp(0.25 * (x + 0.5 y^2 - 0.3 z)) on coordinates scaled to [-1, 1]
                      (a low-order polynomial: not the training generator's random field), plus
                      Rician noise with sigma = 4 % of the white-matter mean; seed 20261127
  phantom.nii.gz      a non-brain volume: a 3-D Shepp-Logan-style phantom (10 ellipsoids, the
                      published intensities scaled to 0..100) on a 1 mm 160^3 grid
  b0.nii.gz           a real diffusion b0 (the first volume of dipy's S0_10slices.nii.gz)
refs: nothing (the tests compute Dice against labels.nii.gz themselves).
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

AREA = "process"
SEED = 20261127

# (centre x, y, z; semi-axes a, b, c; rotation about z in degrees; intensity), Shepp-Logan-style.
ELLIPSOIDS = [
    ((0.0, 0.0, 0.0), (0.69, 0.92, 0.81), 0.0, 100.0),
    ((0.0, -0.0184, 0.0), (0.6624, 0.874, 0.78), 0.0, -80.0),
    ((0.22, 0.0, 0.0), (0.11, 0.31, 0.22), -18.0, -20.0),
    ((-0.22, 0.0, 0.0), (0.16, 0.41, 0.28), 18.0, -20.0),
    ((0.0, 0.35, -0.15), (0.21, 0.25, 0.41), 0.0, 10.0),
    ((0.0, 0.1, 0.25), (0.046, 0.046, 0.05), 0.0, 10.0),
    ((0.0, -0.1, 0.25), (0.046, 0.046, 0.05), 0.0, 10.0),
    ((-0.08, -0.605, 0.0), (0.046, 0.023, 0.05), 0.0, 10.0),
    ((0.0, -0.605, 0.0), (0.023, 0.023, 0.02), 0.0, 10.0),
    ((0.06, -0.605, 0.0), (0.023, 0.046, 0.02), 0.0, 10.0),
]


def tissue_labels():
    gm_img = nib.load(_common.mni_gm())
    gm = gm_img.get_fdata() / 255.0
    wm = nib.load(_common.mni_wm()).get_fdata() / 255.0
    bg = np.clip(1.0 - gm - wm, 0.0, 1.0)
    return np.stack([bg, gm, wm]).argmax(0).astype(np.uint8), gm_img.affine


def bias_noise(labels):
    t1_img = nib.load(_common.mni_t1())
    t1 = t1_img.get_fdata().astype(np.float64)
    shape = t1.shape
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    field = np.exp(0.25 * (x + 0.5 * y**2 - 0.3 * z))
    rng = np.random.default_rng(SEED)
    sigma = 0.04 * t1[labels == 2].mean()
    biased = t1 * field
    noisy = np.sqrt((biased + rng.normal(0, sigma, shape)) ** 2 + rng.normal(0, sigma, shape) ** 2)
    return noisy.astype(np.float32), t1_img.affine


def phantom(n=160):
    c = (np.arange(n) - (n - 1) / 2) / (n / 2)
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    out = np.zeros((n, n, n))
    for (cx, cy, cz), (a, b, cc), phi, value in ELLIPSOIDS:
        t = np.deg2rad(phi)
        xr = (x - cx) * np.cos(t) + (y - cy) * np.sin(t)
        yr = -(x - cx) * np.sin(t) + (y - cy) * np.cos(t)
        out[(xr / a) ** 2 + (yr / b) ** 2 + ((z - cz) / cc) ** 2 <= 1.0] += value
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -(n - 1) / 2
    return out.astype(np.float32), affine


def data(out: Path):
    d = out / AREA
    d.mkdir(parents=True, exist_ok=True)
    labels, affine = tissue_labels()
    nib.save(nib.Nifti1Image(labels, affine), d / "labels.nii.gz")
    img, aff = bias_noise(labels)
    nib.save(nib.Nifti1Image(img, aff), d / "bias_noise.nii.gz")
    ph, aff = phantom()
    nib.save(nib.Nifti1Image(ph, aff), d / "phantom.nii.gz")
    b0 = nib.load(_common.site_file("dipy", "data", "files", "S0_10slices.nii.gz"))
    vol = np.asarray(b0.dataobj)[..., 0].astype(np.float32)
    nib.save(nib.Nifti1Image(vol, b0.affine), d / "b0.nii.gz")


def refs(out: Path):
    pass


if __name__ == "__main__":
    _common.cli(data, refs)
