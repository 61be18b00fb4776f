"""DICOM test data and references for `imaging::dicom`.

`data`: writes under .testdata/dicom/
  derived/  series written with pydicom from the MNI152 T1 (2 mm, int16 with a
            rescale slope/intercept): axial, sagittal, coronal, oblique (17° about
            x), shuffled file names and InstanceNumbers, RLE, implicit VR, two
            interleaved series, two echoes, an Enhanced MR multi-frame object,
            and a 160-slice 256×256 axial series for the benchmark
  real/     pydicom's and nibabel's shipped DICOM files, one folder each
  bad/      inputs that must be refused with a typed error
Every derived file carries a planted patient name / ID / birth date /
accession number (PLANTED below) so the Rust tests can prove none leaks.

`refs`: regenerates the data in a temporary folder, runs dcm2niix (the
geometry oracle) on every derived and real series and stores its affine,
shape and values at deterministic sample voxels; reads the pydicom test files
with pydicom and stores rescaled pixel values at sample pixels.
"""

import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)
from scipy.ndimage import map_coordinates

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cli, mni_t1, pydicom_data, sample_indices, site_file  # noqa: E402

AREA = "dicom"
PLANTED = {
    "PatientName": "ZZLEAKNAME^SECRETGIVEN",
    "PatientID": "PIDLEAK314159",
    "PatientBirthDate": "19010203",
    "AccessionNumber": "ACCLEAK271828",
}
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
# Exact binary fractions: dcm2niix's float32 scl_slope and our f64 rescale agree bit for bit.
SLOPE, INTERCEPT = 0.0625, -8.0
STUDY = generate_uid(entropy_srcs=["neurobatch-dicom-study"])

PYDICOM_FILES = [
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_expb.dcm",
    "MR_small_padded.dcm",
    "CT_small.dcm",
    "JPEG2000.dcm",
    "JPEG-lossy.dcm",
    "image_dfl.dcm",
]
# pydicom here has no JPEG / JPEG 2000 handler: these are compared with the
# lossless original (jp2k) or with dcm2niix (JPEG2000.dcm, OpenJPEG build).
PYDICOM_LOSSLESS_TWIN = {"MR_small_jp2klossless.dcm": "MR_small.dcm"}


def uid(*parts) -> str:
    return generate_uid(entropy_srcs=["neurobatch-dicom", *map(str, parts)])


def mni_2mm():
    img = nib.load(mni_t1())
    data = np.asarray(img.dataobj, dtype=np.float64)[::2, ::2, ::2]
    aff = img.affine.copy()
    aff[:3, :3] *= 2.0
    return data, aff


def grid_lps(rowdir, coldir, spacing, dims, center_lps):
    """Voxel (c, r, k) → LPS affine of a DICOM stack centred on `center_lps`."""
    rowdir, coldir = np.asarray(rowdir, float), np.asarray(coldir, float)
    normal = np.cross(rowdir, coldir)
    cols, rows, nsl = dims
    m = np.eye(4)
    m[:3, 0] = rowdir * spacing
    m[:3, 1] = coldir * spacing
    m[:3, 2] = normal * spacing
    m[:3, 3] = np.asarray(center_lps) - m[:3, :3] @ (np.array([cols, rows, nsl]) - 1) / 2.0
    return m


def sample_on_grid(data, aff_ras, m_lps, dims, order=1):
    """Values of `data` at every DICOM voxel: arr[k][r, c]."""
    cols, rows, nsl = dims
    c, r, k = np.meshgrid(np.arange(cols), np.arange(rows), np.arange(nsl), indexing="xy")
    pts = np.stack([c.ravel(), r.ravel(), k.ravel(), np.ones(c.size)])
    lps = m_lps @ pts
    ras = lps * np.array([[-1], [-1], [1], [1]])
    ijk = np.linalg.inv(aff_ras) @ ras
    vals = map_coordinates(data, ijk[:3], order=order, mode="constant", cval=0.0)
    return vals.reshape(rows, cols, nsl).transpose(2, 0, 1)  # [k][r, c]


def to_stored(vals):
    return np.clip(np.round((vals - INTERCEPT) / SLOPE), -32768, 32767).astype(np.int16)


def mr_dataset(series_uid, series_number, desc, rows, cols, *, echo=1, te=10.0, sop_class=MR_IMAGE):
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = uid("frame")
    ds.Modality = "MR"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = desc
    ds.Manufacturer = "NEUROBATCH"
    ds.ManufacturerModelName = "MNI-SYNTH"
    ds.MagneticFieldStrength = 3
    ds.StationName = "STATION1"
    ds.InstitutionName = "TEST INSTITUTE"
    ds.RepetitionTime = 2300
    ds.EchoTime = te
    ds.InversionTime = 900
    ds.FlipAngle = 9
    ds.EchoNumbers = echo
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    for k, v in PLANTED.items():
        setattr(ds, k, v)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    return ds


def save(ds, path: Path, ts=ExplicitVRLittleEndian):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_series(
    folder: Path,
    name: str,
    vol,
    m_lps,
    *,
    series_number,
    desc,
    ts=ExplicitVRLittleEndian,
    echo=1,
    te=10.0,
    series_uid=None,
    names=None,
    instance_numbers=None,
    positions=None,
    orientations=None,
    skip=(),
    duplicate=None,
):
    """One classic MR file per slice. `vol` is [k][r, c] int16."""
    series_uid = series_uid or uid(name, "series")
    nsl, rows, cols = vol.shape
    iop = np.concatenate([m_lps[:3, 0], m_lps[:3, 1]]) / np.linalg.norm(m_lps[:3, 0])
    sp = float(np.linalg.norm(m_lps[:3, 0]))
    paths = []
    slices = [k for k in range(nsl) if k not in skip] + ([duplicate] if duplicate is not None else [])
    for n, k in enumerate(slices):
        ds = mr_dataset(series_uid, series_number, desc, rows, cols, echo=echo, te=te)
        ds.SOPInstanceUID = uid(name, "sop", n, echo)
        ds.InstanceNumber = int(instance_numbers[n]) if instance_numbers is not None else n + 1
        pos = positions[k] if positions is not None else m_lps[:3, :3] @ [0, 0, k] + m_lps[:3, 3]
        ds.ImagePositionPatient = [round(float(x), 6) for x in pos]
        o = orientations[k] if orientations is not None else iop
        ds.ImageOrientationPatient = [round(float(x), 8) for x in o]
        ds.PixelSpacing = [sp, sp]
        ds.SliceThickness = sp
        ds.SpacingBetweenSlices = sp
        ds.RescaleSlope = SLOPE
        ds.RescaleIntercept = INTERCEPT
        ds.RescaleType = "US"
        ds.PixelData = np.ascontiguousarray(vol[k]).astype("<i2").tobytes()
        if ts == RLELossless:
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.compress(RLELossless, np.ascontiguousarray(vol[k]), generate_instance_uid=False)
        fname = names[n] if names is not None else f"{name}_{n:04d}.dcm"
        save(ds, folder / fname, ts)
        paths.append(folder / fname)
    return paths


def derived(out: Path):
    data, aff = mni_2mm()  # 99 × 117 × 95, 2 mm, RAS
    center_ras = aff @ np.append((np.array(data.shape) - 1) / 2.0, 1.0)
    center = center_ras[:3] * [-1, -1, 1]
    rng = np.random.default_rng(20240601)
    d = out / "derived"
    cases = {}

    def stack(rowdir, coldir, dims, order=1, src=(data, aff), sp=2.0):
        m = grid_lps(rowdir, coldir, sp, dims, center)
        return m, to_stored(sample_on_grid(src[0], src[1], m, dims, order))

    ax_m, ax = stack([1, 0, 0], [0, 1, 0], (99, 117, 41))
    write_series(d / "axial", "axial", ax, ax_m, series_number=2, desc="T1 AXIAL")
    sag_m, sag = stack([0, 1, 0], [0, 0, -1], (117, 95, 41))
    write_series(d / "sagittal", "sagittal", sag, sag_m, series_number=3, desc="T1 SAGITTAL")
    cor_m, cor = stack([1, 0, 0], [0, 0, -1], (99, 95, 41))
    write_series(d / "coronal", "coronal", cor, cor_m, series_number=4, desc="T1 CORONAL")
    t = np.deg2rad(17.0)
    obl_m, obl = stack([1, 0, 0], [0, np.cos(t), np.sin(t)], (99, 117, 41))
    write_series(d / "oblique", "oblique", obl, obl_m, series_number=5, desc="T1 OBLIQUE")
    # Random names and InstanceNumbers unrelated to position.
    perm = rng.permutation(ax.shape[0])
    names = [f"{rng.integers(1 << 40):010x}" for _ in range(ax.shape[0])]
    write_series(
        d / "shuffled", "shuffled", ax, ax_m, series_number=6, desc="T1 SHUFFLED", names=names, instance_numbers=perm + 1
    )
    write_series(d / "rle", "rle", cor, cor_m, series_number=7, desc="T1 RLE", ts=RLELossless)
    write_series(d / "implicit", "implicit", sag, sag_m, series_number=8, desc="T1 IMPLICIT", ts=ImplicitVRLittleEndian)
    # Two series of one study, interleaved in one folder under random names.
    inter = d / "two_series"
    n_a = [f"{rng.integers(1 << 40):010x}.dcm" for _ in range(ax.shape[0])]
    n_c = [f"{rng.integers(1 << 40):010x}.dcm" for _ in range(cor.shape[0])]
    write_series(inter, "two_a", ax, ax_m, series_number=10, desc="PAIR AXIAL", names=n_a)
    write_series(inter, "two_c", cor, cor_m, series_number=11, desc="PAIR CORONAL", names=n_c)
    # Two echoes in one series: echo 2 is a darker copy.
    echo_uid = uid("echo", "series")
    write_series(d / "two_echo", "echo1", ax, ax_m, series_number=12, desc="T2 DUAL ECHO", series_uid=echo_uid)
    ax2 = (ax.astype(np.int32) * 7 // 10).astype(np.int16)
    write_series(
        d / "two_echo", "echo2", ax2, ax_m, series_number=12, desc="T2 DUAL ECHO", series_uid=echo_uid, echo=2, te=80.0
    )
    write_enhanced(d / "enhanced" / "enhanced.dcm", ax, ax_m)
    # The benchmark series: 160 slices of 256 × 256 at 1 mm, nearest-neighbour from the 1 mm MNI.
    img = nib.load(mni_t1())
    full = np.asarray(img.dataobj, dtype=np.float64)
    c1 = (img.affine @ np.append((np.array(full.shape) - 1) / 2.0, 1.0))[:3] * [-1, -1, 1]
    bm = grid_lps([1, 0, 0], [0, 1, 0], 1.0, (256, 256, 160), c1)
    bench = to_stored(sample_on_grid(full, img.affine, bm, (256, 256, 160), order=0))
    write_series(d / "bench_axial160", "bench", bench, bm, series_number=20, desc="BENCH AXIAL 160")
    return cases


def write_enhanced(path: Path, vol, m_lps, geometry=True):
    """Enhanced MR: one object, per-frame PlanePosition, shared orientation/measures/rescale."""
    nsl, rows, cols = vol.shape
    ds = mr_dataset(uid("enhanced", "series", geometry), 9, "T1 ENHANCED", rows, cols, sop_class=ENHANCED_MR)
    ds.SOPInstanceUID = uid("enhanced", "sop")
    ds.InstanceNumber = 1
    ds.NumberOfFrames = nsl
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ContentQualification = "PRODUCT"
    for k in ("EchoTime", "RepetitionTime", "InversionTime", "FlipAngle", "EchoNumbers"):
        delattr(ds, k)
    iop = np.concatenate([m_lps[:3, 0], m_lps[:3, 1]]) / np.linalg.norm(m_lps[:3, 0])
    sp = float(np.linalg.norm(m_lps[:3, 0]))
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [sp, sp]
    pm.SliceThickness = sp
    pm.SpacingBetweenSlices = sp
    shared.PixelMeasuresSequence = Sequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = [round(float(x), 8) for x in iop]
    if geometry:
        shared.PlaneOrientationSequence = Sequence([po])
    pv = Dataset()
    pv.RescaleSlope = SLOPE
    pv.RescaleIntercept = INTERCEPT
    pv.RescaleType = "US"
    shared.PixelValueTransformationSequence = Sequence([pv])
    timing = Dataset()
    timing.RepetitionTime = 2300
    timing.FlipAngle = 9
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    echo = Dataset()
    echo.EffectiveEchoTime = 10.0
    shared.MREchoSequence = Sequence([echo])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    dim_uid = uid("enhanced", "dim")
    dims = Dataset()
    dims.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = Sequence([dims])
    idx = Dataset()
    idx.DimensionOrganizationUID = dim_uid
    idx.DimensionIndexPointer = 0x00200032
    idx.FunctionalGroupPointer = 0x00209113
    ds.DimensionIndexSequence = Sequence([idx])
    frames = []
    # Frames stored in reverse slice order: geometry, not frame order, decides.
    order = list(range(nsl))[::-1]
    for f, k in enumerate(order):
        fg = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [round(float(x), 6) for x in m_lps[:3, :3] @ [0, 0, k] + m_lps[:3, 3]]
        if geometry:
            fg.PlanePositionSequence = Sequence([pp])
        fc = Dataset()
        fc.InStackPositionNumber = k + 1
        fc.StackID = "1"
        fc.DimensionIndexValues = [k + 1]
        fg.FrameContentSequence = Sequence([fc])
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(vol[order]).astype("<i2").tobytes()
    save(ds, path)


def real(out: Path):
    r = out / "real"
    for name in PYDICOM_FILES + ["MR_truncated.dcm", "test-SR.dcm", "MR_small_jpeg_ls_lossless.dcm"]:
        dst = r / Path(name).stem / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pydicom_data(name), dst)
    nic = site_file("nibabel", "nicom", "tests", "data")
    (r / "siemens_2slice").mkdir(parents=True, exist_ok=True)
    for n in ("0.dcm", "1.dcm"):
        shutil.copyfile(nic / n, r / "siemens_2slice" / n)
    (r / "philips_mprage").mkdir(parents=True, exist_ok=True)
    (r / "philips_mprage" / "philips_mprage.dcm").write_bytes(gzip.open(nic / "philips_mprage.dcm.gz").read())


def bad(out: Path):
    data, aff = mni_2mm()
    center = (aff @ np.append((np.array(data.shape) - 1) / 2.0, 1.0))[:3] * [-1, -1, 1]
    dims = (99, 117, 9)
    m = grid_lps([1, 0, 0], [0, 1, 0], 2.0, dims, center)
    vol = to_stored(sample_on_grid(data, aff, m, dims))
    b = out / "bad"
    (b / "empty").mkdir(parents=True, exist_ok=True)
    nd = b / "not_dicom"
    nd.mkdir(parents=True, exist_ok=True)
    (nd / "notes.txt").write_text("not an image\n")
    (nd / "blob.bin").write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    write_series(b / "duplicate", "dup", vol, m, series_number=30, desc="DUP", duplicate=4)
    write_series(b / "gap", "gap", vol, m, series_number=31, desc="GAP", skip=(5,))
    # Gantry tilt: positions shear along +y by tan(12°) per slice, orientation unchanged.
    tilt = [m[:3, :3] @ [0, 0, k] + m[:3, 3] + [0, 2.0 * k * np.tan(np.deg2rad(12)), 0] for k in range(9)]
    write_series(b / "tilt", "tilt", vol, m, series_number=32, desc="TILT", positions=tilt)
    iop = np.array([1, 0, 0, 0, 1, 0], float)
    a = np.deg2rad(2.0)
    bent = np.array([1, 0, 0, 0, np.cos(a), np.sin(a)])
    write_series(
        b / "nonparallel", "nonpar", vol, m, series_number=33, desc="NONPAR", orientations=[bent if k == 6 else iop for k in range(9)]
    )
    p = write_series(b / "short_pixels", "short", vol[:3], m, series_number=34, desc="SHORT")
    ds = pydicom.dcmread(p[1])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(p[1])
    p = write_series(b / "truncated_file", "trunc", vol[:1], m, series_number=35, desc="TRUNC")
    raw = p[0].read_bytes()
    p[0].write_bytes(raw[: len(raw) * 6 // 10])
    # Enhanced MR without PlanePosition / PlaneOrientation functional groups.
    write_enhanced(b / "no_perframe" / "enhanced.dcm", vol, m, geometry=False)
    gd = b / "garbage_dicm"
    gd.mkdir(parents=True, exist_ok=True)
    (gd / "garbage.dcm").write_bytes(
        b"\0" * 128 + b"DICM" + np.random.default_rng(2).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    )
    # A header element whose 32-bit length claims ~2 GB (implicit VR: every length is 32-bit).
    p = write_series(b / "huge_length", "huge", vol[:1], m, series_number=36, desc="HUGEHUGE", ts=ImplicitVRLittleEndian)
    raw = bytearray(p[0].read_bytes())
    tag = bytes([0x08, 0x00, 0x3E, 0x10])  # (0008,103E) SeriesDescription, little endian
    at = raw.index(tag)
    raw[at + 4 : at + 8] = (0x7FFFFFF0).to_bytes(4, "little")
    p[0].write_bytes(bytes(raw))
    for name, folder in [
        ("test-SR.dcm", "sr_only"),
        ("MR_small_jpeg_ls_lossless.dcm", "jpeg_ls"),
        ("SC_rgb_small_odd.dcm", "colour"),
        ("MR_truncated.dcm", "mr_truncated"),
    ]:
        (b / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pydicom_data(name), b / folder / name)


def data(out: Path):
    root = Path(out) / AREA
    if root.exists():
        shutil.rmtree(root)
    derived(root)
    real(root)
    bad(root)


# --- references ----------------------------------------------------------------

DCM2NIIX_CASES = {
    "derived/axial": [],
    "derived/sagittal": [],
    "derived/coronal": [],
    "derived/oblique": [],
    "derived/shuffled": [],
    "derived/rle": [],
    "derived/implicit": [],
    "derived/two_series": [],
    "derived/two_echo": [],
    "derived/enhanced": [],
    "real/MR_small": [],
    "real/CT_small": [],
    "real/JPEG2000": [],
    # Philips "precise" private scaling off: the same RescaleSlope/Intercept we apply.
    "real/philips_mprage": ["-p", "n"],
}


def run_dcm2niix(src: Path, extra) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["dcm2niix", *extra, "-z", "n", "-b", "n", "-f", "%s_%e", "-o", tmp, str(src)]
        subprocess.run(cmd, check=True, capture_output=True)
        vols = []
        for nii in sorted(Path(tmp).glob("*.nii")):
            img = nib.load(nii)
            arr = np.asarray(img.dataobj, dtype=np.float64)  # applies scl_slope / scl_inter
            if arr.ndim > 3:
                arr = arr[..., 0]
            idx = sample_indices(arr.shape, n=512, seed=len(vols))
            ijk = np.array(np.unravel_index(idx, arr.shape, order="F")).T
            vols.append(
                {
                    "name": nii.stem,
                    "shape": list(arr.shape),
                    "affine": np.round(img.affine, 6).tolist(),
                    "sum": float(arr.sum()),
                    # [i, j, k, value]: world = affine @ [i, j, k, 1]
                    "samples": [[int(i), int(j), int(k), float(arr[i, j, k])] for i, j, k in ijk],
                }
            )
        return vols


def series_keys(folder: Path):
    """Series number → (SeriesInstanceUID, echo numbers) for matching dcm2niix outputs."""
    out = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            out[str(ds.SeriesNumber)] = str(ds.SeriesInstanceUID)
    return out


def pydicom_refs(root: Path):
    refs = {}
    for name in PYDICOM_FILES:
        stem = Path(name).stem
        src = PYDICOM_LOSSLESS_TWIN.get(name, name)
        ds = pydicom.dcmread(pydicom_data(src))
        try:
            arr = ds.pixel_array.astype(np.float64)
        except Exception:  # no JPEG handler in this venv: dcm2niix is the reference
            continue
        if arr.ndim == 3:
            arr = arr[0]
        slope = float(ds.get("RescaleSlope", 1.0))
        inter = float(ds.get("RescaleIntercept", 0.0))
        arr = arr * slope + inter
        idx = sample_indices(arr.shape[::-1], n=256, seed=3)
        rows, cols = arr.shape
        refs[stem] = {
            "folder": f"real/{stem}",
            "reference": f"pydicom {pydicom.__version__} pixel_array of {src} * RescaleSlope + RescaleIntercept",
            "rows": rows,
            "cols": cols,
            "sum": float(arr.sum()),
            # [column, row, value]
            "samples": [[int(i % cols), int(i // cols), float(arr[i // cols, i % cols])] for i in idx],
        }
    return refs


def header_ref(folder: Path):
    """The acquisition fields pydicom reads from the first derived axial file (SourceMeta's reference)."""
    ds = pydicom.dcmread(sorted(folder.iterdir())[0])
    keys = ["StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "Manufacturer"]
    keys += ["ManufacturerModelName", "StationName", "InstitutionName"]
    out = {k: str(ds.get(k)) for k in keys}
    for k in ["MagneticFieldStrength", "RepetitionTime", "EchoTime", "InversionTime", "FlipAngle", "SliceThickness"]:
        out[k] = float(ds.get(k))
    out["EchoNumbers"] = int(ds.EchoNumbers)
    out["dtype"] = str(ds.pixel_array.dtype) if "PixelData" in ds else None
    return out


def refs(out: Path):
    with tempfile.TemporaryDirectory() as tmp:
        data(Path(tmp))
        root = Path(tmp) / AREA
        d2n = {}
        for case, extra in DCM2NIIX_CASES.items():
            d2n[case] = {"series": series_keys(root / case), "volumes": run_dcm2niix(root / case, extra)}
        version = subprocess.run(["dcm2niix", "-v"], capture_output=True, text=True).stdout.strip().splitlines()
        fx = Path(out) / AREA
        write_compact(fx / "dcm2niix.json", {"tool": version[-1] if version else "dcm2niix", "cases": d2n})
        write_compact(fx / "pydicom.json", {"cases": pydicom_refs(root), "header": header_ref(root / "derived" / "axial")})


def write_compact(path: Path, obj):
    """Sample lists make indented JSON several times larger; one line keeps the fixtures small."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    cli(data, refs)
