//! Helpers shared by the end-to-end tests of the binary: where the repository,
//! the generated test data and scratch folders are, and running `neurobatch`.

#![allow(dead_code)] // each test file uses its own subset

pub mod daemon;
pub mod orthanc;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (the binary package's manifest folder).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `.testdata/` (or `$NEUROBATCH_TESTDATA`), which must exist.
pub fn testdata(rel: &str) -> PathBuf {
    let dir = std::env::var_os("NEUROBATCH_TESTDATA").map(PathBuf::from).unwrap_or_else(|| root().join(".testdata"));
    let p = dir.join(rel);
    assert!(p.exists(), "{} is missing: run `bash scripts/setup.sh`", p.display());
    p
}

/// A fresh, empty directory for one test's outputs.
pub fn scratch(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nb-{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs the binary under test from the repository root.
pub fn neurobatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_neurobatch")).current_dir(root()).args(args).output().expect("the binary runs")
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// `scripts/dicom/check_results.py` (highdicom and dciodvfy) on a SEG (and an SR) and the mask
/// they were written from: its JSON (see the script's header).
pub fn check_dicom_results(seg: &Path, sr: Option<&Path>, mask: &Path) -> serde_json::Value {
    let python =
        std::env::var_os("NEUROBATCH_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"));
    let mut run = Command::new(&python);
    run.arg(root().join("scripts/dicom/check_results.py")).args(["--seg", s(seg), "--mask", s(mask)]);
    if let Some(sr) = sr {
        run.args(["--sr", s(sr)]);
    }
    let out =
        run.output().unwrap_or_else(|e| panic!("cannot run {}: {e} (run `bash scripts/setup.sh`)", python.display()));
    assert!(out.status.success(), "check_results.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("check_results.py prints JSON")
}
