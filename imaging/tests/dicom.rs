//! `imaging::dicom` against dcm2niix (geometry and values of derived and real
//! series), pydicom (decoded pixels of its shipped test files, header fields),
//! the bad inputs of `scripts/testdata/dicom.py`, and a leak check for the
//! patient attributes planted in every generated file.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use imaging::Volume;
use imaging::dicom::{
    DicomError, GeometryError, ScanOptions, SkipReason, read_folder, read_series_by_uid, scan_folder,
};
use serde_json::Value;

const PLANTED: [&str; 5] = ["ZZLEAKNAME", "SECRETGIVEN", "PIDLEAK314159", "19010203", "ACCLEAK271828"];

fn dir(rel: &str) -> PathBuf {
    common::testdata(&format!("dicom/{rel}"))
}

fn lenient() -> ScanOptions {
    ScanOptions { allow_missing_geometry: true, ..ScanOptions::default() }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn affine_of(v: &Value) -> imaging::Affine {
    let rows: [[f64; 4]; 4] = serde_json::from_value(v.clone()).expect("affine");
    imaging::Affine::from_rows(rows)
}

/// Finds our volume for a dcm2niix output named `<series number>_<echo>`.
fn matching<'a>(ours: &'a [Volume<f32>], series: &Value, name: &str) -> &'a Volume<f32> {
    let (number, echo) = name.split_once('_').expect("dcm2niix name %s_%e");
    let uid = series[number].as_str().expect("series uid");
    let echo: i32 = echo.parse().expect("echo");
    let same_uid: Vec<&Volume<f32>> = ours.iter().filter(|v| v.meta.series_uid.as_deref() == Some(uid)).collect();
    match same_uid.as_slice() {
        [only] => only,
        many => many.iter().find(|v| v.meta.echo_number == Some(echo)).copied().expect("volume for echo"),
    }
}

/// Every dcm2niix sample voxel, mapped through dcm2niix's affine to world and
/// through the inverse of ours back to a voxel, lands on a voxel centre and
/// holds the same value.
#[test]
fn geometry_and_values_match_dcm2niix() {
    let fx = common::load_json("dicom/dcm2niix.json");
    let cases = fx["cases"].as_object().expect("cases");
    assert!(cases.len() >= 14, "fixture lists {} cases", cases.len());
    let mut worst_mm = 0f64;
    let mut worst_value = 0f64;
    let mut checked = 0usize;
    for (case, c) in cases {
        if case == "real/JPEG2000" {
            continue; // no geometry in the file: compared by index below
        }
        let ours = read_folder(&dir(case), &ScanOptions::default()).unwrap_or_else(|e| panic!("{case}: {e}"));
        let refs = c["volumes"].as_array().expect("volumes");
        assert_eq!(ours.len(), refs.len(), "{case}: number of volumes");
        for r in refs {
            let name = r["name"].as_str().expect("name");
            let v = matching(&ours, &c["series"], name);
            let theirs = affine_of(&r["affine"]);
            let shape = f64s(&r["shape"]);
            assert_eq!(v.len() as f64, shape.iter().product::<f64>(), "{case} {name}: voxel count");
            let (mut a, mut b) = (v.spacing(), theirs.spacing());
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-4, "{case} {name}: spacing {a:?} vs dcm2niix {b:?}");
            }
            let inv = v.affine().inverse().expect("invertible affine");
            for s in r["samples"].as_array().expect("samples") {
                let s = f64s(s);
                let world = theirs.apply([s[0], s[1], s[2]]);
                let ijk = inv.apply(world).map(f64::round);
                let back = v.affine().apply(ijk);
                let mm = (0..3).map(|d| (back[d] - world[d]).powi(2)).sum::<f64>().sqrt();
                worst_mm = worst_mm.max(mm);
                assert!(mm < 1e-3, "{case} {name}: world {world:?} is {mm} mm from our voxel {ijk:?}");
                let got = *v.get(ijk[0] as usize, ijk[1] as usize, ijk[2] as usize).expect("inside our grid");
                let diff = (f64::from(got) - s[3]).abs();
                worst_value = worst_value.max(diff / s[3].abs().max(1.0));
                assert!(diff <= 1e-5 * s[3].abs().max(1.0), "{case} {name} at {ijk:?}: {got} vs dcm2niix {}", s[3]);
                checked += 1;
            }
        }
    }
    eprintln!(
        "dcm2niix: {checked} samples, worst position error {worst_mm:.2e} mm, worst relative value error {worst_value:.2e}"
    );
}

/// JPEG2000.dcm has no ImagePosition/Orientation: dcm2niix assumes an axial
/// slice and flips rows (positive j column), so its (i, j) is our (i, ny-1-j).
#[test]
fn jpeg2000_without_geometry_matches_dcm2niix_by_index() {
    let fx = common::load_json("dicom/dcm2niix.json");
    let r = &fx["cases"]["real/JPEG2000"]["volumes"][0];
    assert!(affine_of(&r["affine"]).matrix()[(1, 1)] > 0.0, "dcm2niix row flip assumed");
    assert!(matches!(
        read_folder(&dir("real/JPEG2000"), &ScanOptions::default()),
        Err(DicomError::MissingGeometry { missing: "ImagePositionPatient", .. })
    ));
    let v = read_folder(&dir("real/JPEG2000"), &lenient()).expect("lenient read").remove(0);
    assert_eq!(v.meta.warnings.len(), 1);
    let ny = v.dims()[1];
    for s in r["samples"].as_array().expect("samples") {
        let s = f64s(s);
        let got = v.get(s[0] as usize, ny - 1 - s[1] as usize, 0).expect("inside");
        assert_eq!(f64::from(*got), s[3], "at {s:?}");
    }
}

/// Decoded pixels of pydicom's test files (every transfer syntax they cover)
/// against `pydicom.dcmread(f).pixel_array * slope + intercept`, exactly.
#[test]
fn pixels_match_pydicom() {
    let fx = common::load_json("dicom/pydicom.json");
    let cases = fx["cases"].as_object().expect("cases");
    assert!(cases.len() >= 9);
    for (name, c) in cases {
        let folder = dir(c["folder"].as_str().expect("folder"));
        let vols = read_folder(&folder, &lenient()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(vols.len(), 1, "{name}");
        let v = &vols[0];
        assert_eq!(v.dims(), [c["cols"].as_u64().unwrap() as usize, c["rows"].as_u64().unwrap() as usize, 1], "{name}");
        let sum: f64 = v.data().iter().map(|&x| f64::from(x)).sum();
        assert!((sum - c["sum"].as_f64().unwrap()).abs() <= 1e-9 * sum.abs().max(1.0), "{name}: sum {sum}");
        for s in c["samples"].as_array().expect("samples") {
            let s = f64s(s);
            assert_eq!(f64::from(*v.get(s[0] as usize, s[1] as usize, 0).unwrap()), s[2], "{name} at {s:?}");
        }
    }
}

/// JPEG-lossy.dcm is 12-bit JPEG Extended, which the pure-Rust JPEG decoder
/// behind dicom-pixeldata does not read (nor does pydicom here, having no JPEG
/// handler, nor dcm2niix): it must fail as a typed decode error naming the file.
#[test]
fn twelve_bit_lossy_jpeg_is_a_typed_decode_error() {
    let folder = dir("real/JPEG-lossy");
    match read_folder(&folder, &lenient()) {
        Err(e @ DicomError::Decode { .. }) => {
            assert!(e.to_string().starts_with(&folder.join("JPEG-lossy.dcm").display().to_string()), "{e}")
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn header_fields_match_pydicom_and_nothing_else_is_read() {
    let h = &common::load_json("dicom/pydicom.json")["header"];
    let folder = dir("derived/axial");
    let v = read_folder(&folder, &ScanOptions::default()).expect("axial").remove(0);
    let m = &v.meta;
    assert_eq!(m.format, "dicom");
    assert_eq!(m.source, folder.display().to_string());
    assert_eq!(m.datatype, h["dtype"].as_str().unwrap());
    assert_eq!(m.study_uid.as_deref(), h["StudyInstanceUID"].as_str());
    assert_eq!(m.series_uid.as_deref(), h["SeriesInstanceUID"].as_str());
    assert_eq!(m.modality.as_deref(), h["Modality"].as_str());
    assert_eq!(m.series_description.as_deref(), h["SeriesDescription"].as_str());
    assert_eq!(m.manufacturer.as_deref(), h["Manufacturer"].as_str());
    assert_eq!(m.manufacturer_model.as_deref(), h["ManufacturerModelName"].as_str());
    assert_eq!(m.station_name.as_deref(), h["StationName"].as_str());
    assert_eq!(m.institution_name.as_deref(), h["InstitutionName"].as_str());
    assert_eq!(m.field_strength_t, h["MagneticFieldStrength"].as_f64());
    assert_eq!(m.repetition_time_ms, h["RepetitionTime"].as_f64());
    assert_eq!(m.echo_time_ms, h["EchoTime"].as_f64());
    assert_eq!(m.inversion_time_ms, h["InversionTime"].as_f64());
    assert_eq!(m.flip_angle_deg, h["FlipAngle"].as_f64());
    assert_eq!(m.slice_thickness_mm, h["SliceThickness"].as_f64());
    assert_eq!(m.echo_number.map(i64::from), h["EchoNumbers"].as_i64());
}

#[test]
fn interleaved_series_and_echoes_are_separated() {
    let fx = common::load_json("dicom/dcm2niix.json");
    let report = scan_folder(&dir("derived/two_series"), &ScanOptions::default()).expect("scan");
    assert_eq!(report.series.len(), 2);
    assert!(report.series.iter().all(|s| s.slices == 41 && s.files.len() == 41));
    assert!(report.skipped.is_empty());
    let uid = fx["cases"]["derived/two_series"]["series"]["11"].as_str().unwrap();
    let v = read_series_by_uid(&dir("derived/two_series"), uid, &ScanOptions::default()).expect("by uid");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].meta.series_uid.as_deref(), Some(uid));
    assert!(matches!(
        read_series_by_uid(&dir("derived/two_series"), "1.2.3.4", &ScanOptions::default()),
        Err(DicomError::SeriesNotFound { .. })
    ));
    let echoes = scan_folder(&dir("derived/two_echo"), &ScanOptions::default()).expect("scan");
    let numbers: Vec<Option<i32>> = echoes.series.iter().map(|s| s.echo_number).collect();
    assert_eq!(numbers, vec![Some(1), Some(2)]);
}

#[test]
fn non_image_and_non_dicom_files_beside_a_series_are_skipped_with_a_note() {
    let tmp = std::env::temp_dir().join(format!("neurobatch-dicom-mixed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("series")).unwrap();
    for f in std::fs::read_dir(dir("derived/axial")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.join("series").join(f.file_name().unwrap())).unwrap();
    }
    std::fs::copy(dir("bad/sr_only/test-SR.dcm"), tmp.join("report.dcm")).unwrap();
    std::fs::copy(dir("bad/not_dicom/notes.txt"), tmp.join("notes.txt")).unwrap();
    std::fs::copy(dir("bad/colour/SC_rgb_small_odd.dcm"), tmp.join("colour.dcm")).unwrap();
    let report = scan_folder(&tmp, &ScanOptions::default()).expect("scan");
    let mut reasons: Vec<SkipReason> = report.skipped.iter().map(|s| s.reason.clone()).collect();
    reasons.sort_by_key(|r| r.to_string());
    assert_eq!(reasons, vec![SkipReason::NoPixelData, SkipReason::Colour(3), SkipReason::NotDicom]);
    let vols = read_folder(&tmp, &ScanOptions::default()).expect("the series still reads");
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].dims(), [99, 117, 41]);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn voxel_cap_is_enforced_before_decoding() {
    let opts = ScanOptions { max_voxels: 99 * 117 * 40, ..ScanOptions::default() };
    match read_folder(&dir("derived/axial"), &opts) {
        Err(e @ DicomError::TooManyVoxels { .. }) => assert!(e.to_string().contains("474903 voxels"), "{e}"),
        other => panic!("expected TooManyVoxels, got {other:?}"),
    }
}

/// Bytes this process has read through `read(2)` and friends so far.
fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|v| v.trim().parse().ok()).expect("rchar")
}

/// A scan reads headers, not images: pydicom's MR_small with its PixelData
/// declared (and the file extended, sparsely) to 800 MiB is listed after
/// reading about a megabyte of it; decoding it is where the length is refused.
#[test]
fn a_scan_reads_headers_not_pixel_data() {
    use std::io::{Seek, Write};
    let tmp = std::env::temp_dir().join(format!("neurobatch-dicom-header-only-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("tmp");
    let mut bytes = std::fs::read(dir("real/MR_small/MR_small.dcm")).expect("MR_small");
    let tag = [0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
    let at = bytes.windows(8).rposition(|w| w == tag).expect("explicit VR PixelData") + 8;
    let huge: u32 = 800 << 20;
    bytes[at..at + 4].copy_from_slice(&huge.to_le_bytes());
    bytes.truncate(at + 4);
    let path = tmp.join("MR_small.dcm");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(&bytes).expect("write");
    f.set_len((at + 4) as u64 + u64::from(huge)).expect("sparse extension");
    f.seek(std::io::SeekFrom::Start(0)).expect("seek");
    drop(f);

    let before = bytes_read();
    let report = scan_folder(&tmp, &ScanOptions::default()).expect("scan");
    let read = bytes_read() - before;
    assert_eq!((report.series.len(), report.skipped.len()), (1, 0), "{report:?}");
    // Other tests of this binary read files meanwhile, hence the margin; the file is 800 MiB.
    assert!(read < 400 << 20, "the scan read {read} bytes of an 800 MiB file");
    // A declared length beyond the file is refused from the header.
    std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len((at + 4) as u64 + 1000).expect("cut");
    let report = scan_folder(&tmp, &ScanOptions::default()).expect("scan");
    assert!(
        matches!(report.skipped.as_slice(), [s] if matches!(&s.reason, SkipReason::Corrupt(r) if r.contains("(7FE0,0010) declares 838860800"))),
        "{:?}",
        report.skipped
    );
    // A private element of 900 MiB before the pixel data: the scan stops reading at 64 MiB
    // and skips the file (a large non-image object must not fail the study's other series).
    let mut bytes = std::fs::read(dir("real/MR_small/MR_small.dcm")).expect("MR_small");
    let pixel = bytes.windows(8).rposition(|w| w == tag).expect("PixelData");
    let mut private = vec![0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0];
    private.extend_from_slice(&(900u32 << 20).to_le_bytes());
    bytes.splice(pixel..pixel, private);
    std::fs::write(&path, &bytes[..pixel + 12]).expect("write");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len((pixel + 12) as u64 + (900 << 20))
        .expect("extend");
    let before = bytes_read();
    let report = scan_folder(&tmp, &ScanOptions::default()).expect("scan");
    let read = bytes_read() - before;
    // Other tests of this binary read files meanwhile; the file itself is 900 MiB.
    assert!(read < 400 << 20, "read {read} bytes: at most the header limit");
    assert!(matches!(report.skipped.as_slice(), [s] if s.reason == SkipReason::HeaderTooLarge), "{:?}", report.skipped);
    let _ = std::fs::remove_dir_all(&tmp);
}

fn expect_err(rel: &str, opts: &ScanOptions) -> DicomError {
    match read_folder(&dir(rel), opts) {
        Ok(v) => panic!("{rel}: expected an error, read {} volumes", v.len()),
        Err(e) => e,
    }
}

#[test]
fn bad_inputs_give_typed_errors_naming_the_input_and_the_reason() {
    let o = ScanOptions::default();
    let e = expect_err("bad/empty", &o);
    assert!(matches!(e, DicomError::EmptyFolder(_)), "{e}");
    let e = expect_err("bad/not_dicom", &o);
    assert!(matches!(e, DicomError::NoDicom { files: 2, .. }), "{e}");
    let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-folder");
    assert!(matches!(read_folder(&missing, &o), Err(DicomError::NotAFolder(_))));

    let geometry = |rel: &str| match expect_err(rel, &o) {
        DicomError::Geometry { ref dir, ref source, .. } => {
            assert!(dir.ends_with(rel));
            source.clone()
        }
        e => panic!("{rel}: expected a geometry error, got {e}"),
    };
    assert!(matches!(geometry("bad/duplicate"), GeometryError::DuplicatePosition { count: 2, .. }));
    match geometry("bad/gap") {
        GeometryError::Gap { spacing, median, ref from, .. } => {
            assert!((spacing - 4.0).abs() < 1e-6 && (median - 2.0).abs() < 1e-6, "{spacing} {median}");
            assert!(from.ends_with("mm"));
        }
        e => panic!("expected a gap, got {e}"),
    }
    match geometry("bad/tilt") {
        GeometryError::GantryTilt { degrees } => assert!((degrees - 12.0).abs() < 0.01, "{degrees}"),
        e => panic!("expected tilt, got {e}"),
    }
    match geometry("bad/nonparallel") {
        GeometryError::NonParallel { degrees, .. } => assert!((degrees - 2.0).abs() < 0.01, "{degrees}"),
        e => panic!("expected non-parallel, got {e}"),
    }
    let e = expect_err("bad/short_pixels", &o);
    assert!(matches!(e, DicomError::PixelDataTooShort { actual, expected: 23166, .. } if actual < 23166), "{e}");
    for rel in ["bad/truncated_file", "bad/mr_truncated", "bad/garbage_dicm", "bad/huge_length"] {
        let e = expect_err(rel, &o);
        assert!(matches!(e, DicomError::Corrupt { .. }), "{rel}: {e}");
        assert!(e.to_string().contains(&dir(rel).display().to_string()), "{e}");
    }
    assert!(expect_err("bad/huge_length", &o).to_string().contains("declares 2147483632 bytes"));
    match expect_err("bad/sr_only", &o) {
        DicomError::NoImageSeries { notes, .. } => assert_eq!(notes, "1 x DICOM object without pixel data"),
        e => panic!("{e}"),
    }
    match expect_err("bad/colour", &o) {
        DicomError::NoImageSeries { notes, .. } => assert!(notes.contains("colour image (3 samples"), "{notes}"),
        e => panic!("{e}"),
    }
    match expect_err("bad/jpeg_ls", &o) {
        DicomError::UnsupportedTransferSyntax { uid, name, .. } => {
            assert_eq!((uid.as_str(), name), ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"))
        }
        e => panic!("{e}"),
    }
    assert!(matches!(
        expect_err("bad/no_perframe", &o),
        DicomError::NoPerFrameGeometry { missing: "PlanePositionSequence", .. }
    ));
    assert!(matches!(expect_err("real/siemens_2slice", &o), DicomError::Mosaic { .. }));
}

/// A tracing subscriber that keeps every event's fields as text.
struct Capture(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut s = self.0.lock().unwrap();
        span.record(&mut Fields(&mut s));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        event.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The process-wide capture: a global subscriber, not a thread's default, because a thread-scoped
/// dispatcher races the other test threads' callsite registration (a callsite first hit on another
/// thread can cache "never" after this thread's dispatcher asked for it; seen under load in CI on
/// 2026-12-07 even with `rebuild_interest_cache`). Setting the global default rebuilds every
/// callsite's interest under the registry's lock. Other tests' events land here too, which only
/// widens what the leak check reads.
fn global_capture() -> Arc<Mutex<String>> {
    static LOG: OnceLock<Arc<Mutex<String>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(String::new()));
        tracing::subscriber::set_global_default(Capture(Arc::clone(&log)))
            .expect("no other global subscriber in this test binary");
        log
    })
    .clone()
}

/// Every generated file carries a planted patient name, ID, birth date and
/// accession number. None may appear in any error, warning, skip note,
/// serialized SourceMeta or tracing event, for good and broken inputs alike.
#[test]
fn planted_patient_attributes_never_leak() {
    let log = global_capture();
    let mut seen = String::new();
    let events_before = log.lock().unwrap().len();
    let mut folders: Vec<PathBuf> = Vec::new();
    for group in ["derived", "bad", "real"] {
        for f in std::fs::read_dir(dir(group)).unwrap() {
            folders.push(f.unwrap().path());
        }
    }
    folders.sort();
    folders.retain(|f| !f.ends_with("bench_axial160"));
    for f in &folders {
        for opts in [ScanOptions::default(), lenient()] {
            match scan_folder(f, &opts) {
                Ok(r) => {
                    for s in &r.skipped {
                        seen.push_str(&format!("{} {:?}\n", s.reason, s));
                    }
                    for s in &r.series {
                        seen.push_str(&format!("{s:?}\n"));
                    }
                }
                Err(e) => seen.push_str(&format!("{e} {e:?}\n")),
            }
            match read_folder(f, &opts) {
                Ok(vols) => {
                    for v in vols {
                        seen.push_str(&serde_json::to_string(&v.meta).unwrap());
                        seen.push_str(&v.meta.warnings.join("\n"));
                    }
                }
                Err(e) => seen.push_str(&format!("{e} {e:?}\n")),
            }
        }
    }
    let log = log.lock().unwrap();
    assert!(seen.contains("T1 AXIAL") && seen.contains("gantry tilt"), "the check looks at real output");
    assert!(log.len() > events_before && log.contains("dicom folder scanned"), "tracing output was captured");
    for secret in PLANTED {
        assert!(!seen.contains(secret), "{secret} leaked into errors or metadata");
        assert!(!log.contains(secret), "{secret} leaked into tracing output");
    }
}
