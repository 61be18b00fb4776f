"""NIfTI reader/writer test data and nibabel references.

`data`: real NIfTI files shipped in nilearn and nibabel, plus variants derived
from them with nibabel (storage order, qform-only oblique with qfac -1, scaled
int16, float64, big-endian, every integer datatype, labels, NIfTI-2, 5-D,
uncompressed) and a 256x256x176 int16 scan for the benchmark.

`refs`: what nibabel (the oracle) reads from each of those files: affine
(`img.affine`), shape, on-disk dtype, which transform was used, sum/mean of
`get_fdata(dtype=np.float32)` of the first 3-D volume (finite voxels), the
count of non-finite voxels, and the values at deterministic sample indices.
"""

import gzip
import shutil
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

AREA = "nifti"


def save(img, path: Path) -> None:
    """Writes .nii as nibabel does; .nii.gz with gzip mtime 0 so the bytes are deterministic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0))
    else:
        path.write_bytes(img.to_bytes())


def like(img, data, affine=None, klass=nib.Nifti1Image, dtype=None, endianness=None):
    """A new image with `data`, keeping the source's geometry codes."""
    hdr = klass.header_class(endianness=endianness)
    out = klass(data, img.affine if affine is None else affine, hdr)
    out.set_data_dtype(dtype if dtype is not None else data.dtype)
    return out


def near_f32_midpoints(values, dtype):
    """Moves each |v| >= 2**53 to one above the midpoint between two float32 neighbours."""
    out = []
    for v in values.ravel(order="F").tolist():
        a = abs(v)
        if a >= 2**53:
            ulp32 = 2 ** (a.bit_length() - 1 - 23)
            a = (a // ulp32) * ulp32 + ulp32 // 2 + 1
        out.append(a if v >= 0 else -a)
    return np.array(out, dtype=dtype).reshape(values.shape, order="F")


def data(out: Path) -> None:
    d = out / AREA
    d.mkdir(parents=True, exist_ok=True)
    for src, name in [
        (c.mni_t1(), "mni_t1.nii.gz"),
        (c.mni_gm(), "mni_gm.nii.gz"),
        (c.nibabel_data("anatomical.nii"), "anatomical.nii"),
        (c.nibabel_data("example4d.nii.gz"), "example4d.nii.gz"),
        (c.nibabel_data("example_nifti2.nii.gz"), "example_nifti2.nii.gz"),
        (c.nibabel_data("standard.nii.gz"), "standard.nii.gz"),
    ]:
        shutil.copyfile(src, d / name)

    t1 = nib.load(c.mni_t1())
    t1_data = np.asanyarray(t1.dataobj)  # uint8
    anat = nib.load(c.nibabel_data("anatomical.nii"))
    anat_data = np.asanyarray(anat.dataobj).astype(np.int64)  # big-endian int16 on disk

    # LAS storage: x reversed, the affine adjusted so world positions are unchanged.
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = t1.shape[0] - 1
    save(like(t1, t1_data[::-1].copy(), t1.affine @ flip), d / "mni_t1_las.nii.gz")

    # qform-only oblique header with a negative determinant, so nibabel stores qfac = -1.
    rot = nib.eulerangles.euler2mat(0.3, -0.2, 0.1)
    oblique = np.eye(4)
    oblique[:3, :3] = rot @ np.diag([0.9, 1.1, -1.3])
    oblique[:3, 3] = [-80.5, 110.25, -60.0]
    img = like(anat, anat_data.astype(np.int16), oblique)
    img.set_qform(oblique, code=1)
    img.set_sform(None, code=0)
    assert img.header["pixdim"][0] == -1 and img.header["sform_code"] == 0
    save(img, d / "qform_oblique.nii.gz")

    # Scaled int16: nibabel picks scl_slope/scl_inter itself when float data are stored as int16.
    scaled = t1_data.astype(np.float64) * 1.7 - 35.25
    save(like(t1, scaled, dtype=np.int16), d / "mni_t1_scaled_int16.nii.gz")

    save(like(t1, t1_data.astype(np.float64) / 7.3, dtype=np.float64), d / "mni_t1_float64.nii.gz")
    save(
        like(t1, (t1_data.astype(np.float32) / 3.1).astype(">f4"), dtype=">f4", endianness=">"),
        d / "mni_t1_float32_be.nii.gz",
    )

    # NaN and ±Inf voxels in a float32 scan: kept, counted and warned about.
    with_nan = t1_data.astype(np.float32) / 3.1
    rng = np.random.default_rng(7)
    flat = with_nan.reshape(-1, order="F")
    for value, count in [(np.nan, 1000), (np.inf, 10), (-np.inf, 5)]:
        flat[rng.choice(flat.size, size=count, replace=False)] = value
    # Some at the compared sample indices, so the fixture holds non-finite values too.
    probe = c.sample_indices(t1.shape)
    flat[probe[::50]] = np.nan
    flat[probe[25::100]] = np.inf
    save(like(t1, flat.reshape(t1.shape, order="F"), dtype=np.float32), d / "mni_t1_nan.nii.gz")

    gm = np.asanyarray(nib.load(c.mni_gm()).dataobj)
    labels = np.digitize(gm, [64, 128, 192]).astype(np.uint8)
    save(like(t1, labels, dtype=np.uint8), d / "labels_uint8.nii.gz")
    save(like(t1, labels.astype(np.int16) * 300, dtype=np.int16), d / "labels_int16.nii")

    save(like(t1, t1_data, klass=nib.Nifti2Image, dtype=np.uint8), d / "mni_t1_nifti2.nii.gz")
    save(
        like(anat, anat_data.astype(">i2"), klass=nib.Nifti2Image, dtype=">i2", endianness=">"),
        d / "anat_nifti2_be.nii",
    )
    save(like(t1, t1_data, dtype=np.uint8), d / "mni_t1.nii")

    # Every integer datatype in both byte orders, from a real scan (anatomical.nii, -610..30393),
    # scaled to use most of each type's range without overflowing it.
    centred = anat_data - int(np.median(anat_data))
    variants = {
        "int8": np.clip(centred // 256, -128, 127),
        "uint16": (anat_data + 610) * 2,
        "int32": centred * 30001,
        "uint32": (anat_data + 610) * 100003,
        # Values just above float32 rounding midpoints: numpy's int64 -> float64 -> float32
        # path rounds them differently from a direct int64 -> float32 cast.
        "int64": near_f32_midpoints(centred * 2**40, np.int64),
        "uint64": near_f32_midpoints((anat_data + 610) * 2**40, np.uint64),
    }
    for name, values in variants.items():
        info = np.iinfo(name)
        assert info.min <= values.min() and values.max() <= info.max, name
        for order in "<>":
            dt = np.dtype(name).newbyteorder(order)
            img = like(anat, values.astype(dt), dtype=dt, endianness=order)
            save(img, d / f"dtype_{name}_{'be' if order == '>' else 'le'}.nii.gz")

    # 5-D: trailing singletons are 3-D; a real fifth axis means "first volume".
    save(like(anat, anat_data.astype(np.int16)[..., None, None]), d / "singleton5d.nii.gz")
    five = np.stack([anat_data, anat_data[::-1]], axis=-1).astype(np.int16)[..., None, :]
    save(like(anat, five), d / "fived.nii.gz")

    # Benchmark input: the MNI T1 resampled to a typical 256x256x176 sagittal-ish grid, int16.
    zoom = np.array([256, 256, 176]) / np.array(t1.shape)
    big = ndimage.zoom(t1_data.astype(np.float32), zoom, order=1) * 12.0
    bench_aff = t1.affine @ np.diag([1 / zoom[0], 1 / zoom[1], 1 / zoom[2], 1.0])
    save(like(t1, big.astype(np.int16), bench_aff, dtype=np.int16), d / "bench_int16_256x256x176.nii.gz")


# name → expectation beyond nibabel's numbers.
CASES = [
    "mni_t1.nii.gz",
    "mni_gm.nii.gz",
    "anatomical.nii",
    "example4d.nii.gz",
    "example_nifti2.nii.gz",
    "standard.nii.gz",
    "mni_t1_las.nii.gz",
    "qform_oblique.nii.gz",
    "mni_t1_scaled_int16.nii.gz",
    "mni_t1_float64.nii.gz",
    "mni_t1_float32_be.nii.gz",
    "mni_t1_nan.nii.gz",
    "labels_uint8.nii.gz",
    "labels_int16.nii",
    "mni_t1_nifti2.nii.gz",
    "anat_nifti2_be.nii",
    "mni_t1.nii",
    "singleton5d.nii.gz",
    "fived.nii.gz",
] + [
    f"dtype_{name}_{order}.nii.gz"
    for name in ["int8", "uint16", "int32", "uint32", "int64", "uint64"]
    for order in ["le", "be"]
]


def short(v: np.float32):
    """Shortest decimal that reads back as the same float32 (keeps the fixture small);
    non-finite values as the strings "nan", "inf", "-inf" (JSON has no NaN)."""
    if not np.isfinite(v):
        return str(float(v))
    return float(np.format_float_positional(np.float32(v), unique=True, trim="-"))


def xform_used(hdr) -> str:
    if int(hdr["sform_code"]) > 0:
        return "sform"
    if int(hdr["qform_code"]) > 0:
        return "qform"
    return "base"


def refs(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data(Path(tmp))
        src = Path(tmp) / AREA
        cases, indices = {}, {}
        for name in CASES:
            img = nib.load(src / name)
            hdr = img.header
            shape3 = tuple(int(s) for s in (img.shape + (1, 1, 1))[:3])
            vol = img.get_fdata(dtype=np.float32)
            vol = vol.reshape(vol.shape[:3] + (-1,))[..., 0] if vol.ndim > 3 else vol.reshape(shape3)
            flat = vol.ravel(order="F")
            key = "x".join(map(str, shape3))
            if key not in indices:
                indices[key] = c.sample_indices(shape3)
            finite = np.isfinite(flat)
            cases[name] = {
                "format": "nifti2" if isinstance(img, nib.Nifti2Image) else "nifti1",
                "shape": [int(s) for s in img.shape],
                "dtype": img.get_data_dtype().name,
                "big_endian": hdr.endianness == ">",
                "xform": xform_used(hdr),
                "affine": img.affine.tolist(),
                # Over the finite voxels only, so NaN/Inf inputs still have a usable checksum.
                "sum": float(flat[finite].astype(np.float64).sum()),
                "mean": float(flat[finite].astype(np.float64).mean()),
                "non_finite": int((~finite).sum()),
                "description": hdr["descrip"].item().split(b"\0")[0].decode("utf-8", "replace").strip() or None,
                "values": [short(flat[i]) for i in indices[key]],
            }
        c.write_json(out / AREA / "refs.json", {"cases": cases, "indices": indices})


if __name__ == "__main__":
    c.cli(data, refs)
