//! One pass over a volume's foreground: histogram on fixed bins, foreground
//! volume and the successive-difference noise ratio (see the module docs).

use imaging::Volume;
use rayon::prelude::*;

use super::error::OodError;

/// Equal-width bins on `[lo, hi]`, ends clamped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bins {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
}

impl Bins {
    #[inline]
    fn index(&self, v: f64) -> usize {
        let last = self.count - 1;
        let t = (v - self.lo) / (self.hi - self.lo) * self.count as f64;
        // `as usize` saturates: below lo → 0; the clamp sends above hi to the last bin.
        (t.max(0.0) as usize).min(last)
    }
}

/// The figures of one volume.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImageStats {
    /// Normalized histogram (sums to 1).
    pub histogram: Vec<f64>,
    /// Foreground voxels × the voxel volume (|det| of the affine / 1000).
    pub foreground_volume_ml: f64,
    pub noise_ratio: Option<f64>,
}

#[derive(Clone)]
struct Partial {
    counts: Vec<u64>,
    n: u64,
    sum: f64,
    sum_sq: f64,
    pairs: u64,
    diff_sq: f64,
}

impl Partial {
    fn new(bins: usize) -> Self {
        Partial { counts: vec![0; bins], n: 0, sum: 0.0, sum_sq: 0.0, pairs: 0, diff_sq: 0.0 }
    }

    fn merge(mut self, o: Partial) -> Partial {
        self.counts.iter_mut().zip(o.counts).for_each(|(a, b)| *a += b);
        self.n += o.n;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
        self.pairs += o.pairs;
        self.diff_sq += o.diff_sq;
        self
    }
}

/// `bins.count` must be ≥ 1 and `lo < hi` (the reference is validated first).
pub(crate) fn image_stats(volume: &Volume<f32>, mask: &Volume<u8>, bins: Bins) -> Result<ImageStats, OodError> {
    if volume.dims() != mask.dims() {
        return Err(OodError::ShapeMismatch {
            source_name: volume.meta.source.clone(),
            volume: volume.dims(),
            mask: mask.dims(),
        });
    }
    let nx = volume.dims()[0];
    // Rows along the first axis, so adjacent pairs never straddle a chunk.
    let total = volume
        .data()
        .par_chunks(nx)
        .zip(mask.data().par_chunks(nx))
        .with_min_len(256)
        .fold(
            || Partial::new(bins.count),
            |mut acc, (row, m)| {
                let mut prev: Option<f64> = None;
                for (&v, &inside) in row.iter().zip(m) {
                    let v = f64::from(v);
                    if inside == 0 || !v.is_finite() {
                        prev = None;
                        continue;
                    }
                    if let Some(c) = acc.counts.get_mut(bins.index(v)) {
                        *c += 1;
                    }
                    acc.n += 1;
                    acc.sum += v;
                    acc.sum_sq += v * v;
                    if let Some(p) = prev {
                        acc.pairs += 1;
                        acc.diff_sq += (v - p) * (v - p);
                    }
                    prev = Some(v);
                }
                acc
            },
        )
        .reduce(|| Partial::new(bins.count), Partial::merge);
    if total.n == 0 {
        return Err(OodError::EmptyForeground(volume.meta.source.clone()));
    }
    let n = total.n as f64;
    let mean = total.sum / n;
    let variance = (total.sum_sq / n - mean * mean).max(0.0);
    // A variance at rounding level of the mean is a constant image.
    let constant = variance <= 1e-12 * mean.mul_add(mean, 1.0);
    let noise_ratio =
        (!constant && total.pairs > 0).then(|| (total.diff_sq / total.pairs as f64 / (2.0 * variance)).sqrt());
    Ok(ImageStats {
        histogram: total.counts.iter().map(|&c| c as f64 / n).collect(),
        foreground_volume_ml: n * volume.affine().linear().determinant().abs() / 1000.0,
        noise_ratio,
    })
}

/// Jensen–Shannon distance, base 2 (`scipy.spatial.distance.jensenshannon(p, q, base=2)`),
/// of two distributions on the same bins (each summing to 1).
pub(crate) fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let kl_to_mid = |a: f64, m: f64| if a > 0.0 { a * (a / m).log2() } else { 0.0 };
    let js: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let m = 0.5 * (a + b);
            0.5 * (kl_to_mid(a, m) + kl_to_mid(b, m))
        })
        .sum();
    // Rounding can leave a few ulps below 0 for identical inputs.
    js.max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_distance_matches_hand_values() {
        // Disjoint supports: JS divergence = 1 bit, distance 1.
        assert!((js_distance(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        assert_eq!(js_distance(&[0.25, 0.75], &[0.25, 0.75]), 0.0);
        // p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4);
        // JS = ½[log2(4/3)] + ½[½ log2(2/3) + ½ log2(2)] = 0.311278…
        let js: f64 = 0.5 * (4.0f64 / 3.0).log2() + 0.25 * (2.0f64 / 3.0).log2() + 0.25;
        assert!((js_distance(&[1.0, 0.0], &[0.5, 0.5]) - js.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn bins_clamp_the_ends() {
        let b = Bins { lo: -1.0, hi: 1.0, count: 4 };
        assert_eq!(
            [b.index(-9.0), b.index(-0.9), b.index(0.0), b.index(0.99), b.index(1.0), b.index(1e30)],
            [0, 0, 2, 3, 3, 3]
        );
        assert_eq!(b.index(f64::NAN), 0);
    }
}
