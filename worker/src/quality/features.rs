//! The feature catalog: named numbers describing one study, computed from the
//! figures the pipeline already has.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::image_metrics::{ImageMetrics, MAX_PAIRED_STRUCTURES};
use crate::ood::OodAssessment;
use crate::pipeline::BiasFieldSummary;
use crate::uncertainty::UncertaintyReport;

/// What the features are computed from.
#[derive(Debug, Clone, Copy)]
pub struct FeatureInputs<'a> {
    pub uncertainty: &'a UncertaintyReport,
    pub ood: Option<&'a OodAssessment>,
    pub bias_field: Option<&'a BiasFieldSummary>,
    /// The scan's own voxel spacing, mm.
    pub spacing_mm: [f64; 3],
    /// Label names, indexed by label value.
    pub label_names: &'a [String],
    /// The harmonized image's metrics inside the predicted structures.
    pub image_metrics: Option<&'a ImageMetrics>,
}

/// Feature name → value (`None` where undefined for this study: a structure
/// no pass produced, a single pass, no OOD reference). Serialized as a JSON
/// object with `null` for undefined values, and read back from one (a
/// report's `quality_features`) by tools and tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QualityFeatures(BTreeMap<String, Option<f64>>);

/// The per-structure figures, `<structure name>.<figure>`.
const STRUCTURE_FIGURES: [&str; 7] = [
    "pairwise_dice",
    "pass_volume_cv",
    "all_pass_iou",
    "mean_entropy",
    "mean_mutual_information",
    "volume_fraction",
    "intensity_cv",
];

/// The figures of each pair of structures, `<a>/<b>.<figure>` (a < b by label),
/// for manifests with at most [`MAX_PAIRED_STRUCTURES`] structures.
const PAIR_FIGURES: [&str; 3] = ["contrast", "joint_variation", "edge_sharpness"];

/// Every feature name the catalog defines for these label names (labels ≥ 1 are structures).
pub fn feature_names(label_names: &[String]) -> Vec<String> {
    let mut names: Vec<String> = [
        "study.score",
        "study.foreground_mean_entropy",
        "study.foreground_mean_mutual_information",
        "study.foreground_volume_ml",
        "bias_field.log_range",
        "input.spacing_max_mm",
        "input.spacing_min_mm",
        "image.efc",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for signal in ["intensity_histogram", "foreground_volume_ml", "noise_ratio"] {
        names.push(format!("ood.{signal}"));
    }
    for name in label_names.iter().skip(1) {
        names.extend(STRUCTURE_FIGURES.iter().map(|f| format!("{name}.{f}")));
    }
    for (i, a) in label_names.iter().enumerate().skip(1) {
        for b in paired(label_names, i) {
            names.extend(PAIR_FIGURES.iter().map(|f| format!("{a}/{b}.{f}")));
        }
    }
    names
}

/// The structures after label `i` that form a pair with it (none when the
/// manifest has more than [`MAX_PAIRED_STRUCTURES`] structures).
fn paired(label_names: &[String], i: usize) -> &[String] {
    if label_names.len().saturating_sub(1) > MAX_PAIRED_STRUCTURES { &[] } else { &label_names[i + 1..] }
}

impl QualityFeatures {
    /// The whole catalog for one study.
    ///
    /// - `study.*`: the study figures of the uncertainty report (model grid);
    /// - `bias_field.log_range`: ln(max / min) of the field divided out, 0 without correction;
    /// - `input.spacing_{max,min}_mm`: the scan's coarsest and finest voxel edge;
    /// - `ood.<signal>`: each OOD signal's value (not its distance: the estimator learns its own scale);
    /// - `<structure>.*`: that structure's pairwise Dice, pass-volume CV, all-pass IoU, mean entropy
    ///   and mutual information over its mask, its share of the foreground volume, and the
    ///   coefficient of variation of the harmonized intensity inside it (probability-weighted);
    /// - `<a>/<b>.*`: two structures' contrast in the harmonized image (mean of b − mean of a), their
    ///   coefficient of joint variation and the sharpness of their boundary ([`ImageMetrics`]);
    /// - `image.efc`: the harmonized image's entropy focus criterion.
    ///
    /// Every name of the catalog is present; a figure the inputs cannot give is `None`.
    pub fn compute(inputs: &FeatureInputs<'_>) -> Self {
        let u = inputs.uncertainty;
        let mut out = BTreeMap::new();
        let mut put = |name: String, value: Option<f64>| {
            out.insert(name, value.filter(|v| v.is_finite()));
        };
        put("study.score".into(), u.study.score);
        put("study.foreground_mean_entropy".into(), u.study.foreground_mean_entropy);
        put("study.foreground_mean_mutual_information".into(), u.study.foreground_mean_mutual_information);
        put("study.foreground_volume_ml".into(), Some(u.study.foreground_volume_ml));
        let log_range = match inputs.bias_field {
            Some(b) if b.min > 0.0 => Some((b.max / b.min).ln()),
            Some(_) => None,
            None => Some(0.0),
        };
        put("bias_field.log_range".into(), log_range);
        let spacing = inputs.spacing_mm;
        put("input.spacing_max_mm".into(), Some(spacing.iter().copied().fold(f64::MIN, f64::max)));
        put("input.spacing_min_mm".into(), Some(spacing.iter().copied().fold(f64::MAX, f64::min)));
        for signal in ["intensity_histogram", "foreground_volume_ml", "noise_ratio"] {
            let value = inputs.ood.and_then(|a| a.signals.iter().find(|s| s.name == signal)).and_then(|s| s.value);
            put(format!("ood.{signal}"), value);
        }
        let foreground_ml = u.study.foreground_volume_ml;
        for s in u.structures.iter().filter(|s| s.label != 0) {
            let Some(name) = inputs.label_names.get(usize::from(s.label)) else { continue };
            put(format!("{name}.pairwise_dice"), s.pairwise_dice);
            put(format!("{name}.pass_volume_cv"), s.pass_volume_cv);
            put(format!("{name}.all_pass_iou"), s.all_pass_iou);
            put(format!("{name}.mean_entropy"), s.mean_entropy);
            put(format!("{name}.mean_mutual_information"), s.mean_mutual_information);
            put(format!("{name}.volume_fraction"), (foreground_ml > 0.0).then(|| s.volume_ml / foreground_ml));
        }
        put("image.efc".into(), inputs.image_metrics.and_then(|m| m.efc));
        let names = inputs.label_names;
        let name_of = |label: u8| names.get(usize::from(label));
        for (i, a) in names.iter().enumerate().skip(1) {
            let intensity = inputs.image_metrics.and_then(|m| m.structures.iter().find(|s| usize::from(s.label) == i));
            put(format!("{a}.intensity_cv"), intensity.and_then(|s| (s.mean > 0.0).then(|| s.sd / s.mean)));
            for b in paired(names, i) {
                let pair = inputs
                    .image_metrics
                    .and_then(|m| m.pairs.iter().find(|p| name_of(p.a) == Some(a) && name_of(p.b) == Some(b)));
                put(format!("{a}/{b}.contrast"), pair.map(|p| p.contrast));
                put(format!("{a}/{b}.joint_variation"), pair.and_then(|p| p.joint_variation));
                put(format!("{a}/{b}.edge_sharpness"), pair.and_then(|p| p.edge_sharpness));
            }
        }
        QualityFeatures(out)
    }

    /// The value of `name`; `None` when it is undefined or not in the catalog.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied().flatten()
    }

    /// Is `name` a feature of this catalog (defined or not)?
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<f64>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ood::Signal;
    use crate::quality::{PairContrast, StructureIntensity};
    use crate::uncertainty::{StructureUncertainty, StudyUncertainty};

    fn structure(label: u8, volume_ml: f64, dice: Option<f64>) -> StructureUncertainty {
        StructureUncertainty {
            label,
            voxels: 10,
            volume_ml,
            pass_volume_ml_mean: volume_ml,
            pass_volume_cv: Some(0.02),
            pairwise_dice: dice,
            pairwise_iou: dice,
            all_pass_iou: Some(0.8),
            mean_entropy: Some(0.3),
            mean_mutual_information: Some(0.01),
        }
    }

    fn report() -> UncertaintyReport {
        UncertaintyReport {
            passes: 5,
            voxel_volume_ml: 0.008,
            structures: vec![
                structure(0, 900.0, Some(0.99)),
                structure(1, 600.0, Some(0.95)),
                structure(2, 400.0, None),
            ],
            study: StudyUncertainty {
                score: Some(0.04),
                foreground_voxels: 125_000,
                foreground_volume_ml: 1000.0,
                foreground_mean_entropy: Some(0.5),
                foreground_mean_mutual_information: Some(0.012),
            },
        }
    }

    #[test]
    fn the_catalog_is_computed_by_name_and_undefined_stays_undefined() {
        let names: Vec<String> = ["background", "grey_matter", "white_matter"].map(String::from).to_vec();
        let ood = OodAssessment {
            score: 1.0,
            signals: vec![
                Signal { name: "intensity_histogram", value: Some(0.05), reference: 0.0, distance: Some(1.0) },
                Signal { name: "noise_ratio", value: None, reference: 0.4, distance: None },
            ],
        };
        let bias = BiasFieldSummary { min: 0.5, max: 2.0, iterations: 3, converged: true };
        let metrics = ImageMetrics {
            structures: vec![
                StructureIntensity { label: 1, mean: 0.5, sd: 0.1 },
                StructureIntensity { label: 2, mean: 0.0, sd: 0.1 },
            ],
            pairs: vec![PairContrast { a: 1, b: 2, contrast: -0.5, joint_variation: Some(0.4), edge_sharpness: None }],
            efc: Some(0.7),
        };
        let u = report();
        let f = QualityFeatures::compute(&FeatureInputs {
            uncertainty: &u,
            ood: Some(&ood),
            bias_field: Some(&bias),
            spacing_mm: [1.0, 1.2, 4.0],
            label_names: &names,
            image_metrics: Some(&metrics),
        });
        let catalog = feature_names(&names);
        assert_eq!(
            f.iter().map(|(k, _)| k.to_string()).collect::<std::collections::BTreeSet<_>>(),
            catalog.iter().cloned().collect()
        );
        assert_eq!(f.get("study.score"), Some(0.04));
        assert_eq!(f.get("grey_matter.volume_fraction"), Some(0.6));
        assert_eq!(f.get("white_matter.pairwise_dice"), None, "undefined stays undefined");
        assert!(f.contains("white_matter.pairwise_dice"));
        assert_eq!(f.get("bias_field.log_range"), Some(4f64.ln()));
        assert_eq!((f.get("input.spacing_max_mm"), f.get("input.spacing_min_mm")), (Some(4.0), Some(1.0)));
        assert_eq!(f.get("ood.intensity_histogram"), Some(0.05));
        assert_eq!(f.get("ood.noise_ratio"), None);
        assert_eq!(f.get("ood.foreground_volume_ml"), None, "a signal the assessment lacks");
        assert_eq!(f.get("image.efc"), Some(0.7));
        assert_eq!(f.get("grey_matter.intensity_cv"), Some(0.2));
        assert_eq!(f.get("white_matter.intensity_cv"), None, "a zero mean has no coefficient of variation");
        assert_eq!(f.get("grey_matter/white_matter.contrast"), Some(-0.5));
        assert_eq!(f.get("grey_matter/white_matter.joint_variation"), Some(0.4));
        assert_eq!(f.get("grey_matter/white_matter.edge_sharpness"), None);
        assert!(f.contains("grey_matter/white_matter.edge_sharpness"));
        assert!(!catalog.iter().any(|n| n.starts_with("background.")), "background is not a structure");
        let parcellation: Vec<String> = (0..=MAX_PAIRED_STRUCTURES + 1).map(|l| format!("s{l}")).collect();
        assert!(!feature_names(&parcellation).iter().any(|n| n.contains('/')), "no pairs for many structures");
        assert_eq!(catalog.iter().filter(|n| n.contains('/')).count(), 3, "one pair, three figures");
        // No correction at all is a field of 1: log range 0.
        let none = QualityFeatures::compute(&FeatureInputs {
            uncertainty: &u,
            ood: None,
            bias_field: None,
            spacing_mm: [1.0; 3],
            label_names: &names,
            image_metrics: None,
        });
        assert_eq!(none.get("bias_field.log_range"), Some(0.0));
        let json = serde_json::to_value(&none).expect("serializes");
        assert!(json["ood.noise_ratio"].is_null());
        assert_eq!(serde_json::from_value::<QualityFeatures>(json).expect("reads back"), none);
    }
}
