//! Object storage for study inputs and job results: one [`ObjectStore`]
//! type whose backend is chosen by URL — `s3://bucket[/prefix]` (aws-sdk-s3;
//! AWS, MinIO, Ceph, moto) or `file:///absolute/path` (a local folder, atomic
//! writes). Keys are relative `/`-separated paths checked by [`validate_key`];
//! [`result_key`] gives the deterministic layout of a job's outputs.
//!
//! Semantics on both: `put` overwrites (idempotent for a redelivered job),
//! `get` of a missing key is [`StorageError::NotFound`], `delete` of a
//! missing key succeeds, `list` returns the keys starting with a prefix, sorted.

mod error;
pub(crate) mod file;
mod key;
mod s3;

pub use error::StorageError;
pub use file::FileStore;
pub use key::{result_key, result_prefix, study_folder, validate_key};
pub use s3::{S3Settings, S3Store};

/// How large one study under a prefix may be when it is downloaded
/// (`storage.max_study_objects`, `storage.max_study_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StudyLimits {
    pub max_objects: usize,
    pub max_bytes: u64,
}

impl StudyLimits {
    pub fn from_config(config: &crate::config::StorageConfig) -> StudyLimits {
        StudyLimits {
            max_objects: usize::try_from(config.max_study_objects).unwrap_or(usize::MAX),
            max_bytes: config.max_study_bytes,
        }
    }
}

#[derive(Clone, Debug)]
pub enum ObjectStore {
    S3(S3Store),
    File(FileStore),
}

impl ObjectStore {
    /// Opens the store a URL names; `s3` is used only for `s3://` URLs.
    pub async fn from_url(url: &str, s3: &S3Settings) -> Result<ObjectStore, StorageError> {
        let bad = |reason: &str| StorageError::Url { url: url.to_owned(), reason: reason.to_owned() };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.len() < 3
                || !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            {
                return Err(bad(
                    "expected s3://bucket[/prefix] with a bucket name of lowercase letters, digits, `-` and `.`",
                ));
            }
            let prefix = prefix.trim_end_matches('/');
            if !prefix.is_empty() {
                validate_key(prefix).map_err(|e| bad(&e.to_string()))?;
            }
            Ok(ObjectStore::S3(S3Store::new(bucket, prefix, s3).await?))
        } else if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("expected file:///absolute/path"));
            }
            Ok(ObjectStore::File(FileStore::new(path)))
        } else {
            Err(bad("expected s3://bucket[/prefix] or file:///absolute/path"))
        }
    }

    /// The store the configuration names. A relative `file://` path (`file://./data/objects`)
    /// is taken from the working directory; S3 credentials come from the AWS provider chain.
    pub async fn from_config(config: &crate::config::StorageConfig) -> Result<ObjectStore, StorageError> {
        let url = config.url.expose();
        let url = match url.strip_prefix("file://") {
            Some(path) if !path.starts_with('/') => {
                let cwd = std::env::current_dir().map_err(|e| StorageError::Url {
                    url: url.to_owned(),
                    reason: format!("relative path and no working directory: {e}"),
                })?;
                let rel = path.trim_start_matches("./");
                format!("file://{}", cwd.join(rel).display())
            }
            _ => url.to_owned(),
        };
        ObjectStore::from_url(&url, &S3Settings::from_config(config)).await
    }

    /// The URL of the "folder" `key_prefix` in this store, such that
    /// [`ObjectStore::from_url`] of it opens a store whose keys are the
    /// objects under it (how a job message names its study).
    pub fn url_of(&self, key_prefix: &str) -> String {
        let key_prefix = key_prefix.trim_matches('/');
        let join = |base: &str| match (base.is_empty(), key_prefix.is_empty()) {
            (true, _) => key_prefix.to_owned(),
            (false, true) => base.to_owned(),
            (false, false) => format!("{base}/{key_prefix}"),
        };
        match self {
            ObjectStore::S3(s) => format!("s3://{}/{}", s.bucket(), join(s.prefix())).trim_end_matches('/').to_owned(),
            ObjectStore::File(f) => {
                let root = f.root().display().to_string();
                format!("file://{}", join(root.trim_end_matches('/')))
            }
        }
    }

    /// Writes an object, replacing one with the same key.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        validate_key(key)?;
        match self {
            ObjectStore::S3(s) => s.put(key, bytes).await,
            ObjectStore::File(f) => f.put(key, bytes).await,
        }
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        validate_key(key)?;
        match self {
            ObjectStore::S3(s) => s.get(key).await,
            ObjectStore::File(f) => f.get(key).await,
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        validate_key(key)?;
        match self {
            ObjectStore::S3(s) => s.exists(key).await,
            ObjectStore::File(f) => f.exists(key).await,
        }
    }

    /// Removes an object; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        match self {
            ObjectStore::S3(s) => s.delete(key).await,
            ObjectStore::File(f) => f.delete(key).await,
        }
    }

    /// Whether the store can be reached (readiness): S3 lists at most one
    /// key under the store's prefix; a file store makes sure its root folder
    /// exists.
    pub async fn ping(&self) -> Result<(), StorageError> {
        match self {
            ObjectStore::S3(s) => s.ping().await,
            ObjectStore::File(f) => f.ping().await,
        }
    }

    /// Downloads every object of the store (a study under its prefix) into
    /// `dir`, each streamed to its file (`dir/<key>`), never held in memory:
    /// within `limits` (objects, bytes in all), or [`StorageError::TooLarge`]
    /// before anything over them is written. Empty stores download nothing
    /// (the caller decides what that means). The keys downloaded.
    pub async fn download_all(&self, dir: &std::path::Path, limits: StudyLimits) -> Result<Vec<String>, StorageError> {
        let StudyLimits { max_objects, max_bytes } = limits;
        let keys = self.list("").await?;
        if keys.len() > max_objects {
            return Err(StorageError::TooLarge {
                key: self.url_of(""),
                what: "the number of objects",
                limit: u64::try_from(max_objects).unwrap_or(u64::MAX),
            });
        }
        let mut total = 0u64;
        for key in &keys {
            // Listed keys are checked like any other: relative, no `..`, so `dir/<key>` stays inside `dir`.
            validate_key(key)?;
            let target = key.split('/').fold(dir.to_path_buf(), |p, seg| p.join(seg));
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| StorageError::Io {
                    key: key.clone(),
                    op: "create folder",
                    source: e,
                })?;
            }
            let left = max_bytes.saturating_sub(total);
            let written = match self {
                ObjectStore::S3(s) => s.get_to_file(key, &target, left).await,
                ObjectStore::File(f) => f.get_to_file(key, &target, left).await,
            }
            .map_err(|e| match e {
                StorageError::TooLarge { what, .. } => {
                    StorageError::TooLarge { key: self.url_of(""), what, limit: max_bytes }
                }
                other => other,
            })?;
            total += written;
        }
        Ok(keys)
    }

    /// Every key that starts with `prefix` (`""` for all), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        key::validate_prefix(prefix)?;
        match self {
            ObjectStore::S3(s) => s.list(prefix).await,
            ObjectStore::File(f) => f.list(prefix).await,
        }
    }
}
