//! The per-structure and per-study figures, computed from the accumulator's
//! sums (no voxel data) and serializable into `report.json`.

use serde::Serialize;

use super::agreement::AgreementSums;

/// Quality-control figures for one label (Roy et al. 2019's structure-wise measures).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StructureUncertainty {
    pub label: u8,
    /// Voxels of the final mask (argmax of the mean) with this label.
    pub voxels: u64,
    /// Their volume, mL.
    pub volume_ml: f64,
    /// Mean over passes of the volume each pass's own argmax gives, mL.
    pub pass_volume_ml_mean: f64,
    /// Sample standard deviation (ddof = 1) over passes / mean; None with fewer
    /// than two passes or a zero mean.
    pub pass_volume_cv: Option<f64>,
    /// Pooled pairwise Dice between passes (see the module docs); None with
    /// fewer than two passes or when no pass has the label.
    pub pairwise_dice: Option<f64>,
    /// Pooled pairwise IoU between passes.
    pub pairwise_iou: Option<f64>,
    /// IoU of all passes, `|∩ A_t| / |∪ A_t|`; falls as passes are added.
    pub all_pass_iou: Option<f64>,
    /// Mean predictive entropy over the final mask, nats; None when empty.
    pub mean_entropy: Option<f64>,
    /// Mean mutual information over the final mask, nats; None when empty.
    pub mean_mutual_information: Option<f64>,
}

/// The study's figures; `score` is the one to route on (module docs say why).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyUncertainty {
    /// 1 − pooled pairwise Dice over the foreground classes (≥ 1) together,
    /// in `[0, 1]`; None with fewer than two passes or no foreground in any pass.
    pub score: Option<f64>,
    /// Foreground voxels of the final mask, and their volume in mL.
    pub foreground_voxels: u64,
    pub foreground_volume_ml: f64,
    /// Mean predictive entropy and mutual information over the final
    /// foreground, nats; None when it is empty.
    pub foreground_mean_entropy: Option<f64>,
    pub foreground_mean_mutual_information: Option<f64>,
}

/// Everything `report.json` needs from the uncertainty stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UncertaintyReport {
    pub passes: usize,
    pub voxel_volume_ml: f64,
    /// One entry per class, in class order (label = index).
    pub structures: Vec<StructureUncertainty>,
    pub study: StudyUncertainty,
}

/// Per-label sums over the final mask.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MaskSums {
    voxels: Vec<u64>,
    entropy: Vec<f64>,
    information: Vec<f64>,
}

impl MaskSums {
    pub(crate) fn new(classes: usize) -> Self {
        MaskSums { voxels: vec![0; classes], entropy: vec![0.0; classes], information: vec![0.0; classes] }
    }

    #[inline]
    pub(crate) fn add(&mut self, label: usize, entropy: f64, information: f64) {
        if let (Some(n), Some(h), Some(i)) =
            (self.voxels.get_mut(label), self.entropy.get_mut(label), self.information.get_mut(label))
        {
            *n += 1;
            *h += entropy;
            *i += information;
        }
    }

    pub(crate) fn merge(mut self, o: Self) -> Self {
        self.voxels.iter_mut().zip(o.voxels).for_each(|(a, b)| *a += b);
        self.entropy.iter_mut().zip(o.entropy).for_each(|(a, b)| *a += b);
        self.information.iter_mut().zip(o.information).for_each(|(a, b)| *a += b);
        self
    }
}

impl UncertaintyReport {
    /// `pass_voxels[t][c]`: voxels pass t labelled c; `agreement[c]`; `mask`: final-mask sums.
    pub(crate) fn new(
        pass_voxels: &[Vec<u64>],
        agreement: &[AgreementSums],
        mask: &MaskSums,
        voxel_volume_ml: f64,
    ) -> Self {
        let passes = pass_voxels.len();
        let structures = agreement
            .iter()
            .zip(mask.voxels.iter().zip(mask.entropy.iter().zip(&mask.information)))
            .enumerate()
            .map(|(c, (agree, (&voxels, (&entropy, &information))))| {
                let volumes: Vec<f64> =
                    pass_voxels.iter().map(|v| v.get(c).copied().unwrap_or(0) as f64 * voxel_volume_ml).collect();
                let (mean, cv) = mean_and_cv(&volumes);
                StructureUncertainty {
                    label: u8::try_from(c).unwrap_or(u8::MAX),
                    voxels,
                    volume_ml: voxels as f64 * voxel_volume_ml,
                    pass_volume_ml_mean: mean,
                    pass_volume_cv: cv,
                    pairwise_dice: agree.pooled_dice(passes),
                    pairwise_iou: agree.pooled_iou(passes),
                    all_pass_iou: agree.all_pass_iou(passes),
                    mean_entropy: (voxels > 0).then(|| entropy / voxels as f64),
                    mean_mutual_information: (voxels > 0).then(|| information / voxels as f64),
                }
            })
            .collect();

        let foreground = agreement.iter().skip(1).fold(AgreementSums::default(), |a, &b| a.merge(b));
        let fg_voxels: u64 = mask.voxels.iter().skip(1).sum();
        let fg_entropy: f64 = mask.entropy.iter().skip(1).sum();
        let fg_information: f64 = mask.information.iter().skip(1).sum();
        let study = StudyUncertainty {
            score: foreground.pooled_dice(passes).map(|d| 1.0 - d),
            foreground_voxels: fg_voxels,
            foreground_volume_ml: fg_voxels as f64 * voxel_volume_ml,
            foreground_mean_entropy: (fg_voxels > 0).then(|| fg_entropy / fg_voxels as f64),
            foreground_mean_mutual_information: (fg_voxels > 0).then(|| fg_information / fg_voxels as f64),
        };
        UncertaintyReport { passes, voxel_volume_ml, structures, study }
    }
}

/// Mean and coefficient of variation with the sample standard deviation (ddof = 1).
fn mean_and_cv(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len();
    if n == 0 {
        return (0.0, None);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 || mean <= 0.0 {
        return (mean, None);
    }
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
    (mean, Some(var.sqrt() / mean))
}
