//! Which sources the scheduler may read (issue 15). A token that may submit
//! studies belongs to a PACS bridge, not to root: local paths are accepted
//! only inside the inbox, the file object store's root or
//! `scheduler.allowed_roots` — judged both as written (with `..` resolved)
//! and after every symlink is resolved — and `s3://` URIs only inside the
//! configured storage bucket's prefix or `scheduler.allowed_s3_prefixes`.
//! Anything else is refused before it is read, listed or even looked up, with
//! one message whatever it names, so the answer does not tell whether a path
//! exists. This module owns the decision; `source.rs` reads what it allows.

use std::path::{Component, Path, PathBuf};

use neurobatch_core::config::Config;
use neurobatch_core::storage::ObjectStore;

use crate::SchedulerError;

/// The configured places a study may come from.
#[derive(Debug, Clone)]
pub(crate) struct Confinement {
    /// Absolute, lexically normal roots, as configured and (where they exist
    /// at start-up) with their symlinks resolved.
    roots: Vec<PathBuf>,
    /// `(bucket, key prefix)` pairs; an empty prefix is the whole bucket.
    s3: Vec<(String, String)>,
}

impl Confinement {
    /// The inbox, the file store's root or the S3 store's bucket and prefix,
    /// and the `scheduler.allowed_*` lists.
    pub fn from_config(config: &Config, objects: &ObjectStore) -> Result<Confinement, SchedulerError> {
        let mut roots: Vec<PathBuf> = vec![config.scheduler.inbox.clone()];
        roots.extend(config.scheduler.allowed_roots.iter().cloned());
        let mut s3 = Vec::new();
        match objects {
            ObjectStore::File(f) => roots.push(f.root().to_path_buf()),
            ObjectStore::S3(_) => s3.push(s3_parts(&objects.url_of("")).ok_or_else(|| SchedulerError::Config {
                key: "storage.url",
                reason: "not an s3://bucket/prefix URL".into(),
            })?),
        }
        for prefix in &config.scheduler.allowed_s3_prefixes {
            s3.push(s3_parts(prefix).ok_or_else(|| SchedulerError::Config {
                key: "scheduler.allowed_s3_prefixes",
                reason: format!("`{prefix}` is not an s3://bucket[/prefix] URL"),
            })?);
        }
        let cwd = std::env::current_dir()
            .map_err(|e| SchedulerError::Config { key: "scheduler.allowed_roots", reason: e.to_string() })?;
        let mut all = Vec::new();
        for root in roots.iter().filter(|r| !r.as_os_str().is_empty()) {
            let written = normal(&cwd.join(root));
            // A root that does not exist yet (an inbox created later) is
            // resolved again at each check; see `resolved_roots`.
            if let Ok(real) = std::fs::canonicalize(&written) {
                all.push(real);
            }
            all.push(written);
        }
        all.sort();
        all.dedup();
        Ok(Confinement { roots: all, s3 })
    }

    /// The real path of a local source, when it lies inside a root both as
    /// written and once resolved. `path` may be relative (to the working
    /// directory) and need not exist; `input` names it in errors.
    pub async fn local(&self, input: &str, path: &Path) -> Result<PathBuf, SchedulerError> {
        let cwd = std::env::current_dir().map_err(|e| SchedulerError::read(input, e))?;
        let written = normal(&cwd.join(path));
        if !self.roots.iter().any(|r| written.starts_with(r)) {
            return Err(SchedulerError::not_allowed(input));
        }
        let real = tokio::fs::canonicalize(&written).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SchedulerError::bad(input, "no such file or folder"),
            _ => SchedulerError::read(input, e),
        })?;
        if !self.resolved_roots().await.iter().any(|r| real.starts_with(r)) {
            // A symlink (or a symlinked folder on the way) that leads out of every root.
            return Err(SchedulerError::not_allowed(input));
        }
        Ok(real)
    }

    /// Whether an `s3://bucket/key` URI lies inside an allowed bucket and prefix.
    pub fn s3(&self, input: &str) -> Result<(), SchedulerError> {
        let Some((bucket, key)) = s3_parts(input) else {
            return Err(SchedulerError::bad(input, "expected s3://bucket/prefix without empty, `.` or `..` segments"));
        };
        let inside = self.s3.iter().any(|(b, p)| {
            *b == bucket
                && (p.is_empty() || key == *p || key.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('/')))
        });
        if inside { Ok(()) } else { Err(SchedulerError::not_allowed(input)) }
    }

    /// The roots with symlinks resolved now (one created after start-up too).
    async fn resolved_roots(&self) -> Vec<PathBuf> {
        let mut out = Vec::with_capacity(self.roots.len());
        for r in &self.roots {
            if let Ok(real) = tokio::fs::canonicalize(r).await {
                out.push(real);
            }
        }
        out
    }
}

/// `path` (absolute) with `.` dropped and `..` applied, without touching the
/// file system; `..` at the root stays at the root.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `s3://bucket/a/b/` → (`bucket`, `a/b`); `None` for another scheme, an
/// empty bucket, or an empty, `.` or `..` segment inside the key.
fn s3_parts(uri: &str) -> Option<(String, String)> {
    let rest = uri.trim().strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let key = key.trim_end_matches('/');
    if bucket.is_empty() || (!key.is_empty() && key.split('/').any(|s| s.is_empty() || s == "." || s == "..")) {
        return None;
    }
    Some((bucket.to_string(), key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confinement(roots: &[&str], s3: &[(&str, &str)]) -> Confinement {
        Confinement {
            roots: roots.iter().map(PathBuf::from).collect(),
            s3: s3.iter().map(|(b, p)| (b.to_string(), p.to_string())).collect(),
        }
    }

    #[test]
    fn dots_are_applied_without_the_file_system() {
        assert_eq!(normal(Path::new("/srv/inbox/../../etc/./passwd")), PathBuf::from("/etc/passwd"));
        assert_eq!(normal(Path::new("/../../etc")), PathBuf::from("/etc"));
        assert_eq!(normal(Path::new("/srv/inbox/a/..")), PathBuf::from("/srv/inbox"));
    }

    #[test]
    fn s3_uris_must_lie_inside_a_bucket_and_prefix_on_a_segment_boundary() {
        let c = confinement(&[], &[("studies", "incoming"), ("archive", "")]);
        for ok in ["s3://studies/incoming/a", "s3://studies/incoming", "s3://studies/incoming/a/b/", "s3://archive/x"] {
            assert!(c.s3(ok).is_ok(), "{ok}");
        }
        for refused in
            ["s3://studies/incoming2/a", "s3://studies/other", "s3://other-bucket/incoming/a", "s3://studies"]
        {
            assert!(matches!(c.s3(refused), Err(SchedulerError::NotAllowed { .. })), "{refused}");
        }
        for bad in [
            "s3://studies/incoming/../secrets",
            "s3://studies/incoming//a",
            "s3:///incoming",
            "s3://studies/incoming/./a",
        ] {
            assert!(matches!(c.s3(bad), Err(SchedulerError::BadSource { .. })), "{bad}");
        }
    }

    #[tokio::test]
    async fn paths_outside_every_root_get_one_answer_whether_they_exist_or_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let inbox = dir.path().join("inbox");
        std::fs::create_dir_all(inbox.join("study")).unwrap_or_else(|e| panic!("{e}"));
        let c = confinement(&[inbox.to_str().unwrap_or_default()], &[]);
        let real = c.local("study", &inbox.join("study")).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(real.ends_with("inbox/study"));
        let missing = c.local("x", &inbox.join("missing")).await.map(drop).unwrap_err();
        assert!(
            matches!(missing, SchedulerError::BadSource { .. }),
            "inside a root, a missing path is named: {missing}"
        );
        let mut messages = Vec::new();
        for outside in [Path::new("/etc"), Path::new("/no/such/place"), &inbox.join("../../..").join("etc")] {
            let e = c.local("p", outside).await.map(drop).unwrap_err();
            assert!(matches!(e, SchedulerError::NotAllowed { .. }), "{}: {e}", outside.display());
            messages.push(e.to_string());
        }
        messages.dedup();
        assert_eq!(messages.len(), 1, "the same answer for every outside path: {messages:?}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlink_out_of_the_inbox_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let inbox = dir.path().join("inbox");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&inbox).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&outside).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&outside, inbox.join("link")).unwrap_or_else(|e| panic!("{e}"));
        let c = confinement(&[inbox.to_str().unwrap_or_default()], &[]);
        let e = c.local("link", &inbox.join("link")).await.map(drop).unwrap_err();
        assert!(matches!(e, SchedulerError::NotAllowed { .. }), "{e}");
    }
}
