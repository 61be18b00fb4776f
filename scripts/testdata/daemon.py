"""Studies for the daemon's end-to-end tests (tests/daemon*.rs) and the README's demo.

data: under .testdata/daemon/:
  studies/            20 studies, one inbox entry each:
    t1_00 … t1_11.nii.gz   the MNI152 2009 T1 at 2 mm (every second voxel, affine scaled),
                           each with its own intensity scale (0.6–1.6), gamma (0.85–1.15) and
                           Rician noise (2–5 % of the white-matter mean), seeds 1000 + i
    t1_noisy.nii.gz        the same with noise at 25 % of the white-matter mean (a degraded scan)
    phantom.nii.gz         training/perturb.py's non-brain phantom at 2 mm (out of distribution)
    b0.nii.gz              dipy's diffusion b0 (S0_10slices, first volume; out of distribution)
    dicom_0 … dicom_3/     classic MR DICOM series (axial, 2 mm, full brain, 95 slices) of the
                           2 mm T1 with their own noise, each its own StudyInstanceUID, with the
                           planted patient fields of dicom.py (so tests can prove none leaks)
    corrupt.nii.gz         a valid file cut in half (gzip stream truncated)
  extra_instance/          one more slice for dicom_0's series (a late instance → new version)
  samples/dicom_0/         dicom_0 again, for the README demo's inbox (beside the NIfTI samples/)
refs: nothing (the tests check processing outcomes, not figures).
"""

import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import dicom as dcm  # noqa: E402  (this folder's dicom.py: its series writer)

AREA = "daemon"


def t1_2mm():
    img = nib.load(_common.mni_t1())
    data = np.asarray(img.dataobj, dtype=np.float64)[::2, ::2, ::2]
    aff = img.affine.copy()
    aff[:3, :3] *= 2.0
    wm = np.asarray(nib.load(_common.mni_wm()).dataobj, dtype=np.float64)[::2, ::2, ::2] / 255.0
    return data, aff, data[wm > 0.9].mean()


def variant(data, wm_mean, seed, noise_frac):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.6, 1.6)
    gamma = rng.uniform(0.85, 1.15)
    top = data.max()
    img = top * (np.clip(data, 0, None) / top) ** gamma * scale
    sigma = noise_frac * wm_mean * scale
    noisy = np.sqrt((img + rng.normal(0, sigma, img.shape)) ** 2 + rng.normal(0, sigma, img.shape) ** 2)
    return noisy.astype(np.float32)


def dicom_study(folder: Path, name: str, vol_ras, aff):
    """One axial 2 mm series covering the whole 2 mm grid, under a fresh StudyInstanceUID."""
    dims = (vol_ras.shape[0], vol_ras.shape[1], vol_ras.shape[2])
    center_ras = aff @ np.append((np.array(vol_ras.shape) - 1) / 2.0, 1.0)
    center = center_ras[:3] * [-1, -1, 1]
    m = dcm.grid_lps([1, 0, 0], [0, 1, 0], 2.0, dims, center)
    stored = dcm.to_stored(dcm.sample_on_grid(vol_ras, aff, m, dims))
    dcm.STUDY = dcm.uid("daemon-study", name)
    dcm.write_series(folder, name, stored, m, series_number=2, desc="T1 MPRAGE AXIAL")
    return m, stored


def data(out: Path):
    d = out / AREA
    studies = d / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    t1, aff, wm_mean = t1_2mm()
    for i in range(12):
        rng = np.random.default_rng(1000 + i)
        img = variant(t1, wm_mean, 1000 + i, rng.uniform(0.02, 0.05))
        nib.save(nib.Nifti1Image(img, aff), studies / f"t1_{i:02d}.nii.gz")
    nib.save(nib.Nifti1Image(variant(t1, wm_mean, 2000, 0.25), aff), studies / "t1_noisy.nii.gz")

    sys.path.insert(0, str(_common.REPO / "training"))
    import perturb  # noqa: E402

    ph = (255.0 * perturb.shepp_logan_3d(t1.shape)).astype(np.float32)
    nib.save(nib.Nifti1Image(ph, aff), studies / "phantom.nii.gz")
    b0 = nib.load(_common.site_file("dipy", "data", "files", "S0_10slices.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(b0.dataobj)[..., 0].astype(np.float32), b0.affine), studies / "b0.nii.gz")

    for i in range(4):
        img = variant(t1, wm_mean, 3000 + i, 0.03).astype(np.float64)
        m, stored = dicom_study(studies / f"dicom_{i}", f"daemon{i}", img, aff)
        if i == 0:
            # A late instance for this series: the last slice again under a new SOP instance.
            extra = d / "extra_instance"
            dcm.STUDY = dcm.uid("daemon-study", "daemon0")
            nsl = stored.shape[0]
            dcm.write_series(
                extra, "daemon0", stored[nsl - 1 :], m, series_number=2, desc="T1 MPRAGE AXIAL",
                series_uid=dcm.uid("daemon0", "series"), names=["late_0001.dcm"],
                positions=[m[:3, :3] @ [0, 0, nsl] + m[:3, 3]],
            )

    good = (studies / "t1_00.nii.gz").read_bytes()
    (studies / "corrupt.nii.gz").write_bytes(good[: len(good) // 2])

    samples = d / "samples"
    samples.mkdir(exist_ok=True)
    shutil.copytree(studies / "dicom_0", samples / "dicom_0", dirs_exist_ok=True)


def refs(out: Path):
    pass


if __name__ == "__main__":
    _common.cli(data, refs)
