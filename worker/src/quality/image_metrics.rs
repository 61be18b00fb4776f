//! Image-quality metrics of the harmonized model-grid image, weighted by the
//! base passes' mean probabilities: what the ensemble's agreement cannot show
//! (lost contrast, noise, blur, ghosting), as MRIQC measures it (Esteban et
//! al. 2017) but inside the predicted structures instead of atlas masks.
//!
//! Owns the arithmetic only; [`super::QualityFeatures`] names the figures.
//! Every statistic of a structure weights each voxel by its probability, so no
//! threshold enters, and zero voxels (padding of the field of view) change
//! nothing.

/// Pair figures are computed for at most this many structures (28 pairs, one
/// pass over the grid each): a parcellation with a hundred labels would
/// otherwise cost thousands of passes for figures no estimator reads.
pub const MAX_PAIRED_STRUCTURES: usize = 8;

/// Probability-weighted intensity of one structure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StructureIntensity {
    pub label: u8,
    pub mean: f64,
    pub sd: f64,
}

/// Two structures' separation in the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairContrast {
    /// The lower label of the pair.
    pub a: u8,
    pub b: u8,
    /// `mean_b − mean_a`.
    pub contrast: f64,
    /// Coefficient of joint variation `(sd_a + sd_b) / |mean_b − mean_a|`.
    pub joint_variation: Option<f64>,
    /// Mean gradient magnitude (intensity per mm) over the pair's boundary
    /// (voxels weighted by `4 p_a p_b`), divided by `|mean_b − mean_a|`.
    pub edge_sharpness: Option<f64>,
}

/// The metrics of one study.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMetrics {
    /// Structures with label ≥ 1 and any probability mass, in label order.
    pub structures: Vec<StructureIntensity>,
    /// Every pair of those structures, `a < b` (none beyond
    /// [`MAX_PAIRED_STRUCTURES`] structures).
    pub pairs: Vec<PairContrast>,
    /// Entropy focus criterion of the whole image, normalised to [0, 1] by its
    /// maximum (all voxels equal); `None` for an all-zero image.
    pub efc: Option<f64>,
}

impl ImageMetrics {
    /// `image` and each channel of `mean_probs` (channel-major `[C][V]`) are
    /// Fortran-ordered on `dims`, voxel edges `spacing_mm`.
    pub fn compute(image: &[f32], mean_probs: &[f32], dims: [usize; 3], spacing_mm: [f64; 3]) -> Self {
        let voxels = image.len();
        let classes = mean_probs.len().checked_div(voxels).unwrap_or(0);
        let channel = |c: usize| &mean_probs[c * voxels..(c + 1) * voxels];
        let structures: Vec<StructureIntensity> = (1..classes)
            .filter_map(|c| {
                let label = u8::try_from(c).ok()?;
                weighted_mean_sd(image, channel(c)).map(|(mean, sd)| StructureIntensity { label, mean, sd })
            })
            .collect();
        let paired = (2..=MAX_PAIRED_STRUCTURES).contains(&structures.len());
        let gradient = paired.then(|| gradient_magnitude(image, dims, spacing_mm));
        let mut pairs = Vec::new();
        let paired_structures = if paired { structures.as_slice() } else { &[] };
        for (i, sa) in paired_structures.iter().enumerate() {
            for sb in &paired_structures[i + 1..] {
                let gap = (sb.mean - sa.mean).abs();
                let sharp = gradient.as_deref().and_then(|g| {
                    let (pa, pb) = (channel(usize::from(sa.label)), channel(usize::from(sb.label)));
                    let (mut num, mut den) = (0.0f64, 0.0f64);
                    for ((&gv, &a), &b) in g.iter().zip(pa).zip(pb) {
                        let w = 4.0 * f64::from(a) * f64::from(b);
                        num += w * gv;
                        den += w;
                    }
                    (den > 0.0 && gap > 0.0).then(|| num / den / gap)
                });
                pairs.push(PairContrast {
                    a: sa.label,
                    b: sb.label,
                    contrast: sb.mean - sa.mean,
                    joint_variation: (gap > 0.0).then(|| (sa.sd + sb.sd) / gap),
                    edge_sharpness: sharp,
                });
            }
        }
        Self { structures, pairs, efc: entropy_focus_criterion(image) }
    }
}

/// Σ w x / Σ w and the weighted standard deviation; `None` without weight.
fn weighted_mean_sd(x: &[f32], w: &[f32]) -> Option<(f64, f64)> {
    let (mut sw, mut swx) = (0.0f64, 0.0f64);
    for (&v, &p) in x.iter().zip(w) {
        sw += f64::from(p);
        swx += f64::from(p) * f64::from(v);
    }
    if sw <= 0.0 {
        return None;
    }
    let mean = swx / sw;
    let var = x.iter().zip(w).map(|(&v, &p)| f64::from(p) * (f64::from(v) - mean).powi(2)).sum::<f64>() / sw;
    Some((mean, var.sqrt()))
}

/// |∇x| per voxel, intensity per mm: central differences inside the grid,
/// one-sided at its faces, zero along an axis of extent 1 (numpy's
/// `gradient` with the spacings).
fn gradient_magnitude(x: &[f32], dims: [usize; 3], spacing_mm: [f64; 3]) -> Vec<f64> {
    let stride = [1, dims[0], dims[0] * dims[1]];
    let mut sq = vec![0.0f64; x.len()];
    for axis in 0..3 {
        let n = dims[axis];
        if n < 2 {
            continue;
        }
        let (s, h) = (stride[axis], spacing_mm[axis]);
        for (idx, acc) in sq.iter_mut().enumerate() {
            let pos = (idx / s) % n;
            let at = |k: usize| f64::from(x[idx - pos * s + k * s]);
            let d = if pos == 0 {
                (at(1) - at(0)) / h
            } else if pos == n - 1 {
                (at(n - 1) - at(n - 2)) / h
            } else {
                (at(pos + 1) - at(pos - 1)) / (2.0 * h)
            };
            *acc += d * d;
        }
    }
    sq.into_iter().map(f64::sqrt).collect()
}

/// EFC = −Σ (|x|/E) ln(|x|/E) / (√M · ln √M), E = √Σ x², over the M
/// non-zero voxels: 0 when all the energy is in one voxel, 1 when it is
/// spread evenly. MRIQC normalises by every voxel of the field of view; over
/// the non-zero ones, zero padding changes nothing.
fn entropy_focus_criterion(x: &[f32]) -> Option<f64> {
    let m = x.iter().filter(|&&v| v != 0.0).count() as f64;
    let energy = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    if energy <= 0.0 || m < 2.0 {
        return None;
    }
    let h: f64 = x.iter().map(|&v| f64::from(v).abs() / energy).filter(|&r| r > 0.0).map(|r| -r * r.ln()).sum();
    Some(h / (m.sqrt() * m.sqrt().ln()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2-class phantom: the left half label 1 at intensity 0.4, the right
    /// half label 2 at 0.8, probabilities hard.
    fn halves(dims: [usize; 3], noise: f32) -> (Vec<f32>, Vec<f32>) {
        let v = dims.iter().product::<usize>();
        let (mut img, mut probs) = (vec![0.0f32; v], vec![0.0f32; 3 * v]);
        for idx in 0..v {
            let i = idx % dims[0];
            let right = i >= dims[0] / 2;
            let jitter = if idx % 2 == 0 { noise } else { -noise };
            img[idx] = if right { 0.8 } else { 0.4 } + jitter;
            probs[(if right { 2 } else { 1 }) * v + idx] = 1.0;
        }
        (img, probs)
    }

    #[test]
    fn contrast_and_joint_variation_follow_the_definitions() {
        let dims = [8, 4, 4];
        let (img, probs) = halves(dims, 0.05);
        let m = ImageMetrics::compute(&img, &probs, dims, [2.0; 3]);
        assert_eq!(m.structures.len(), 2);
        assert!((m.structures[0].mean - 0.4).abs() < 1e-6 && (m.structures[1].mean - 0.8).abs() < 1e-6);
        assert!((m.structures[0].sd - 0.05).abs() < 1e-6, "{:?}", m.structures[0]);
        let p = m.pairs[0];
        assert_eq!((p.a, p.b), (1, 2));
        assert!((p.contrast - 0.4).abs() < 1e-6);
        assert!((p.joint_variation.unwrap() - 0.25).abs() < 1e-6, "(0.05 + 0.05) / 0.4");
        // Hard probabilities: no voxel is on both sides, so no boundary weight.
        assert_eq!(p.edge_sharpness, None);
        let noisier = ImageMetrics::compute(&halves(dims, 0.1).0, &probs, dims, [2.0; 3]);
        assert!(noisier.pairs[0].joint_variation > p.joint_variation);
    }

    #[test]
    fn a_blurred_boundary_is_less_sharp() {
        let dims = [16, 2, 2];
        let v = 64;
        let profile = |i: usize, width: f32| 0.4 + 0.4 / (1.0 + (-((i as f32) - 7.5) / width).exp());
        let run = |width: f32| {
            let mut img = vec![0.0f32; v];
            let mut probs = vec![0.0f32; 3 * v];
            for idx in 0..v {
                let i = idx % 16;
                img[idx] = profile(i, width);
                let p2 = 1.0 / (1.0 + (-((i as f32) - 7.5) / 1.0).exp());
                probs[v + idx] = 1.0 - p2;
                probs[2 * v + idx] = p2;
            }
            ImageMetrics::compute(&img, &probs, dims, [1.0; 3]).pairs[0].edge_sharpness.unwrap()
        };
        assert!(run(0.5) > run(3.0), "sharp {} blurred {}", run(0.5), run(3.0));
    }

    #[test]
    fn gradient_matches_central_differences_and_spacing() {
        let dims = [4, 1, 1];
        let g = gradient_magnitude(&[0.0, 1.0, 4.0, 9.0], dims, [2.0, 1.0, 1.0]);
        assert_eq!(g, vec![0.5, 1.0, 2.0, 2.5]);
    }

    #[test]
    fn efc_is_one_for_a_flat_image_falls_with_concentration_and_ignores_padding() {
        assert!((entropy_focus_criterion(&[0.5f32; 27]).unwrap() - 1.0).abs() < 1e-9);
        let mut peaked = vec![0.01f32; 27];
        peaked[13] = 1.0;
        assert!(entropy_focus_criterion(&peaked).unwrap() < 0.5);
        assert_eq!(entropy_focus_criterion(&[0.0f32; 8]), None);
        let base = [0.2f32, 0.9, 0.5, 0.7];
        let padded = [0.0f32, 0.2, 0.9, 0.0, 0.5, 0.7, 0.0, 0.0];
        assert_eq!(entropy_focus_criterion(&base), entropy_focus_criterion(&padded));
    }

    #[test]
    fn many_structures_get_no_pair_figures() {
        let dims = [4, 1, 1];
        let classes = MAX_PAIRED_STRUCTURES + 2;
        let mut probs = vec![0.0f32; classes * 4];
        for c in 1..classes {
            probs[c * 4 + c % 4] = 1.0;
        }
        let m = ImageMetrics::compute(&[0.1, 0.2, 0.3, 0.4], &probs, dims, [1.0; 3]);
        assert_eq!(m.structures.len(), MAX_PAIRED_STRUCTURES + 1);
        assert!(m.pairs.is_empty());
    }

    #[test]
    fn empty_structures_are_left_out() {
        let dims = [2, 1, 1];
        let probs = [1.0f32, 1.0, 0.0, 0.0, 0.0, 0.0];
        let m = ImageMetrics::compute(&[0.1, 0.2], &probs, dims, [1.0; 3]);
        assert!(m.structures.is_empty() && m.pairs.is_empty());
    }
}
