//! Brain-weighted pooling of a segmentation member's bottleneck features: the
//! input of the feature-space out-of-distribution distance (docs/routing.md).
//!
//! Each window's features (`[F, d, h, w]`, the window seen `patch / (d, h, w)`
//! times coarser) are averaged over the window's positions, each position
//! weighted by how much brain the member saw in its block of voxels: the mean
//! of `1 − p(background)` of the window's own output there. Background (a
//! padded field of view, air) weighs nothing, so padding or cropping a scan
//! leaves the pooled vector where the brain puts it; a window without any brain
//! adds nothing. Owns the pooling, not which passes are pooled
//! ([`super::segmentation`]: each member's deterministic unflipped pass) nor the
//! distance (`crate::ood`).

use super::error::InferenceError;

/// One member's pooled features: `Σ w·f` per channel and `Σ w` over every
/// window of its pooled pass.
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturePool {
    sums: Vec<f64>,
    weight: f64,
}

impl FeaturePool {
    pub fn new(channels: usize) -> FeaturePool {
        FeaturePool { sums: vec![0.0; channels], weight: 0.0 }
    }

    /// Adds one window: `features` standard-layout `[F, fd, fh, fw]`, `probs`
    /// the window's probabilities `[classes, p0, p1, p2]` (class 0 the background),
    /// `patch` = `[p0, p1, p2]`, each a whole multiple of the feature grid.
    pub fn add_window(
        &mut self,
        features: &[f32],
        feature_dims: [usize; 3],
        probs: &[f32],
        patch: [usize; 3],
    ) -> Result<(), InferenceError> {
        let positions = feature_dims.iter().product::<usize>();
        let channels = self.sums.len();
        let shape_err = |reason: String| InferenceError::Plan { reason: format!("bottleneck features: {reason}") };
        if positions == 0 || features.len() != channels * positions {
            return Err(shape_err(format!(
                "{} values for {channels} channels on a {feature_dims:?} grid",
                features.len()
            )));
        }
        if let Some(axis) = (0..3).find(|&a| !patch[a].is_multiple_of(feature_dims[a])) {
            return Err(shape_err(format!(
                "the window's {} voxels on axis {axis} are not a multiple of the features' {}",
                patch[axis], feature_dims[axis]
            )));
        }
        let block = [0, 1, 2].map(|a| patch[a] / feature_dims[a]);
        let weights = brain_per_block(&probs[..patch.iter().product::<usize>()], patch, feature_dims, block);
        for (channel, sum) in self.sums.iter_mut().enumerate() {
            let f = &features[channel * positions..][..positions];
            *sum += f.iter().zip(&weights).map(|(&f, &w)| f64::from(f) * w).sum::<f64>();
        }
        self.weight += weights.iter().sum::<f64>();
        Ok(())
    }

    /// The brain-weighted mean of every channel; `None` when no window saw any brain.
    pub fn mean(&self) -> Option<Vec<f64>> {
        (self.weight > 0.0).then(|| self.sums.iter().map(|s| s / self.weight).collect())
    }

    /// `Σ w`: the brain, in feature positions, the pooled windows saw.
    pub fn weight(&self) -> f64 {
        self.weight
    }
}

/// Mean of `1 − p(background)` over each block of the window, in the feature
/// grid's standard (C) order. `background` is the window's class-0 channel,
/// standard layout `[p0, p1, p2]`.
fn brain_per_block(background: &[f32], patch: [usize; 3], grid: [usize; 3], block: [usize; 3]) -> Vec<f64> {
    let [_, p1, p2] = patch;
    let [_, g1, g2] = grid;
    let mut sums = vec![0.0f64; grid.iter().product()];
    for (a, plane) in background.chunks_exact(p1 * p2).enumerate() {
        for (b, row) in plane.chunks_exact(p2).enumerate() {
            let base = (a / block[0] * g1 + b / block[1]) * g2;
            for (c, &p) in row.iter().enumerate() {
                sums[base + c / block[2]] += 1.0 - f64::from(p);
            }
        }
    }
    let per = block.iter().product::<usize>() as f64;
    sums.iter_mut().for_each(|s| *s = (*s / per).clamp(0.0, 1.0));
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4³ window, features on a 2³ grid (blocks of 2³), 2 channels.
    fn window(background: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
        let mut p = Vec::new();
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..4 {
                    p.push(background(a, b, c));
                }
            }
        }
        p
    }

    #[test]
    fn positions_are_weighted_by_the_brain_in_their_block() {
        // Brain (p_bg = 0) only in the first half of axis 0: feature positions a = 0 weigh 1, a = 1 weigh 0.
        let probs = window(|a, _, _| if a < 2 { 0.0 } else { 1.0 });
        let features: Vec<f32> = (0..2).flat_map(|ch| (0..8).map(move |pos| (ch * 100 + pos) as f32)).collect();
        let mut pool = FeaturePool::new(2);
        pool.add_window(&features, [2, 2, 2], &probs, [4, 4, 4]).unwrap();
        // Positions 0..4 (a = 0) have values ch·100 + 0..4: mean 1.5 and 101.5.
        assert_eq!(pool.mean().unwrap(), vec![1.5, 101.5]);
        assert_eq!(pool.weight(), 4.0);
    }

    #[test]
    fn background_windows_add_nothing_and_no_brain_gives_none() {
        let mut pool = FeaturePool::new(1);
        let air = window(|_, _, _| 1.0);
        pool.add_window(&[7.0; 8], [2, 2, 2], &air, [4, 4, 4]).unwrap();
        assert_eq!(pool.mean(), None);
        let brain = window(|_, _, _| 0.25);
        pool.add_window(&[3.0; 8], [2, 2, 2], &brain, [4, 4, 4]).unwrap();
        pool.add_window(&[9.0; 8], [2, 2, 2], &air, [4, 4, 4]).unwrap();
        assert_eq!(pool.mean(), Some(vec![3.0]));
        assert_eq!(pool.weight(), 6.0);
    }

    #[test]
    fn mismatched_shapes_are_errors_not_panics() {
        let mut pool = FeaturePool::new(2);
        let probs = window(|_, _, _| 0.0);
        let err = pool.add_window(&[0.0; 8], [2, 2, 2], &probs, [4, 4, 4]).unwrap_err();
        assert!(err.to_string().contains("8 values for 2 channels"), "{err}");
        let err = pool.add_window(&[0.0; 2 * 27], [3, 3, 3], &probs, [4, 4, 4]).unwrap_err();
        assert!(err.to_string().contains("not a multiple"), "{err}");
    }
}
