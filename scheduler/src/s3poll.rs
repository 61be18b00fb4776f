//! The S3 prefix poll: every first-level folder under
//! `scheduler.s3_prefix` in the configured object store is one study. A
//! listing carries no modification times, so a study is ready once its key
//! set has stayed the same for `quiet_period` (tracked in memory between
//! polls). Its job reads it where it is (no snapshot copy); a study whose key
//! set changes after it was staged is staged again as a new version.

use std::collections::BTreeMap;
use std::time::Instant;

use neurobatch_core::domain::Priority;
use sha2::{Digest, Sha256};

use crate::submit::Versioning;
use crate::{Scheduler, SchedulerError, Submission};

/// One folder as the poller last saw it.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    keys: String,
    since: Instant,
    /// The key set last staged.
    staged: Option<String>,
}

impl Scheduler {
    /// One poll of the S3 prefix (nothing when `scheduler.s3_prefix` is empty).
    pub async fn poll_s3_once(&self) -> Result<Vec<Submission>, SchedulerError> {
        let prefix = self.inner.config.scheduler.s3_prefix.trim_matches('/').to_string();
        if prefix.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.inner.objects.list(&format!("{prefix}/")).await?;
        let mut folders: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for key in &keys {
            let rest = key.get(prefix.len() + 1..).unwrap_or_default();
            // Top-level objects are not studies; hidden folders are someone's work in progress.
            if let Some((folder, _)) = rest.split_once('/')
                && !folder.starts_with('.')
            {
                folders.entry(folder.to_string()).or_default().push(rest);
            }
        }
        let quiet = self.inner.config.scheduler.quiet_period();
        let mut ready = Vec::new();
        {
            let mut seen = self.inner.s3_seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|folder, _| folders.contains_key(folder));
            for (folder, keys) in &folders {
                let digest = hex::encode(Sha256::digest(keys.join("\n").as_bytes()));
                let t = seen.entry(folder.clone()).or_insert_with(|| Tracked {
                    keys: digest.clone(),
                    since: Instant::now(),
                    staged: None,
                });
                if t.keys != digest {
                    t.keys = digest.clone();
                    t.since = Instant::now();
                }
                if t.since.elapsed() >= quiet && t.staged.as_deref() != Some(digest.as_str()) {
                    ready.push((folder.clone(), digest, t.staged.is_some()));
                }
            }
        }
        let mut out = Vec::new();
        for (folder, digest, changed) in ready {
            let uri = self.inner.objects.url_of(&format!("{prefix}/{folder}"));
            let versioning = if changed { Versioning::Changed } else { Versioning::BySnapshot };
            match self.stage(&uri, Priority::Routine, false, versioning).await {
                Ok(sub) => {
                    if !matches!(sub, Submission::NotReady { .. })
                        && let Some(t) = self.inner.s3_seen.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&folder)
                    {
                        t.staged = Some(digest);
                    }
                    out.push(sub);
                }
                Err(e) => tracing::warn!(study = %uri, error = %e, "s3 study skipped"),
            }
        }
        Ok(out)
    }
}
