//! Object keys: the rules every key obeys on both backends, and the
//! deterministic layout of a job's results.

use sha2::{Digest, Sha256};

use super::StorageError;

/// The folder name of a study in object keys: the first 16 hex digits of the
/// SHA-256 of its study key. Keys never carry the key itself (a
/// StudyInstanceUID, a path): it can be long, hold `/`, and identify a
/// patient's study to anyone who can list the bucket. The scheduler's
/// snapshots (`studies/<this>/…`) and a job's results (`study/<this>/…`)
/// use the same name.
pub fn study_folder(study_key: &str) -> String {
    hex::encode(Sha256::digest(study_key.as_bytes()))[..16].to_owned()
}

/// Checks a key: relative, `/`-separated, no empty, `.` or `..` segment, no
/// backslash or control character, at most 1024 bytes (S3's limit). The same
/// rules on both backends keep keys portable and the file backend inside its root.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let bad = |reason: &str| Err(StorageError::Key { key: key.to_owned(), reason: reason.to_owned() });
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("contains a control character or a backslash");
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("empty, `.` or `..` path segment (keys are relative, without `//`)");
        }
        if seg.starts_with(super::file::TEMP_PREFIX) {
            return bad("segments starting with `.nb-tmp-` are reserved for in-progress writes");
        }
    }
    Ok(())
}

/// Checks a list prefix: empty (everything) or a key prefix under the same
/// rules, optionally ending in `/`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// Where a job's result file lives:
/// `study/<study_folder(study)>/pipeline/<pipeline>/model/<name>@<version>/<file>`.
/// It does not depend on the attempt, so a redelivered job overwrites the
/// same objects instead of adding new ones.
pub fn result_key(
    study: &str,
    pipeline: &str,
    model_name: &str,
    model_version: &str,
    file: &str,
) -> Result<String, StorageError> {
    if study.is_empty() {
        return Err(StorageError::Key { key: String::new(), reason: "the study key is empty".to_owned() });
    }
    let parts = [(pipeline, "pipeline", "/@"), (model_name, "model name", "/@")];
    for (part, what, forbidden) in parts.into_iter().chain([(model_version, "model version", "/")]) {
        if let Some(c) = part.chars().find(|c| forbidden.contains(*c)) {
            return Err(StorageError::Key { key: part.to_owned(), reason: format!("{what} must not contain `{c}`") });
        }
    }
    let study = study_folder(study);
    let key = format!("study/{study}/pipeline/{pipeline}/model/{model_name}@{model_version}/{file}");
    validate_key(&key)?;
    Ok(key)
}

/// The folder ([`result_key`] without the file) of a job's results, ending in `/`.
pub fn result_prefix(
    study: &str,
    pipeline: &str,
    model_name: &str,
    model_version: &str,
) -> Result<String, StorageError> {
    let key = result_key(study, pipeline, model_name, model_version, "x")?;
    Ok(key[..key.len() - 1].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_keys_follow_the_layout() {
        // `printf %s 1.2.840.99 | sha256sum`, cut to 16 hex digits.
        assert_eq!(study_folder("1.2.840.99"), "0a90ed7e2360acfa");
        assert_eq!(
            result_key("1.2.840.99", "brain-tissue", "brain-tissue", "1.0.0", "mask.nii.gz").unwrap(),
            format!("study/{}/pipeline/brain-tissue/model/brain-tissue@1.0.0/mask.nii.gz", study_folder("1.2.840.99"))
        );
        assert_eq!(
            result_prefix("s1", "p", "m", "2").unwrap(),
            format!("study/{}/pipeline/p/model/m@2/", study_folder("s1"))
        );
        // The study key never appears in the object key, whatever it holds.
        let uid_key = result_key("1.2.840.99", "p", "m", "1", "f").unwrap();
        assert!(!uid_key.contains("1.2.840.99"), "{uid_key}");
        assert!(result_key("a/b/../c", "p", "m", "1", "f").is_ok());
        assert!(result_key("s", "p/q", "m", "1", "f").is_err());
        assert!(result_key("s", "p", "m@x", "1", "f").is_err());
        assert!(result_key("s", "p", "m", "1", "../f").is_err());
        assert!(result_key("", "p", "m", "1", "f").is_err());
    }

    #[test]
    fn keys_are_relative_and_clean() {
        for ok in ["a", "a/b.json", "study/x y/é"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a/../b", "./a", "a\\b", "a\nb", "a/.nb-tmp-1"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key(&"k".repeat(1025)).is_err());
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("study/").is_ok());
        assert!(validate_prefix("../").is_err());
    }
}
