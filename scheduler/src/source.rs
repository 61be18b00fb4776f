//! Where a submitted study is: a local path, `file:///abs/path` or
//! `s3://bucket/prefix`, checked against the configured sources
//! (`confine.rs`), made readable locally (an S3 study is downloaded into a
//! temporary folder) and, when it already lies inside the configured object
//! store, its own URL there (then no snapshot is copied).

use std::path::{Path, PathBuf};

use neurobatch_core::scratch::Scratch;
use neurobatch_core::storage::{ObjectStore, S3Settings, StorageError, StudyLimits};

use crate::SchedulerError;
use crate::confine::Confinement;

/// A source made local.
#[derive(Debug)]
pub(crate) struct LocalSource {
    /// The file or folder to inspect.
    pub path: PathBuf,
    /// The URL shown for the study when nothing is copied (ineligible studies).
    pub uri: String,
    /// The source's own URL when it lies inside the configured object store.
    pub in_store: Option<String>,
    /// Keeps a downloaded copy alive while it is inspected and uploaded.
    pub _download: Option<tempfile::TempDir>,
}

/// Resolves `input` against the configured store `objects`, inside `allowed`.
pub(crate) async fn resolve(
    input: &str,
    objects: &ObjectStore,
    s3: &S3Settings,
    allowed: &Confinement,
    limits: StudyLimits,
    scratch: &Scratch,
) -> Result<LocalSource, SchedulerError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(SchedulerError::bad(input, "empty"));
    }
    if input.starts_with("s3://") {
        // Before any client is built: an S3 URI outside the configured places
        // never reaches the SDK (nor its search for credentials).
        allowed.s3(input)?;
        return download(input, objects, s3, limits, scratch).await;
    }
    let path = allowed.local(input, &local_path(input)?).await?;
    let in_store = match objects {
        ObjectStore::File(f) => in_file_store(&path, f.root()).await.map(|rel| objects.url_of(&rel)),
        ObjectStore::S3(_) => None,
    };
    Ok(LocalSource { uri: format!("file://{}", path.display()), path, in_store, _download: None })
}

/// Whether `input` lies inside the configured sources, reading nothing.
pub(crate) async fn check(input: &str, allowed: &Confinement) -> Result<(), SchedulerError> {
    if input.starts_with("s3://") {
        return allowed.s3(input);
    }
    allowed.local(input, &local_path(input)?).await.map(drop)
}

/// The path of a local source: a path, or `file:///abs/path`.
fn local_path(input: &str) -> Result<PathBuf, SchedulerError> {
    match input.split_once("://") {
        Some(("file", rest)) if rest.starts_with('/') => Ok(PathBuf::from(rest)),
        Some(("file", _)) => Err(SchedulerError::bad(input, "expected file:///absolute/path")),
        Some((scheme, _)) => Err(SchedulerError::bad(
            input,
            format!(
                "unknown scheme `{}` (expected a path, file:// or s3://)",
                scheme.chars().take(32).collect::<String>()
            ),
        )),
        None => Ok(PathBuf::from(input)),
    }
}

/// The key prefix of a folder inside a file store's root, if it is one.
/// A single file inside the store is not a study folder: it is copied.
async fn in_file_store(path: &Path, root: &Path) -> Option<String> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    if !tokio::fs::metadata(path).await.ok()?.is_dir() {
        return None;
    }
    let rel = path.strip_prefix(&root).ok()?;
    let rel: Vec<&str> = rel.components().map(|c| c.as_os_str().to_str()).collect::<Option<_>>()?;
    (!rel.is_empty()).then(|| rel.join("/"))
}

/// Downloads every object under an `s3://` prefix into a temporary folder of
/// `scratch`, streamed to disk within the configured object and byte limits.
async fn download(
    input: &str,
    objects: &ObjectStore,
    s3: &S3Settings,
    limits: StudyLimits,
    scratch: &Scratch,
) -> Result<LocalSource, SchedulerError> {
    let uri = input.trim_end_matches('/').to_string();
    let store = ObjectStore::from_url(&uri, s3).await.map_err(|e| SchedulerError::bad(input, e.to_string()))?;
    let dir = scratch.tempdir("stage-").map_err(|e| SchedulerError::read(input, e))?;
    let keys = store.download_all(dir.path(), limits).await.map_err(|e| match e {
        StorageError::TooLarge { .. } => SchedulerError::bad(input, e.to_string()),
        other => other.into(),
    })?;
    if keys.is_empty() {
        return Err(SchedulerError::bad(input, "no objects under this prefix"));
    }
    let base = objects.url_of("");
    let in_store = (!base.is_empty() && uri.starts_with(&format!("{base}/"))).then(|| uri.clone());
    Ok(LocalSource { path: dir.path().to_path_buf(), uri, in_store, _download: Some(dir) })
}
