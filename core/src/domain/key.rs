//! The job key: what makes "the same study submitted twice" one job.
//!
//! `JobKey` is the lowercase hex SHA-256 of this byte string (version 1):
//!
//! ```text
//! neurobatch-job-key/v1\n
//! content=<len>:<content id>\n                     (a study identified by its content)
//!   — or —
//! study_uid=<len>:<StudyInstanceUID>\n             (a DICOM study identified by UIDs)
//! series=<len>:<SeriesInstanceUID>\n               (once per selected series, sorted, deduplicated)
//! pipeline=<len>:<pipeline name>\n
//! model_version=<len>:<model version>\n
//! harmonizer_version=<len>:<harmonizer version>\n
//! ```
//!
//! `<len>` is the value's length in bytes, in decimal, so no value can run
//! into the next field. UIDs lose trailing spaces and NULs (DICOM's padding)
//! first. The content id is whatever the scheduler derives from the study's
//! bytes (for NIfTI files, the SHA-256 of the file); the order series were
//! found in does not matter. Changing the model or harmonizer version
//! changes the key, so a new model reprocesses the study.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first line of the hashed text; bump it when the encoding changes.
pub const JOB_KEY_VERSION: &str = "neurobatch-job-key/v1";

/// Why a key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("job key: {0} is empty")]
    Empty(&'static str),
    #[error("job key: a DICOM study needs at least one selected series")]
    NoSeries,
    #[error("job key: \"{0}\" is not 64 lowercase hex digits")]
    NotHex(String),
}

/// How a study is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StudyIdentity {
    /// A digest of the study's content (e.g. the SHA-256 of a NIfTI file).
    Content(String),
    /// A DICOM study: its StudyInstanceUID and the series selected for the pipeline.
    Dicom { study_uid: String, series_uids: Vec<String> },
}

/// Everything the key depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKeyInput<'a> {
    pub identity: &'a StudyIdentity,
    pub pipeline: &'a str,
    pub model_version: &'a str,
    pub harmonizer_version: &'a str,
}

/// A job's idempotency key: 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobKey(String);

impl JobKey {
    /// The key of a job (see the module documentation for the exact encoding).
    pub fn compute(input: &JobKeyInput<'_>) -> Result<Self, KeyError> {
        Ok(Self::digest(&canonical_text(input)?))
    }

    fn digest(text: &[u8]) -> Self {
        let hash = Sha256::digest(text);
        JobKey(hex::encode(hash))
    }

    /// A key read back from storage or a message.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let ok = text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok { Ok(JobKey(text.to_string())) } else { Err(KeyError::NotHex(text.to_string())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for JobKey {
    type Error = KeyError;

    fn try_from(text: String) -> Result<Self, KeyError> {
        JobKey::from_hex(&text)
    }
}

impl From<JobKey> for String {
    fn from(key: JobKey) -> String {
        key.0
    }
}

/// The bytes that are hashed.
fn canonical_text(input: &JobKeyInput<'_>) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(JOB_KEY_VERSION.as_bytes());
    out.push(b'\n');
    match input.identity {
        StudyIdentity::Content(id) => field(&mut out, "content", id.trim())?,
        StudyIdentity::Dicom { study_uid, series_uids } => {
            field(&mut out, "study_uid", trim_uid(study_uid))?;
            let mut series: Vec<&str> = series_uids.iter().map(|s| trim_uid(s)).collect();
            series.sort_unstable();
            series.dedup();
            if series.is_empty() {
                return Err(KeyError::NoSeries);
            }
            for uid in series {
                field(&mut out, "series", uid)?;
            }
        }
    }
    field(&mut out, "pipeline", input.pipeline)?;
    field(&mut out, "model_version", input.model_version)?;
    field(&mut out, "harmonizer_version", input.harmonizer_version)?;
    Ok(out)
}

fn field(out: &mut Vec<u8>, name: &'static str, value: &str) -> Result<(), KeyError> {
    if value.is_empty() {
        return Err(KeyError::Empty(name));
    }
    out.extend_from_slice(format!("{name}={}:", value.len()).as_bytes());
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
    Ok(())
}

fn trim_uid(uid: &str) -> &str {
    uid.trim_end_matches([' ', '\0']).trim_start()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dicom(series: &[&str]) -> StudyIdentity {
        StudyIdentity::Dicom {
            study_uid: "1.2.840.113619.2.55.3".into(),
            series_uids: series.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn key(identity: &StudyIdentity, pipeline: &str, model: &str, harmonizer: &str) -> JobKey {
        let input = JobKeyInput { identity, pipeline, model_version: model, harmonizer_version: harmonizer };
        JobKey::compute(&input).unwrap_or_else(|e| panic!("{e}"))
    }

    fn sha256_hex(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    #[test]
    fn the_key_is_the_sha256_of_the_documented_text() {
        let k = key(&dicom(&["1.2.3.20", "1.2.3.10"]), "brain-tissue", "1.0.0", "zscore-1");
        let documented = "neurobatch-job-key/v1\n\
                          study_uid=21:1.2.840.113619.2.55.3\n\
                          series=8:1.2.3.10\n\
                          series=8:1.2.3.20\n\
                          pipeline=12:brain-tissue\n\
                          model_version=5:1.0.0\n\
                          harmonizer_version=8:zscore-1\n";
        assert_eq!(k.as_str(), sha256_hex(documented));

        let content = StudyIdentity::Content("ab".repeat(32));
        let k = key(&content, "brain-tissue", "1.0.0", "zscore-1");
        let documented = format!(
            "neurobatch-job-key/v1\ncontent=64:{}\npipeline=12:brain-tissue\nmodel_version=5:1.0.0\nharmonizer_version=8:zscore-1\n",
            "ab".repeat(32)
        );
        assert_eq!(k.as_str(), sha256_hex(&documented));
    }

    #[test]
    fn series_order_duplicates_and_dicom_padding_do_not_matter() {
        let a = key(&dicom(&["1.2.3.10", "1.2.3.20"]), "p", "m", "h");
        let b = key(&dicom(&["1.2.3.20", "1.2.3.10", "1.2.3.20"]), "p", "m", "h");
        let c = key(&dicom(&["1.2.3.20\0", "1.2.3.10 "]), "p", "m", "h");
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = key(&dicom(&["1.2.3.10"]), "p", "m", "h");
        let others = [
            key(&dicom(&["1.2.3.10", "1.2.3.20"]), "p", "m", "h"),
            key(&dicom(&["1.2.3.11"]), "p", "m", "h"),
            key(&dicom(&["1.2.3.10"]), "p2", "m", "h"),
            key(&dicom(&["1.2.3.10"]), "p", "m2", "h"),
            key(&dicom(&["1.2.3.10"]), "p", "m", "h2"),
            key(&StudyIdentity::Dicom { study_uid: "9.9".into(), series_uids: vec!["1.2.3.10".into()] }, "p", "m", "h"),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(&base, other, "variant {i}");
        }
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        // Without lengths, "a\nmodel_version=1:b" as a pipeline could imitate another split.
        let one = key(&StudyIdentity::Content("x".into()), "a", "bc", "h");
        let two = key(&StudyIdentity::Content("x".into()), "ab", "c", "h");
        assert_ne!(one, two);
        let content = key(&StudyIdentity::Content("1.2.3".into()), "p", "m", "h");
        let uid =
            key(&StudyIdentity::Dicom { study_uid: "1.2.3".into(), series_uids: vec!["4".into()] }, "p", "m", "h");
        assert_ne!(content, uid);
    }

    #[test]
    fn empty_inputs_are_refused() {
        let id = dicom(&["1.2.3.10"]);
        let input = JobKeyInput { identity: &id, pipeline: "", model_version: "m", harmonizer_version: "h" };
        assert_eq!(JobKey::compute(&input), Err(KeyError::Empty("pipeline")));
        let none = dicom(&[]);
        let input = JobKeyInput { identity: &none, pipeline: "p", model_version: "m", harmonizer_version: "h" };
        assert_eq!(JobKey::compute(&input), Err(KeyError::NoSeries));
        let blank = dicom(&["\0"]);
        let input = JobKeyInput { identity: &blank, pipeline: "p", model_version: "m", harmonizer_version: "h" };
        assert_eq!(JobKey::compute(&input), Err(KeyError::Empty("series")));
    }

    #[test]
    fn hex_round_trip_and_serde() {
        let k = key(&dicom(&["1.2"]), "p", "m", "h");
        assert_eq!(JobKey::from_hex(k.as_str()), Ok(k.clone()));
        assert!(JobKey::from_hex("ABC").is_err());
        assert!(JobKey::from_hex(&k.as_str().to_uppercase()).is_err());
        let json = serde_json::to_string(&k).unwrap_or_default();
        assert_eq!(serde_json::from_str::<JobKey>(&json).ok(), Some(k));
        assert!(serde_json::from_str::<JobKey>("\"nothex\"").is_err());
    }
}
