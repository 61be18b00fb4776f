//! Loading the ONNX Runtime library: bad paths are typed errors naming the path
//! and where it came from, never panics. One test in its own binary (its own
//! process), because the library is loaded once per process and the order of
//! the steps matters.

mod common;

use worker::runtime::{Model, RuntimeConfig, RuntimeError, init, loaded_library};

fn with_path(path: &std::path::Path) -> RuntimeConfig {
    RuntimeConfig { dylib_path: Some(path.to_path_buf()), ..RuntimeConfig::default() }
}

#[test]
fn library_loading_errors_then_success_then_no_second_library() {
    let good = common::dylib();
    assert_eq!(loaded_library(), None);

    // A path that does not exist: named, with where it came from and what to run.
    let missing = std::path::Path::new("/nonexistent/onnxruntime/libonnxruntime.so.1.31.1");
    let err = init(&with_path(missing)).unwrap_err();
    assert!(matches!(err, RuntimeError::LibraryMissing { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()) && msg.contains("runtime.dylib_path"), "{msg}");
    assert!(msg.contains("setup.sh"), "{msg}");
    // A model cannot be loaded without the library, and says why.
    let model = common::testdata("onnx/conv3d_softmax.onnx");
    assert!(matches!(Model::load(&model, &with_path(missing)), Err(RuntimeError::LibraryMissing { .. })));

    // A file that is not a shared library.
    let text = common::testdata("onnx/mni_crop.json");
    let err = init(&with_path(&text)).unwrap_err();
    assert!(matches!(err, RuntimeError::LibraryLoad { .. }), "{err}");
    assert!(err.to_string().contains("mni_crop.json"), "{err}");

    // A real shared library that is not ONNX Runtime (the wheel's provider bridge).
    let foreign = good.parent().unwrap().join("libonnxruntime_providers_shared.so");
    assert!(foreign.is_file(), "{} is part of the onnxruntime wheel", foreign.display());
    let err = init(&with_path(&foreign)).unwrap_err();
    assert!(matches!(err, RuntimeError::LibraryLoad { .. }), "{err}");
    assert!(err.to_string().contains("libonnxruntime_providers_shared.so"), "{err}");
    assert_eq!(loaded_library(), None);

    // The wheel's library loads, and loading it again is a no-op.
    init(&with_path(&good)).unwrap();
    init(&with_path(&good)).unwrap();
    assert_eq!(loaded_library(), Some(std::fs::canonicalize(&good).unwrap()));

    // A second, different library in the same process is refused, not ignored.
    let copy = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("libonnxruntime-copy.so");
    let _ = std::fs::remove_file(&copy);
    std::fs::hard_link(&good, &copy).or_else(|_| std::fs::copy(&good, &copy).map(drop)).unwrap();
    let err = init(&with_path(&copy)).unwrap_err();
    assert!(matches!(err, RuntimeError::AlreadyLoaded { .. }), "{err}");
    assert!(err.to_string().contains("libonnxruntime-copy.so"), "{err}");
}
