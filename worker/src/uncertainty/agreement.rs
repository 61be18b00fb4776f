//! Agreement between passes for one class, from the per-voxel pass counters
//! alone (the identities are derived in the module docs): pooled pairwise Dice
//! and IoU, and the IoU of all passes.

use rayon::prelude::*;

/// Sums over the voxels of one class's counter map `n_v` (passes labelling v as the class).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct AgreementSums {
    /// `Σ_v n_v (n_v − 1) = 2 Σ_pairs |A_i ∩ A_j|`.
    pub twice_pair_intersections: u128,
    /// `Σ_v n_v = Σ_t |A_t|`.
    pub labelled: u128,
    /// `#{v : n_v = P} = |∩_t A_t|`.
    pub in_all: u64,
    /// `#{v : n_v ≥ 1} = |∪_t A_t|`.
    pub in_any: u64,
}

impl AgreementSums {
    pub(crate) fn merge(self, o: Self) -> Self {
        AgreementSums {
            twice_pair_intersections: self.twice_pair_intersections + o.twice_pair_intersections,
            labelled: self.labelled + o.labelled,
            in_all: self.in_all + o.in_all,
            in_any: self.in_any + o.in_any,
        }
    }

    /// `Σ_pairs 2|A_i ∩ A_j| / Σ_pairs (|A_i| + |A_j|)`; None with fewer than two
    /// passes or when no pass labels the class anywhere.
    pub(crate) fn pooled_dice(&self, passes: usize) -> Option<f64> {
        let pairs_volume = (passes as u128).checked_sub(1).filter(|&p| p > 0)? * self.labelled;
        (pairs_volume > 0).then(|| self.twice_pair_intersections as f64 / pairs_volume as f64)
    }

    /// `Σ_pairs |A_i ∩ A_j| / Σ_pairs |A_i ∪ A_j|`, with the union sum
    /// `(P − 1) Σ_t |A_t| − Σ_pairs |A_i ∩ A_j|`; None as for Dice.
    pub(crate) fn pooled_iou(&self, passes: usize) -> Option<f64> {
        let twice_union =
            2 * (passes as u128).checked_sub(1).filter(|&p| p > 0)? * self.labelled - self.twice_pair_intersections;
        (twice_union > 0).then(|| self.twice_pair_intersections as f64 / twice_union as f64)
    }

    /// `|∩_t A_t| / |∪_t A_t|` (Roy et al. 2019); None with fewer than two passes
    /// or an empty union.
    pub(crate) fn all_pass_iou(&self, passes: usize) -> Option<f64> {
        (passes >= 2 && self.in_any > 0).then(|| self.in_all as f64 / self.in_any as f64)
    }
}

/// The sums for one class's counters.
pub(crate) fn agreement_sums(counts: &[u16], passes: usize) -> AgreementSums {
    counts
        .par_chunks(1 << 16)
        .map(|chunk| {
            let mut twice = 0u64;
            let mut labelled = 0u64;
            let (mut in_all, mut in_any) = (0u64, 0u64);
            for &n in chunk {
                let n = u64::from(n);
                // ≤ 65535² per voxel and 65536 voxels per chunk: fits u64.
                twice += n * n.saturating_sub(1);
                labelled += n;
                in_all += u64::from(n as usize == passes);
                in_any += u64::from(n > 0);
            }
            AgreementSums { twice_pair_intersections: twice.into(), labelled: labelled.into(), in_all, in_any }
        })
        .reduce(AgreementSums::default, AgreementSums::merge)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three passes over five voxels, A_0 = {0,1,2}, A_1 = {1,2}, A_2 = {2,3}:
    /// pairwise Dice 2·2/5, 2·1/5, 2·1/4; |A_i ∩ A_j| sums to 4, |A_i| + |A_j| to 14.
    #[test]
    fn counters_give_the_pair_sums_worked_by_hand() {
        let n = [1u16, 2, 3, 1, 0];
        let s = agreement_sums(&n, 3);
        assert_eq!((s.twice_pair_intersections, s.labelled, s.in_all, s.in_any), (8, 7, 1, 4));
        assert_eq!(s.pooled_dice(3), Some(8.0 / 14.0));
        // Unions 3, 4, 3 sum to 10 = (P − 1)·7 − 4.
        assert_eq!(s.pooled_iou(3), Some(0.4));
        assert_eq!(s.all_pass_iou(3), Some(0.25));
        assert_eq!(s.pooled_dice(1), None);
        assert_eq!(agreement_sums(&[0, 0], 2).pooled_dice(2), None);
    }
}
