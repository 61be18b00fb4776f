//! Shared helpers of the fuzz targets: a per-process scratch folder for the
//! readers whose public API takes a path.

use std::path::PathBuf;
use std::sync::OnceLock;

/// A folder private to this fuzzing process. `scripts/fuzz.sh` points
/// `IMAGING_FUZZ_TMP` at a fresh folder (under /dev/shm when it exists, so
/// the per-input file write stays in memory) and removes it afterwards.
pub fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("IMAGING_FUZZ_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("imaging-fuzz-{}", std::process::id()));
        // Without a scratch folder no input can be tried: failing loudly is right for a harness.
        std::fs::create_dir_all(&dir).expect("create the fuzz scratch folder");
        dir
    })
}
