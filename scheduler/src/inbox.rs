//! The inbox folder: its top-level NIfTI files and folders (one DICOM study
//! each) are staged once they have been quiet for `quiet_period`. A cheap
//! fingerprint per entry (file count, total size, newest mtime) remembers
//! what was staged, so an unchanged entry is not staged again and a changed
//! one (new instances) is. Entries are never moved or deleted.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use neurobatch_core::domain::Priority;

use crate::stage::is_hidden;
use crate::submit::Versioning;
use crate::{Scheduler, SchedulerError, Submission, error::joined};

/// What an entry looked like when it was staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cheap {
    files: u64,
    bytes: u64,
    newest: SystemTime,
    /// A `*.part` / `*.tmp` file inside: still being written.
    writing: bool,
}

impl Scheduler {
    /// One inbox pass (see the module docs). Entries that cannot be read are
    /// logged and skipped; entries inside their quiet period come back as `NotReady`.
    pub async fn scan_inbox_once(&self) -> Result<Vec<Submission>, SchedulerError> {
        let inbox = self.inner.config.scheduler.inbox.clone();
        let quiet = self.inner.config.scheduler.quiet_period();
        let entries = joined("inbox scan", tokio::task::spawn_blocking(move || list(&inbox)).await)??;
        let mut out = Vec::new();
        for (path, cheap) in entries {
            let cheap = match cheap {
                Ok(c) => c,
                Err(reason) => {
                    tracing::warn!(entry = %path.display(), %reason, "inbox entry skipped");
                    continue;
                }
            };
            if cheap.writing {
                out.push(Submission::NotReady { reason: format!("{}: still being written", path.display()) });
                continue;
            }
            let age = SystemTime::now().duration_since(cheap.newest).unwrap_or(Duration::ZERO);
            if age < quiet {
                out.push(Submission::NotReady {
                    reason: format!(
                        "{}: changed {} s ago, ready after {} s without changes",
                        path.display(),
                        age.as_secs(),
                        quiet.as_secs()
                    ),
                });
                continue;
            }
            if self.inner.inbox_seen.lock().unwrap_or_else(|e| e.into_inner()).get(&path) == Some(&cheap) {
                continue;
            }
            match self.stage(&path.display().to_string(), Priority::Routine, false, Versioning::BySnapshot).await {
                Ok(sub) => {
                    if !matches!(sub, Submission::NotReady { .. }) {
                        self.inner.inbox_seen.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone(), cheap);
                    }
                    out.push(sub);
                }
                Err(e) => tracing::warn!(entry = %path.display(), error = %e, "inbox entry skipped"),
            }
        }
        Ok(out)
    }
}

/// An inbox entry with its cheap fingerprint, or why it could not be read.
type Entry = (PathBuf, Result<Cheap, String>);

/// The inbox's entries (created when missing), sorted, each with its cheap fingerprint or why it is unreadable.
fn list(inbox: &Path) -> Result<Vec<Entry>, SchedulerError> {
    std::fs::create_dir_all(inbox).map_err(|e| SchedulerError::read(inbox.display(), e))?;
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(inbox).map_err(|e| SchedulerError::read(inbox.display(), e))? {
        let entry = entry.map_err(|e| SchedulerError::read(inbox.display(), e))?;
        let name = entry.file_name();
        if is_hidden(&name) || is_partial(&name) {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() || (kind.is_file() && imaging::nifti::is_nifti_path(&path)) {
            let cheap = cheap(&path);
            entries.push((path, cheap));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

fn is_partial(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy().to_ascii_lowercase();
    name.ends_with(".part") || name.ends_with(".tmp")
}

/// Count, size and newest mtime of an entry, folders' own mtimes included
/// (a file copied with its old mtime preserved still changes its folder's).
fn cheap(path: &Path) -> Result<Cheap, String> {
    let mut c = Cheap { files: 0, bytes: 0, newest: SystemTime::UNIX_EPOCH, writing: false };
    for entry in walkdir::WalkDir::new(path).follow_links(false) {
        let entry = entry.map_err(|e| e.to_string())?;
        let meta = entry.metadata().map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if let Ok(m) = meta.modified() {
            c.newest = c.newest.max(m);
        }
        if meta.is_file() {
            c.files += 1;
            c.bytes += meta.len();
            c.writing |= entry.depth() > 0 && is_partial(entry.file_name());
        }
    }
    Ok(c)
}
