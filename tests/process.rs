//! End-to-end tests of `neurobatch process` with the shipped models
//! (`models/brain-tissue`; `models/scan-quality` only when asked for) on real anatomy:
//!
//! - a perturbed MNI152 brain (polynomial bias field + Rician noise, never a
//!   training draw) is segmented with grey/white-matter Dice ≥ 0.85 against
//!   the template's own tissue maps (the target), on the CPU profile;
//! - outputs are on the input's grid and `report.json` has the documented shape;
//! - a non-brain volume (an ellipsoid phantom) and a real diffusion b0 go to
//!   review with reason `out_of_distribution`;
//! - the same scan in a zero-padded field of view gets the same quality
//!   estimate and decision, and the `full` profile routes on the `cpu`
//!   profile's estimate (the unflipped passes);
//! - `--probabilities` writes calibrated maps whose argmax is the mask;
//! - bad input and a tampered model folder end in exit 1 and one error line.
//!
//! Inputs: `.testdata/process/` (scripts/testdata/process.py).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{neurobatch, ok, root, s, testdata};

use imaging::Volume;
use imaging::nifti::{ReadOptions, read};
use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    common::scratch("process", name)
}

fn one_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected, got: {stderr}");
    errors[0].to_string()
}

fn read_f32(p: &Path) -> Volume<f32> {
    read(p, &ReadOptions::default()).expect("readable nifti")
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).expect("report.json")).expect("json")
}

fn dice(a: &[f32], b: &[f32], label: f32) -> f64 {
    let (mut both, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        let (ia, ib) = (x == label, y == label);
        both += u64::from(ia && ib);
        na += u64::from(ia);
        nb += u64::from(ib);
    }
    2.0 * both as f64 / (na + nb) as f64
}

fn reason_codes(r: &Value) -> Vec<String> {
    r["routing"]["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|x| x["code"].as_str().expect("code").to_string())
        .collect()
}

#[test]
fn perturbed_brain_meets_the_dice_target_with_the_default_model() {
    let input = testdata("process/bias_noise.nii.gz");
    let out = scratch("bias-noise");
    // No --model: the shipped default is found from the working directory.
    ok(&neurobatch(&["process", s(&input), "--out", s(&out), "--profile", "cpu"]));

    let truth = read_f32(&testdata("process/labels.nii.gz"));
    let mask = read_f32(&out.join("mask.nii.gz"));
    let source = read_f32(&input);
    assert_eq!(mask.dims(), source.dims(), "mask on the input grid");
    assert!((mask.affine().matrix() - source.affine().matrix()).abs().max() < 1e-4, "same affine");
    let (gm, wm) = (dice(mask.data(), truth.data(), 1.0), dice(mask.data(), truth.data(), 2.0));
    eprintln!("bias+noise, cpu profile: Dice GM {gm:.4}, WM {wm:.4}");
    assert!(gm >= 0.85 && wm >= 0.85, "Dice GM {gm:.4} WM {wm:.4} below 0.85");

    for map in ["entropy.nii.gz", "mutual_information.nii.gz"] {
        let m = read_f32(&out.join(map));
        assert_eq!(m.dims(), source.dims(), "{map} on the input grid");
        assert!(m.data().iter().all(|v| v.is_finite() && *v >= 0.0 && *v <= 3f32.ln() + 1e-4), "{map} in [0, ln 3]");
    }

    let r = report(&out);
    assert_eq!(r["schema"], 1);
    assert_eq!(r["labels"]["0"], "background");
    assert_eq!(r["labels"]["1"], "grey_matter");
    assert_eq!(r["labels"]["2"], "white_matter");
    assert_eq!(r["model"]["profile"], "cpu");
    let decision = r["routing"]["decision"].as_str().expect("decision");
    assert!(decision == "accept" || decision == "review", "{decision}");
    // Every member the profile used is named with its sha256, as in the manifest.
    let manifest = std::fs::read_to_string(root().join("models/brain-tissue/manifest.toml")).expect("manifest");
    let members = r["model"]["members"].as_array().expect("members");
    assert!(!members.is_empty());
    for m in members {
        let sha = m["sha256"].as_str().expect("sha256");
        assert!(sha.len() == 64 && manifest.contains(sha), "member hash {sha} not in the manifest");
    }
    // Structure volumes are the mask's voxels times the voxel volume (1 mm³ here).
    let gm_voxels = mask.data().iter().filter(|&&v| v == 1.0).count() as f64;
    let gm_report = &r["structures"][1];
    assert_eq!(gm_report["name"], "grey_matter");
    assert!((gm_report["volume_ml"].as_f64().expect("volume") - gm_voxels / 1000.0).abs() < 1e-6);
    assert!(r["study"]["score"].as_f64().is_some(), "several passes give a study score");
    let stages: Vec<&str> =
        r["timings_ms"].as_array().expect("timings").iter().filter_map(|t| t["stage"].as_str()).collect();
    for stage in ["load", "model_grid", "inference", "native_grid"] {
        assert!(stages.contains(&stage), "timing for {stage} in {stages:?}");
    }
}

/// A ±40 % sinusoidal field (the evaluation's `bias_sinusoidal`): the shipped
/// model's `[bias_correction]` divides it out before harmonization, and the
/// report says what it removed.
#[test]
fn a_strong_bias_field_is_corrected_before_segmentation() {
    let input = testdata("process/bias_strong.nii.gz");
    let out = scratch("bias-strong");
    ok(&neurobatch(&["process", s(&input), "--out", s(&out), "--profile", "cpu", "--no-quality"]));
    let truth = read_f32(&testdata("process/labels.nii.gz"));
    let mask = read_f32(&out.join("mask.nii.gz"));
    let (gm, wm) = (dice(mask.data(), truth.data(), 1.0), dice(mask.data(), truth.data(), 2.0));
    eprintln!("sinusoidal bias, cpu profile: Dice GM {gm:.4}, WM {wm:.4}");
    assert!(gm >= 0.85 && wm >= 0.85, "Dice GM {gm:.4} WM {wm:.4} below 0.85");
    let field = &report(&out)["bias_field"];
    let (lo, hi) = (field["min"].as_f64().expect("min"), field["max"].as_f64().expect("max"));
    assert!(lo < 0.8 && hi > 1.25, "the estimated field {lo}..{hi} should span most of the applied 0.60..1.40");
}

/// `--probabilities`: one calibrated map per label on the scan's grid, a distribution in every
/// voxel whose argmax is the mask (temperature scaling never reorders the classes).
#[test]
fn calibrated_probabilities_sum_to_one_and_their_argmax_is_the_mask() {
    let input = root().join("samples/mni_t1_2mm.nii.gz");
    let out = scratch("probabilities");
    ok(&neurobatch(&["process", s(&input), "--out", s(&out), "--profile", "cpu", "--members", "1", "--probabilities"]));
    let mask = read_f32(&out.join("mask.nii.gz"));
    let maps: Vec<Volume<f32>> = (0..3).map(|c| read_f32(&out.join(format!("probability_{c}.nii.gz")))).collect();
    assert!(!out.join("probability_3.nii.gz").exists(), "one map per label");
    for m in &maps {
        assert_eq!((m.dims(), m.affine()), (mask.dims(), mask.affine()), "on the scan's grid");
    }
    let mut tissue = 0usize;
    for (i, &label) in mask.data().iter().enumerate() {
        let p: Vec<f32> = maps.iter().map(|m| m.data()[i]).collect();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4, "voxel {i}: {p:?}");
        // The mask's label has the largest probability (up to the f32 rounding of a near-tie).
        let top = p.iter().copied().fold(0.0f32, f32::max);
        assert!(p[label as usize] >= top - 1e-6, "voxel {i}: label {label}, {p:?}");
        tissue += usize::from(label > 0.0);
    }
    assert!(tissue > 10_000, "a brain was segmented ({tissue} tissue voxels)");
    let model = &report(&out)["model"];
    let manifest = std::fs::read_to_string(root().join("models/brain-tissue/manifest.toml")).expect("manifest");
    let shipped = manifest.lines().find_map(|l| l.strip_prefix("temperature = ")).map(|t| t.trim().parse::<f64>());
    assert_eq!(model["temperature"].as_f64(), shipped.map(|t| t.expect("a number")), "the report names T");
}

#[test]
fn non_brain_and_diffusion_b0_are_routed_to_review_as_out_of_distribution() {
    for name in ["phantom", "b0"] {
        let input = testdata(&format!("process/{name}.nii.gz"));
        let out = scratch(name);
        ok(&neurobatch(&["process", s(&input), "--out", s(&out), "--profile", "cpu", "--members", "2"]));
        let r = report(&out);
        assert_eq!(r["routing"]["decision"], "review", "{name}: {}", r["routing"]);
        let codes = reason_codes(&r);
        assert!(codes.iter().any(|c| c == "out_of_distribution"), "{name}: reasons {codes:?}");
    }
}

#[test]
fn bad_inputs_fail_with_one_line_naming_them() {
    let out = scratch("bad");
    let missing = out.join("no-such-scan.nii.gz");
    let line = one_error_line(&neurobatch(&["process", s(&missing), "--out", s(&out.join("o"))]));
    assert!(line.contains("no-such-scan.nii.gz"), "{line}");

    let garbage = out.join("garbage.nii");
    std::fs::write(&garbage, b"not a nifti file at all").expect("write");
    let line = one_error_line(&neurobatch(&["process", s(&garbage), "--out", s(&out.join("o2"))]));
    assert!(line.contains("garbage.nii"), "{line}");

    // A model folder whose member no longer matches its sha256: refused at load.
    let model = out.join("model");
    std::fs::create_dir_all(&model).expect("dir");
    let shipped = root().join("models/brain-tissue");
    for entry in std::fs::read_dir(&shipped).expect("models/brain-tissue") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), model.join(entry.file_name())).expect("copy");
    }
    let member = model.join("member_0.onnx");
    let mut bytes = std::fs::read(&member).expect("member");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&member, bytes).expect("tamper");
    let input = testdata("process/bias_noise.nii.gz");
    let line = one_error_line(&neurobatch(&["process", s(&input), "--out", s(&out.join("o3")), "--model", s(&model)]));
    assert!(line.contains("member_0.onnx") && line.contains("sha256"), "{line}");
    assert!(!out.join("o3/report.json").exists(), "nothing written for a refused model");
}

/// The same head in a zero-padded field of view: the OOD signals are taken
/// inside the foreground (a volume, not a fraction of the grid), the quality
/// features inside the brain, so neither the quality estimate nor the routing
/// decision may move (issue 13: padding a clean scan used to send it to review).
fn padded(src: &Volume<f32>, lo: [usize; 3], hi: [usize; 3]) -> Volume<f32> {
    let [nx, ny, nz] = src.dims();
    let dims = [nx + lo[0] + hi[0], ny + lo[1] + hi[1], nz + lo[2] + hi[2]];
    let mut data = vec![0f32; dims.iter().product()];
    for k in 0..nz {
        for j in 0..ny {
            let from = nx * (j + ny * k);
            let to = lo[0] + dims[0] * ((j + lo[1]) + dims[1] * (k + lo[2]));
            data[to..to + nx].copy_from_slice(&src.data()[from..from + nx]);
        }
    }
    let origin = src.affine().apply([-(lo[0] as f64), -(lo[1] as f64), -(lo[2] as f64)]);
    let mut m = *src.affine().matrix();
    for (r, o) in origin.iter().enumerate() {
        m[(r, 3)] = *o;
    }
    Volume::new(dims, data, imaging::Affine::from_matrix(m), src.meta.clone()).expect("padded volume")
}

#[test]
fn padding_the_field_of_view_changes_neither_estimate_nor_decision() {
    let input = testdata("process/bias_noise.nii.gz");
    let dir = scratch("padded-fov");
    let big = dir.join("padded.nii.gz");
    imaging::nifti::write_f32(&big, &padded(&read_f32(&input), [40, 0, 25], [10, 60, 0])).expect("write");
    let runs: Vec<Value> = [(&input, "cpu", "orig"), (&big, "cpu", "pad"), (&input, "full", "full")]
        .iter()
        .map(|(scan, profile, name)| {
            let out = dir.join(name);
            ok(&neurobatch(&["process", s(scan), "--out", s(&out), "--profile", profile, "--no-quality"]));
            report(&out)
        })
        .collect();
    let predicted = |r: &Value| -> Vec<f64> {
        let e = &r["quality_estimate"];
        assert_eq!(e["missing_features"].as_array().map(Vec::len), Some(0), "{e}");
        e["structures"].as_array().expect("structures").iter().map(|s| s["predicted_dice"].as_f64().unwrap()).collect()
    };
    let (orig, pad, full) = (&runs[0], &runs[1], &runs[2]);
    let ood = |r: &Value| r["ood"]["score"].as_f64().expect("ood score");
    eprintln!("OOD {} vs padded {}; predicted {:?} vs {:?}", ood(orig), ood(pad), predicted(orig), predicted(pad));
    // The padded grid samples the head at another 2 mm phase: the score moves by resampling, a few
    // hundredths of one training spread (the fraction-of-grid signal moved a padded scan by 5 units).
    assert!((ood(orig) - ood(pad)).abs() <= 0.25, "OOD {} vs {}", ood(orig), ood(pad));
    for (a, b) in predicted(orig).iter().zip(predicted(pad)) {
        assert!((a - b).abs() <= 0.01, "predicted Dice {a} vs padded {b}");
    }
    assert_eq!(orig["routing"]["decision"], pad["routing"]["decision"], "{} vs {}", orig["routing"], pad["routing"]);
    // The `full` profile adds left-right flips; its estimate comes from the same unflipped passes.
    assert_eq!(full["model"]["passes"], 10);
    for (a, b) in predicted(orig).iter().zip(predicted(full)) {
        assert!((a - b).abs() <= 1e-6, "cpu {a} vs full {b}: the base passes differ");
    }
    assert_eq!(orig["routing"]["decision"], full["routing"]["decision"]);
    // Every catalog feature is reported, and the estimate's inputs are among them.
    let features = orig["quality_features"].as_object().expect("quality_features");
    assert!(features.len() >= 20 && features.contains_key("study.score"), "{features:?}");
}
