//! The Gaussian importance map that weights each window's voxels when windows
//! are blended: MONAI 1.6.1's `compute_importance_map(mode="gaussian")`, with
//! its float32 arithmetic, its unnormalized product of 1-D Gaussians and its
//! clamp of small weights to `max(min, 1e-3)`; a uniform map for whole-grid passes.

/// MONAI's and nnU-Net's σ as a fraction of the patch edge (σ = patch / 8).
pub const SIGMA_SCALE: f64 = 0.125;

/// Weights over one patch, Fortran order (i fastest), all > 0.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportanceMap {
    pub patch: [usize; 3],
    pub values: Vec<f32>,
}

impl ImportanceMap {
    /// Weight 1 everywhere: the map of a whole-grid pass, whose one window
    /// needs no blending.
    pub fn uniform(patch: [usize; 3]) -> ImportanceMap {
        ImportanceMap { patch, values: vec![1.0; patch.iter().product()] }
    }

    /// `w(a, b, c) = g₀(a)·g₁(b)·g₂(c)` with `g_d(x) = exp(x² / (−2σ_d²))`,
    /// `x = a − (patch_d − 1)/2` and `σ_d = patch_d · sigma_scale`, each factor and
    /// product in f32 as torch computes it; then clamped below at
    /// `max(min w, 1e-3)` (MONAI's guard against near-zero weights at the
    /// corners, which for σ = patch/8 clamps every weight under 1e-3).
    pub fn gaussian(patch: [usize; 3], sigma_scale: f64) -> ImportanceMap {
        let factors: Vec<Vec<f32>> = patch
            .iter()
            .map(|&p| {
                let sigma = p as f64 * sigma_scale;
                // torch divides a float32 tensor by a Python float: the divisor is cast to f32.
                let denom = (-2.0 * sigma * sigma) as f32;
                let centre = (p as f32 - 1.0) / 2.0;
                (0..p)
                    .map(|i| {
                        let x = i as f32 - centre;
                        (x * x / denom).exp()
                    })
                    .collect()
            })
            .collect();
        let [p0, p1, p2] = patch;
        let mut values = vec![0f32; p0 * p1 * p2];
        // torch builds (g0 ⊗ g1) first, then multiplies by g2.
        for (k, &g2) in factors[2].iter().enumerate() {
            for (j, &g1) in factors[1].iter().enumerate() {
                let row = &mut values[p0 * (j + p1 * k)..p0 * (j + 1 + p1 * k)];
                for (w, &g0) in row.iter_mut().zip(&factors[0]) {
                    *w = (g0 * g1) * g2;
                }
            }
        }
        let min = values.iter().copied().fold(f32::INFINITY, f32::min);
        let floor = (f64::from(min).max(1e-3)) as f32;
        values.iter_mut().for_each(|w| *w = w.max(floor));
        ImportanceMap { patch, values }
    }
}
