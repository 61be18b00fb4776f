//! ONNX Runtime for the worker: the shared library, loaded once per process,
//! and sessions on it.
//!
//! Owns finding and loading `libonnxruntime` ([`init`]), choosing an execution
//! provider with a logged fallback to the CPU ([`Provider`]), and [`Model`]: one
//! ONNX file turned into a session once, with its input/output signature, run
//! on `f32` NCDHW tensors. Does not own model folders and manifests
//! ([`crate::manifest`]), patches, test-time augmentation or accumulation.
//!
//! The library is not linked at build time: `ort` is built with `load-dynamic`
//! (its default build downloads binaries, which cannot work offline), and the
//! library comes from the pinned PyPI wheel `onnxruntime` 1.31.x, the API level
//! `ort` 2.0.0-rc.15 is built for. `bash scripts/setup.sh` installs it into
//! `.venv`, and `scripts/env.sh` exports its path as `ORT_DYLIB_PATH`. The path
//! comes from [`RuntimeConfig::dylib_path`] or else `ORT_DYLIB_PATH`; a path
//! that is missing, or a file that is not a loadable ONNX Runtime of a
//! compatible version, is a [`RuntimeError`] naming the path and where it came
//! from, never a panic.
//!
//! Tensor layout: [`Model::run`] takes `[N, C, D, H, W]` where D, H, W are a
//! volume's voxel axes i, j, k — the layout a PyTorch or MONAI model sees when
//! it is fed nibabel's `get_fdata()` array, so models trained in Python run
//! unchanged. A Fortran-ordered [`imaging::Volume`] is such an array viewed
//! with `ndarray`'s `.f()` shape.
//!
//! ```no_run
//! use worker::runtime::{Model, Provider, RuntimeConfig};
//! let config = RuntimeConfig { dylib_path: None, intra_op_threads: 2, providers: vec![Provider::Cuda, Provider::Cpu] };
//! let model = Model::load("models/tissue/member_0.onnx".as_ref(), &config)?;
//! let input = ndarray::Array5::<f32>::zeros((1, 1, 32, 32, 32));
//! let probabilities = model.run(input.view())?;
//! println!("{} on {}", model.path().display(), model.provider());
//! # Ok::<(), worker::runtime::RuntimeError>(())
//! ```

mod library;
mod model;
mod provider;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use library::{DYLIB_ENV, LibrarySource, init, loaded_library};
pub use model::{Model, TensorInfo};
pub use provider::Provider;

/// The `[runtime]` table of the worker's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `libonnxruntime.so*`; when absent, `ORT_DYLIB_PATH` must name it.
    pub dylib_path: Option<PathBuf>,
    /// Threads one session uses inside an operator; 0 lets ONNX Runtime choose
    /// (one per physical core).
    pub intra_op_threads: usize,
    /// Execution providers in order of preference. Each one that cannot be used
    /// is skipped with a warning; the CPU is always the last resort.
    pub providers: Vec<Provider>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { dylib_path: None, intra_op_threads: 0, providers: vec![Provider::Cpu] }
    }
}

/// Errors loading ONNX Runtime, creating sessions and running them.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "onnx runtime library not configured: set runtime.dylib_path or {DYLIB_ENV} \
         (`bash scripts/setup.sh` installs it, `source scripts/env.sh` exports it)"
    )]
    LibraryNotConfigured,
    #[error("onnx runtime library {path} (from {origin}) does not exist: run `bash scripts/setup.sh` or fix {origin}")]
    LibraryMissing { path: PathBuf, origin: LibrarySource },
    #[error("onnx runtime library {path} (from {origin}) cannot be loaded: {reason}")]
    LibraryLoad { path: PathBuf, origin: LibrarySource, reason: String },
    #[error("onnx runtime is already loaded from {loaded}, cannot load {requested} in the same process")]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    #[error("onnx runtime environment cannot be created: {0}")]
    Environment(String),
    #[error("cannot read onnx model {path}: {reason}")]
    ModelRead { path: PathBuf, reason: String },
    #[error("cannot create an onnx runtime session from {path}: {reason}")]
    Session { path: PathBuf, reason: String },
    #[error("onnx model {path} is not supported: {reason}")]
    Signature { path: PathBuf, reason: String },
    #[error("onnx model {path} expects input `{input}` of shape {expected} but got {actual:?}")]
    InputShape { path: PathBuf, input: String, expected: String, actual: Vec<usize> },
    #[error("onnx model {path} has no MC-dropout gate input, cannot run it with the gate at {value}")]
    NoGate { path: PathBuf, value: f32 },
    #[error("running onnx model {path} failed: {reason}")]
    Run { path: PathBuf, reason: String },
}

/// ONNX Runtime's messages can span lines; ours are one line each.
pub(crate) fn one_line(message: impl std::fmt::Display) -> String {
    message.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_to_cpu_and_rejects_unknown_keys() {
        let c: RuntimeConfig = toml::from_str("").unwrap();
        assert_eq!(c, RuntimeConfig::default());
        assert_eq!(c.providers, vec![Provider::Cpu]);
        let c: RuntimeConfig = toml::from_str(
            "dylib_path = \"/x/libonnxruntime.so\"\nintra_op_threads = 2\nproviders = [\"tensorrt\", \"cuda\"]",
        )
        .unwrap();
        assert_eq!(c.providers, vec![Provider::TensorRt, Provider::Cuda]);
        assert_eq!(c.intra_op_threads, 2);
        assert!(toml::from_str::<RuntimeConfig>("threads = 2").is_err());
        assert!(toml::from_str::<RuntimeConfig>("providers = [\"rocm\"]").is_err());
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line("a\n  b\r\nc "), "a b c");
    }
}
