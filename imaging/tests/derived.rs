//! `imaging::dicom::derived` (the SEG and SR neurobatch sends to a PACS)
//! checked by the field's tools: highdicom reads each SEG back and its
//! segments equal the label volume voxel for voxel in world coordinates,
//! highdicom parses the SR as a TID 1500 measurement report, and dicom3tools'
//! dciodvfy finds no error in either (`scripts/dicom/check_results.py`). Also,
//! in Rust: frames lie on their source slices, UIDs are deterministic, the
//! patient module is copied exactly and never shows in an error or a Debug.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_dictionary_std::tags;
use imaging::Volume;
use imaging::dicom::derived::{
    AlgorithmType, Code, CopiedHeader, DerivedError, Identification, Measurement, MeasurementGroup,
    MeasurementReportSpec, Producer, ReferencedSegmentation, Segment, SegmentationRecipe, SegmentationSpec,
    build_measurement_report, build_segmentation, derived_uid, result_instance_uid, write_part10,
};
use imaging::dicom::{ScanOptions, SourceStack, read_stack, scan_folder};
use serde_json::Value;

const PLANTED_NAME: &str = "ZZLEAKNAME^SECRETGIVEN";
const PLANTED_ID: &str = "PIDLEAK314159";

fn python() -> PathBuf {
    std::env::var_os("NEUROBATCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

/// The stack of the folder's (first) series, read with its source slices.
fn stack(rel: &str) -> (Volume<f32>, SourceStack) {
    let dir = common::testdata(&format!("dicom/{rel}"));
    let report = scan_folder(&dir, &ScanOptions::default()).expect("scan");
    let uid = report.series.first().expect("a series").series_uid.clone();
    let (volume, source) = read_stack(&dir, &uid, &ScanOptions::default()).expect("read");
    (volume, source.expect("every slice has geometry"))
}

/// Two "structures" from the intensities: 1 above the 60th percentile of the
/// non-zero voxels, 2 between the 30th and the 60th.
fn labels_of(volume: &Volume<f32>) -> Volume<u8> {
    let mut nz: Vec<f32> = volume.data().iter().copied().filter(|v| *v > 0.0).collect();
    nz.sort_by(f32::total_cmp);
    let q = |f: f64| nz[((nz.len() - 1) as f64 * f) as usize];
    let (lo, hi) = (q(0.3), q(0.6));
    volume.map(|&v| {
        if v > hi {
            1
        } else if v > lo {
            2
        } else {
            0
        }
    })
}

fn identification(kind: &str, study: &str) -> Identification {
    Identification {
        series_uid: derived_uid(&[kind, "series", study]),
        sop_instance_uid: derived_uid(&[kind, study, "v1"]),
        series_number: 9801,
        instance_number: 1,
        series_description: format!("test {kind}"),
        content_date: "20261206".into(),
        content_time: "120000".into(),
    }
}

fn producer() -> Producer {
    Producer {
        manufacturer: "neurobatch".into(),
        model_name: "test-model".into(),
        software_versions: vec!["neurobatch test".into(), "test-model 1.0".into()],
        device_serial_number: "test-model 1.0".into(),
    }
}

fn seg_spec(study: &str) -> SegmentationSpec {
    let tissue = Code::new("85756007", "SCT", "Tissue");
    SegmentationSpec {
        id: identification("seg", study),
        producer: producer(),
        segments: vec![
            Segment {
                label_value: 1,
                label: "grey_matter".into(),
                category: tissue.clone(),
                property: Code::new("389081007", "SCT", "Gray Matter"),
                tracking_uid: derived_uid(&["tracking", study, "1"]),
            },
            Segment {
                label_value: 2,
                label: "white_matter".into(),
                category: tissue,
                property: Code::new("389080008", "SCT", "White Matter"),
                tracking_uid: derived_uid(&["tracking", study, "2"]),
            },
        ],
        algorithm_type: AlgorithmType::Automatic,
        algorithm_name: "test-model".into(),
        algorithm_version: "1.0".into(),
        content_label: "TEST_MODEL".into(),
        content_description: "test segmentation".into(),
        dimension_organization_uid: derived_uid(&["dim", study]),
    }
}

fn sr_spec(study: &str, seg: &SegmentationSpec, volumes: [f64; 2]) -> MeasurementReportSpec {
    let local = |v: &str, m: &str| Code::new(v, "99NEUROBATCH", m);
    let group = |n: usize, name: &str, finding: Code, volume: f64| MeasurementGroup {
        tracking_id: name.into(),
        tracking_uid: seg.segments[n].tracking_uid.clone(),
        finding,
        segment_number: Some(u16::try_from(n + 1).unwrap()),
        measurements: vec![
            Measurement {
                concept: Code::new("118565006", "SCT", "Volume"),
                value: volume,
                unit: Code::new("ml", "UCUM", "milliliter"),
            },
            Measurement {
                concept: local("NB-PAIR-DICE", "Pairwise Dice between ensemble passes"),
                value: 0.97,
                unit: Code::new("1", "UCUM", "no units"),
            },
        ],
        evaluations: Vec::new(),
    };
    MeasurementReportSpec {
        id: identification("sr", study),
        producer: producer(),
        device_observer_uid: derived_uid(&["device", study]),
        procedure_reported: Code::new("363679005", "SCT", "Imaging procedure"),
        segmentation: ReferencedSegmentation {
            series_uid: seg.id.series_uid.clone(),
            sop_instance_uid: seg.id.sop_instance_uid.clone(),
        },
        groups: vec![
            group(0, "grey_matter", Code::new("389081007", "SCT", "Gray Matter"), volumes[0]),
            group(1, "white_matter", Code::new("389080008", "SCT", "White Matter"), volumes[1]),
            MeasurementGroup {
                tracking_id: "study".into(),
                tracking_uid: derived_uid(&["tracking", study, "study"]),
                finding: Code::new("12738006", "SCT", "Brain"),
                segment_number: None,
                measurements: vec![Measurement {
                    concept: local("NB-OOD", "Out-of-distribution score"),
                    value: 1.74,
                    unit: Code::new("1", "UCUM", "no units"),
                }],
                evaluations: vec![(local("NB-ROUTING", "Routing decision"), "routed to review".into())],
            },
        ],
    }
}

fn volume_ml(labels: &Volume<u8>, value: u8) -> f64 {
    let [x, y, z] = labels.spacing();
    labels.data().iter().filter(|&&v| v == value).count() as f64 * x * y * z / 1000.0
}

/// Builds, writes and checks one series' SEG and SR; returns the checker's JSON.
fn build_and_check(rel: &str, out: &Path) -> Value {
    let (volume, source) = stack(rel);
    let labels = labels_of(&volume);
    let header = CopiedHeader::from_file(&source.header_file, &ScanOptions::default()).expect("header");
    let seg = seg_spec(rel);
    let seg_obj = build_segmentation(&labels, &source, &header, &seg).expect("seg");
    let sr = sr_spec(rel, &seg, [volume_ml(&labels, 1), volume_ml(&labels, 2)]);
    let sr_obj = build_measurement_report(&source, &header, &sr).expect("sr");
    let name = rel.replace('/', "_");
    let (seg_path, sr_path, mask_path) = (
        out.join(format!("{name}_seg.dcm")),
        out.join(format!("{name}_sr.dcm")),
        out.join(format!("{name}_mask.nii.gz")),
    );
    write_part10(&seg_obj, &seg_path).expect("write seg");
    write_part10(&sr_obj, &sr_path).expect("write sr");
    imaging::nifti::write_u8(&mask_path, &labels).expect("write mask");

    // In Rust: one frame per (segment, plane with that segment), each on its source slice.
    let back = dicom_object::open_file(&seg_path).expect("reopen seg");
    let frames: usize = back.element(tags::NUMBER_OF_FRAMES).unwrap().to_int::<usize>().unwrap();
    let expected: usize = [1u8, 2]
        .iter()
        .map(|&v| labels.data().chunks_exact(labels.dims()[0] * labels.dims()[1]).filter(|p| p.contains(&v)).count())
        .sum();
    assert_eq!(frames, expected, "{rel}: frames");
    let per_frame = back.element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).unwrap().items().unwrap();
    for f in per_frame {
        let pos = f.element(tags::PLANE_POSITION_SEQUENCE).unwrap().items().unwrap()[0]
            .element(tags::IMAGE_POSITION_PATIENT)
            .unwrap()
            .to_multi_float64()
            .unwrap();
        let index = f.element(tags::FRAME_CONTENT_SEQUENCE).unwrap().items().unwrap()[0]
            .element(tags::DIMENSION_INDEX_VALUES)
            .unwrap()
            .to_multi_int::<u32>()
            .unwrap();
        let slice = &source.slices[index[1] as usize - 1];
        for a in 0..3 {
            assert!((pos[a] - slice.position[a]).abs() < 1e-3, "{rel}: frame position {pos:?} vs {:?}", slice.position);
        }
        let src = f.element(tags::DERIVATION_IMAGE_SEQUENCE).unwrap().items().unwrap()[0]
            .element(tags::SOURCE_IMAGE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0]
            .element(tags::REFERENCED_SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        assert_eq!(Some(src.as_str()), slice.sop_instance_uid.as_deref(), "{rel}: frame's source image");
    }
    // The patient module is the source's, byte for byte; the object's identity is ours.
    for obj in [&back, &dicom_object::open_file(&sr_path).expect("reopen sr")] {
        let s = |t| obj.element(t).unwrap().to_str().unwrap().trim_end_matches(['\0', ' ']).to_string();
        assert_eq!(s(tags::PATIENT_NAME), PLANTED_NAME);
        assert_eq!(s(tags::PATIENT_ID), PLANTED_ID);
        assert_eq!(Some(s(tags::STUDY_INSTANCE_UID)), source.study_uid);
    }

    let report = check_results(&seg_path, Some(&sr_path), &mask_path);
    assert_segments_equal(rel, &report, &labels);
    let groups = report["sr"]["volumetric_groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{rel}: {}", report["sr"]);
    for (g, (label, value)) in groups.iter().zip([("grey_matter", 1u8), ("white_matter", 2)]) {
        assert_eq!(g["tracking_id"], label);
        assert_eq!(g["segment"].as_u64(), Some(u64::from(value)));
        let ml = g["measurements"]["Volume"].as_f64().expect("volume");
        assert!((ml - volume_ml(&labels, value)).abs() < 1e-6 * ml.max(1.0), "{rel}: {g}");
    }
    for kind in ["seg", "sr"] {
        let errors = report["dciodvfy"][kind]["errors"].as_array().expect("errors");
        assert!(errors.is_empty(), "{rel}: dciodvfy finds errors in the {kind}: {errors:?}");
    }
    report
}

/// `scripts/dicom/check_results.py` on a SEG (and an SR) written from `mask`: its JSON.
fn check_results(seg: &Path, sr: Option<&Path>, mask: &Path) -> Value {
    let mut run = Command::new(python());
    run.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dicom/check_results.py"));
    run.arg("--seg").arg(seg).arg("--mask").arg(mask);
    if let Some(sr) = sr {
        run.arg("--sr").arg(sr);
    }
    let out =
        run.output().unwrap_or_else(|e| panic!("cannot run {}: {e} (run `bash scripts/setup.sh`)", python().display()));
    assert!(out.status.success(), "check_results.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("checker json")
}

/// highdicom's reading of the SEG equals `labels` voxel for voxel, in world coordinates.
fn assert_segments_equal(what: &str, report: &Value, labels: &Volume<u8>) {
    for (label, value) in [("grey_matter", 1u8), ("white_matter", 2)] {
        let s = &report["seg"]["per_segment"][label];
        let voxels = labels.data().iter().filter(|&&v| v == value).count() as u64;
        assert_eq!(s["mismatched"], 0, "{what} {label}: {s}");
        assert_eq!(s["outside_mask_grid"], 0, "{what} {label}: {s}");
        assert_eq!(s["seg_voxels"].as_u64(), Some(voxels), "{what} {label}: {s}");
        assert_eq!(s["compared"].as_u64(), Some(voxels), "{what} {label}: every mask voxel compared: {s}");
    }
    assert!(report["seg"]["max_off_grid_voxels"].as_f64().unwrap() < 1e-3, "{what}: {}", report["seg"]);
}

#[test]
fn seg_and_sr_of_single_and_multi_frame_stacks_pass_highdicom_and_dciodvfy() {
    let out = tempfile_dir();
    for rel in ["derived/axial", "derived/sagittal", "derived/oblique", "derived/enhanced"] {
        let report = build_and_check(rel, &out);
        eprintln!("{rel}: dciodvfy warnings: {}", report["dciodvfy"]);
    }
    if std::env::var_os("NEUROBATCH_KEEP_DERIVED").is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn same_result_same_uids_and_errors_name_no_patient() {
    let (volume, source) = stack("derived/axial");
    let header = CopiedHeader::from_file(&source.header_file, &ScanOptions::default()).expect("header");
    let debug = format!("{header:?}");
    assert!(!debug.contains("ZZLEAK") && !debug.contains("PIDLEAK"), "{debug}");
    let labels = labels_of(&volume);
    let a = build_segmentation(&labels, &source, &header, &seg_spec("x")).unwrap();
    let b = build_segmentation(&labels, &source, &header, &seg_spec("x")).unwrap();
    let uid = |o: &imaging::dicom::derived::DerivedObject| {
        o.element(tags::SOP_INSTANCE_UID).unwrap().to_str().unwrap().to_string()
    };
    assert_eq!(uid(&a), uid(&b));
    assert_ne!(uid(&a), uid(&build_segmentation(&labels, &source, &header, &seg_spec("y")).unwrap()));

    // A label volume on another grid, and a stack without a frame of reference, are typed errors.
    let wrong = Volume::new([2, 2, 2], vec![0u8; 8], *volume.affine(), volume.meta.clone()).unwrap();
    let err = build_segmentation(&wrong, &source, &header, &seg_spec("x")).unwrap_err();
    assert!(matches!(err, DerivedError::GridMismatch { .. }), "{err}");
    let mut no_for = source.clone();
    no_for.frame_of_reference_uid = None;
    let err = build_segmentation(&labels, &no_for, &header, &seg_spec("x")).unwrap_err();
    assert!(matches!(err, DerivedError::MissingReference { .. }), "{err}");
    let mut no_uid = source.clone();
    no_uid.slices[3].sop_instance_uid = None;
    let err = build_measurement_report(&no_uid, &header, &sr_spec("x", &seg_spec("x"), [1.0, 2.0])).unwrap_err();
    assert!(err.to_string().contains(&source.series_uid), "{err}");
    for e in [err.to_string(), format!("{err:?}")] {
        assert!(!e.contains("ZZLEAK") && !e.contains("PIDLEAK"), "{e}");
    }
    let missing = CopiedHeader::from_file(Path::new("/nonexistent/file.dcm"), &ScanOptions::default()).unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/file.dcm"), "{missing}");
}

/// A reviewer's corrected mask as revision 1 of the segmentation, built from what the worker
/// stores (the recipe, as JSON, and the first SEG) without the source files: highdicom reads
/// the corrected labels back exactly, dciodvfy finds no error, and it is a new instance of the
/// same series with the same patient, made SEMIAUTOMATIC.
#[test]
fn a_corrected_mask_becomes_a_new_instance_of_the_same_seg_series() {
    let out = tempfile_dir().join("revision");
    std::fs::create_dir_all(&out).unwrap();
    let (volume, source) = stack("derived/oblique");
    let labels = labels_of(&volume);
    let header = CopiedHeader::from_file(&source.header_file, &ScanOptions::default()).expect("header");
    let spec = seg_spec("study-r");
    let first = out.join("seg.dcm");
    write_part10(&build_segmentation(&labels, &source, &header, &spec).unwrap(), &first).unwrap();

    // What the worker stores: no local path, no patient attribute.
    let recipe = SegmentationRecipe {
        study_key: "study-r".into(),
        result_version: 1,
        spec: spec.clone(),
        stack: source.clone(),
    };
    let json = recipe.to_json().unwrap();
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(!text.contains(&source.header_file.display().to_string()), "the recipe names no local file");
    assert!(!text.contains("ZZLEAK") && !text.contains("PIDLEAK"), "the recipe carries no patient attribute");
    let stored = SegmentationRecipe::from_json(&json).unwrap();
    assert_eq!(stored.spec, spec);
    assert_eq!(stored.stack, SourceStack { header_file: PathBuf::new(), ..source.clone() });
    assert!(SegmentationRecipe::from_json(b"{\"study_key\": 1}").is_err());

    // The reviewer moves the upper half of the grey matter to white matter, and adds grey
    // matter to a plane the model left empty of it.
    let [nx, ny, nz] = labels.dims();
    let mut corrected = labels.clone();
    let data = corrected.data_mut();
    for v in data[(nx * ny * nz / 2)..].iter_mut().filter(|v| **v == 1) {
        *v = 2;
    }
    let empty_plane = (0..nz).find(|&k| !labels.data()[k * nx * ny..(k + 1) * nx * ny].contains(&1));
    if let Some(k) = empty_plane {
        data[k * nx * ny + nx * ny / 2] = 1;
    }
    let mask = out.join("corrected.nii.gz");
    imaging::nifti::write_u8(&mask, &corrected).unwrap();

    let first_header = CopiedHeader::from_file(&first, &ScanOptions::default()).expect("the first SEG's modules");
    let revision = stored.build_revision(&corrected, &first_header, 1, "20261207", "101500").unwrap();
    let revised = out.join("seg-r1.dcm");
    write_part10(&revision, &revised).unwrap();
    let report = check_results(&revised, None, &mask);
    assert_segments_equal("revision 1", &report, &corrected);
    let errors = report["dciodvfy"]["seg"]["errors"].as_array().expect("errors");
    assert!(errors.is_empty(), "dciodvfy finds errors in the revision: {errors:?}");

    let (a, b) = (dicom_object::open_file(&first).unwrap(), dicom_object::open_file(&revised).unwrap());
    let s = |o: &imaging::dicom::derived::DerivedObject, t| {
        o.element(t).unwrap().to_str().unwrap().trim_end_matches(['\0', ' ']).to_string()
    };
    for t in [tags::SERIES_INSTANCE_UID, tags::STUDY_INSTANCE_UID, tags::PATIENT_NAME, tags::PATIENT_ID] {
        assert_eq!(s(&a, t), s(&b, t), "{t}");
    }
    assert_ne!(s(&a, tags::SOP_INSTANCE_UID), s(&b, tags::SOP_INSTANCE_UID));
    assert_eq!(s(&b, tags::SOP_INSTANCE_UID), result_instance_uid("seg", "study-r", "test-model", "1.0", 1, 1));
    assert!(s(&b, tags::SERIES_DESCRIPTION).ends_with("(corrected)"), "{}", s(&b, tags::SERIES_DESCRIPTION));
    for item in b.element(tags::SEGMENT_SEQUENCE).unwrap().items().unwrap() {
        let kind = item.element(tags::SEGMENT_ALGORITHM_TYPE).unwrap().to_str().unwrap();
        assert_eq!(kind.trim_end(), "SEMIAUTOMATIC");
    }
    // Rebuilt (a re-send), the same instance; revision 0 is the model's and cannot be a correction.
    let again = stored.build_revision(&corrected, &first_header, 1, "20261208", "000000").unwrap();
    assert_eq!(s(&again, tags::SOP_INSTANCE_UID), s(&b, tags::SOP_INSTANCE_UID));
    assert!(stored.build_revision(&corrected, &first_header, 0, "20261207", "101500").is_err());
    if std::env::var_os("NEUROBATCH_KEEP_DERIVED").is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neurobatch-derived-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
