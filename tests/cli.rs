//! End-to-end tests of the `neurobatch` binary: what a user sees.
//!
//! - `convert` writes NIfTI files that put dcm2niix's intensities at
//!   dcm2niix's world positions, and that hold nibabel's affine and values for
//!   NIfTI inputs (references: the committed fixtures of `imaging/tests/`);
//! - `inspect` finds both series of a folder that interleaves two series;
//! - every bad input ends in exit code 1 and one `error:` line naming it;
//! - patient-identifying DICOM fields never reach stdout or stderr.

mod common;

use std::path::{Path, PathBuf};

use common::{neurobatch, ok, root, s, testdata};

use imaging::Affine;
use serde_json::Value;

fn fixture(rel: &str) -> Value {
    let p = root().join("imaging/tests/fixtures").join(rel);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture json")
}

/// A fresh directory for one test's outputs.
fn scratch(name: &str) -> PathBuf {
    common::scratch("cli", name)
}

fn affine_of(v: &Value) -> Affine {
    Affine::from_rows(serde_json::from_value(v.clone()).expect("4x4 affine"))
}

#[test]
fn inspect_finds_both_interleaved_series() {
    let study = testdata("dicom/derived/two_series");
    let out = ok(&neurobatch(&["inspect", s(&study), "--json"]));
    let entries: Vec<Value> = serde_json::from_str(&out).expect("inspect --json prints JSON");
    let expected = &fixture("dicom/dcm2niix.json")["cases"]["derived/two_series"]["series"];
    let mut want: Vec<&str> = expected.as_object().expect("series map").values().filter_map(Value::as_str).collect();
    let mut got: Vec<&str> = entries.iter().filter_map(|e| e["series_uid"].as_str()).collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want);
    for e in &entries {
        assert_eq!(e["shape"].as_array().map(Vec::len), Some(3));
        assert_eq!(e["spacing"].as_array().map(Vec::len), Some(3));
        let rows = e["affine"].as_array().expect("affine rows");
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3], serde_json::json!([0.0, 0.0, 0.0, 1.0]));
        assert!(e["statistics"]["count"].as_u64().unwrap_or(0) > 0);
    }
}

/// `convert` on every DICOM case of the dcm2niix fixture: read the written
/// NIfTI back and check dcm2niix's samples (world position → value).
#[test]
fn convert_agrees_with_dcm2niix() {
    let cases = fixture("dicom/dcm2niix.json");
    let out_dir = scratch("dcm2niix");
    let mut checked = 0;
    for (case, spec) in cases["cases"].as_object().expect("cases") {
        if case == "real/JPEG2000" {
            continue; // no position data: compared by index in imaging/tests/dicom.rs
        }
        let folder = testdata(&format!("dicom/{case}"));
        let series = spec["series"].as_object().expect("series numbers → UIDs");
        for vol in spec["volumes"].as_array().expect("volumes") {
            let name = vol["name"].as_str().expect("name");
            // dcm2niix names volumes `<series number>_<echo>` (-f %s_%e).
            let (number, echo) = name.split_once('_').unwrap_or((name, ""));
            let uid = series[number].as_str().expect("uid");
            let out = out_dir.join(format!("{}_{name}.nii.gz", case.replace('/', "_")));
            let mut args = vec!["convert", s(&folder), s(&out), "--series", uid];
            let same_uid = spec["volumes"]
                .as_array()
                .map_or(0, |v| v.iter().filter(|o| o["name"].as_str().is_some_and(|n| n.starts_with(number))).count());
            if same_uid > 1 && !echo.is_empty() {
                args.extend(["--echo", echo]);
            }
            ok(&neurobatch(&args));

            let ours = imaging::nifti::read(&out, &Default::default()).expect("our output reads");
            let theirs = affine_of(&vol["affine"]);
            let inv = ours.affine().inverse().expect("invertible");
            for sample in vol["samples"].as_array().expect("samples") {
                let v: Vec<f64> = serde_json::from_value(sample.clone()).expect("[i, j, k, value]");
                let world = theirs.apply([v[0], v[1], v[2]]);
                let ijk = inv.apply(world).map(f64::round);
                let back = ours.affine().apply(ijk);
                let mm = (0..3).map(|d| (back[d] - world[d]).powi(2)).sum::<f64>().sqrt();
                assert!(mm < 1e-3, "{case} {name}: {world:?} is {mm} mm from a voxel of ours");
                let got = ours.get(ijk[0] as usize, ijk[1] as usize, ijk[2] as usize).copied().expect("inside");
                assert_eq!(f64::from(got), v[3], "{case} {name} at {world:?}");
                checked += 1;
            }
        }
    }
    assert!(checked > 5000, "only {checked} samples compared");
    std::fs::remove_dir_all(out_dir).expect("cleanup");
}

/// `convert` of NIfTI inputs keeps nibabel's affine and values.
#[test]
fn convert_keeps_nibabel_geometry_and_values() {
    let refs = fixture("nifti/refs.json");
    let out_dir = scratch("nifti");
    let cases = refs["cases"].as_object().expect("cases");
    let mut checked = 0;
    for name in ["mni_t1.nii.gz", "mni_t1_las.nii.gz", "qform_oblique.nii.gz", "mni_t1_scaled_int16.nii.gz"] {
        let case = cases.get(name).unwrap_or_else(|| panic!("fixture for {name}"));
        let input = testdata(&format!("nifti/{name}"));
        let out = out_dir.join(name);
        ok(&neurobatch(&["convert", s(&input), s(&out)]));
        let v = imaging::nifti::read(&out, &Default::default()).expect("our output reads");
        let want = affine_of(&case["affine"]);
        for (a, b) in v.affine().to_rows().iter().flatten().zip(want.to_rows().iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{name}: affine {a} vs nibabel {b}");
        }
        let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).expect("shape");
        let key = shape.iter().take(3).map(usize::to_string).collect::<Vec<_>>().join("x");
        let indices: Vec<usize> = serde_json::from_value(refs["indices"][&key].clone()).expect("sample indices");
        let values: Vec<f64> = serde_json::from_value(case["values"].clone()).expect("sample values");
        for (&i, &want) in indices.iter().zip(&values) {
            let got = f64::from(v.data()[i]);
            assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{name}[{i}]: {got} vs nibabel {want}");
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} samples compared");
    std::fs::remove_dir_all(out_dir).expect("cleanup");
}

/// Exit 1 and exactly one `error:` line on stderr that names the input.
fn assert_clean_failure(args: &[&str], input: &Path) {
    let out = neurobatch(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {stderr}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
    let name = input.file_name().and_then(|n| n.to_str()).expect("named input");
    assert!(lines[0].contains(name), "{args:?}: the message does not name {name}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn bad_files_fail_with_one_line_naming_them() {
    let dir = scratch("bad");
    let real = std::fs::read(testdata("nifti/mni_t1.nii.gz")).expect("real file");
    let garbage = dir.join("garbage.nii.gz");
    std::fs::write(&garbage, b"this is not a NIfTI file at all, not even gzip").expect("write");
    let truncated = dir.join("truncated.nii.gz");
    std::fs::write(&truncated, &real[..real.len() / 3]).expect("write");
    let header_only = dir.join("header_only.nii");
    let plain = std::fs::read(testdata("nifti/mni_t1.nii")).expect("real file");
    std::fs::write(&header_only, &plain[..400]).expect("write");
    let empty_dir = dir.join("empty_folder");
    std::fs::create_dir_all(&empty_dir).expect("mkdir");
    let missing = dir.join("missing.nii.gz");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "hello").expect("write");
    let out = dir.join("out.nii.gz");
    for input in [&garbage, &truncated, &header_only, &empty_dir, &missing, &text] {
        assert_clean_failure(&["inspect", s(input)], input);
        assert_clean_failure(&["convert", s(input), s(&out)], input);
    }
    assert!(!out.exists(), "nothing is written for a bad input");
    // A 4-D file is refused on request, with the reason.
    let four_d = testdata("nifti/example4d.nii.gz");
    assert_clean_failure(&["inspect", s(&four_d), "--refuse-4d"], &four_d);
    // The voxel limit is checked before allocating.
    let t1 = testdata("nifti/mni_t1.nii.gz");
    assert_clean_failure(&["inspect", s(&t1), "--max-voxels", "1000"], &t1);
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[test]
fn broken_dicom_folders_fail_with_one_line_naming_them() {
    let bad = testdata("dicom/bad");
    let mut seen = 0;
    for entry in std::fs::read_dir(&bad).expect("bad cases") {
        let folder = entry.expect("entry").path();
        assert_clean_failure(&["inspect", s(&folder)], &folder);
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} broken folders");
}

/// Every planted patient field stays out of everything the binary prints,
/// on success and on failure, with debug logging on.
#[test]
fn patient_fields_never_reach_output() {
    const PLANTED: [&str; 4] = ["ZZLEAKNAME", "SECRETGIVEN", "PIDLEAK314159", "ACCLEAK271828"];
    let mut folders: Vec<PathBuf> = Vec::new();
    for group in ["dicom/derived", "dicom/bad"] {
        for entry in std::fs::read_dir(testdata(group)).expect("cases") {
            folders.push(entry.expect("entry").path());
        }
    }
    assert!(folders.len() > 15);
    let out_dir = scratch("privacy");
    for folder in &folders {
        for args in [
            vec!["--log-level", "trace", "inspect", s(folder), "--json"],
            vec!["--log-level", "trace", "--log-json", "inspect", s(folder)],
        ] {
            let out = neurobatch(&args);
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            for secret in PLANTED {
                assert!(!text.contains(secret), "{secret} leaked from {}: {text}", folder.display());
            }
        }
    }
    std::fs::remove_dir_all(out_dir).expect("cleanup");
}

#[test]
fn harmonize_runs_from_the_example_config_and_rejects_bad_settings() {
    let dir = scratch("harmonize");
    let t1 = testdata("nifti/mni_t1.nii.gz");
    let mask = dir.join("mask.nii.gz");
    let out = dir.join("ws.nii.gz");
    ok(&neurobatch(&["harmonize", "mask", s(&t1), s(&mask)]));
    let config = root().join("config/harmonization.toml");
    ok(&neurobatch(&["harmonize", "apply", s(&t1), s(&out), "--config", s(&config), "--mask", s(&mask)]));
    let v = imaging::nifti::read(&out, &Default::default()).expect("output reads");
    let m = imaging::nifti::read_labels(&mask, &Default::default()).expect("mask reads");
    assert_eq!(v.dims(), m.dims());
    assert!(m.data().contains(&1) && m.data().contains(&0));

    let zs = dir.join("z.nii.gz");
    ok(&neurobatch(&["harmonize", "apply", s(&t1), s(&zs), "--method", "zscore", "--mask", s(&mask)]));
    let z = imaging::nifti::read(&zs, &Default::default()).expect("output reads");
    let inside: Vec<f64> =
        z.data().iter().zip(m.data()).filter(|&(_, &k)| k == 1).map(|(&x, _)| f64::from(x)).collect();
    let mean = inside.iter().sum::<f64>() / inside.len() as f64;
    let var = inside.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / inside.len() as f64;
    assert!(mean.abs() < 1e-4 && (var.sqrt() - 1.0).abs() < 1e-4, "mean {mean}, std {}", var.sqrt());

    let bad = neurobatch(&[
        "harmonize",
        "apply",
        s(&t1),
        s(&zs),
        "--method",
        "percentile",
        "--set",
        "lower=90",
        "--set",
        "upper=10",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
    let unknown = neurobatch(&["harmonize", "apply", s(&t1), s(&zs), "--method", "magic"]);
    assert_eq!(unknown.status.code(), Some(1));
    std::fs::remove_dir_all(dir).expect("cleanup");
}
