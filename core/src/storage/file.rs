//! The local-folder backend behind `file:///path`: one file per key under the
//! root; writes go to a temporary file in the same folder and are renamed
//! into place, so a reader sees the old object or the new one, never half.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::StorageError;

/// Name prefix of in-progress writes (never listed; refused as a key segment).
pub(crate) const TEMP_PREFIX: &str = ".nb-tmp-";

#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

fn io(key: &str, op: &'static str) -> impl FnOnce(std::io::Error) -> StorageError {
    let key = key.to_owned();
    move |source| StorageError::Io { key, op, source }
}

async fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StorageError::Io {
        key: key.to_owned(),
        op: "background task",
        source: std::io::Error::other(e.to_string()),
    })?
}

impl FileStore {
    pub fn new(root: impl Into<PathBuf>) -> FileStore {
        FileStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        key.split('/').fold(self.root.clone(), |p, seg| p.join(seg))
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(key);
        let k = key.to_owned();
        blocking(key, move || {
            let dir =
                path.parent().ok_or_else(|| StorageError::Key { key: k.clone(), reason: "no parent folder".into() })?;
            std::fs::create_dir_all(dir).map_err(io(&k, "create folder"))?;
            let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir).map_err(io(&k, "create"))?;
            tmp.write_all(&bytes).map_err(io(&k, "write"))?;
            tmp.as_file().sync_all().map_err(io(&k, "sync"))?;
            tmp.persist(&path).map_err(|e| StorageError::Io { key: k.clone(), op: "rename", source: e.error })?;
            Ok(())
        })
        .await
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        match tokio::fs::read(self.path(key)).await {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound { key: key.to_owned() }),
            Err(e) => Err(io(key, "read")(e)),
        }
    }

    /// Copies an object into `path` when it is at most `max_bytes`; the bytes copied.
    pub async fn get_to_file(&self, key: &str, path: &std::path::Path, max_bytes: u64) -> Result<u64, StorageError> {
        let source = self.path(key);
        let size = match tokio::fs::metadata(&source).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound { key: key.to_owned() });
            }
            Err(e) => return Err(io(key, "stat")(e)),
        };
        if size > max_bytes {
            return Err(StorageError::TooLarge { key: key.to_owned(), what: "the study's size", limit: max_bytes });
        }
        tokio::fs::copy(&source, path).await.map_err(io(key, "copy"))
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(key, "stat")(e)),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key);
        let root = self.root.clone();
        let k = key.to_owned();
        blocking(key, move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io(&k, "delete")(e)),
            }
            // Tidy: remove folders the delete left empty, up to the root.
            let mut dir = path.parent().map(Path::to_path_buf);
            while let Some(d) = dir {
                if d == root || !d.starts_with(&root) || std::fs::remove_dir(&d).is_err() {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
            Ok(())
        })
        .await
    }

    /// Creates the root folder when missing and checks that it is a folder.
    pub async fn ping(&self) -> Result<(), StorageError> {
        let root = self.root.clone();
        let shown = root.display().to_string();
        blocking(&shown.clone(), move || {
            std::fs::create_dir_all(&root).map_err(io(&shown, "create folder"))?;
            let meta = std::fs::metadata(&root).map_err(io(&shown, "stat"))?;
            if meta.is_dir() {
                Ok(())
            } else {
                Err(StorageError::Io { key: shown, op: "stat", source: std::io::Error::other("not a folder") })
            }
        })
        .await
    }

    /// Keys starting with `prefix` (string prefix, as in S3), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        // Walk only the deepest folder the prefix names fully.
        let start = match prefix.rfind('/') {
            Some(i) => self.path(&prefix[..i]),
            None => root.clone(),
        };
        blocking(&prefix.clone(), move || {
            let mut keys = Vec::new();
            if !start.is_dir() {
                return Ok(keys);
            }
            for entry in walkdir::WalkDir::new(&start) {
                let entry = entry.map_err(|e| StorageError::Io {
                    key: prefix.clone(),
                    op: "list",
                    source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("folder loop")),
                })?;
                if !entry.file_type().is_file() || entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    continue;
                }
                let Ok(rel) = entry.path().strip_prefix(&root) else { continue };
                let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
                let Some(parts) = parts else { continue };
                let key = parts.join("/");
                if key.starts_with(&prefix) {
                    keys.push(key);
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }
}
