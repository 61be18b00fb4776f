//! Where a submitted study is: a local path, `file:///abs/path` or
//! `s3://bucket/prefix`, made readable locally (an S3 study is downloaded
//! into a temporary folder) and, when it already lies inside the configured
//! object store, its own URL there (then no snapshot is copied).

use std::path::{Path, PathBuf};

use neurobatch_core::storage::{ObjectStore, S3Settings};

use crate::SchedulerError;

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

/// Resolves `input` against the configured store `objects`.
pub(crate) async fn resolve(
    input: &str,
    objects: &ObjectStore,
    s3: &S3Settings,
) -> Result<LocalSource, SchedulerError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(SchedulerError::bad(input, "empty"));
    }
    if input.starts_with("s3://") {
        return download(input, objects, s3).await;
    }
    let path = match input.split_once("://") {
        Some(("file", rest)) => {
            if !rest.starts_with('/') {
                return Err(SchedulerError::bad(input, "expected file:///absolute/path"));
            }
            PathBuf::from(rest)
        }
        Some((scheme, _)) => {
            return Err(SchedulerError::bad(
                input,
                format!("unknown scheme `{scheme}` (expected a path, file:// or s3://)"),
            ));
        }
        None => PathBuf::from(input),
    };
    let path = tokio::fs::canonicalize(&path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SchedulerError::bad(input, "no such file or folder"),
        _ => SchedulerError::read(input, e),
    })?;
    let in_store = match objects {
        ObjectStore::File(f) => in_file_store(&path, f.root()).await.map(|rel| objects.url_of(&rel)),
        ObjectStore::S3(_) => None,
    };
    Ok(LocalSource { uri: format!("file://{}", path.display()), path, in_store, _download: None })
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

/// Downloads every object under an `s3://` prefix into a temporary folder.
async fn download(input: &str, objects: &ObjectStore, s3: &S3Settings) -> Result<LocalSource, SchedulerError> {
    let uri = input.trim_end_matches('/').to_string();
    let store = ObjectStore::from_url(&uri, s3).await.map_err(|e| SchedulerError::bad(input, e.to_string()))?;
    let keys = store.list("").await?;
    if keys.is_empty() {
        return Err(SchedulerError::bad(input, "no objects under this prefix"));
    }
    let dir = tempfile::Builder::new().prefix("nb-stage-").tempdir().map_err(|e| SchedulerError::read(input, e))?;
    for key in &keys {
        let bytes = store.get(key).await?;
        // Keys passed `validate_key` (relative, no `..`): joining them stays inside `dir`.
        let target = dir.path().join(key);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| SchedulerError::read(input, e))?;
        }
        tokio::fs::write(&target, bytes).await.map_err(|e| SchedulerError::read(format!("{uri}/{key}"), e))?;
    }
    let base = objects.url_of("");
    let in_store = (!base.is_empty() && uri.starts_with(&format!("{base}/"))).then(|| uri.clone());
    Ok(LocalSource { path: dir.path().to_path_buf(), uri, in_store, _download: Some(dir) })
}
