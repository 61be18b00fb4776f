//! The inbox folder: its top-level NIfTI files and folders (one DICOM study
//! each) are staged once they have been quiet for `quiet_period`. A cheap
//! fingerprint per entry (file count, total size, newest mtime) remembers
//! what was staged, so an unchanged entry is not staged again and a changed
//! one (new instances) is. Entries are never moved or deleted. An entry that
//! cannot be staged through no fault of the backends (a name that is not
//! UTF-8, an unreadable or refused entry) is recorded once as an ineligible
//! study with the reason, and not tried again until it changes. Entry names
//! reach the log escaped (`?path`): a name with a newline cannot forge a line.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use neurobatch_core::domain::Priority;

use sha2::{Digest as _, Sha256};

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
                    if let Some(sub) = self.refuse_entry(&path, &reason, &reason).await? {
                        out.push(sub);
                    }
                    continue;
                }
            };
            if cheap.writing {
                out.push(Submission::NotReady { reason: format!("{path:?}: still being written") });
                continue;
            }
            let age = SystemTime::now().duration_since(cheap.newest).unwrap_or(Duration::ZERO);
            if age < quiet {
                out.push(Submission::NotReady {
                    reason: format!(
                        "{path:?}: changed {} s ago, ready after {} s without changes",
                        age.as_secs(),
                        quiet.as_secs()
                    ),
                });
                continue;
            }
            if self.inner.inbox_seen.lock().unwrap_or_else(|e| e.into_inner()).get(&path) == Some(&cheap) {
                continue;
            }
            let Some(source) = path.to_str() else {
                let reason = "the entry's name is not UTF-8: rename it";
                if let Some(sub) = self.refuse_entry(&path, reason, &format!("{cheap:?}")).await? {
                    out.push(sub);
                }
                continue;
            };
            match self.stage(source, Priority::Routine, false, Versioning::BySnapshot).await {
                Ok(sub) => {
                    if !matches!(sub, Submission::NotReady { .. }) {
                        self.inner.inbox_seen.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone(), cheap);
                    }
                    out.push(sub);
                }
                // The entry's own fault: recorded once. A backend's: tried again next pass.
                Err(e) if e.http_status() < 500 => {
                    if let Some(sub) = self.refuse_entry(&path, &e.to_string(), &format!("{cheap:?}")).await? {
                        out.push(sub);
                    }
                }
                Err(e) => tracing::warn!(entry = ?path, error = %e, "inbox entry skipped"),
            }
        }
        Ok(out)
    }

    /// Records an inbox entry that cannot be staged as an ineligible study
    /// (keyed by its path), once per `signature` (what the entry looked like
    /// and why): `None` when this very refusal was recorded before.
    async fn refuse_entry(
        &self,
        path: &Path,
        reason: &str,
        signature: &str,
    ) -> Result<Option<Submission>, SchedulerError> {
        let signature = format!("{signature} {reason}");
        if self.inner.inbox_refused.lock().unwrap_or_else(|e| e.into_inner()).get(path) == Some(&signature) {
            return Ok(None);
        }
        let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
        let study_key = format!("inbox-entry-{}", hex::encode(&digest[..8]));
        let uri = format!("file://{}", path.to_string_lossy());
        let study_id = self.inner.store.record_ineligible(&study_key, &uri, reason, chrono::Utc::now()).await?;
        tracing::warn!(entry = ?path, study_id, %reason, "inbox entry cannot be staged: recorded as ineligible");
        self.inner.inbox_refused.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_path_buf(), signature);
        Ok(Some(Submission::Ineligible { study_id, study_key, reason: reason.to_string() }))
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
