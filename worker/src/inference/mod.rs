//! The ensemble inference engine: an image on the model grid in, one
//! probability map per pass out, handed to a consumer as each pass finishes.
//!
//! Owns the sliding windows ([`WindowLayout`], MONAI 1.6.1's placement and
//! padding), the Gaussian importance map ([`ImportanceMap`], MONAI's
//! `compute_importance_map`), mirror flips ([`Flip`]), the pass loop
//! (members × flips × MC-dropout passes, windows batched, model calls spread
//! over inference lanes) that blends `Σ w·p / Σ w` on the model grid
//! ([`Ensemble::segment`]), and the
//! whole-volume passes of a classifier ([`Ensemble::classify`]). Does not own
//! loading models ([`crate::manifest`]), resampling or harmonizing
//! (`imaging`), nor the uncertainty arithmetic ([`crate::uncertainty`]): each
//! finished pass goes to a [`PassSink`], normally the uncertainty
//! [`crate::uncertainty::Accumulator`], so memory is O(classes × voxels)
//! whatever the number of passes. See `docs/inference.md`.
//!
//! ```no_run
//! use worker::inference::{Ensemble, ImageRef, MeanSink};
//! use worker::manifest::load_model_folder;
//! use worker::runtime::RuntimeConfig;
//! use worker::uncertainty::Accumulator;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = load_model_folder("models/brain-tissue".as_ref(), &RuntimeConfig::default())?;
//! let profile = model.select_profile(None)?; // `cpu` on a CPU session
//! let ensemble = Ensemble::from_model(&model, &profile)?.with_batch_size(4)?;
//! let (dims, voxels) = ([96, 112, 96], vec![0.0f32; 96 * 112 * 96]); // harmonized, model grid
//! let image = ImageRef::new(dims, &voxels)?;
//! let mut sinks = (Accumulator::new(3, voxels.len(), 0.008)?, MeanSink::new());
//! ensemble.segment(image, &mut sinks, &mut |p| eprintln!("pass {}/{}", p.pass + 1, p.passes))?;
//! let maps = sinks.0.finish()?;
//! # Ok(()) }
//! ```

mod classification;
mod error;
mod features;
mod flip;
mod importance;
mod lanes;
mod segmentation;
mod sink;
mod windows;

#[cfg(test)]
mod tests;

pub use error::InferenceError;
pub use features::FeaturePool;
pub use flip::Flip;
pub use importance::{ImportanceMap, SIGMA_SCALE};
pub use segmentation::SegmentationRun;
pub use sink::{MeanSink, PassInfo, PassSink};
pub use windows::WindowLayout;

use crate::manifest::{Activation, LoadedModel, Manifest, SelectedProfile, Task, Tiling};
use crate::runtime::{Model, Provider};

/// Windows run together in one model call unless configured otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 4;

/// The batch size for sessions on `provider` when none is configured: one
/// window per call on the CPU, where the lanes are the parallelism (on 2 cores
/// a batch of 1 was both faster and half the memory of 4, `docs/benchmarks.md`),
/// [`DEFAULT_BATCH_SIZE`] on a GPU, whose one session runs a batch at once.
pub fn default_batch_size(provider: Provider) -> usize {
    match provider {
        Provider::Cpu => 1,
        Provider::Cuda | Provider::TensorRt => DEFAULT_BATCH_SIZE,
    }
}

/// A Fortran-ordered (i fastest) f32 image on the model grid, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    dims: [usize; 3],
    voxels: &'a [f32],
}

impl<'a> ImageRef<'a> {
    /// Checks that `voxels` holds `dims[0]·dims[1]·dims[2]` > 0 values.
    pub fn new(dims: [usize; 3], voxels: &'a [f32]) -> Result<Self, InferenceError> {
        let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
        if expected == 0 || voxels.len() != expected {
            return Err(InferenceError::Image { dims, actual: voxels.len(), expected });
        }
        Ok(ImageRef { dims, voxels })
    }

    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    pub fn voxels(&self) -> &'a [f32] {
        self.voxels
    }
}

impl<'a> From<&'a imaging::Volume<f32>> for ImageRef<'a> {
    fn from(v: &'a imaging::Volume<f32>) -> Self {
        ImageRef { dims: v.dims(), voxels: v.data() }
    }
}

/// What one run does: the manifest's `[inference]` settings under the chosen profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub task: Task,
    /// Segmentation: the sliding-window patch.
    pub patch_size: [usize; 3],
    /// Segmentation: window overlap, in [0, 1).
    pub overlap: f64,
    /// Segmentation: σ of the importance map as a fraction of the patch ([`SIGMA_SCALE`]).
    pub sigma_scale: f64,
    /// Mirrored axes; all 2^k subsets are run.
    pub tta_axes: Vec<usize>,
    /// Stochastic passes per member and flip (gate 1); 0: one deterministic pass (gate 0).
    pub mc_dropout_passes: u32,
    /// Windows per model call (segmentation).
    pub batch_size: usize,
    /// Output channels = classes of the probabilities handed on.
    pub classes: usize,
    /// What the members' output is: probabilities (`softmax`) or logits
    /// (`none`: the engine applies softmax to each window before blending).
    pub activation: Activation,
    /// Segmentation: sliding windows, or one call over the whole padded grid.
    pub tiling: Tiling,
    /// Whole-grid passes pad each axis to a multiple of this (≥ 1).
    pub size_multiple: usize,
    /// Whole-grid passes take padded grids up to this many voxels; larger ones use windows.
    pub whole_max_voxels: usize,
    /// Segmentation: the members' bottleneck output to pool ([`FeaturePool`]), if the manifest names one.
    pub features: Option<String>,
}

impl Plan {
    /// The manifest's settings with the profile's flips and passes, batch [`DEFAULT_BATCH_SIZE`].
    pub fn new(manifest: &Manifest, profile: &SelectedProfile) -> Plan {
        Plan {
            task: manifest.task,
            patch_size: manifest.inference.patch_size,
            overlap: manifest.inference.overlap,
            sigma_scale: SIGMA_SCALE,
            tta_axes: profile.tta_axes.clone(),
            mc_dropout_passes: profile.mc_dropout_passes,
            batch_size: DEFAULT_BATCH_SIZE,
            classes: manifest.labels.len(),
            activation: manifest.output.activation,
            tiling: profile.tiling,
            size_multiple: manifest.inference.size_multiple.unwrap_or(1),
            whole_max_voxels: manifest.inference.whole_max_voxels,
            features: manifest.output.features.clone().filter(|_| manifest.task == Task::Segmentation),
        }
    }

    /// The one window of a whole-grid pass over an image of `dims`: each axis
    /// rounded up to `size_multiple`; `None` (sliding windows) when tiling by
    /// windows or when that grid exceeds `whole_max_voxels`.
    pub fn whole_grid_patch(&self, dims: [usize; 3]) -> Option<[usize; 3]> {
        if self.tiling != Tiling::Whole {
            return None;
        }
        let m = self.size_multiple.max(1);
        let patch = [0, 1, 2].map(|a| dims[a].checked_next_multiple_of(m));
        let [Some(a), Some(b), Some(c)] = patch else { return None };
        let voxels = a.checked_mul(b).and_then(|v| v.checked_mul(c))?;
        (voxels <= self.whole_max_voxels).then_some([a, b, c])
    }

    /// The flips, identity first ([`Flip::subsets`]).
    pub fn flips(&self) -> Vec<Flip> {
        Flip::subsets(&self.tta_axes)
    }

    /// Passes per member: flips × max(MC passes, 1).
    pub fn passes_per_member(&self) -> usize {
        self.flips().len() * self.mc_dropout_passes.max(1) as usize
    }
}

/// Progress of a run, reported after every model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The pass in progress (0-based) and the run's total.
    pub pass: usize,
    pub passes: usize,
    /// Windows of this pass done, and per pass (1 for classification).
    pub windows_done: usize,
    pub windows: usize,
}

/// The members to run and how: sessions borrowed from a loaded model folder,
/// one set per inference lane (`lanes[lane][member]`).
#[derive(Debug, Clone)]
pub struct Ensemble<'m> {
    lanes: Vec<Vec<&'m Model>>,
    plan: Plan,
}

impl<'m> Ensemble<'m> {
    /// The profile's first `profile.members` members of `model` under its manifest's plan.
    pub fn from_model(model: &'m LoadedModel, profile: &SelectedProfile) -> Result<Self, InferenceError> {
        let available = model.members().len();
        if profile.members == 0 || profile.members > available {
            return Err(InferenceError::Plan {
                reason: format!(
                    "profile `{}` runs {} members, the model has {available}",
                    profile.label(),
                    profile.members
                ),
            });
        }
        let members = &model.members()[..profile.members];
        let lanes = (0..model.lanes()).map(|l| members.iter().map(|m| &m.sessions[l]).collect()).collect();
        Ensemble::with_lanes(lanes, Plan::new(model.manifest(), profile))
    }

    /// One lane: the members' sessions run one model call at a time.
    pub fn new(members: Vec<&'m Model>, plan: Plan) -> Result<Self, InferenceError> {
        Ensemble::with_lanes(vec![members], plan)
    }

    /// Several lanes, each with its own session of every member (the same
    /// members in the same order; a session is never shared between lanes):
    /// a segmentation's model calls are spread over the lanes and blended in
    /// the one-lane order, so the result does not depend on the lane count.
    ///
    /// Checks the plan against the members: at least one member, batch ≥ 1,
    /// classes ≥ 2, flips on axes 0..3, a gate input on every member when MC
    /// passes are asked for, a supported activation.
    pub fn with_lanes(lanes: Vec<Vec<&'m Model>>, plan: Plan) -> Result<Self, InferenceError> {
        let plan_err = |reason: String| Err(InferenceError::Plan { reason });
        let Some(members) = lanes.first() else {
            return plan_err("no inference lanes".into());
        };
        if members.is_empty() {
            return plan_err("no members to run".into());
        }
        if let Some((l, lane)) = lanes.iter().enumerate().find(|(_, lane)| lane.len() != members.len()) {
            return plan_err(format!("lane {l} has {} members, lane 0 has {}", lane.len(), members.len()));
        }
        if plan.batch_size == 0 {
            return plan_err("batch size 0".into());
        }
        if plan.size_multiple == 0 {
            return plan_err("size multiple 0".into());
        }
        if plan.classes < 2 {
            return plan_err(format!("{} classes, at least 2 are needed", plan.classes));
        }
        if let Some(a) = plan.tta_axes.iter().find(|&&a| a > 2) {
            return plan_err(format!("flip axis {a} is not 0, 1 or 2"));
        }
        if (0..3).any(|a| plan.tta_axes.iter().filter(|&&x| x == a).count() > 1) {
            return plan_err(format!("flip axes {:?} repeat an axis", plan.tta_axes));
        }
        if plan.task == Task::Segmentation {
            // Checks patch and overlap once, on a one-patch image.
            WindowLayout::new(plan.patch_size, plan.patch_size, plan.overlap)?;
            if !(plan.sigma_scale.is_finite() && plan.sigma_scale > 0.0) {
                return plan_err(format!("sigma scale {} is not positive", plan.sigma_scale));
            }
        }
        if plan.activation == Activation::Sigmoid {
            return plan_err("sigmoid outputs are not supported by the engine (use softmax or none)".into());
        }
        for m in lanes.iter().flatten() {
            if plan.mc_dropout_passes > 0 && m.gate().is_none() {
                return Err(InferenceError::Model {
                    path: m.path().to_path_buf(),
                    reason: format!(
                        "{} MC-dropout passes asked for but it has no float32 [1] gate input",
                        plan.mc_dropout_passes
                    ),
                });
            }
        }
        Ok(Ensemble { lanes, plan })
    }

    /// The same ensemble running `batch_size` windows per model call.
    pub fn with_batch_size(mut self, batch_size: usize) -> Result<Self, InferenceError> {
        if batch_size == 0 {
            return Err(InferenceError::Plan { reason: "batch size 0".into() });
        }
        self.plan.batch_size = batch_size;
        Ok(self)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The first lane's sessions, one per member.
    pub fn members(&self) -> &[&'m Model] {
        &self.lanes[0]
    }

    /// Inference lanes: sets of sessions that run model calls side by side.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Passes in one run: members × flips × max(MC passes, 1).
    pub fn passes(&self) -> usize {
        self.members().len() * self.plan.passes_per_member()
    }

    /// Every pass in run order: member-major, then flip (identity first), then MC pass.
    pub fn pass_order(&self) -> Vec<PassInfo> {
        let flips = self.plan.flips();
        let mc: Vec<Option<u32>> = if self.plan.mc_dropout_passes == 0 {
            vec![None]
        } else {
            (0..self.plan.mc_dropout_passes).map(Some).collect()
        };
        let mut out = Vec::with_capacity(self.passes());
        for member in 0..self.members().len() {
            for &flip in &flips {
                for &mc_pass in &mc {
                    out.push(PassInfo { index: out.len(), member, flip, mc_pass });
                }
            }
        }
        out
    }
}

/// The gate value for a pass: 1 for an MC pass, none (0 on gated models) otherwise.
fn gate_for(pass: &PassInfo) -> Option<f32> {
    pass.mc_pass.map(|_| 1.0)
}

/// Softmax over `classes` values spaced `stride` apart, in place (f64 inside).
fn softmax_strided(values: &mut [f32], classes: usize, stride: usize, offset: usize) {
    let at = |c: usize| offset + c * stride;
    let max = (0..classes).map(|c| values[at(c)]).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for c in 0..classes {
        let e = f64::from(values[at(c)] - max).exp();
        values[at(c)] = e as f32;
        sum += e;
    }
    for c in 0..classes {
        values[at(c)] = (f64::from(values[at(c)]) / sum) as f32;
    }
}
