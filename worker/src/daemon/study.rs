//! One job's work, from its study to its stored outputs: fetch the study the
//! scheduler staged (`job.source_uri`), open the selected series, run the
//! pipeline, write the mask, maps and report, and upload them under the
//! deterministic result keys. Owns the mapping of every failure to a
//! [`JobError`] that says whether a retry can help. No database or queue
//! writes happen here (`job` commits and settles).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use imaging::Volume;
use imaging::dicom::SourceStack;
use imaging::source::OpenOptions;
use neurobatch_core::db::{Job, Scanner};
use neurobatch_core::metrics::Stage;
use neurobatch_core::scratch::Scratch;
use neurobatch_core::storage::{ObjectStore, S3Settings, StorageError, StudyLimits, result_key};

use super::JobError;
use crate::dicom_results::{self, ResultIdentity};
use crate::pipeline::{self, DicomOutputs, ModelRunner, PipelineError, StudyOptions, StudyReport};

/// The models a worker loaded once at start-up.
#[derive(Debug)]
pub struct Models {
    pub segmentation: ModelRunner,
    pub quality: Option<ModelRunner>,
}

/// What one study produced, stored.
#[derive(Debug)]
pub struct StudyOutput {
    pub report: StudyReport,
    /// The report as stored (with the study's URI as its source).
    pub report_json: serde_json::Value,
    /// Output name (`image`, `mask`, `entropy`, `mutual_information`, `report`) → object key.
    pub object_keys: std::collections::BTreeMap<String, String>,
    /// The processed series and its scanner, from the image headers.
    pub series_uid: Option<String>,
    pub scanner: Scanner,
    /// Seconds per stage (fetch, harmonize, inference, upload), for the metrics.
    pub stages: Vec<(Stage, f64)>,
}

/// Runs `job` end to end in a folder of `scratch`. `study_key` names the study in the result keys.
pub async fn run_study(
    job: &Job,
    study_key: &str,
    models: Arc<Models>,
    objects: &ObjectStore,
    s3: &S3Settings,
    limits: StudyLimits,
    scratch: &Scratch,
) -> Result<StudyOutput, JobError> {
    let work = scratch
        .tempdir(&format!("job-{}-", job.id))
        .map_err(|e| JobError::transient(format!("job {}: no temporary folder: {e}", job.id)))?;
    let fetch_started = Instant::now();
    let input = fetch(&job.source_uri, work.path(), s3, limits).await?;
    let fetch_s = fetch_started.elapsed().as_secs_f64();
    let series = job.series_uids.first().cloned().unwrap_or_default();
    let uri = job.source_uri.clone();
    let out_dir = work.path().join("out");
    // The pipeline's log lines carry the job's span (job_id, study_id, attempt):
    // a span does not follow work onto the blocking pool by itself.
    let span = tracing::Span::current();
    let dicom_study_key = study_key.to_string();
    let version = u32::try_from(job.version).unwrap_or(u32::MAX);
    let (report, files, series_uid, scanner) = tokio::task::spawn_blocking(move || -> Result<_, JobError> {
        let _job = span.enter();
        let started = Instant::now();
        let (volume, source) = open_series(&input, &series, &uri)?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let meta = &volume.meta;
        let scanner = Scanner {
            manufacturer: meta.manufacturer.clone(),
            model: meta.manufacturer_model.clone(),
            field_strength_t: meta.field_strength_t,
        };
        let series_uid = meta.series_uid.clone();
        let result = pipeline::process_study(
            &volume,
            load_ms,
            &models.segmentation,
            models.quality.as_ref(),
            &StudyOptions::default(),
            &mut |_| {},
        )
        .map_err(|e| pipeline_error(&uri, &input, &e))?;
        let mut report = result.report.clone();
        report.input.source = uri.clone();
        std::fs::create_dir_all(&out_dir).map_err(|e| JobError::transient(format!("{}: {e}", out_dir.display())))?;
        let mut files =
            pipeline::write_maps(&out_dir, &result).map_err(|e| JobError::transient(format!("{uri}: {e}")))?;
        let identity = ResultIdentity::now(&dicom_study_key, version);
        let (dicom_files, dicom) =
            dicom_outputs(&out_dir, &report, &result.maps.labels, source.as_ref(), &models, &identity);
        files.extend(dicom_files);
        report.dicom = Some(dicom);
        files.push(pipeline::write_report(&out_dir, &report).map_err(|e| JobError::transient(format!("{uri}: {e}")))?);
        // The scan itself on its own grid, as NIfTI (a DICOM series converted): what the review
        // viewer shows under the mask, and the image of an exported training case.
        let image = out_dir.join("image.nii.gz");
        imaging::nifti::write_f32(&image, &volume).map_err(|e| JobError::transient(format!("{uri}: {e}")))?;
        files.push(image);
        tracing::info!(
            load_ms = load_ms.round(),
            total_ms = (started.elapsed().as_secs_f64() * 1e3).round(),
            decision = if report.routing.is_accept() { "accept" } else { "review" },
            "pipeline finished"
        );
        Ok((report, files, series_uid, scanner))
    })
    .await
    .map_err(|e| JobError::transient(format!("{}: the processing task ended abnormally: {e}", job.source_uri)))??;

    let upload_started = Instant::now();
    let object_keys = upload(job, study_key, &report, files, objects).await?;
    let upload_s = upload_started.elapsed().as_secs_f64();
    let report_json =
        serde_json::to_value(&report).map_err(|e| JobError::transient(format!("{}: report: {e}", job.source_uri)))?;
    let mut stages = vec![(Stage::Fetch, fetch_s + pipeline_seconds(&report, &["load"]))];
    stages.push((Stage::Harmonize, pipeline_seconds(&report, &["model_grid"])));
    stages.push((Stage::Inference, pipeline_seconds(&report, &["inference", "quality"])));
    stages.push((Stage::Upload, upload_s));
    Ok(StudyOutput { report, report_json, object_keys, series_uid, scanner, stages })
}

/// Stores the study's files under its result keys; returns output name → key.
#[tracing::instrument(name = "upload", skip_all)]
async fn upload(
    job: &Job,
    study_key: &str,
    report: &StudyReport,
    files: Vec<PathBuf>,
    objects: &ObjectStore,
) -> Result<std::collections::BTreeMap<String, String>, JobError> {
    let model = &report.model;
    let mut object_keys = std::collections::BTreeMap::new();
    let mut bytes_total = 0usize;
    for file in files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let key =
            result_key(study_key, &job.pipeline, &model.name, &model.version, &format!("v{}/{name}", job.version))
                .map_err(|e| JobError::permanent(format!("{}: result key: {e}", job.source_uri)))?;
        let bytes =
            tokio::fs::read(&file).await.map_err(|e| JobError::transient(format!("{}: {e}", file.display())))?;
        bytes_total += bytes.len();
        objects.put(&key, bytes).await.map_err(|e| JobError::storage(&format!("uploading {key}"), &e))?;
        object_keys.insert(output_name(&name), key);
    }
    tracing::info!(objects = object_keys.len(), bytes = bytes_total, "results uploaded");
    Ok(object_keys)
}

/// Seconds the pipeline spent in these stages of its report (`load`: decoding the series;
/// `model_grid`: resampling and harmonization; `inference`, `quality`: the models' passes).
fn pipeline_seconds(report: &StudyReport, stages: &[&str]) -> f64 {
    report.timings_ms.iter().filter(|t| stages.contains(&t.stage)).map(|t| t.ms / 1e3).sum()
}

/// `mask.nii.gz` → `mask`, `report.json` → `report`.
fn output_name(file: &str) -> String {
    file.split('.').next().unwrap_or(file).to_string()
}

/// The study's files in a local folder: a `file://` study is read where it
/// is; an `s3://` one is downloaded into `work`.
#[tracing::instrument(name = "fetch", skip_all)]
async fn fetch(uri: &str, work: &Path, s3: &S3Settings, limits: StudyLimits) -> Result<PathBuf, JobError> {
    if let Some(path) = uri.strip_prefix("file://") {
        let path = PathBuf::from(path);
        return match tokio::fs::metadata(&path).await {
            Ok(_) => Ok(path),
            Err(e) => Err(JobError::permanent(format!("{uri}: the study is not there: {e}"))),
        };
    }
    let store = ObjectStore::from_url(uri, s3).await.map_err(|e| JobError::storage(uri, &e))?;
    let dir = work.join("study");
    let keys = store.download_all(&dir, limits).await.map_err(|e| match e {
        // The study's own size: retrying cannot help.
        StorageError::TooLarge { .. } => JobError::permanent(e.to_string()),
        other => JobError::storage(uri, &other),
    })?;
    if keys.is_empty() {
        return Err(JobError::permanent(format!("{uri}: the study has no objects")));
    }
    Ok(dir)
}

/// `seg.dcm` and `sr.dcm` for a study read from DICOM, and what the report
/// says about them. Not being able to write them does not fail the job (the
/// mask and report stand); the report says why.
fn dicom_outputs(
    dir: &Path,
    report: &StudyReport,
    labels: &Volume<u8>,
    source: Option<&SourceStack>,
    models: &Models,
    identity: &ResultIdentity<'_>,
) -> (Vec<PathBuf>, DicomOutputs) {
    let not_written = |why: String| (Vec::new(), DicomOutputs { objects: Vec::new(), not_written: Some(why) });
    let Some(source) = source else {
        return not_written(if report.input.format == "dicom" {
            "the source slices carry no geometry, so no DICOM object can be placed on them".to_string()
        } else {
            format!("the input is {}: DICOM results are written for DICOM inputs only", report.input.format)
        });
    };
    let labels_spec = &models.segmentation.model().manifest().labels;
    match dicom_results::write(dir, report, labels, source, labels_spec, identity) {
        Ok(written) => written,
        Err(e) => {
            tracing::warn!(error = %e, "no DICOM results for this study");
            not_written(e.to_string())
        }
    }
}

/// The volume of the selected series: the NIfTI file of that name, or the
/// DICOM series of that UID (its largest stack when it has several) with its
/// source slices.
fn open_series(input: &Path, series: &str, uri: &str) -> Result<(Volume<f32>, Option<SourceStack>), JobError> {
    let opts = OpenOptions::default();
    let named = input.join(series);
    let as_nifti = if input.is_file() {
        Some(input.to_path_buf())
    } else if !series.is_empty() && imaging::nifti::is_nifti_path(&named) && named.is_file() {
        Some(named)
    } else {
        None
    };
    let in_study = |e: &dyn std::fmt::Display| {
        // Errors name the local copy; name the study instead.
        let text = e.to_string().replace(&input.display().to_string(), uri);
        JobError::permanent(text)
    };
    if let Some(file) = as_nifti {
        let mut volumes = imaging::source::open(&file, &opts).map_err(|e| in_study(&e))?;
        let volume = volumes.pop().ok_or_else(|| JobError::permanent(format!("{uri}: no volume in {series}")))?;
        return Ok((volume, None));
    }
    imaging::dicom::read_stack(input, series, &opts.dicom()).map_err(|e| in_study(&e))
}

/// Input problems are permanent; a model, output or internal failure may pass on a retry.
fn pipeline_error(uri: &str, input: &Path, e: &PipelineError) -> JobError {
    let text = e.to_string().replace(&input.display().to_string(), uri);
    match e {
        PipelineError::Model { .. } | PipelineError::Output { .. } | PipelineError::Internal(_) => {
            JobError::transient(text)
        }
        _ => JobError::permanent(text),
    }
}
