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
//! comes from [`RuntimeConfig::dylib_path`], else `ORT_DYLIB_PATH`, else the
//! places [`library::discover`] searches (beside the executable, `../lib`, the
//! project's `.venv`, `/opt/onnxruntime/lib`), so `target/release/neurobatch`
//! runs from a checkout without `source scripts/env.sh`; a path
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
//! let config = RuntimeConfig { dylib_path: None, intra_op_threads: 2, providers: vec![Provider::Cuda, Provider::Cpu], lanes: 1 };
//! let model = Model::load("models/tissue/member_0.onnx".as_ref(), &config)?;
//! let input = ndarray::Array5::<f32>::zeros((1, 1, 32, 32, 32));
//! let probabilities = model.run(input.view())?;
//! println!("{} on {}", model.path().display(), model.provider());
//! # Ok::<(), worker::runtime::RuntimeError>(())
//! ```

mod library;
mod model;
mod provider;
mod tabular;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use library::{DYLIB_ENV, LibrarySource, init, loaded_library};
pub use model::{Model, TensorInfo};
pub use provider::{Provider, UnknownProvider};
pub use tabular::TabularModel;

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
    /// Inference lanes: sessions per segmentation member, each running its own
    /// windows side by side (see [`RuntimeConfig::lanes`]). 0 chooses: one per
    /// core up to [`MAX_AUTO_LANES`] on the CPU, 1 on a GPU.
    pub lanes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { dylib_path: None, intra_op_threads: 0, providers: vec![Provider::Cpu], lanes: 0 }
    }
}

/// The most lanes `lanes = 0` picks, however many cores there are: each lane
/// holds a session per member (memory), and more lanes than this is unmeasured.
pub const MAX_AUTO_LANES: usize = 4;

/// How a segmentation model's sessions are laid out: `lanes` sessions per
/// member, each with `intra_op_threads` (0: ONNX Runtime's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanePlan {
    pub lanes: usize,
    pub intra_op_threads: usize,
}

impl RuntimeConfig {
    /// The lanes and per-session threads for a model run window by window.
    ///
    /// On this project's 2-core machine two single-threaded sessions running
    /// windows side by side process 1.32× the windows of one 2-thread session
    /// (`docs/benchmarks.md`): ONNX Runtime splits each small 3-D convolution
    /// between its threads and synchronizes after every one, lanes never wait
    /// for each other. So `lanes = 0` on the CPU gives one lane per core (at
    /// most [`MAX_AUTO_LANES`]) and, unless `intra_op_threads` is set, divides
    /// the cores between them. A GPU provider first in the list gets one lane:
    /// its session already runs a batch in parallel. Explicit values are kept.
    pub fn lane_plan(&self, cores: usize) -> LanePlan {
        let on_cpu = provider::candidates(&self.providers).first() == Some(&Provider::Cpu);
        let lanes = match self.lanes {
            0 if on_cpu => cores.clamp(1, MAX_AUTO_LANES),
            0 => 1,
            n => n,
        };
        let intra_op_threads = match self.intra_op_threads {
            0 if on_cpu && lanes > 1 => (cores / lanes).max(1),
            n => n,
        };
        LanePlan { lanes, intra_op_threads }
    }
}

/// Cores this process may use (1 when the system cannot say).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Errors loading ONNX Runtime, creating sessions and running them.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "onnx runtime library not found: set runtime.dylib_path or {DYLIB_ENV}, or install it where it is \
         looked for (beside the executable, ../lib, the project's .venv, /opt/onnxruntime/lib; \
         `bash scripts/setup.sh` installs it in .venv)"
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
        let c: RuntimeConfig = toml::from_str("lanes = 3").unwrap();
        assert_eq!(c.lanes, 3);
    }

    #[test]
    fn lanes_follow_the_cores_on_the_cpu_and_stay_single_on_a_gpu() {
        let cpu = RuntimeConfig::default();
        assert_eq!(cpu.lane_plan(2), LanePlan { lanes: 2, intra_op_threads: 1 });
        assert_eq!(cpu.lane_plan(1), LanePlan { lanes: 1, intra_op_threads: 0 });
        assert_eq!(cpu.lane_plan(16), LanePlan { lanes: MAX_AUTO_LANES, intra_op_threads: 4 });
        assert_eq!(cpu.lane_plan(6), LanePlan { lanes: 4, intra_op_threads: 1 });
        let gpu = RuntimeConfig { providers: vec![Provider::Cuda, Provider::Cpu], ..RuntimeConfig::default() };
        assert_eq!(gpu.lane_plan(16), LanePlan { lanes: 1, intra_op_threads: 0 });
        let set = RuntimeConfig { lanes: 3, intra_op_threads: 2, ..RuntimeConfig::default() };
        assert_eq!(set.lane_plan(2), LanePlan { lanes: 3, intra_op_threads: 2 });
        let one = RuntimeConfig { lanes: 1, ..RuntimeConfig::default() };
        assert_eq!(one.lane_plan(8), LanePlan { lanes: 1, intra_op_threads: 0 });
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line("a\n  b\r\nc "), "a b c");
    }
}
