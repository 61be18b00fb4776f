//! `worker::runtime` and `worker::manifest` against onnxruntime in Python:
//! the same ONNX model on the same MNI crop (scripts/testdata/onnx_models.py
//! writes both and the reference values), and model folders broken on purpose.

mod common;

use std::path::Path;

use ndarray::{Array5, ShapeBuilder};
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use worker::manifest::{ManifestError, load_model_folder};
use worker::runtime::{Model, Provider, RuntimeConfig, RuntimeError};

/// The z-scored MNI crop as `[1, 1, i, j, k]` (nibabel's array order), in the
/// Fortran layout it was stored in: `Model::run` must cope with the layout.
fn crop() -> Array5<f32> {
    let ([nx, ny, nz], data) = common::load_raw_f32(&common::testdata("onnx/mni_crop.f32").with_extension(""));
    Array5::from_shape_vec((1, 1, nx, ny, nz).f(), data).unwrap()
}

fn conv_model(config: &RuntimeConfig) -> Model {
    Model::load(&common::testdata("onnx/conv3d_softmax.onnx"), config).unwrap()
}

#[test]
fn conv_softmax_matches_onnxruntime_python() {
    let refs = common::load_json("onnx/conv3d_softmax.json");
    let path = common::testdata("onnx/conv3d_softmax.onnx");
    let sha = format!("{:x}", Sha256::digest(std::fs::read(&path).unwrap()));
    assert_eq!(sha, refs["model_sha256"].as_str().unwrap(), "the data step and the refs step built different models");

    let model = conv_model(&common::config());
    assert_eq!(model.provider(), Provider::Cpu);
    assert_eq!(model.input().name, "image");
    assert_eq!(model.input().shape, vec![None, Some(1), None, None, None]);
    assert_eq!(model.outputs()[0].name, "probabilities");
    assert_eq!(model.outputs()[0].shape, vec![None, Some(3), None, None, None]);

    let input = crop();
    let out = model.run(input.view()).unwrap();
    let shape: Vec<usize> = serde_json::from_value(refs["output_shape"].clone()).unwrap();
    assert_eq!(out.shape(), shape.as_slice());
    let [nx, ny] = [shape[2], shape[3]];

    let indices: Vec<usize> = serde_json::from_value(refs["indices"].clone()).unwrap();
    let expected: Vec<Vec<f32>> = serde_json::from_value(refs["channel_values"].clone()).unwrap();
    let mut max_diff = 0f32;
    for (c, values) in expected.iter().enumerate() {
        for (&lin, &want) in indices.iter().zip(values) {
            let (i, j, k) = (lin % nx, (lin / nx) % ny, lin / (nx * ny));
            max_diff = max_diff.max((out[[0, c, i, j, k]] - want).abs());
        }
    }
    eprintln!("max |rust - python| at {} samples x 3 channels: {max_diff:e}", indices.len());
    assert!(max_diff <= 1e-5, "max abs diff {max_diff}");

    let sums: Vec<f64> = serde_json::from_value(refs["channel_sums"].clone()).unwrap();
    for (c, want) in sums.iter().enumerate() {
        let got: f64 = out.index_axis(ndarray::Axis(1), c).iter().map(|&v| f64::from(v)).sum();
        assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "channel {c} sum {got} vs {want}");
    }
    let class_sum_err = out
        .index_axis(ndarray::Axis(0), 0)
        .lanes(ndarray::Axis(0))
        .into_iter()
        .map(|lane| (lane.iter().map(|&v| f64::from(v)).sum::<f64>() - 1.0).abs())
        .fold(0.0, f64::max);
    assert!(class_sum_err <= 1e-5, "softmax classes sum to 1 within {class_sum_err}");

    // The session is reused: a second run on the same input gives the same bytes.
    assert_eq!(model.run(input.view()).unwrap(), out);
}

#[test]
fn intra_op_threads_do_not_change_the_result() {
    let input = crop();
    let one = conv_model(&common::config()).run(input.view()).unwrap();
    let two = conv_model(&RuntimeConfig { intra_op_threads: 2, ..common::config() }).run(input.view()).unwrap();
    let diff = one.iter().zip(&two).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-6, "{diff}");
}

#[test]
fn gpu_providers_fall_back_to_the_cpu_with_warnings() {
    // The PyPI `onnxruntime` wheel has neither CUDA nor TensorRT.
    let config = RuntimeConfig { providers: vec![Provider::TensorRt, Provider::Cuda], ..common::config() };
    let (model, logs) = common::capture_logs(|| conv_model(&config));
    assert_eq!(model.provider(), Provider::Cpu);
    assert_eq!(model.run(crop().view()).unwrap().shape(), &[1, 3, 32, 32, 32]);
    let logged = |level: &str, needles: &[&str]| {
        logs.iter().any(|l| l.starts_with(level) && needles.iter().all(|n| l.contains(n)))
    };
    let skipped = ["execution provider unavailable", "reason=", "is not built into this onnx runtime library"];
    assert!(logged("WARN", &[&skipped[..], &["provider=tensorrt", "TensorrtExecutionProvider"]].concat()), "{logs:#?}");
    assert!(logged("WARN", &[&skipped[..], &["provider=cuda", "CUDAExecutionProvider"]].concat()), "{logs:#?}");
    assert!(logged("WARN", &["execution provider fallback", "requested=tensorrt using=cpu"]), "{logs:#?}");
    assert!(logged("INFO", &["onnx session ready", "conv3d_softmax.onnx provider=cpu"]), "{logs:#?}");
}

#[test]
fn models_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Model>();
    send_sync::<worker::manifest::LoadedModel>();
    let model = conv_model(&common::config());
    let input = crop();
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| model.run(input.view()).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn wrong_input_shapes_are_errors() {
    let model = conv_model(&common::config());
    for shape in [(1, 2, 8, 8, 8), (1, 1, 0, 8, 8)] {
        let err = model.run(Array5::<f32>::zeros(shape).view()).unwrap_err();
        assert!(matches!(err, RuntimeError::InputShape { .. }), "{err}");
        assert!(err.to_string().contains("conv3d_softmax.onnx"), "{err}");
    }
}

fn assert_session_error(bytes: &[u8]) {
    let path = Path::new("corrupt/member.onnx");
    match Model::from_bytes(bytes, path, &common::config()) {
        Err(e @ RuntimeError::Session { .. }) => {
            eprintln!("{e}");
            assert!(e.to_string().contains("corrupt/member.onnx"), "{e}");
        }
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("{} bytes of garbage made a session", bytes.len()),
    }
}

#[test]
fn corrupt_onnx_bytes_are_session_errors() {
    let good = std::fs::read(common::testdata("onnx/conv3d_softmax.onnx")).unwrap();
    assert_session_error(b"");
    assert_session_error(b"not an onnx model");
    assert_session_error(&good[..good.len() / 2]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// Random bytes never make a session, and never panic.
    #[test]
    fn random_bytes_are_errors(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let r = Model::from_bytes(&bytes, Path::new("random.onnx"), &common::config());
        prop_assert!(r.is_err());
    }
}

// --- model folders -------------------------------------------------------------------

#[test]
fn generated_model_folder_loads_every_member_once() {
    let dir = common::testdata("onnx/tissue_model");
    let loaded = load_model_folder(&dir, &common::config()).unwrap();
    assert_eq!(loaded.manifest().name, "test-tissue");
    assert_eq!(loaded.members().len(), 2);
    assert_eq!(loaded.harmonizer(), &imaging::harmonize::Harmonizer::ZScore);
    let input = crop();
    let mut outputs = Vec::new();
    for m in loaded.members() {
        assert_eq!(format!("{:x}", Sha256::digest(std::fs::read(&m.file).unwrap())), m.sha256);
        assert_eq!(m.model().provider(), Provider::Cpu);
        outputs.push(m.model().run(input.view()).unwrap());
    }
    assert_eq!(outputs[0].shape(), &[1, 3, 32, 32, 32]);
    assert_ne!(outputs[0], outputs[1], "the two members have different seeds");
}

/// A segmentation folder gets one session per lane for every member, all
/// giving the same output; a classifier, which runs whole volumes one pass at
/// a time, gets one.
#[test]
fn segmentation_members_get_a_session_per_lane() {
    let config = RuntimeConfig { lanes: 3, ..common::config() };
    let loaded = load_model_folder(&common::testdata("onnx/tissue_model"), &config).unwrap();
    let input = crop();
    for m in loaded.members() {
        assert_eq!(m.sessions.len(), 3);
        let outputs: Vec<_> = m.sessions.iter().map(|s| s.run(input.view()).unwrap()).collect();
        assert!(outputs.iter().all(|o| *o == outputs[0]), "{}: the lanes' sessions agree", m.file.display());
    }
    let quality = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/scan-quality");
    let loaded = load_model_folder(&quality, &config).unwrap();
    assert!(loaded.members().iter().all(|m| m.sessions.len() == 1));
}

fn load_err(dir: &Path) -> ManifestError {
    match load_model_folder(dir, &common::config()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => {
            let msg = e.to_string();
            eprintln!("{}: {msg}", dir.display());
            assert!(!msg.contains('\n'), "one line: {msg}");
            e
        }
    }
}

#[test]
fn missing_member_is_named() {
    let dir = common::scratch_model_folder("missing-member");
    std::fs::remove_file(dir.join("member_1.onnx")).unwrap();
    let err = load_err(&dir);
    assert!(matches!(err, ManifestError::MissingMember { .. }), "{err}");
    assert!(err.to_string().contains("member_1.onnx"), "{err}");
}

#[test]
fn missing_manifest_is_named() {
    let dir = common::scratch_model_folder("missing-manifest");
    std::fs::remove_file(dir.join("manifest.toml")).unwrap();
    let err = load_err(&dir);
    assert!(matches!(err, ManifestError::ManifestRead { .. }), "{err}");
    assert!(err.to_string().contains("manifest.toml"), "{err}");
}

#[test]
fn wrong_sha256_names_the_member_and_both_hashes() {
    let dir = common::scratch_model_folder("wrong-sha");
    let actual = format!("{:x}", Sha256::digest(std::fs::read(dir.join("member_0.onnx")).unwrap()));
    let wrong = "0".repeat(64);
    common::edit_manifest(&dir, |t| t.replacen(&actual, &wrong, 1));
    let err = load_err(&dir);
    assert!(matches!(err, ManifestError::ChecksumMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("member_0.onnx") && msg.contains(&actual) && msg.contains(&wrong), "{msg}");
}

#[test]
fn altered_member_fails_its_checksum() {
    let dir = common::scratch_model_folder("altered-member");
    let mut bytes = std::fs::read(dir.join("member_1.onnx")).unwrap();
    bytes.push(0);
    std::fs::write(dir.join("member_1.onnx"), &bytes).unwrap();
    let err = load_err(&dir);
    assert!(matches!(err, ManifestError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{:x}", Sha256::digest(&bytes))), "{err}");
}

#[test]
fn unknown_manifest_field_is_named() {
    let dir = common::scratch_model_folder("unknown-field");
    common::edit_manifest(&dir, |t| t.replacen("[inference]\n", "[inference]\nbatch = 4\n", 1));
    let err = load_err(&dir);
    assert!(matches!(err, ManifestError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("`batch`"), "{err}");
}

#[test]
fn output_channels_disagreeing_with_labels_are_errors() {
    let dir = common::scratch_model_folder("four-labels");
    let extra = "[[labels]]\nvalue = 3\nname = \"csf\"\ncolour = [0, 0, 255]\n\n[inference]";
    common::edit_manifest(&dir, |t| t.replacen("[inference]", extra, 1));
    let err = load_err(&dir);
    assert!(matches!(err, ManifestError::Signature { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("member_0.onnx") && msg.contains("3 channels") && msg.contains("need 4"), "{msg}");
}

#[test]
fn signature_disagreements_are_errors() {
    let cases: [(&str, &str, &str, &str); 4] = [
        ("input-name", "tensor = \"image\"", "tensor = \"t1\"", "`image`"),
        ("input-channels", "channels = 1", "channels = 2", "1 channels"),
        ("output-name", "tensor = \"probabilities\"", "tensor = \"softmax\"", "`probabilities`"),
        ("task", "task = \"segmentation\"", "task = \"classification\"", "rank 5"),
    ];
    for (name, from, to, needle) in cases {
        let dir = common::scratch_model_folder(name);
        common::edit_manifest(&dir, |t| t.replacen(from, to, 1));
        let err = load_err(&dir);
        assert!(matches!(err, ManifestError::Signature { .. }), "{name}: {err}");
        assert!(err.to_string().contains(needle), "{name}: {err}");
    }
}

#[test]
fn corrupt_member_with_matching_checksum_is_a_session_error() {
    let dir = common::scratch_model_folder("corrupt-member");
    let old = format!("{:x}", Sha256::digest(std::fs::read(dir.join("member_1.onnx")).unwrap()));
    let garbage = b"\x08\x07garbage that is not a protobuf model".to_vec();
    std::fs::write(dir.join("member_1.onnx"), &garbage).unwrap();
    common::edit_manifest(&dir, |t| t.replacen(&old, &format!("{:x}", Sha256::digest(&garbage)), 1));
    let err = load_err(&dir);
    assert!(matches!(err, ManifestError::Runtime(RuntimeError::Session { .. })), "{err}");
    assert!(err.to_string().contains("member_1.onnx"), "{err}");
}
