//! Finding and loading the ONNX Runtime shared library, once per process, and
//! the one `ort` environment every session is created in.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ort::environment::Environment;
use tracing::info;

use super::{RuntimeConfig, RuntimeError, one_line};

/// The environment variable naming the library when the config does not.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Where the library path came from, named in errors so the reader knows what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    Config,
    Environment,
    /// Found where the project installs it (see [`discover`]).
    Discovered,
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LibrarySource::Config => "runtime.dylib_path",
            LibrarySource::Environment => DYLIB_ENV,
            LibrarySource::Discovered => "the places searched without configuration",
        })
    }
}

/// Where the library is looked for when neither the configuration nor
/// `ORT_DYLIB_PATH` names it, in order: beside the executable (a release
/// archive or image), `lib/` above it, the `.venv` that `scripts/setup.sh`
/// builds (its onnxruntime wheel) in the working directory or any folder
/// above the executable (a checkout's `target/release/neurobatch`), and
/// `/opt/onnxruntime/lib`. The first `libonnxruntime.so*` found wins.
pub fn discover(exe: Option<&Path>, cwd: Option<&Path>) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(exe_dir) = exe.and_then(Path::parent) {
        dirs.push(exe_dir.to_path_buf());
        if let Some(up) = exe_dir.parent() {
            dirs.push(up.join("lib"));
        }
    }
    let mut roots: Vec<&Path> = cwd.into_iter().collect();
    if let Some(exe_dir) = exe.and_then(Path::parent) {
        roots.extend(exe_dir.ancestors());
    }
    for root in roots {
        let lib = root.join(".venv").join("lib");
        let Ok(entries) = std::fs::read_dir(&lib) else { continue };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("python3")))
            .collect();
        pythons.sort();
        dirs.extend(pythons.into_iter().map(|p| p.join("site-packages").join("onnxruntime").join("capi")));
    }
    dirs.push(PathBuf::from("/opt/onnxruntime/lib"));
    dirs.iter().find_map(|d| library_in(d))
}

/// The `libonnxruntime.so*` file in `dir` (the versioned one when both are there).
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
        .collect();
    found.sort();
    found.pop()
}

struct Loaded {
    path: PathBuf,
    environment: Environment,
}

// `ort` keeps the library and allows one environment per process; this records
// which file that is, so a second, different path is an error instead of being
// silently ignored.
static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// Loads the library named by `config` (or `ORT_DYLIB_PATH`) and creates the
/// process's ONNX Runtime environment. Idempotent for the same file; every
/// [`super::Model`] calls it, so calling it first only moves the error earlier.
pub fn init(config: &RuntimeConfig) -> Result<(), RuntimeError> {
    environment(config).map(|_| ())
}

/// The library loaded in this process, if any.
pub fn loaded_library() -> Option<PathBuf> {
    LOADED.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|l| l.path.clone())
}

pub(crate) fn environment(config: &RuntimeConfig) -> Result<Environment, RuntimeError> {
    let (path, origin) = resolve(config)?;
    let path = check_file(&path, origin)?;
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(l) = loaded.as_ref() {
        if l.path == path {
            return Ok(l.environment.clone());
        }
        return Err(RuntimeError::AlreadyLoaded { loaded: l.path.clone(), requested: path });
    }
    let environment = load(&path, origin)?;
    info!(path = %path.display(), from = %origin, "onnx runtime loaded");
    *loaded = Some(Loaded { path, environment: environment.clone() });
    Ok(environment)
}

fn resolve(config: &RuntimeConfig) -> Result<(PathBuf, LibrarySource), RuntimeError> {
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    resolve_with(config, std::env::var_os(DYLIB_ENV), || discover(exe.as_deref(), cwd.as_deref()))
}

fn resolve_with(
    config: &RuntimeConfig,
    env: Option<OsString>,
    discovered: impl FnOnce() -> Option<PathBuf>,
) -> Result<(PathBuf, LibrarySource), RuntimeError> {
    if let Some(p) = config.dylib_path.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        return Ok((p.clone(), LibrarySource::Config));
    }
    match env {
        Some(p) if !p.is_empty() => Ok((PathBuf::from(p), LibrarySource::Environment)),
        _ => discovered().map(|p| (p, LibrarySource::Discovered)).ok_or(RuntimeError::LibraryNotConfigured),
    }
}

/// Checks before `dlopen`: `ort` resolves a relative path against the
/// executable's folder and would report a missing file as a loader message.
fn check_file(path: &Path, origin: LibrarySource) -> Result<PathBuf, RuntimeError> {
    let load_err = |reason: String| RuntimeError::LibraryLoad { path: path.to_path_buf(), origin, reason };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RuntimeError::LibraryMissing { path: path.to_path_buf(), origin });
        }
        Err(e) => return Err(load_err(one_line(e))),
    };
    if !meta.is_file() {
        return Err(load_err("not a regular file".into()));
    }
    if cfg!(target_os = "linux") {
        let mut magic = [0u8; 4];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map_err(|e| load_err(format!("cannot read its header: {}", one_line(e))))?;
        if magic != *b"\x7fELF" {
            return Err(load_err("not a shared library (no ELF header)".into()));
        }
    }
    std::fs::canonicalize(path).map_err(|e| load_err(one_line(e)))
}

fn load(path: &Path, origin: LibrarySource) -> Result<Environment, RuntimeError> {
    // `ort` asserts on a few states a foreign or damaged library can produce
    // (a null `OrtApiBase`, a null `OrtApi` from `GetApi`); a bad file must be an
    // error, not a crash of the worker.
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        let builder = ort::init_from(path).map_err(|e| RuntimeError::LibraryLoad {
            path: path.to_path_buf(),
            origin,
            reason: one_line(e),
        })?;
        builder.with_name("neurobatch").build().map_err(|e| RuntimeError::Environment(one_line(e)))
    }));
    attempt.unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Err(RuntimeError::LibraryLoad {
            path: path.to_path_buf(),
            origin,
            reason: format!("onnx runtime panicked while loading: {}", one_line(reason)),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_path_wins_over_the_environment() {
        let config = RuntimeConfig { dylib_path: Some("/opt/ort/libonnxruntime.so".into()), ..Default::default() };
        let env = Some(OsString::from("/venv/libonnxruntime.so.1.31.1"));
        let found = || Some(PathBuf::from("/found/libonnxruntime.so"));
        assert_eq!(
            resolve_with(&config, env.clone(), found).unwrap(),
            ("/opt/ort/libonnxruntime.so".into(), LibrarySource::Config)
        );
        let from_env = resolve_with(&RuntimeConfig::default(), env, found).unwrap();
        assert_eq!(from_env, ("/venv/libonnxruntime.so.1.31.1".into(), LibrarySource::Environment));
        assert_eq!(LibrarySource::Environment.to_string(), "ORT_DYLIB_PATH");
    }

    #[test]
    fn nothing_configured_says_how_to_fix_it() {
        for env in [None, Some(OsString::new())] {
            let found =
                resolve_with(&RuntimeConfig::default(), env.clone(), || Some("/found/libonnxruntime.so".into()));
            assert_eq!(found.unwrap(), ("/found/libonnxruntime.so".into(), LibrarySource::Discovered));
            let err = resolve_with(&RuntimeConfig::default(), env, || None).unwrap_err();
            assert!(matches!(err, RuntimeError::LibraryNotConfigured));
            let msg = err.to_string();
            assert!(
                msg.contains("ORT_DYLIB_PATH") && msg.contains("runtime.dylib_path") && msg.contains("setup.sh"),
                "{msg}"
            );
        }
    }

    #[test]
    fn discovery_looks_beside_the_executable_then_in_the_checkouts_venv() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let exe = root.join("target/release/neurobatch");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        assert_eq!(discover(Some(&exe), None), None, "nothing installed");
        let capi = root.join(".venv/lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"\x7fELF").unwrap();
        assert_eq!(discover(Some(&exe), None), Some(capi.join("libonnxruntime.so.1.31.1")), "the checkout's .venv");
        std::fs::write(root.join("target/release/libonnxruntime.so"), b"\x7fELF").unwrap();
        assert_eq!(discover(Some(&exe), None), Some(root.join("target/release/libonnxruntime.so")), "beside it first");
        let elsewhere = tempfile::tempdir().unwrap();
        let other_exe = elsewhere.path().join("bin/neurobatch");
        assert_eq!(
            discover(Some(&other_exe), Some(root)),
            Some(capi.join("libonnxruntime.so.1.31.1")),
            "the working directory's .venv"
        );
    }
}
