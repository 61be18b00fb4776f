"""What nibabel reads from a NIfTI file, as one line of JSON on stdout.

Used by imaging/tests/nifti.rs to check files written by our writer against
the oracle: `python scripts/testdata/_nibabel_readback.py FILE`
(underscore: scripts/setup.sh runs every other script here as a generator). Prints the
affine, shape, on-disk dtype, sform/qform codes, the sum of the float32
data and an order-sensitive checksum (sum of value * (i % 7919 + 1) over the
Fortran-ordered voxels, in float64), so a flipped or transposed volume fails.
"""

import json
import sys

import nibabel as nib
import numpy as np


def main(path: str) -> None:
    img = nib.load(path)
    data = img.get_fdata(dtype=np.float32).ravel(order="F").astype(np.float64)
    weights = (np.arange(data.size) % 7919 + 1).astype(np.float64)
    hdr = img.header
    print(
        json.dumps(
            {
                "affine": img.affine.tolist(),
                "shape": [int(s) for s in img.shape],
                "dtype": img.get_data_dtype().name,
                "sform_code": int(hdr["sform_code"]),
                "qform_code": int(hdr["qform_code"]),
                "qform": hdr.get_qform().tolist(),
                "zooms": [float(z) for z in hdr.get_zooms()],
                "xyzt_units": list(hdr.get_xyzt_units()),
                "sum": float(data.sum()),
                "weighted": float(data @ weights),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
