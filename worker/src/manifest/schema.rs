//! The `manifest.toml` format as Rust types: every table refuses keys it does
//! not know, so a typo is an error at load instead of a silently ignored setting.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use imaging::harmonize::HarmonizeMethod;
use serde::{Deserialize, Deserializer, Serialize};

/// The manifest format this code reads.
pub const SCHEMA_VERSION: u32 = 1;

/// A parsed `manifest.toml` (see the module docs for the format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version; [`SCHEMA_VERSION`].
    pub schema: u32,
    pub name: String,
    pub version: String,
    pub task: Task,
    #[serde(default)]
    pub description: String,
    pub input: InputSpec,
    /// `imaging::harmonize`'s method table; a Nyúl `scale_file` is relative to the model folder.
    #[serde(deserialize_with = "strict_harmonization")]
    pub harmonization: HarmonizeMethod,
    /// Bias-field correction of the model-grid intensities before harmonization
    /// (`imaging::bias`); absent = none. A quality classifier that must *see* a
    /// bias field leaves it out.
    #[serde(default)]
    pub bias_correction: Option<imaging::bias::BiasFieldParams>,
    pub output: OutputSpec,
    pub labels: Vec<Label>,
    pub inference: InferenceSpec,
    #[serde(default)]
    pub routing: RoutingThresholds,
    /// The training distribution `worker::ood` compares a study with; required
    /// when `routing.ood_score_max` is set (an out-of-domain scan must never be
    /// accepted for want of a reference).
    #[serde(default)]
    pub ood: Option<crate::ood::OodReference>,
    /// Learned per-structure Dice estimators, one per profile at most
    /// ([`crate::quality`]); required for a profile whose `predicted_dice_min` is set.
    #[serde(default)]
    pub quality_estimators: Vec<crate::quality::QualityEstimatorSpec>,
    /// Class weights applied to the mean probabilities on the scan's grid
    /// before the argmax (a label-prior shift fitted to remove a volume bias).
    #[serde(default)]
    pub calibration: Option<Calibration>,
    pub provenance: Provenance,
    pub evaluation: Evaluation,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Per-voxel class probabilities, `[N, C, D, H, W]`.
    Segmentation,
    /// Per-scan class probabilities, `[N, C]`.
    Classification,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::Segmentation => "segmentation",
            Task::Classification => "classification",
        })
    }
}

/// What the network expects to be fed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Expected contrast (e.g. `"T1w"`), compared with the study's series.
    pub contrast: String,
    /// Voxel spacing the network was trained at, mm, along the model grid's axes.
    pub spacing_mm: [f64; 3],
    /// Axis codes of the model grid, nibabel's `aff2axcodes` convention (`"RAS"`).
    pub orientation: String,
    /// Image channels (the C of `[N, C, D, H, W]`).
    pub channels: usize,
    /// Name of the ONNX graph input.
    pub tensor: String,
    /// Blur a scan finer than `spacing_mm` to that resolution before resampling
    /// it (`imaging::smooth::anti_aliasing_sigma`), so that the model sees the
    /// noise a scan acquired at its spacing would have, not the finer grid's
    /// passed through trilinear interpolation. Off unless the manifest says so:
    /// a classifier that must see a scan's noise keeps it.
    #[serde(default)]
    pub anti_aliasing: bool,
}

/// What the network returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Name of the ONNX graph output (the graph's first output).
    pub tensor: String,
    pub activation: Activation,
    /// Name of a second output of a segmentation model's members: float32
    /// `[N, F, d, h, w]` features of the network's deepest layer (the bottleneck),
    /// on a grid `size_multiple` times coarser than the window. The engine pools
    /// them over the brain for the feature-space out-of-distribution distance
    /// (docs/routing.md); without it no feature distance is computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<String>,
}

/// The activation applied to the output: already applied inside the graph
/// (`softmax`, `sigmoid`) or to be applied by the engine (`none`: logits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// One channel per label, summing to 1.
    Softmax,
    /// One independent probability per label other than 0 (label 0 is the
    /// negative class: background, or "diagnostic quality").
    Sigmoid,
    /// Logits, one channel per label; the engine applies softmax.
    #[serde(rename = "none")]
    Identity,
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::Softmax => "softmax",
            Activation::Sigmoid => "sigmoid",
            Activation::Identity => "none",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// The value written in the mask; labels are 0, 1, 2 … in the order listed.
    pub value: u32,
    pub name: String,
    /// Display colour, `[r, g, b]`.
    pub colour: [u8; 3],
    /// What the structure is, coded (e.g. SNOMED CT "Tissue" / "Gray Matter"): the
    /// Segmented Property Category and Type of a DICOM SEG segment and the finding
    /// of its SR measurement group. A segmentation model whose foreground labels
    /// all carry both gets DICOM results for DICOM inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<imaging::dicom::derived::Code>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub property: Option<imaging::dicom::derived::Code>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceSpec {
    /// Sliding-window patch, voxels along the model grid's axes.
    pub patch_size: [usize; 3],
    /// Fraction of a patch shared by neighbouring windows, in [0, 1); MONAI's and nnU-Net's 0.5 by default.
    #[serde(default = "default_overlap")]
    pub overlap: f64,
    /// Model-grid axes (0, 1, 2) mirrored for test-time augmentation; all 2^k flips are run.
    #[serde(default)]
    pub tta_axes: Vec<usize>,
    /// Monte Carlo dropout passes per member and flip; 0 runs each member once.
    #[serde(default)]
    pub mc_dropout_passes: u32,
    /// Name of the members' float32 `[1]` gate input: 0 runs them deterministically
    /// (dropout off), 1 with dropout active. Required when any profile or the
    /// defaults ask for MC-dropout passes, and whenever the graphs have the input.
    #[serde(default)]
    pub mc_dropout_input: Option<String>,
    /// How a pass covers the model grid: sliding windows (the default, MONAI's
    /// placement) or the whole grid in one model call.
    #[serde(default)]
    pub tiling: Tiling,
    /// Whole-grid passes pad the grid to a multiple of this on each axis: the
    /// members' total downsampling (2^poolings). Required when any profile tiles `whole`.
    #[serde(default)]
    pub size_multiple: Option<usize>,
    /// The largest padded grid, in voxels, a whole-grid pass takes; a larger one
    /// falls back to windows (memory: the members' activations grow with the grid).
    #[serde(default = "default_whole_max_voxels")]
    pub whole_max_voxels: usize,
    /// Named alternatives to the defaults above (`full` for GPU workers, `cpu`
    /// for CPU ones by convention); see [`Manifest::select_profile`].
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

impl InferenceSpec {
    /// The first of the defaults and the profiles (in name order) for which
    /// `asks` gives a value (`None` is the defaults), named as messages name it:
    /// `inference` or ``profile `full` ``.
    pub(crate) fn first_asking<T>(&self, asks: impl Fn(Option<&Profile>) -> Option<T>) -> Option<(String, T)> {
        std::iter::once(asks(None).map(|v| ("inference".to_string(), v)))
            .chain(self.profiles.iter().map(|(n, p)| asks(Some(p)).map(|v| (format!("profile `{n}`"), v))))
            .flatten()
            .next()
    }

    /// Who tiles `whole`, if anyone does (a profile without `tiling` takes the defaults').
    pub(crate) fn tiles_whole(&self) -> Option<String> {
        let tiling = |p: Option<&Profile>| p.and_then(|p| p.tiling).unwrap_or(self.tiling);
        self.first_asking(|p| (tiling(p) == Tiling::Whole).then_some(())).map(|(who, ())| who)
    }
}

/// How a segmentation pass covers the model grid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tiling {
    /// `patch_size` windows at `overlap`, Gaussian-blended (MONAI's
    /// `sliding_window_inference`): every voxel is computed by several windows.
    #[default]
    Windows,
    /// One model call per pass over the grid, zero-padded to `size_multiple`:
    /// a fully convolutional member computes each voxel once. Grids above
    /// `whole_max_voxels` fall back to windows.
    Whole,
}

/// The manifest's spelling, also the command line's (`--tiling windows|whole`).
impl std::str::FromStr for Tiling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "windows" => Ok(Tiling::Windows),
            "whole" => Ok(Tiling::Whole),
            other => Err(format!("unknown tiling `{other}` (windows, whole)")),
        }
    }
}

impl fmt::Display for Tiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tiling::Windows => "windows",
            Tiling::Whole => "whole",
        })
    }
}

/// An `[inference.profiles.<name>]` table: how much of the ensemble to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// How many of the first members run, 1..=the number listed.
    pub members: usize,
    /// Mirrored axes, as `inference.tta_axes`.
    #[serde(default)]
    pub tta_axes: Vec<usize>,
    /// MC-dropout passes per member and flip, as `inference.mc_dropout_passes`.
    #[serde(default)]
    pub mc_dropout_passes: u32,
    /// The profile's tiling, replacing `inference.tiling`.
    #[serde(default)]
    pub tiling: Option<Tiling>,
    /// `routing.study_uncertainty_max` for this profile: the study score
    /// depends on the passes (more flips, more disagreement), so a profile
    /// calibrated apart carries its own bound (source: `routing.source`).
    #[serde(default)]
    pub study_uncertainty_max: Option<f64>,
    /// `routing.predicted_dice_min` for this profile (its own estimator, its own bound).
    #[serde(default)]
    pub predicted_dice_min: Option<f64>,
}

/// `[calibration]`: how the mask and the reported probabilities are taken from
/// the mean probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// One positive weight per label: the mask is `argmax_c(w_c · p̄_c)` on the
    /// scan's grid (a shift of the label prior, Saerens et al. 2002), fitted so
    /// that the structure volumes are unbiased on generated training cases.
    pub class_weights: Vec<f64>,
    /// Temperature of the reported voxel probabilities: `q_c ∝ (w_c · p̄_c)^(1/T)`
    /// (Guo et al. 2017 on the weighted mean), fitted on generated training cases
    /// so that the probabilities are calibrated. It leaves the argmax, and so the
    /// mask, unchanged; absent = 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Where the weights come from (the evaluation section that fitted them).
    pub source: String,
}

/// The profile a worker runs: its name (`None` for the `[inference]` defaults)
/// and what it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedProfile {
    pub name: Option<String>,
    pub members: usize,
    pub tta_axes: Vec<usize>,
    pub mc_dropout_passes: u32,
    pub tiling: Tiling,
    /// The profile's own `study_uncertainty_max`, replacing `routing`'s.
    pub study_uncertainty_max: Option<f64>,
    /// The profile's own `predicted_dice_min`, replacing `routing`'s.
    pub predicted_dice_min: Option<f64>,
}

impl SelectedProfile {
    /// The name for logs and reports: the profile's, or `"default"`.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("default")
    }
}

impl Manifest {
    /// The profile to run: `requested` when given (an error naming the known
    /// profiles when it is not in the manifest); else `full` on a CUDA or
    /// TensorRT session and `cpu` on a CPU session when the manifest has that
    /// profile; else the `[inference]` defaults with every member.
    pub fn select_profile(
        &self,
        requested: Option<&str>,
        provider: crate::runtime::Provider,
    ) -> Result<SelectedProfile, String> {
        use crate::runtime::Provider;
        let from = |name: &str, p: &Profile| SelectedProfile {
            name: Some(name.to_string()),
            members: p.members,
            tta_axes: p.tta_axes.clone(),
            mc_dropout_passes: p.mc_dropout_passes,
            tiling: p.tiling.unwrap_or(self.inference.tiling),
            study_uncertainty_max: p.study_uncertainty_max,
            predicted_dice_min: p.predicted_dice_min,
        };
        if let Some(name) = requested {
            return match self.inference.profiles.get(name) {
                Some(p) => Ok(from(name, p)),
                None => {
                    let known: Vec<&str> = self.inference.profiles.keys().map(String::as_str).collect();
                    Err(format!(
                        "inference profile `{name}` is not in the manifest (it has: {})",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ))
                }
            };
        }
        let by_provider = match provider {
            Provider::Cuda | Provider::TensorRt => "full",
            Provider::Cpu => "cpu",
        };
        Ok(match self.inference.profiles.get(by_provider) {
            Some(p) => from(by_provider, p),
            None => SelectedProfile {
                name: None,
                members: self.members.len(),
                tta_axes: self.inference.tta_axes.clone(),
                mc_dropout_passes: self.inference.mc_dropout_passes,
                tiling: self.inference.tiling,
                study_uncertainty_max: None,
                predicted_dice_min: None,
            },
        })
    }
}

fn default_overlap() -> f64 {
    0.5
}

/// 2^22 voxels (≈ 161³): a whole 2 mm brain grid (~1 M voxels) with room to spare.
pub const DEFAULT_WHOLE_MAX_VOXELS: usize = 1 << 22;

fn default_whole_max_voxels() -> usize {
    DEFAULT_WHOLE_MAX_VOXELS
}

/// Routing thresholds shipped with the model (overridable in the worker's
/// config). A study crossing any of them goes to review.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingThresholds {
    /// Upper bound of the study uncertainty score.
    pub study_uncertainty_max: Option<f64>,
    /// Lower bound, in [0, 1], of each structure's agreement between passes (mean pairwise Dice).
    pub structure_agreement_min: Option<f64>,
    /// Upper bound of each structure's volume coefficient of variation across passes.
    pub volume_cv_max: Option<f64>,
    /// Upper bound of the out-of-distribution score.
    pub ood_score_max: Option<f64>,
    /// Lower bound, in [0, 1], of each structure's Dice as the profile's quality estimator predicts it.
    pub predicted_dice_min: Option<f64>,
    /// Classification: lower bound, in [0, 1], of the winning class's mean probability.
    pub probability_min: Option<f64>,
    /// Classification: upper bound, in [0, 1], of each flagged class's (labels ≥ 1,
    /// e.g. "degraded") mean probability.
    pub flag_probability_max: Option<f64>,
    /// Where the thresholds come from (the evaluation section that chose them);
    /// required when any threshold is set.
    pub source: Option<String>,
}

impl RoutingThresholds {
    pub(crate) fn any_set(&self) -> bool {
        [
            self.study_uncertainty_max,
            self.structure_agreement_min,
            self.volume_cv_max,
            self.ood_score_max,
            self.predicted_dice_min,
            self.probability_min,
            self.flag_probability_max,
        ]
        .iter()
        .any(Option::is_some)
    }
}

/// How the members were trained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The script that trained the members.
    pub script: String,
    /// The training data.
    pub data: String,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub trained: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// The model's evaluation: where the report is and its headline figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    pub report: String,
    #[serde(default)]
    pub figures: BTreeMap<String, f64>,
}

/// One ensemble member: an ONNX file in the model folder and its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Path relative to the model folder.
    pub file: PathBuf,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    #[serde(default)]
    pub seed: Option<u64>,
}

/// `HarmonizeMethod` is an internally tagged enum, which serde cannot make
/// refuse unknown keys; check them here so the manifest is strict throughout.
fn strict_harmonization<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HarmonizeMethod, D::Error> {
    use serde::de::Error;
    let table = toml::Table::deserialize(deserializer)?;
    let method = table.get("method").and_then(toml::Value::as_str).unwrap_or_default();
    let allowed: &[&str] = match method {
        "percentile" => &["lower", "upper"],
        "whitestripe" | "white_stripe" => &["contrast", "width"],
        "nyul" => &["scale_file"],
        _ => &[],
    };
    if let Some(unknown) = table.keys().find(|k| *k != "method" && !allowed.contains(&k.as_str())) {
        return Err(D::Error::custom(format!("unknown field `{unknown}` in harmonization method `{method}`")));
    }
    toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| D::Error::custom(e.message()))
}
