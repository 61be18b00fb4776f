//! One study through one model folder (and, optionally, the scan-quality
//! classifier): the per-study pipeline of issue 3.
//!
//! native scan → model grid (closest-canonical axes at the manifest's spacing,
//! trilinear) → foreground mask → bias-field correction (when the manifest has
//! `[bias_correction]`) → harmonization (the manifest's method, within
//! the foreground) → [`crate::inference::Ensemble`] (sliding windows × flips ×
//! members × MC passes) → [`crate::uncertainty::Accumulator`] on the model grid
//! → OOD signals → routing → mean probabilities, entropy and mutual
//! information back on the scan's grid → label mask = argmax.
//!
//! Owns the order of those stages, their timings, the [`StudyReport`] and
//! writing the outputs ([`write_maps`], [`write_report`]). It does not read scans (the caller
//! passes a volume, from `imaging::source`), run sessions itself, or decide
//! where outputs go in the daemon (a folder here; object storage there).
//!
//! **Why accumulate on the model grid.** Every pass is blended on the model
//! grid; resampling each pass to the scan's grid before accumulating would
//! cost a full-resolution resample and accumulation per pass (a 1 mm brain has
//! 8× the voxels of the 2 mm model grid). The mean probabilities, entropy and
//! mutual information are resampled once, at the end. So the per-structure
//! pass statistics (CV, agreement) are figures of the model grid, while the
//! reported structure volumes are those of the written mask.

mod error;
mod grid;
mod outputs;
mod report;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use imaging::Volume;
use imaging::resample::{GridLimits, ProbabilityMaps};
use sha2::{Digest, Sha256};

pub use error::PipelineError;
pub use grid::{BiasFieldSummary, InputPrep, ModelGridInput, NativeMaps, NativeRequest, to_model_grid, to_native_grid};
pub use outputs::{PassDump, write_maps, write_report};
pub use report::{
    DicomObjectSummary, DicomOutputs, InputSummary, MemberSummary, ModelSummary, QualityReport, REPORT_SCHEMA,
    StructureReport, StudyReport, Timing,
};

use crate::inference::{Ensemble, Flip, ImageRef, PassInfo, PassSink, Progress, default_batch_size};
use crate::manifest::{LoadedModel, MANIFEST_FILE, SelectedProfile, Task, Tiling};
use crate::ood::{self, OodAssessment};
use crate::quality::{FeatureInputs, ImageMetrics, QualityEstimate, QualityFeatures};
use crate::routing::{Reason, ReasonCode, RoutingDecision, RoutingOverrides, RoutingPolicy};
use crate::uncertainty::Accumulator;

/// How much of a model's ensemble to run: a named profile, then per-field overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChoice {
    /// `[inference.profiles.<name>]`; `None` picks by execution provider (see
    /// [`crate::manifest::Manifest::select_profile`]).
    pub name: Option<String>,
    /// Run only the first `members` members.
    pub members: Option<usize>,
    /// Mirror these axes instead of the profile's (empty: no flips).
    pub tta_axes: Option<Vec<usize>>,
    pub mc_dropout_passes: Option<u32>,
    /// Cover the grid this way instead of the profile's tiling.
    pub tiling: Option<Tiling>,
}

/// A loaded model folder ready to run studies: the profile it runs, its
/// routing policy and what the report says about it.
#[derive(Debug)]
pub struct ModelRunner {
    model: LoadedModel,
    profile: SelectedProfile,
    policy: RoutingPolicy,
    manifest_sha256: String,
    batch_size: usize,
}

impl ModelRunner {
    /// Resolves the profile (checked against the members) and the routing
    /// policy; `batch_size` 0 picks [`crate::inference::default_batch_size`]
    /// for the provider the sessions got.
    pub fn new(
        model: LoadedModel,
        choice: &ProfileChoice,
        overrides: Option<&RoutingOverrides>,
        batch_size: usize,
    ) -> Result<Self, PipelineError> {
        let name = model.dir().display().to_string();
        let model_err = |reason: String| PipelineError::Model { model: name.clone(), reason };
        let mut profile = model.select_profile(choice.name.as_deref()).map_err(|e| model_err(e.to_string()))?;
        // A profile's own bounds are fitted on its passes: they no longer apply once the
        // pass set is overridden ([routing]'s apply instead; the quality estimator follows
        // the base pass set that actually runs).
        if choice.members.is_some()
            || choice.tta_axes.is_some()
            || choice.mc_dropout_passes.is_some()
            || choice.tiling.is_some_and(|t| t != profile.tiling)
        {
            profile.study_uncertainty_max = None;
            profile.predicted_dice_min = None;
        }
        if let Some(n) = choice.members {
            profile.members = n;
        }
        if let Some(axes) = &choice.tta_axes {
            profile.tta_axes.clone_from(axes);
        }
        if let Some(p) = choice.mc_dropout_passes {
            profile.mc_dropout_passes = p;
        }
        if let Some(t) = choice.tiling {
            if t == Tiling::Whole && model.manifest().inference.size_multiple.is_none() {
                return Err(model_err("tiling `whole` needs inference.size_multiple in the manifest".into()));
            }
            profile.tiling = t;
        }
        let batch_size = if batch_size == 0 { default_batch_size(model.provider()) } else { batch_size };
        // Checks members, flips and gates now, before any study.
        Ensemble::from_model(&model, &profile)
            .and_then(|e| e.with_batch_size(batch_size))
            .map_err(|e| model_err(e.to_string()))?;
        let mut thresholds = model.manifest().routing.clone();
        if let Some(bound) = profile.study_uncertainty_max {
            thresholds.study_uncertainty_max = Some(bound);
        }
        if let Some(bound) = profile.predicted_dice_min {
            thresholds.predicted_dice_min = Some(bound);
        }
        let policy = RoutingPolicy::new(&thresholds, overrides).map_err(|e| model_err(e.to_string()))?;
        let manifest_path = model.dir().join(MANIFEST_FILE);
        let bytes =
            std::fs::read(&manifest_path).map_err(|e| model_err(format!("{}: {e}", manifest_path.display())))?;
        let manifest_sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(ModelRunner { model, profile, policy, manifest_sha256, batch_size })
    }

    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    pub fn profile(&self) -> &SelectedProfile {
        &self.profile
    }

    /// The thresholds this runner routes with (the profile's study bound included).
    pub fn policy(&self) -> &RoutingPolicy {
        &self.policy
    }

    fn ensemble(&self) -> Result<Ensemble<'_>, PipelineError> {
        Ensemble::from_model(&self.model, &self.profile)
            .and_then(|e| e.with_batch_size(self.batch_size))
            .map_err(|e| PipelineError::Model { model: self.model.dir().display().to_string(), reason: e.to_string() })
    }

    /// `features`: each member's pooled bottleneck features, when the run pooled them.
    fn summary(
        &self,
        grid: &ModelGridInput,
        passes: usize,
        tiling: Option<Tiling>,
        features: &[Option<Vec<f64>>],
    ) -> ModelSummary {
        let m = self.model.manifest();
        ModelSummary {
            name: m.name.clone(),
            version: m.version.clone(),
            task: m.task.to_string(),
            manifest_sha256: self.manifest_sha256.clone(),
            members: self
                .model
                .members()
                .iter()
                .take(self.profile.members)
                .enumerate()
                .map(|(i, mem)| MemberSummary {
                    file: mem.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                    sha256: mem.sha256.clone(),
                    features: features.get(i).cloned().flatten(),
                })
                .collect(),
            profile: self.profile.label().to_string(),
            provider: self.model.provider().to_string(),
            lanes: self.model.lanes(),
            batch_size: self.batch_size,
            tta_axes: self.profile.tta_axes.clone(),
            mc_dropout_passes: self.profile.mc_dropout_passes,
            passes,
            tiling: tiling.map(|t| t.to_string()),
            class_weights: m.calibration.as_ref().map(|c| c.class_weights.clone()),
            temperature: m.calibration.as_ref().and_then(|c| c.temperature),
            grid_dims: grid.grid.dims(),
            grid_spacing_mm: grid.grid.affine().spacing(),
        }
    }

    /// The label names, indexed by label value.
    fn label_names(&self) -> Vec<String> {
        self.model.manifest().labels.iter().map(|l| l.name.clone()).collect()
    }

    /// The quality estimate, when the folder ships an estimator for this run's base pass set
    /// (its members, deterministic; `worker::quality`).
    fn estimate(
        &self,
        features: &QualityFeatures,
        label_names: &[String],
        source: &str,
    ) -> Result<Option<QualityEstimate>, PipelineError> {
        if self.profile.mc_dropout_passes > 0 {
            return Ok(None);
        }
        let Some(estimator) = self.model.quality_estimator(self.profile.members) else {
            return Ok(None);
        };
        estimator
            .estimate(features, label_names)
            .map(Some)
            .map_err(|e| PipelineError::QualityEstimate { input: source.to_string(), reason: e.to_string() })
    }

    fn labels(&self) -> BTreeMap<String, String> {
        self.model.manifest().labels.iter().map(|l| (l.value.to_string(), l.name.clone())).collect()
    }

    fn assess_ood(&self, input: &ModelGridInput, source: &str) -> Result<Option<OodAssessment>, PipelineError> {
        self.model
            .manifest()
            .ood
            .as_ref()
            .map(|reference| ood::assess(&input.full_image, &input.foreground, reference))
            .transpose()
            .map_err(|e| PipelineError::ood(source, e))
    }
}

/// Settings for one study beyond the models.
#[derive(Debug, Clone, Default)]
pub struct StudyOptions {
    pub limits: GridLimits,
    /// Keep the model-grid input and mean probabilities in the result (for
    /// checks against a reference implementation).
    pub keep_model_grid: bool,
    /// Also return the calibrated voxel probabilities on the scan's grid
    /// ([`NativeMaps::probabilities`]; one f32 volume per class).
    pub probabilities: bool,
    /// Write every segmentation pass into this folder ([`PassDump`]; evaluation only).
    pub save_passes: Option<std::path::PathBuf>,
}

/// What the pipeline is doing, for progress displays.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A stage starts (`model_grid`, `inference`, `native_grid`, `quality` …).
    Stage(&'static str),
    /// Inference progress of the model named.
    Inference(&'a str, Progress),
}

/// The model-grid input and ensemble mean, kept on request.
#[derive(Debug, Clone)]
pub struct ModelGridOutputs {
    pub image: Volume<f32>,
    /// One volume per class.
    pub probabilities: Vec<Volume<f32>>,
}

/// Everything one study produced.
#[derive(Debug, Clone)]
pub struct StudyResult {
    pub maps: NativeMaps,
    pub report: StudyReport,
    pub model_grid: Option<ModelGridOutputs>,
}

struct Clock {
    start: Instant,
    timings: Vec<Timing>,
}

impl Clock {
    fn new() -> Self {
        Clock { start: Instant::now(), timings: Vec::new() }
    }
    fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.timings.push(Timing { stage, ms: (now - self.start).as_secs_f64() * 1e3 });
        self.start = now;
    }
}

/// Runs `seg` (and `quality`, when given) on one scan; `load_ms` is how long
/// reading it took, reported as the `load` stage.
#[tracing::instrument(name = "pipeline", skip_all)]
pub fn process_study(
    native: &Volume<f32>,
    load_ms: f64,
    seg: &ModelRunner,
    quality: Option<&ModelRunner>,
    options: &StudyOptions,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<StudyResult, PipelineError> {
    let source = native.meta.source.clone();
    let manifest = seg.model.manifest();
    if manifest.task != Task::Segmentation {
        return Err(PipelineError::Model {
            model: seg.model.dir().display().to_string(),
            reason: format!("is a {} model, a segmentation model is needed", manifest.task),
        });
    }
    let mut clock = Clock::new();
    clock.timings.push(Timing { stage: "load", ms: load_ms });

    progress(Event::Stage("model_grid"));
    let input = to_model_grid(native, &seg.model.input_prep(), &options.limits)?;
    clock.lap("model_grid");

    progress(Event::Stage("inference"));
    let ensemble = seg.ensemble()?;
    let voxel_ml = input.grid.affine().linear().determinant().abs() / 1000.0;
    let new_accumulator = || {
        Accumulator::new(manifest.labels.len(), input.grid.voxels(), voxel_ml)
            .map_err(|e| PipelineError::uncertainty(&source, e))
    };
    let mut acc = new_accumulator()?;
    // The quality features are those of the base passes (unflipped, deterministic: worker::quality):
    // a profile that runs more passes than those keeps them apart in a second accumulator.
    let profile = &seg.profile;
    let mut base =
        if profile.tta_axes.is_empty() || profile.mc_dropout_passes > 0 { None } else { Some(new_accumulator()?) };
    let name = manifest.name.clone();
    let image = ImageRef::from(&input.image);
    let mut dump = options.save_passes.as_deref().map(PassDump::new).transpose()?;
    let mut sink = |pass: &PassInfo, p: &[f32]| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        acc.add_pass(p)?;
        if let Some(b) = base.as_mut().filter(|_| pass.flip == Flip::IDENTITY && pass.mc_pass.is_none()) {
            b.add_pass(p)?;
        }
        match dump.as_mut() {
            Some(d) => d.add_pass(pass, p),
            None => Ok(()),
        }
    };
    let run = ensemble
        .segment(image, &mut sink, &mut |p| progress(Event::Inference(&name, *p)))
        .map_err(|e| PipelineError::inference(&source, e))?;
    if let Some(d) = dump {
        d.finish(&input.grid)?;
    }
    let passes = acc.passes();
    let mut maps = acc.finish().map_err(|e| PipelineError::uncertainty(&source, e))?;
    let base_maps = base.map(|b| b.finish()).transpose().map_err(|e| PipelineError::uncertainty(&source, e))?;
    clock.lap("inference");

    let ood = seg.assess_ood(&input, &source)?;
    let label_names = seg.label_names();
    let (base_report, base_mean) = match &base_maps {
        Some(b) => (&b.report, b.mean_probs.as_slice()),
        None => (&maps.report, maps.mean_probs.as_slice()),
    };
    let image_metrics = ImageMetrics::compute(input.image.data(), base_mean, input.image.dims(), input.image.spacing());
    let quality_features = QualityFeatures::compute(&FeatureInputs {
        uncertainty: base_report,
        ood: ood.as_ref(),
        bias_field: input.bias_field.as_ref(),
        spacing_mm: native.spacing(),
        label_names: &label_names,
        image_metrics: Some(&image_metrics),
    });
    drop(base_maps);
    let quality_estimate = seg.estimate(&quality_features, &label_names, &source)?;
    let seg_routing = seg.policy.decide(&maps.report, ood.as_ref(), quality_estimate.as_ref());
    clock.lap("ood_routing");

    progress(Event::Stage("native_grid"));
    let mean = ProbabilityMaps::new(
        maps.classes,
        input.grid.dims(),
        *input.grid.affine(),
        std::mem::take(&mut maps.mean_probs),
        source.clone(),
    )
    .map_err(|e| PipelineError::geometry(&source, e))?;
    let native_maps = to_native_grid(
        native,
        &input.grid,
        &mean,
        NativeRequest {
            class_weights: manifest.calibration.as_ref().map(|c| c.class_weights.as_slice()),
            temperature: manifest.calibration.as_ref().and_then(|c| c.temperature),
            probabilities: options.probabilities,
        },
        &maps.predictive_entropy,
        &maps.mutual_information,
        &options.limits,
    )?;
    clock.lap("native_grid");

    // A scan the classifier cannot take (e.g. intensities it cannot harmonize on its coarser grid)
    // does not lose the segmentation: the failure is reported, and routed as unknown when the
    // classifier's flag is a routing rule. A classifier of the wrong kind is a configuration error.
    let mut quality_error = None;
    let mut quality_unknown = Vec::new();
    let quality_report = match quality {
        Some(q) => {
            progress(Event::Stage("quality"));
            let r = match run_quality(native, q, options, progress) {
                Ok(r) => Some(r),
                Err(e @ PipelineError::Model { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(source = %source, error = %e, "scan-quality check failed");
                    if let Some(threshold) = q.policy.flag_probability_max() {
                        quality_unknown.push(Reason {
                            code: ReasonCode::UncertaintyUnknown,
                            metric: "flagged_probability",
                            label: None,
                            value: None,
                            threshold,
                        });
                    }
                    quality_error = Some(e.to_string());
                    None
                }
            };
            clock.lap("quality");
            r
        }
        None => None,
    };

    let native_voxel_ml = native.affine().linear().determinant().abs() / 1000.0;
    let mut counts = vec![0u64; maps.classes];
    for &l in native_maps.labels.data() {
        if let Some(c) = counts.get_mut(usize::from(l)) {
            *c += 1;
        }
    }
    let structures = maps
        .report
        .structures
        .iter()
        .map(|s| {
            let voxels = counts.get(usize::from(s.label)).copied().unwrap_or(0);
            StructureReport {
                label: s.label,
                name: manifest.labels.get(usize::from(s.label)).map(|l| l.name.clone()).unwrap_or_default(),
                voxels,
                volume_ml: voxels as f64 * native_voxel_ml,
                uncertainty: s.clone(),
            }
        })
        .collect();
    let routing = RoutingDecision::combine(
        std::iter::once(seg_routing)
            .chain(quality_report.as_ref().map(|q| q.routing.clone()))
            .chain(std::iter::once(RoutingDecision::from_reasons(quality_unknown))),
    );
    let model_grid = options.keep_model_grid.then(|| ModelGridOutputs {
        image: input.image.clone(),
        probabilities: (0..maps.classes).filter_map(|c| input.image.with_data(mean.channel(c).to_vec()).ok()).collect(),
    });
    let report = StudyReport {
        schema: REPORT_SCHEMA,
        input: InputSummary {
            source: source.clone(),
            format: native.meta.format.clone(),
            series_uid: native.meta.series_uid.clone(),
            dims: native.dims(),
            spacing_mm: native.spacing(),
            orientation: native.affine().orientation_code(),
        },
        model: seg.summary(&input, passes, Some(run.tiling), &run.features),
        labels: seg.labels(),
        bias_field: input.bias_field,
        structures,
        study: maps.report.study.clone(),
        ood,
        quality_features,
        quality_estimate,
        quality: quality_report,
        quality_error,
        dicom: None,
        routing,
        timings_ms: clock.timings,
    };
    Ok(StudyResult { maps: native_maps, report, model_grid })
}

fn run_quality(
    native: &Volume<f32>,
    q: &ModelRunner,
    options: &StudyOptions,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<QualityReport, PipelineError> {
    let source = native.meta.source.clone();
    let manifest = q.model.manifest();
    if manifest.task != Task::Classification {
        return Err(PipelineError::Model {
            model: q.model.dir().display().to_string(),
            reason: format!("is a {} model, a classification model is needed", manifest.task),
        });
    }
    let input = to_model_grid(native, &q.model.input_prep(), &options.limits)?;
    let ensemble = q.ensemble()?;
    let name = manifest.name.clone();
    let uncertainty = ensemble
        .classify(ImageRef::from(&input.image), &mut |p| progress(Event::Inference(&name, *p)))
        .map_err(|e| PipelineError::inference(&source, e))?;
    let ood = q.assess_ood(&input, &source)?;
    let routing = q.policy.decide_classification(&uncertainty, ood.as_ref());
    let label = manifest.labels.get(uncertainty.label).map(|l| l.name.clone()).unwrap_or_default();
    Ok(QualityReport {
        model: q.summary(&input, uncertainty.members, None, &[]),
        labels: q.labels(),
        label,
        uncertainty,
        ood,
        routing,
    })
}

/// Is `dir` a model folder (has a manifest)?
pub fn is_model_folder(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).is_file()
}
