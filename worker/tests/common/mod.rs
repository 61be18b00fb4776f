//! Helpers shared by the worker's integration tests: the generated test data,
//! the committed fixtures, the ONNX Runtime library (which must be present:
//! a missing library fails the tests, it never skips them), and scratch copies
//! of model folders to break on purpose.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use worker::runtime::{DYLIB_ENV, RuntimeConfig};

/// A file under `.testdata/` (or `$NEUROBATCH_TESTDATA`), which must exist.
pub fn testdata(rel: &str) -> PathBuf {
    let dir = std::env::var_os("NEUROBATCH_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.testdata"));
    let p = dir.join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/setup.sh` (or `.venv/bin/python scripts/testdata/onnx_models.py data --out .testdata`)",
        p.display()
    );
    p
}

/// Parses a committed JSON fixture under `worker/tests/fixtures/`.
pub fn load_json(rel: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The ONNX Runtime library named by `ORT_DYLIB_PATH`.
pub fn dylib() -> PathBuf {
    let path = std::env::var_os(DYLIB_ENV).filter(|p| !p.is_empty()).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{DYLIB_ENV} is not set: run `bash scripts/setup.sh` and `source scripts/env.sh` (or use scripts/test.sh)"
        )
    });
    assert!(path.is_file(), "{DYLIB_ENV}={} does not exist: run `bash scripts/setup.sh`", path.display());
    path
}

/// A runtime configuration on the library from `ORT_DYLIB_PATH`, one intra-op thread.
pub fn config() -> RuntimeConfig {
    RuntimeConfig { dylib_path: Some(dylib()), intra_op_threads: 1, ..RuntimeConfig::default() }
}

/// A raw volume written by `_common.write_raw_f32`: (shape, voxels in Fortran order).
pub fn load_raw_f32(stem: &Path) -> ([usize; 3], Vec<f32>) {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stem.with_extension("json")).expect("raw volume json"))
            .expect("raw volume json parses");
    let shape: [usize; 3] = serde_json::from_value(meta["shape"].clone()).expect("shape");
    let bytes = std::fs::read(stem.with_extension("f32")).expect("raw volume data");
    let data: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{}", stem.display());
    (shape, data)
}

/// A fresh copy of the generated model folder, to break on purpose.
pub fn scratch_model_folder(name: &str) -> PathBuf {
    let src = testdata("onnx/tissue_model");
    let dst = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model-folders").join(name);
    if dst.exists() {
        std::fs::remove_dir_all(&dst).unwrap();
    }
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    dst
}

/// Rewrites `dir/manifest.toml` with `edit`.
pub fn edit_manifest(dir: &Path, edit: impl FnOnce(String) -> String) {
    let p = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&p, edited).unwrap();
}

/// Runs `f` and returns, with its result, the tracing events it emitted on
/// this thread, as `LEVEL message field=value …` lines.
///
/// The recorder is the global subscriber (installed once), not a scoped one:
/// with scoped subscribers, a callsite first reached by another test thread
/// can cache "never interested" and the event is lost.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    use std::cell::RefCell;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    thread_local! {
        static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
    }
    struct Line(String);
    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0.push_str(&format!(" {value:?}"));
            } else {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.0.push_str(&format!(" {value}"));
            } else {
                self.0.push_str(&format!(" {}={value}", field.name()));
            }
        }
    }
    struct Recorder;
    impl Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            CAPTURED.with(|c| {
                if let Some(lines) = c.borrow_mut().as_mut() {
                    let mut line = Line(event.metadata().level().to_string());
                    event.record(&mut line);
                    lines.push(line.0);
                }
            });
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| tracing::subscriber::set_global_default(Recorder).expect("no other global subscriber"));
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let out = f();
    let lines = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, lines)
}
