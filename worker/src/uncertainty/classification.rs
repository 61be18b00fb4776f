//! Uncertainty of a classifier's ensemble for one study: the members'
//! probability vectors in, the mean, entropies, mutual information and how
//! many members disagree with the ensemble out. Same definitions and checks
//! as the voxelwise maps.

use serde::Serialize;

use super::error::UncertaintyError;
use super::probability::{self, Fault};

/// Figures for one study from `M` members over `C` classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationUncertainty {
    pub members: usize,
    /// Mean of the renormalized member probabilities.
    pub mean_probs: Vec<f64>,
    /// Argmax of `mean_probs`, the lowest class on a tie.
    pub label: usize,
    /// `H[p̄]`, nats.
    pub predictive_entropy: f64,
    /// Mean of the members' entropies, nats.
    pub expected_entropy: f64,
    /// `max(H[p̄] − E H[p_m], 0)`, nats.
    pub mutual_information: f64,
    /// Fraction of members whose own argmax is not `label`.
    pub disagreement: f64,
}

impl ClassificationUncertainty {
    /// `members[m]` is member m's probability vector (all the same length);
    /// checked like a voxel of a pass.
    pub fn from_member_probs(members: &[Vec<f32>]) -> Result<Self, UncertaintyError> {
        let first = members.first().ok_or(UncertaintyError::NoMembers)?;
        let classes = first.len();
        if classes == 0 {
            return Err(UncertaintyError::ZeroClasses);
        }
        let mut q = vec![0.0; classes];
        let mut sum = vec![0.0; classes];
        let mut expected = 0.0;
        let mut member_labels = Vec::with_capacity(members.len());
        for (member, p) in members.iter().enumerate() {
            if p.len() != classes {
                return Err(UncertaintyError::MemberLength { member, actual: p.len(), expected: classes });
            }
            probability::checked_copy(p, &mut q).map_err(|f| member_error(member, f))?;
            expected += probability::entropy(&q);
            member_labels.push(probability::argmax(&q));
            sum.iter_mut().zip(&q).for_each(|(s, x)| *s += x);
        }
        let m = members.len() as f64;
        let mean_probs: Vec<f64> = sum.iter().map(|s| s / m).collect();
        let label = probability::argmax(&mean_probs);
        let predictive_entropy = probability::entropy(&mean_probs);
        let expected_entropy = expected / m;
        let dissent = member_labels.iter().filter(|&&l| l != label).count();
        Ok(ClassificationUncertainty {
            members: members.len(),
            label,
            predictive_entropy,
            expected_entropy,
            mutual_information: (predictive_entropy - expected_entropy).max(0.0),
            disagreement: dissent as f64 / m,
            mean_probs,
        })
    }
}

fn member_error(member: usize, fault: Fault) -> UncertaintyError {
    let tolerance = super::PROBABILITY_TOLERANCE;
    match fault {
        Fault::NotFinite { class, value } => UncertaintyError::MemberNotFinite { member, class, value },
        Fault::OutOfRange { class, value } => UncertaintyError::MemberOutOfRange { member, class, value, tolerance },
        Fault::NotNormalized { sum } => UncertaintyError::MemberNotNormalized { member, sum, tolerance },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_disagreeing_members_are_all_epistemic() {
        let u = ClassificationUncertainty::from_member_probs(&[vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0]])
            .expect("valid");
        assert_eq!(u.expected_entropy, 0.0);
        let p: f64 = 2.0 / 3.0;
        let h = -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
        assert!((u.predictive_entropy - h).abs() < 1e-12 && (u.mutual_information - h).abs() < 1e-12);
        assert_eq!((u.label, u.disagreement), (0, 1.0 / 3.0));
    }

    #[test]
    fn bad_members_are_refused_by_index() {
        assert_eq!(ClassificationUncertainty::from_member_probs(&[]), Err(UncertaintyError::NoMembers));
        assert_eq!(ClassificationUncertainty::from_member_probs(&[vec![]]), Err(UncertaintyError::ZeroClasses));
        let e = ClassificationUncertainty::from_member_probs(&[vec![0.5, 0.5], vec![1.0]]).unwrap_err();
        assert_eq!(e, UncertaintyError::MemberLength { member: 1, actual: 1, expected: 2 });
        let e = ClassificationUncertainty::from_member_probs(&[vec![0.5, 0.5], vec![3.0, -2.0]]).unwrap_err();
        assert!(e.to_string().starts_with("classification: member 1 class 0: probability 3"), "{e}");
    }
}
