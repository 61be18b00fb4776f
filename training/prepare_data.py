"""Write the training cache from the anatomy nilearn ships (run with `.venv/bin/python`).

Reads the MNI152 2009c symmetric T1 and its grey/white-matter probability maps
(1 mm, 197x233x189, skull-stripped, uint8 0..255) from the nilearn wheel, checks they
are RAS, and writes `training/.cache/mni.npz` with
  t1, gm, wm      float32 in [0, 1], RAS, 1 mm
  brain           uint8, the template's brain mask: t1 > 0, holes filled (scipy)
  affine          float64 4x4 (the template's)
`.venv-train` has no nilearn/scipy, so the training scripts read this cache instead.
"""
import argparse
import hashlib
import os
from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
from scipy import ndimage

NAMES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def template_dir() -> Path:
    return Path(nilearn.__file__).parent / "datasets" / "data"


def load_template():
    """(arrays dict of float32 [0,1] RAS, affine, sha256 of the source files)."""
    out, aff, sums = {}, None, {}
    for key, name in NAMES.items():
        path = template_dir() / name
        sums[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        img = nib.as_closest_canonical(nib.load(path))
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S"), nib.aff2axcodes(img.affine)
        data = np.asarray(img.dataobj, dtype=np.float32)
        scale = 255.0 if data.max() > 1.5 else 1.0
        out[key] = np.clip(data / scale, 0.0, 1.0).astype(np.float32)
        if aff is None:
            aff = img.affine.astype(np.float64)
        else:
            assert np.allclose(aff, img.affine)
    return out, aff, sums


def brain_mask(t1: np.ndarray) -> np.ndarray:
    fg = t1 > 0
    lab, n = ndimage.label(fg)
    if n > 1:
        sizes = ndimage.sum(fg, lab, index=range(1, n + 1))
        fg = lab == (1 + int(np.argmax(sizes)))
    return ndimage.binary_fill_holes(fg).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / ".cache" / "mni.npz"))
    args = ap.parse_args()
    arrays, aff, sums = load_template()
    brain = brain_mask(arrays["t1"])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(args.out, affine=aff, brain=brain, nilearn_version=nilearn.__version__,
                        **arrays, **{f"sha256_{k}": v for k, v in sums.items()})
    print(f"wrote {args.out}: shape {arrays['t1'].shape}, brain voxels {int(brain.sum())}, nilearn {nilearn.__version__}")


if __name__ == "__main__":
    main()
