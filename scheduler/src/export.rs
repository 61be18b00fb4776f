//! `neurobatch export-dataset`: the approved and corrected review cases as an
//! nnU-Net v2 raw dataset — `imagesTr/<case>_0000.nii.gz` (the scan),
//! `labelsTr/<case>.nii.gz` (the reviewer's corrected mask, or the model's
//! mask the reviewer approved), `dataset.json`, and `provenance.json` saying
//! where each case came from and who decided it. The hand-off for
//! fine-tuning the models on a site's own data.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use neurobatch_core::db::JobStore;
use neurobatch_core::storage::ObjectStore;
use serde::Serialize;

use crate::{PipelineSpec, SchedulerError};

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub cases: usize,
    pub corrected: usize,
}

#[derive(Debug, Serialize)]
struct Provenance {
    case: String,
    study_key: String,
    job_id: i64,
    review_item_id: i64,
    model: String,
    decision: String,
    decided_by: Option<String>,
    decided_at: Option<DateTime<Utc>>,
    /// `correction` (the reviewer's mask) or `model` (approved as it was).
    label_source: &'static str,
    image_key: String,
    label_key: String,
}

/// Writes the cases decided since `since` into `dir` (created; it must be empty if it exists).
pub async fn export_dataset(
    store: &JobStore,
    objects: &ObjectStore,
    pipeline: &PipelineSpec,
    since: DateTime<Utc>,
    dir: &Path,
) -> Result<ExportSummary, SchedulerError> {
    let io = |what: &Path, e: std::io::Error| SchedulerError::read(what.display(), e);
    if dir.exists() && std::fs::read_dir(dir).map_err(|e| io(dir, e))?.next().is_some() {
        return Err(SchedulerError::bad(&dir.display().to_string(), "the export folder exists and is not empty"));
    }
    let (images, labels) = (dir.join("imagesTr"), dir.join("labelsTr"));
    for d in [&images, &labels] {
        std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
    }
    let cases = store.decided_cases(since).await?;
    let mut provenance = Vec::with_capacity(cases.len());
    for (n, case) in cases.iter().enumerate() {
        let name = format!("nb_{:04}", n + 1);
        let item = &case.item;
        let missing =
            |what: &str| SchedulerError::bad(&format!("review item {}", item.id), format!("its result has no {what}"));
        let image_key = case.object_keys.get("image").ok_or_else(|| missing("image"))?;
        let (label_source, label_key) = match &case.correction_key {
            Some(k) => ("correction", k),
            None => ("model", case.object_keys.get("mask").ok_or_else(|| missing("mask"))?),
        };
        let image_path = images.join(format!("{name}_0000.nii.gz"));
        let label_path = labels.join(format!("{name}.nii.gz"));
        std::fs::write(&image_path, objects.get(image_key).await?).map_err(|e| io(&image_path, e))?;
        std::fs::write(&label_path, objects.get(label_key).await?).map_err(|e| io(&label_path, e))?;
        provenance.push(Provenance {
            case: name,
            study_key: item.study_key.clone(),
            job_id: item.job_id,
            review_item_id: item.id,
            model: item.model.clone(),
            decision: item.decision.map_or("?", |d| d.as_str()).to_string(),
            decided_by: item.decided_by.clone(),
            decided_at: item.decided_at,
            label_source,
            image_key: image_key.clone(),
            label_key: label_key.clone(),
        });
    }
    let label_map: serde_json::Map<String, serde_json::Value> =
        pipeline.labels.iter().map(|l| (l.name.clone(), l.value.into())).collect();
    let dataset = serde_json::json!({
        "name": format!("neurobatch-{}", pipeline.name),
        "description": format!(
            "Reviewed cases of {}@{} exported by neurobatch (approved and corrected) since {}",
            pipeline.model_name, pipeline.model_version, since.to_rfc3339()
        ),
        "channel_names": {"0": "MRI"},
        "labels": label_map,
        "numTraining": provenance.len(),
        "file_ending": ".nii.gz",
    });
    let write_json = |name: &str, value: &serde_json::Value| {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        std::fs::write(&path, text + "\n").map_err(|e| io(&path, e))
    };
    write_json("dataset.json", &dataset)?;
    write_json("provenance.json", &serde_json::to_value(&provenance).unwrap_or_default())?;
    let corrected = provenance.iter().filter(|p| p.label_source == "correction").count();
    Ok(ExportSummary { dir: dir.to_path_buf(), cases: provenance.len(), corrected })
}
