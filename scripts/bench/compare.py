"""Side-by-side speed table: the imaging crate's criterion results against the
Python tools the field uses, doing the same work on the same files.

Run by scripts/bench.sh after `cargo bench`; reads criterion's
`<criterion>/<group>/<function>/new/estimates.json` (median, ns) and times the
Python equivalent of each case in this process:

  * statistic: the median of --repeats timed runs after --warmup untimed runs,
    matching criterion's `median` point estimate on the Rust side;
  * inputs: the files the criterion benches read from $NEUROBATCH_TESTDATA
    (the raw float32 volumes written by scripts/testdata/*.py, the .nii.gz
    files, the 160-slice DICOM series), loaded outside the timing exactly as
    the Rust benches load them outside theirs;
  * the reference code is imported from the generators (scripts/testdata/), so
    the timed calls are the ones the correctness references come from.

Writes a markdown table (--out) and prints it. `--alt-baseline NAME` adds a
column for a criterion baseline saved with `--save-baseline NAME` (used for
the system-allocator run, see docs/benchmarks.md).
"""

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import nibabel as nib
import numpy as np
from nibabel.orientations import io_orientation, ornt_transform

REPO = Path(__file__).resolve().parents[2]
TESTDATA_SCRIPTS = REPO / "scripts" / "testdata"
BENCH_SOURCES = REPO / "imaging" / "benches"


def generator(name: str):
    """A test-data generator imported under a private name (`dicom`, `nifti` are
    too generic to put on sys.path as top-level modules)."""
    sys.path.insert(0, str(TESTDATA_SCRIPTS))  # for their `import _common`
    spec = importlib.util.spec_from_file_location(f"_nb_testdata_{name}", TESTDATA_SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def testdata() -> Path:
    return Path(os.environ.get("NEUROBATCH_TESTDATA", REPO / ".testdata"))


def load_raw(area: str, name: str):
    """`<name>.f32` + `<name>.json` as `_common.write_raw_f32` writes them (Fortran order)."""
    stem = testdata() / area / name
    meta = json.loads(stem.with_suffix(".json").read_text())
    flat = np.fromfile(stem.with_suffix(".f32"), dtype="<f4")
    return flat.reshape(meta["shape"], order="F"), np.asarray(meta["affine"], dtype=np.float64)


@dataclass
class Case:
    label: str
    criterion_id: str  # "group/function", as criterion names its folder
    python: str  # what the Python side runs, for the table
    target: Optional[float]  # required Python/Rust ratio; None = informational row
    setup: Callable[[], Callable[[], object]]  # returns the timed operation


# --- cases ------------------------------------------------------------------------------------


def nifti_load(rel: str):
    def setup():
        path = testdata() / rel
        return lambda: nib.load(path).get_fdata(dtype=np.float32)

    return setup


def reorient(name: str, back: bool, u8: bool = False):
    """nibabel's as_closest_canonical (and as_reoriented back), materialized: nibabel returns a
    flipped/transposed *view*; np.asfortranarray makes the Fortran-ordered copy our volume is."""

    def setup():
        data, aff = load_raw("geometry", name)
        img = nib.Nifti1Image(data, aff)
        if not back:
            return lambda: np.asfortranarray(np.asanyarray(nib.as_closest_canonical(img).dataobj))
        can = nib.as_closest_canonical(img)
        can_data = np.asfortranarray(np.asanyarray(can.dataobj))
        if u8:
            can_data = np.asfortranarray((can_data > 100.0).astype(np.uint8))
        can = nib.Nifti1Image(can_data, can.affine)
        ornt = ornt_transform(io_orientation(can.affine), io_orientation(aff))
        return lambda: np.asfortranarray(np.asanyarray(can.as_reoriented(ornt).dataobj))

    return setup


def resample(src: str, dst: str, order: int = 1, u8: bool = False):
    """scipy.ndimage.affine_transform with the full 3x3 matrix on the grid the Rust bench builds
    (`geometry.affine_transform`, the function the resample references come from)."""

    def setup():
        geometry = generator("geometry")
        data, aff = load_raw("geometry", src)
        if u8:
            data = np.asfortranarray(data.astype(np.uint8))
        if dst == "oblique":
            # imaging/benches/geometry.rs: 120x140x110 at 1.5 mm, rotated 0.3 rad about z.
            cz, sz = math.cos(0.3), math.sin(0.3)
            shape = [120, 140, 110]
            out_aff = np.array(
                [[1.5 * cz, -1.5 * sz, 0, -60.0], [1.5 * sz, 1.5 * cz, 0, -120.0], [0, 0, 1.5, -70.0], [0, 0, 0, 1]]
            )
        else:
            shape, out_aff = geometry.grid_for_spacing(data.shape, aff, [float(dst)] * 3)
        return lambda: geometry.affine_transform(data, aff, shape, out_aff, order)

    return setup


def _intensity_inputs():
    intensity = generator("intensity")
    t1, aff = load_raw("intensity", "mni_t1")
    brain, _ = load_raw("intensity", "brain_mask")
    return intensity, t1, aff, brain


def zscore():
    from intensity_normalization.normalizers.individual.zscore import ZScoreNormalizer

    intensity, t1, aff, brain = _intensity_inputs()
    img, mimg = intensity.in_img(t1, aff), intensity.in_img(brain, aff)
    # The Rust side fits (masked mean, σ) and applies in one call, so both are timed here.
    return lambda: ZScoreNormalizer().fit(img, mimg).transform(img, mimg)


def nyul():
    from intensity_normalization.normalizers.population.nyul import NyulNormalizer

    intensity, t1, aff, brain = _intensity_inputs()
    img, mimg = intensity.in_img(t1, aff), intensity.in_img(brain, aff)
    train = [(load_raw("intensity", f"nyul_{i}"), load_raw("intensity", f"nyul_{i}_mask")) for i in range(4)]
    n = NyulNormalizer()
    n.fit_population([intensity.in_img(v, a) for (v, a), _ in train], [intensity.in_img(m, a) for _, (m, a) in train])
    return lambda: n.transform(img, mimg)


def whitestripe():
    from intensity_normalization.domain.models import Modality
    from intensity_normalization.normalizers.individual.whitestripe import WhiteStripeNormalizer

    intensity, t1, aff, brain = _intensity_inputs()
    img, mimg = intensity.in_img(t1, aff), intensity.in_img(brain, aff)
    return lambda: WhiteStripeNormalizer(width=0.05, modality=Modality.T1).fit(img, mimg).transform(img, mimg)


def foreground():
    intensity, t1, _, _ = _intensity_inputs()
    return lambda: intensity.scipy_foreground(t1)


def dicom_series_dir() -> Path:
    return testdata() / "dicom" / "derived" / "bench_axial160"


def dicom_scan():
    import pydicom

    folder = dicom_series_dir()

    def run():
        series = {}
        for p in sorted(folder.iterdir()):
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            series.setdefault(ds.SeriesInstanceUID, []).append(ds)
        for dss in series.values():
            iop = np.asarray(dss[0].ImageOrientationPatient, dtype=np.float64)
            normal = np.cross(iop[:3], iop[3:])
            dss.sort(key=lambda d: float(normal @ np.asarray(d.ImagePositionPatient, dtype=np.float64)))
        return series

    return run


def dicom_read():
    """pydicom + numpy: read every file, sort by the ImagePositionPatient projection on the slice
    normal, stack, rescale per slice to float32. np.stack of (rows, cols) planes is the memory
    layout of our Fortran-ordered (cols, rows, slices) volume."""
    import pydicom

    folder = dicom_series_dir()

    def run():
        dss = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
        iop = np.asarray(dss[0].ImageOrientationPatient, dtype=np.float64)
        normal = np.cross(iop[:3], iop[3:])
        dss.sort(key=lambda d: float(normal @ np.asarray(d.ImagePositionPatient, dtype=np.float64)))
        planes = [
            (d.pixel_array.astype(np.float64) * float(d.RescaleSlope) + float(d.RescaleIntercept)).astype(np.float32)
            for d in dss
        ]
        vol = np.stack(planes)
        assert vol.shape == (160, 256, 256), vol.shape
        return vol

    return run


CASES = [
    Case("load .nii.gz, MNI T1 uint8 197×233×189", "nifti_read/mni_t1_uint8_nii_gz",
         "nibabel load + get_fdata(float32)", 2.0, nifti_load("nifti/mni_t1.nii.gz")),
    Case("load .nii.gz, int16 256×256×176", "nifti_read/int16_256x256x176_nii_gz",
         "nibabel load + get_fdata(float32)", 2.0, nifti_load("nifti/bench_int16_256x256x176.nii.gz")),
    Case("load .nii (uncompressed), MNI T1 uint8", "nifti_read/mni_t1_uint8_nii",
         "nibabel load + get_fdata(float32)", None, nifti_load("nifti/mni_t1.nii")),
    Case("reorient LPS → RAS", "reorient/t1_lps_to_canonical",
         "as_closest_canonical + asfortranarray", 2.0, reorient("t1_lps", back=False)),
    Case("reorient RAS → LPS (back)", "reorient/t1_lps_from_canonical",
         "as_reoriented + asfortranarray", 2.0, reorient("t1_lps", back=True)),
    Case("reorient PIR → RAS", "reorient/t1_pir_to_canonical",
         "as_closest_canonical + asfortranarray", 2.0, reorient("t1_pir", back=False)),
    Case("reorient RAS → PIR (back)", "reorient/t1_pir_from_canonical",
         "as_reoriented + asfortranarray", 2.0, reorient("t1_pir", back=True)),
    Case("reorient PIR → RAS, owned input", "reorient/t1_pir_into_canonical",
         "as_closest_canonical + asfortranarray", None, reorient("t1_pir", back=False)),
    Case("reorient RAS → PIR (back), uint8 labels", "reorient/t1_pir_from_canonical_u8",
         "as_reoriented + asfortranarray", None, reorient("t1_pir", back=True, u8=True)),
    Case("resample linear 1 mm → 2 mm", "resample/linear_1mm_to_2mm",
         "ndimage.affine_transform(order=1)", 3.0, resample("mni_t1", "2")),
    Case("resample linear 2 mm → 1 mm", "resample/linear_2mm_to_1mm",
         "ndimage.affine_transform(order=1)", 3.0, resample("mni_t1_2mm", "1")),
    Case("resample nearest uint8 2 mm → 1 mm", "resample/nearest_u8_2mm_to_1mm",
         "ndimage.affine_transform(order=0)", 3.0, resample("mni_labels_2mm", "1", order=0, u8=True)),
    Case("resample linear, oblique 1.5 mm grid", "resample/linear_oblique_1p5mm",
         "ndimage.affine_transform(order=1)", 3.0, resample("mni_t1", "oblique")),
    Case("z-score (fit + apply, brain mask)", "intensity_mni_t1/zscore_apply_brain_mask",
         "intensity-normalization ZScoreNormalizer", 2.0, zscore),
    Case("Nyúl (apply, brain mask)", "intensity_mni_t1/nyul_apply_brain_mask",
         "intensity-normalization NyulNormalizer.transform", 2.0, nyul),
    Case("WhiteStripe T1 (fit + apply, brain mask)", "intensity_mni_t1/whitestripe_t1_apply_brain_mask",
         "intensity-normalization WhiteStripeNormalizer", None, whitestripe),
    Case("foreground mask (Otsu, largest component, fill)", "intensity_mni_t1/foreground_mask",
         "numpy Otsu + ndimage.label + binary_fill_holes", 2.0, foreground),
    Case("DICOM 160 × 256×256 series → volume", "dicom/read_160_slices_256x256",
         "pydicom dcmread + sort + stack + rescale", 2.0, dicom_read),
    Case("DICOM scan 160 files (headers, grouping)", "dicom/scan_160_slices",
         "pydicom dcmread(stop_before_pixels) + sort", None, dicom_scan),
]  # fmt: skip


# --- measurement ------------------------------------------------------------------------------


def time_python(op, warmup: int, repeats: int) -> float:
    """Median seconds of `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        op()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        op()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def criterion_median(root: Path, cid: str, baseline: str = "new") -> Optional[float]:
    """criterion's median point estimate in seconds, or None when that bench did not run."""
    p = root / cid / baseline / "estimates.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())["median"]["point_estimate"] * 1e-9


# --- machine ----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def rustc_version() -> str:
    try:
        return subprocess.run(["rustc", "-V"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict:
    out = {"rustc": rustc_version(), "python": platform.python_version()}
    for pkg in ["numpy", "scipy", "nibabel", "intensity-normalization", "pydicom"]:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def bench_allocators() -> dict:
    """Which global allocator each criterion bench binary declares (system when none)."""
    out = {}
    for src in sorted(BENCH_SOURCES.glob("*.rs")):
        text = src.read_text()
        m = re.search(r"#\[global_allocator\]\s*static\s+\w+\s*:\s*([\w:]+)", text)
        out[src.stem] = m.group(1) if m else "system (no #[global_allocator])"
    return out


# --- report -----------------------------------------------------------------------------------


def fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "—"
    return f"{s * 1e3:.1f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} µs"


def fmt_ratio(r: Optional[float]) -> str:
    return "—" if r is None else f"{r:.1f}×"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--criterion", type=Path, default=REPO / "target" / "criterion")
    ap.add_argument("--out", type=Path, required=True, help="markdown table to write")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--alt-baseline", help="also show this saved criterion baseline (e.g. system)")
    ap.add_argument("--alt-label", default="system allocator", help="what the alternative baseline is")
    ap.add_argument("--load-before", help="load average before the Rust benches (bench.sh passes it)")
    ap.add_argument("--only", help="regex on criterion ids: time only these cases")
    a = ap.parse_args()

    load_py_before = loadavg()
    rows = []
    for case in CASES:
        if a.only and not re.search(a.only, case.criterion_id):
            continue
        rust = criterion_median(a.criterion, case.criterion_id)
        alt = criterion_median(a.criterion, case.criterion_id, a.alt_baseline) if a.alt_baseline else None
        op = case.setup()
        py = time_python(op, a.warmup, a.repeats)
        del op
        ratio = py / rust if rust else None
        alt_ratio = py / alt if alt else None
        met = "—" if case.target is None or ratio is None else ("yes" if ratio >= case.target else "**no**")
        rows.append((case, rust, alt, py, ratio, alt_ratio, met))
        print(f"{case.criterion_id}: rust {fmt_time(rust)}, python {fmt_time(py)}, ratio {fmt_ratio(ratio)}",
              file=sys.stderr, flush=True)  # fmt: skip
    load_after = loadavg()

    alt_cols = a.alt_baseline is not None
    head = ["operation", "Rust median"]
    if alt_cols:
        head += [f"Rust median, {a.alt_label}"]
    head += ["Python median", "Python", "ratio (Python/Rust)"]
    if alt_cols:
        head += [f"ratio, {a.alt_label}"]
    head += ["target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for case, rust, alt, py, ratio, alt_ratio, met in rows:
        cells = [case.label, fmt_time(rust)]
        if alt_cols:
            cells.append(fmt_time(alt))
        cells += [fmt_time(py), case.python, fmt_ratio(ratio)]
        if alt_cols:
            cells.append(fmt_ratio(alt_ratio))
        cells += ["—" if case.target is None else f"≥ {case.target:g}×", met]
        lines.append("| " + " | ".join(cells) + " |")

    v = versions()
    allocs = bench_allocators()
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count()
    env = [
        f"- machine: {ncpu} CPUs ({cpu_model()}), {platform.system()} {platform.release()}",
        f"- load average (1/5/15 min): before the Rust benches {a.load_before or 'not recorded'}; "
        f"before the Python timings {load_py_before}; after {load_after}",
        "- statistic: median on both sides (criterion's `median` point estimate; Python: median of "
        f"{a.repeats} runs after {a.warmup} warm-up runs, in one process)",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "- allocator of the bench binaries: " + ", ".join(f"{k}: {val}" for k, val in allocs.items()),
    ]
    if alt_cols:
        env.append(f"- `{a.alt_label}` column: criterion baseline `{a.alt_baseline}` from {a.criterion}")
    text = "\n".join(lines) + "\n\n" + "\n".join(env) + "\n"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    raw = {
        "cases": [
            {"criterion_id": c.criterion_id, "rust_median_s": r, "alt_median_s": al, "python_median_s": p,
             "ratio": ra, "target": c.target}
            for c, r, al, p, ra, _, _ in rows
        ],
        "versions": v,
        "allocators": allocs,
        "load": {"before_rust": a.load_before, "before_python": load_py_before, "after": load_after},
    }  # fmt: skip
    a.out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
