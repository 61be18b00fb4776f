"""Inputs for the end-to-end tests of `neurobatch process` (tests/process.rs).

data: under .testdata/process/:
  labels.nii.gz       ground truth on the 1 mm MNI152 2009 grid: argmax of (background =
                      clip(1 - gm - wm, 0, 1), gm, wm) from nilearn's tissue maps, uint8 0/1/2
  bias_noise.nii.gz   the MNI T1 (float32) times a smooth multiplicative field
                      exp(0.25 * (x + 0.5 y^2 - 0.3 z)) on coordinates scaled to [-1, 1]
                      (a low-order polynomial: not the training generator's random field), plus
                      Rician noise with sigma = 4 % of the white-matter mean; seed 20261127
  bias_strong.nii.gz  the MNI T1 times the evaluation's sinusoidal field (training/perturb.py,
                      `bias_sinusoidal`): 1 + 0.4 sin(pi x + 0.5) cos(0.8 pi z), x0.60-1.40, which
                      the shipped model only segments well after bias-field correction
  phantom.nii.gz      a non-brain volume: the 3-D Shepp-Logan-style phantom of training/perturb.py
                      (the evaluation's non-brain case) on the 1 mm template grid
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


def bias_strong():
    t1_img = nib.load(_common.mni_t1())
    t1 = t1_img.get_fdata().astype(np.float64)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in t1.shape], indexing="ij")
    field = 1 + 0.4 * np.sin(np.pi * x + 0.5) * np.cos(0.8 * np.pi * z)
    return (t1 * field).astype(np.float32), t1_img.affine


def phantom(shape, affine):
    """The evaluation's non-brain case (training/perturb.py), so CI routes the same input."""
    sys.path.insert(0, str(_common.REPO / "training"))
    import perturb  # noqa: E402

    return (255.0 * perturb.shepp_logan_3d(shape)).astype(np.float32), affine


def data(out: Path):
    d = out / AREA
    d.mkdir(parents=True, exist_ok=True)
    labels, affine = tissue_labels()
    nib.save(nib.Nifti1Image(labels, affine), d / "labels.nii.gz")
    img, aff = bias_noise(labels)
    nib.save(nib.Nifti1Image(img, aff), d / "bias_noise.nii.gz")
    img, aff = bias_strong()
    nib.save(nib.Nifti1Image(img, aff), d / "bias_strong.nii.gz")
    ph, aff = phantom(labels.shape, affine)
    nib.save(nib.Nifti1Image(ph, aff), d / "phantom.nii.gz")
    b0 = nib.load(_common.site_file("dipy", "data", "files", "S0_10slices.nii.gz"))
    vol = np.asarray(b0.dataobj)[..., 0].astype(np.float32)
    nib.save(nib.Nifti1Image(vol, b0.affine), d / "b0.nii.gz")


def refs(out: Path):
    pass


if __name__ == "__main__":
    _common.cli(data, refs)
