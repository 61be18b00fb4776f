//! The estimator a model folder ships (`[[quality_estimators]]`), loaded, and
//! its estimate for one study.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::features::QualityFeatures;
use crate::runtime::{RuntimeConfig, RuntimeError, TabularModel};

/// One `[[quality_estimators]]` table of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityEstimatorSpec {
    /// The base pass set it was fitted on: the first `members` members, no
    /// flip, deterministic ([`super`]'s docs). It runs for every profile whose
    /// base pass set that is, and for no other.
    pub members: usize,
    /// ONNX file, relative to the model folder: float32 `[N, features]` in,
    /// float32 `[N, structures]` out (predicted Dice).
    pub file: PathBuf,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// The input vector, in order: names of [`super::feature_names`].
    pub features: Vec<String>,
    /// Output `i` is the predicted Dice of the structure with label `structures[i]`.
    pub structures: Vec<u8>,
}

/// A loaded estimator.
#[derive(Debug)]
pub struct QualityEstimator {
    spec: QualityEstimatorSpec,
    model: TabularModel,
}

/// One structure's predicted Dice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StructureEstimate {
    pub label: u8,
    pub name: String,
    /// In [0, 1]; `None` when a feature the estimator needs is undefined.
    pub predicted_dice: Option<f64>,
}

/// `report.json`'s `quality_estimate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityEstimate {
    /// Members of the base pass set the features come from (= the estimator's).
    pub members: usize,
    /// The estimator's file and sha256.
    pub file: String,
    pub sha256: String,
    pub structures: Vec<StructureEstimate>,
    /// The smallest predicted Dice; `None` when any is unknown.
    pub min_predicted_dice: Option<f64>,
    /// Features the estimator needs that are undefined for this study (then nothing is predicted).
    pub missing_features: Vec<String>,
}

impl QualityEstimator {
    /// Creates the session from `bytes` (already checked against `spec.sha256`
    /// by the caller) and checks the graph against the spec's sizes.
    pub fn from_bytes(
        spec: QualityEstimatorSpec,
        bytes: &[u8],
        path: &Path,
        config: &RuntimeConfig,
    ) -> Result<Self, RuntimeError> {
        let model = TabularModel::from_bytes(bytes, path, config, spec.features.len(), spec.structures.len())?;
        Ok(QualityEstimator { spec, model })
    }

    pub fn spec(&self) -> &QualityEstimatorSpec {
        &self.spec
    }

    /// The members of the base pass set it applies to.
    pub fn members(&self) -> usize {
        self.spec.members
    }

    /// Predicts each structure's Dice from `features`; `label_names` indexed by label.
    pub fn estimate(
        &self,
        features: &QualityFeatures,
        label_names: &[String],
    ) -> Result<QualityEstimate, RuntimeError> {
        let mut row = Vec::with_capacity(self.spec.features.len());
        let mut missing = Vec::new();
        for name in &self.spec.features {
            match features.get(name) {
                Some(v) => row.push(v as f32),
                None => missing.push(name.clone()),
            }
        }
        let predicted: Vec<Option<f64>> = if missing.is_empty() {
            // Trees extrapolate flat, but a regressor may still leave [0, 1]: a Dice is a Dice.
            self.model.run(&row)?.into_iter().map(|d| Some(f64::from(d).clamp(0.0, 1.0))).collect()
        } else {
            vec![None; self.spec.structures.len()]
        };
        let structures: Vec<StructureEstimate> = self
            .spec
            .structures
            .iter()
            .zip(predicted)
            .map(|(&label, predicted_dice)| StructureEstimate {
                label,
                name: label_names.get(usize::from(label)).cloned().unwrap_or_default(),
                predicted_dice,
            })
            .collect();
        let min_predicted_dice = structures
            .iter()
            .map(|s| s.predicted_dice)
            .try_fold(f64::INFINITY, |m, d| d.map(|d| m.min(d)))
            .filter(|m| m.is_finite());
        Ok(QualityEstimate {
            members: self.spec.members,
            file: self.spec.file.display().to_string(),
            sha256: self.spec.sha256.clone(),
            structures,
            min_predicted_dice,
            missing_features: missing,
        })
    }
}
