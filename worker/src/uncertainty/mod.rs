//! Uncertainty from many inference passes, accumulated as the passes arrive.
//!
//! Owns the arithmetic that turns per-pass class probabilities (ensemble
//! members × mirror flips × MC-dropout passes, each a channel-major
//! `[classes][voxels]` f32 buffer such as `imaging::resample::ProbabilityMaps`
//! holds) into the mean probabilities, the label map, the voxelwise
//! uncertainty maps, the per-structure quality-control figures and one study
//! score; and the same figures for a classifier's members. It does not run
//! models, resample, write files or decide routing: it only reads
//! probabilities that the caller already holds.
//!
//! # Definitions (all entropies in nats, natural logarithm, as `scipy.stats.entropy`)
//! For passes `t = 1..P` with probabilities `p_t` at a voxel and their mean `p̄`:
//! - predictive entropy `H[p̄] = −Σ_c p̄_c ln p̄_c` (total uncertainty, in `[0, ln C]`);
//! - expected entropy `E_t H[p_t]` (aleatoric part);
//! - mutual information `H[p̄] − E_t H[p_t]` between the label and the pass
//!   (epistemic part; BALD, Houlsby et al. 2011; the aleatoric/epistemic split of
//!   Depeweg et al. 2018). By concavity of entropy it is ≥ 0, and it is ≤ `H[p̄]`
//!   because entropies are ≥ 0; rounding can make the difference a few ulps
//!   negative, so it is clamped at 0.
//!
//! `0 · ln 0 = 0`. Each pass is checked and then renormalized per voxel (negative
//! values within the tolerance set to 0, divided by the sum), as
//! `scipy.stats.entropy` normalizes its input; see [`PROBABILITY_TOLERANCE`].
//! Labels are the argmax of `p̄`, the lowest class index on a tie (`numpy.argmax`).
//! Class 0 is the background: the study score is over classes ≥ 1.
//!
//! # Agreement between passes without keeping the passes
//! Bayesian QuickNAT (Roy et al., NeuroImage 2019) rates each structure from its
//! MC samples by the volume's coefficient of variation, the Dice agreement
//! between pairs of samples, the IoU of all samples `|∩ A_t| / |∪ A_t|` and the
//! mean voxel uncertainty inside it. Keeping P label maps would make memory grow
//! with P; instead the accumulator keeps, per class and voxel, the number `n_v`
//! of passes whose argmax is that class (a u16). Then, over the P(P−1)/2 pass
//! pairs (i, j) with `A_t` the voxels pass t labels as the class:
//! - `Σ_pairs |A_i ∩ A_j| = Σ_v n_v (n_v − 1) / 2`,
//! - `Σ_pairs (|A_i| + |A_j|) = (P − 1) Σ_t |A_t| = (P − 1) Σ_v n_v`,
//! - `Σ_pairs |A_i ∪ A_j| = (P − 1) Σ_v n_v − Σ_v n_v (n_v − 1) / 2`,
//! - `|∩_t A_t| = #{v : n_v = P}`, `|∪_t A_t| = #{v : n_v ≥ 1}`.
//!
//! So the report holds **pooled pairwise Dice** `Σ_v n_v(n_v − 1) / ((P − 1) Σ_v n_v)`:
//! the ratio of the pair sums, which equals the mean of the pairwise Dice
//! scores weighted by `|A_i| + |A_j|` (and the plain mean when every pass has the
//! same volume; it leans towards the pairs with larger volumes otherwise). It is an
//! estimate of the Dice between two random passes whose expectation does not
//! depend on P. On the reference fixture it differs from the plain mean of the
//! pairwise Dice scores by at most 2.4e-4 where the per-pass volumes vary by 2–4 %
//! (CV) and by up to 9.3e-3 at a CV of 25 %. Pooled pairwise IoU is defined the same way; the all-pass IoU is
//! exact (Roy et al.'s best proxy for Dice), but it falls as P grows, so thresholds
//! on it do not carry over between profiles with different pass counts.
//!
//! # Study score
//! [`StudyUncertainty::score`] = 1 − pooled pairwise Dice over all foreground
//! classes together (`Σ_{c≥1}` in numerator and denominator): the
//! volume-weighted disagreement between two random passes on what is foreground
//! and which tissue it is. 0 when every pass labels every voxel the same; it
//! rises with the fraction of the labelled volume the passes disagree on. It is
//! an agreement measure because Roy et al. found their sample-agreement measures
//! (the all-pass IoU above all) track the Dice against manual labels; pairwise
//! rather than all-pass because its expectation does not depend on P, so a
//! threshold chosen on the GPU profile (all members × 8 flips) means the same on
//! the CPU profile with fewer passes; and it reads directly as "expected 1 − Dice
//! between two passes", the quantity the evaluation relates to the real Dice. It
//! needs at least two passes (`None` otherwise; the routing policy must treat
//! that as unknown, not as certain). The foreground means of entropy and mutual
//! information, which do not need two passes, are reported next to it.
//!
//! # Memory
//! State per voxel: C running sums of probabilities (f32), one running sum of
//! per-pass entropy (f32) and C pass counters (u16): `10·C + 4` bytes, whatever
//! the number of passes; plus `P × C` per-pass voxel counts. f32 sums were
//! measured against f64 (numpy emulation of sequential float32 accumulation,
//! 200 000 voxels, 3 classes, correlated Dirichlet passes): maximum error of the
//! mean probability 1.4e-7 at 8 passes, 1.2e-6 at 400 and 3.0e-6 at 2000, no label
//! changed; well inside the 1e-4 agreement asked of the engine, so f64 sums
//! (twice the memory) buy nothing. `finish` turns the sums into means in place and
//! drops the counters before it allocates the output maps.
//!
//! For a 1 mm brain (197 × 233 × 189 = 8 675 289 voxels, 3 classes):
//! accumulator 190.9 MB (sums 104.1, entropy sum 34.7, counters 52.1), plus the
//! caller's current pass (104.1 MB as f32) = 295.0 MB while accumulating; during
//! `finish` 216.9 MB (mean probabilities 104.1, expected entropy 34.7,
//! predictive entropy 34.7, mutual information 34.7, labels 8.7).
//! (MB = 10⁶ bytes.) Measured on that size (release build, 2 shared cores under a
//! load of 3.5): `new` 84 ms, `add_pass` 280 ms per pass, `finish` 216 ms.
//!
//! Probabilities outside the field of view must still be a distribution: pad
//! with background = 1, not with zeros (a zero vector is refused).

mod accumulator;
mod agreement;
mod classification;
mod error;
mod probability;
mod report;

pub use accumulator::{Accumulator, UncertaintyMaps};
pub use classification::ClassificationUncertainty;
pub use error::UncertaintyError;
pub use probability::PROBABILITY_TOLERANCE;
pub use report::{StructureUncertainty, StudyUncertainty, UncertaintyReport};

#[cfg(test)]
mod tests;
