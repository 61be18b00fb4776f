"""Shared helpers for the test-data generators.

Every generator is run as `python scripts/testdata/<area>.py data --out .testdata`
(inputs: real scans copied from PyPI packages and variants derived from them,
written under .testdata/<area>/) or `... refs --out imaging/tests/fixtures`
(reference outputs of the trusted Python tools, as small JSON files under
imaging/tests/fixtures/<area>/, committed). Both are deterministic.
"""

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def site_file(module: str, *parts: str) -> Path:
    """A data file shipped inside an installed package."""
    mod = __import__(module, fromlist=["__file__"])
    return Path(mod.__file__).resolve().parent.joinpath(*parts)


def mni_t1() -> Path:
    return site_file("nilearn", "datasets", "data", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")


def mni_gm() -> Path:
    return site_file("nilearn", "datasets", "data", "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz")


def mni_wm() -> Path:
    return site_file("nilearn", "datasets", "data", "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")


def nibabel_data(name: str) -> Path:
    return site_file("nibabel", "tests", "data", name)


def pydicom_data(name: str) -> Path:
    return site_file("pydicom", "data", "test_files", name)


def sample_indices(shape, n=512, seed=0):
    """Deterministic voxel indices (Fortran-order linear indices) to compare values at."""
    total = int(np.prod(shape[:3]))
    rng = np.random.default_rng(seed)
    idx = rng.choice(total, size=min(n, total), replace=False)
    return sorted(int(i) for i in idx)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli(data_fn, refs_fn):
    """`data --out DIR` writes inputs to DIR/<area>; `refs --out DIR` writes JSON fixtures to DIR/<area>."""
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["data", "refs"])
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    (data_fn if a.what == "data" else refs_fn)(a.out)


def write_raw_f32(stem: Path, data, affine) -> None:
    """Raw volume for tests that must not depend on the NIfTI reader:
    `<stem>.f32` (little-endian float32, Fortran order) + `<stem>.json` (shape, affine)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(data, dtype="<f4")
    stem.with_suffix(".f32").write_bytes(arr.tobytes(order="F"))
    write_json(stem.with_suffix(".json"), {"shape": list(arr.shape), "affine": np.asarray(affine).tolist()})
