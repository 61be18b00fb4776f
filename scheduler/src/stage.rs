//! Staging, the blocking part: inspecting a local study (one NIfTI file or a
//! DICOM folder), selecting its series, hashing the files that make its
//! snapshot, and the fingerprint that names the snapshot. No database, no
//! object store: `submit.rs` does those with what this returns.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use imaging::dicom::{ScanOptions, SeriesSummary, SkipReason, scan_folder};
use neurobatch_core::db::NewSeries;
use neurobatch_core::storage::validate_key;
use sha2::{Digest, Sha256};

use crate::SchedulerError;
use crate::select::{Candidate, Orientation, Rules};

/// A file of a snapshot: its key below the snapshot prefix and its content hash.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapshotFile {
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// What a study is, once inspected.
#[derive(Debug, Clone)]
pub(crate) enum Inspected {
    /// A NIfTI file (not parsed: a corrupt file becomes a job the worker fails with its reason).
    Nifti { content_id: String, file: SnapshotFile },
    /// A DICOM study and its selected series.
    Dicom { study_uid: Option<String>, series: NewSeries, files: Vec<SnapshotFile> },
    /// Nothing to process, with the study key to record it under.
    Ineligible { study_key: String, reason: String },
    /// Nothing there yet.
    NotReady { reason: String },
}

/// Inspects `path` (a file or folder) as the selection rules say.
pub(crate) fn inspect(path: &Path, rules: &Rules) -> Result<Inspected, SchedulerError> {
    let meta = std::fs::metadata(path).map_err(|e| SchedulerError::read(path.display(), e))?;
    if meta.is_file() {
        if !imaging::nifti::is_nifti_path(path) {
            return Err(SchedulerError::bad(
                &path.display().to_string(),
                "not a NIfTI file (.nii, .nii.gz) nor a DICOM folder",
            ));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return nifti(path, name);
    }
    if !meta.is_dir() {
        return Err(SchedulerError::bad(&path.display().to_string(), "neither a file nor a folder"));
    }
    // A folder holding one NIfTI file (an S3 study folder, say) is that file.
    let files = visible_files(path)?;
    if let [only] = files.as_slice()
        && imaging::nifti::is_nifti_path(only)
    {
        return nifti(only, relative(path, only)?);
    }
    if files.is_empty() {
        return Ok(Inspected::NotReady { reason: format!("{}: no files yet", path.display()) });
    }
    dicom(path, &files, rules)
}

fn nifti(path: &Path, rel: String) -> Result<Inspected, SchedulerError> {
    // The name becomes an object key: a name no key may have is the entry's fault, said now.
    validate_key(&rel).map_err(|e| SchedulerError::read(path.display(), e))?;
    let file = hash_file(path, rel)?;
    Ok(Inspected::Nifti { content_id: file.sha256.clone(), file })
}

fn dicom(dir: &Path, files: &[PathBuf], rules: &Rules) -> Result<Inspected, SchedulerError> {
    let report = scan_folder(dir, &ScanOptions::default()).map_err(|e| SchedulerError::read(dir.display(), e))?;
    if report.series.is_empty() {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for s in &report.skipped {
            let r = match &s.reason {
                // The parser's detail differs per file; the kind is what the reader needs.
                SkipReason::Corrupt(_) => "corrupt DICOM file".to_string(),
                SkipReason::Unreadable(_) => "unreadable file".to_string(),
                other => other.to_string(),
            };
            match counts.iter_mut().find(|(k, _)| *k == r) {
                Some((_, n)) => *n += 1,
                None => counts.push((r, 1)),
            }
        }
        let notes = counts.iter().map(|(r, n)| format!("{n} x {r}")).collect::<Vec<_>>().join(", ");
        let all: Vec<SnapshotFile> = files.iter().map(|f| hash_file(f, relative(dir, f)?)).collect::<Result<_, _>>()?;
        return Ok(Inspected::Ineligible {
            study_key: content_id(&all),
            reason: format!("no DICOM image series in {} files ({notes})", report.files),
        });
    }
    let candidates: Vec<Candidate> = report.series.iter().map(candidate).collect();
    let selection = rules.select(&candidates);
    let study_uid = |s: &SeriesSummary| s.meta().study_uid.clone().filter(|u| !u.trim().is_empty());
    let Some(chosen) = selection.chosen.and_then(|i| report.series.get(i)) else {
        let key = report.series.iter().find_map(study_uid);
        let key = match key {
            Some(k) => k,
            None => {
                let all: Vec<SnapshotFile> =
                    files.iter().map(|f| hash_file(f, relative(dir, f)?)).collect::<Result<_, _>>()?;
                content_id(&all)
            }
        };
        return Ok(Inspected::Ineligible {
            study_key: key,
            reason: format!("no eligible series: {}", selection.refused.join(" | ")),
        });
    };
    // Every stack of the chosen SeriesInstanceUID (echoes, sizes) travels with it.
    let mut paths: Vec<&PathBuf> =
        report.series.iter().filter(|s| s.series_uid == chosen.series_uid).flat_map(|s| &s.files).collect();
    paths.sort();
    paths.dedup();
    let files = paths.into_iter().map(|p| hash_file(p, relative(dir, p)?)).collect::<Result<Vec<_>, _>>()?;
    let m = chosen.meta();
    let series = NewSeries {
        series_uid: chosen.series_uid.clone(),
        modality: m.modality.clone(),
        description: m.series_description.clone(),
        manufacturer: m.manufacturer.clone(),
        manufacturer_model: m.manufacturer_model.clone(),
        station_name: m.station_name.clone(),
        field_strength_t: m.field_strength_t,
        slices: i64::try_from(chosen.slices).ok(),
    };
    Ok(Inspected::Dicom { study_uid: study_uid(chosen), series, files })
}

fn candidate(s: &SeriesSummary) -> Candidate {
    Candidate {
        series_uid: s.series_uid.clone(),
        modality: s.modality.clone(),
        description: s.series_description.clone(),
        slices: s.slices,
        orientation: s.slice_normal().and_then(Orientation::from_normal),
    }
}

/// The files under `dir`, recursively, sorted, without hidden names.
pub(crate) fn visible_files(dir: &Path) -> Result<Vec<PathBuf>, SchedulerError> {
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name();
    for entry in walk.into_iter().filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name())) {
        let entry = entry.map_err(|e| SchedulerError::read(dir.display(), e))?;
        if entry.file_type().is_file() {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}

pub(crate) fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// `path` below `dir` as an object-key suffix (`a/b.dcm`).
fn relative(dir: &Path, path: &Path) -> Result<String, SchedulerError> {
    let rel = path.strip_prefix(dir).map_err(|_| SchedulerError::read(path.display(), "outside the study folder"))?;
    let mut parts = Vec::new();
    for c in rel.components() {
        let s = c.as_os_str().to_str().ok_or_else(|| SchedulerError::read(path.display(), "name is not UTF-8"))?;
        parts.push(s);
    }
    let rel = parts.join("/");
    validate_key(&rel).map_err(|e| SchedulerError::read(path.display(), e))?;
    Ok(rel)
}

/// Reads and hashes one file.
fn hash_file(path: &Path, rel: String) -> Result<SnapshotFile, SchedulerError> {
    let err = |e: std::io::Error| SchedulerError::read(path.display(), e);
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(SnapshotFile { rel, path: path.to_path_buf(), size, sha256: hex::encode(h.finalize()) })
}

/// The SHA-256 over the sorted (relative path, size, content hash) lines of the files, as hex.
pub(crate) fn content_id(files: &[SnapshotFile]) -> String {
    let mut lines: Vec<String> = files.iter().map(|f| format!("{}\t{}\t{}\n", f.rel, f.size, f.sha256)).collect();
    lines.sort();
    hex::encode(Sha256::digest(lines.concat().as_bytes()))
}

/// The snapshot fingerprint: the first 16 hex digits of [`content_id`].
pub(crate) fn fingerprint(files: &[SnapshotFile]) -> String {
    content_id(files).chars().take(16).collect()
}

/// The object-key prefix of a snapshot: `studies/<study_folder(study_key)>/<fingerprint>`.
pub(crate) fn snapshot_prefix(study_key: &str, files: &[SnapshotFile]) -> String {
    format!("studies/{}/{}", neurobatch_core::storage::study_folder(study_key), fingerprint(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str, size: u64, sha: &str) -> SnapshotFile {
        SnapshotFile { rel: rel.into(), path: PathBuf::from(rel), size, sha256: sha.into() }
    }

    #[test]
    fn the_fingerprint_ignores_order_and_sees_every_field() {
        let a = [file("a.dcm", 1, "aa"), file("b.dcm", 2, "bb")];
        let b = [file("b.dcm", 2, "bb"), file("a.dcm", 1, "aa")];
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
        for other in [
            [file("a.dcm", 1, "aa"), file("c.dcm", 2, "bb")],
            [file("a.dcm", 1, "aa"), file("b.dcm", 3, "bb")],
            [file("a.dcm", 1, "aa"), file("b.dcm", 2, "bc")],
        ] {
            assert_ne!(fingerprint(&a), fingerprint(&other));
        }
        let p = snapshot_prefix("1.2.3", &a);
        assert!(p.starts_with("studies/") && p.ends_with(&fingerprint(&a)), "{p}");
        assert_eq!(p.split('/').nth(1).map(str::len), Some(16));
    }
}
