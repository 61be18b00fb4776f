//! `worker::quality` against onnxruntime in Python: the shipped brain-tissue
//! model's quality estimators, run by the worker on feature rows of the test
//! split, give the predictions `training/fit_quality.py` computed with
//! onnxruntime (the figures of `training/EVALUATION.md` come from those); and
//! the refusals: a missing feature, an altered estimator file, a graph that is
//! not a tabular model. And the image metrics against their Python arithmetic
//! (training/explore_image_quality.py) on a block of a real run.

mod common;

use std::path::{Path, PathBuf};

use imaging::nifti::{self, ReadOptions};
use worker::manifest::{ManifestError, load_model_folder};
use worker::quality::{ImageMetrics, QualityFeatures, feature_names};
use worker::runtime::{RuntimeError, TabularModel};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/brain-tissue")
}

/// A catalog read back from a report's JSON (`quality_features`).
fn features(values: &serde_json::Map<String, serde_json::Value>) -> QualityFeatures {
    serde_json::from_value(serde_json::Value::Object(values.clone())).expect("a report's quality_features")
}

#[test]
fn shipped_estimators_match_onnxruntime_python_on_test_rows() {
    let model = load_model_folder(&shipped(), &common::config()).unwrap();
    let labels: Vec<String> = model.manifest().labels.iter().map(|l| l.name.clone()).collect();
    let catalog = feature_names(&labels);
    for spec in &model.manifest().quality_estimators {
        let estimator = model.quality_estimator(spec.members).expect("loaded for its base pass set");
        assert!(spec.features.iter().all(|f| catalog.contains(f)));
        let refs = common::load_json(&format!("quality/estimator_{}_members.json", spec.members));
        assert_eq!(refs["sha256"].as_str().unwrap(), spec.sha256, "fixture of another estimator");
        let rows = refs["rows"].as_array().unwrap();
        assert!(rows.len() >= 10, "{} rows", rows.len());
        let mut max_diff = 0f64;
        for row in rows {
            let f = features(row["features"].as_object().unwrap());
            let e = estimator.estimate(&f, &labels).unwrap();
            assert!(e.missing_features.is_empty(), "{:?}", e.missing_features);
            let want: Vec<f64> = serde_json::from_value(row["predicted"].clone()).unwrap();
            for (s, w) in e.structures.iter().zip(&want) {
                let got = s.predicted_dice.expect("all features defined");
                max_diff = max_diff.max((got - w).abs());
            }
            let min = e.structures.iter().filter_map(|s| s.predicted_dice).fold(f64::INFINITY, f64::min);
            assert_eq!(e.min_predicted_dice, Some(min));
        }
        eprintln!("{} members: max |rust - python| over {} rows: {max_diff:e}", spec.members, rows.len());
        assert!(max_diff <= 1e-6, "max abs diff {max_diff}");
    }
}

#[test]
fn a_missing_feature_gives_no_prediction_not_a_guess() {
    let model = load_model_folder(&shipped(), &common::config()).unwrap();
    let labels: Vec<String> = model.manifest().labels.iter().map(|l| l.name.clone()).collect();
    let spec = model.manifest().quality_estimators.first().expect("the shipped model has an estimator");
    let refs = common::load_json(&format!("quality/estimator_{}_members.json", spec.members));
    let mut row = refs["rows"][0]["features"].as_object().unwrap().clone();
    let dropped = spec.features[0].clone();
    row.insert(dropped.clone(), serde_json::Value::Null);
    let e = model.quality_estimator(spec.members).unwrap().estimate(&features(&row), &labels).unwrap();
    assert_eq!(e.missing_features, vec![dropped]);
    assert!(e.structures.iter().all(|s| s.predicted_dice.is_none()));
    assert_eq!(e.min_predicted_dice, None);
}

#[test]
fn an_altered_estimator_fails_the_folder_at_load() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model-folders/altered-estimator");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(shipped()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let model = load_model_folder(&shipped(), &common::config()).unwrap();
    let file = &model.manifest().quality_estimators[0].file;
    let mut bytes = std::fs::read(dir.join(file)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(dir.join(file), bytes).unwrap();
    let err = load_model_folder(&dir, &common::config()).unwrap_err();
    assert!(matches!(err, ManifestError::Estimator { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("sha256") && msg.contains(&file.display().to_string()), "{msg}");
}

#[test]
fn an_image_model_is_not_a_tabular_model_and_rows_are_checked() {
    let path = common::testdata("onnx/conv3d_softmax.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let err = TabularModel::from_bytes(&bytes, &path, &common::config(), 4, 2).unwrap_err();
    assert!(matches!(err, RuntimeError::Signature { .. }), "{err}");
    assert!(err.to_string().contains("[N, 4]"), "{err}");

    let model = load_model_folder(&shipped(), &common::config()).unwrap();
    let spec = &model.manifest().quality_estimators[0];
    let file = shipped().join(&spec.file);
    let bytes = std::fs::read(&file).unwrap();
    let wrong = spec.features.len() + 1;
    let err = TabularModel::from_bytes(&bytes, &file, &common::config(), wrong, 2).unwrap_err();
    assert!(matches!(err, RuntimeError::Signature { .. }), "{err}");
    let tabular = TabularModel::from_bytes(&bytes, &file, &common::config(), spec.features.len(), 2).unwrap();
    let err = tabular.run(&vec![0.5; wrong]).unwrap_err();
    assert!(matches!(err, RuntimeError::InputShape { .. }), "{err}");
    assert_eq!(tabular.run(&vec![0.5; spec.features.len()]).unwrap().len(), 2);
}

#[test]
fn image_metrics_match_the_python_reference_on_a_real_block() {
    // A 16³ block of one generated training case's model grid (training/image_metrics_fixture.py).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quality/image_metrics");
    let read = |name: &str| nifti::read(&dir.join(format!("{name}.nii.gz")), &ReadOptions::default()).unwrap();
    let image = read("image");
    let mut probs = Vec::new();
    for c in 0..3 {
        let p = read(&format!("probability_{c}"));
        assert_eq!(p.dims(), image.dims());
        probs.extend_from_slice(p.data());
    }
    let m = ImageMetrics::compute(image.data(), &probs, image.dims(), image.spacing());
    let want = common::load_json("quality/image_metrics/expected.json");
    let want = |name: &str| want["features"][name].as_f64().unwrap_or_else(|| panic!("{name} in the fixture"));
    let (gm, wm) = (m.structures[0], m.structures[1]);
    let pair = m.pairs[0];
    let got = [
        ("grey_matter.intensity_cv", gm.sd / gm.mean),
        ("white_matter.intensity_cv", wm.sd / wm.mean),
        ("grey_matter/white_matter.contrast", pair.contrast),
        ("grey_matter/white_matter.joint_variation", pair.joint_variation.unwrap()),
        ("grey_matter/white_matter.edge_sharpness", pair.edge_sharpness.unwrap()),
        ("image.efc", m.efc.unwrap()),
    ];
    for (name, value) in got {
        let w = want(name);
        assert!((value - w).abs() <= 1e-9 * w.abs().max(1.0), "{name}: rust {value} python {w}");
    }
}
