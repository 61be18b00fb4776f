//! Otsu's threshold on a 256-bin histogram of the finite voxels, computed the
//! way `skimage.filters.threshold_otsu(image, nbins=256)` computes it for a
//! floating-point image: `np.histogram(values, 256, range=(min, max))` with
//! numpy's bin-edge corrections, bin centres at the edge midpoints, then the
//! between-class variance for every split and the first maximum.

use rayon::prelude::*;

const NBINS: usize = 256;

/// Otsu's threshold of the finite values (`None` when there are none). Like
/// skimage, a constant input returns that constant.
pub fn otsu_threshold(data: &[f32]) -> Option<f64> {
    let (lo, hi) = crate::stats::min_max_finite(data)?;
    if lo == hi {
        return Some(lo);
    }
    let hist = Histogram::new(lo, hi);
    let counts = hist.count(data);
    Some(best_split(&counts, &hist.centers()))
}

/// numpy's uniform-bin histogram over `[first, last]`.
struct Histogram {
    first: f64,
    /// NBINS / (last - first): the first guess of a bin, corrected against the edges.
    scale: f64,
    edges: [f64; NBINS + 1],
}

impl Histogram {
    fn new(first: f64, last: f64) -> Histogram {
        // np.linspace: i * step + start, with the last edge set to stop exactly.
        let step = (last - first) / NBINS as f64;
        let mut edges = [0.0; NBINS + 1];
        for (i, e) in edges.iter_mut().enumerate() {
            *e = i as f64 * step + first;
        }
        edges[NBINS] = last;
        Histogram { first, scale: NBINS as f64 / (last - first), edges }
    }

    fn bin(&self, v: f64) -> usize {
        // np.histogram's fast path: scale to a bin index, then correct by one where
        // rounding put a value on the wrong side of an edge. After the correction the
        // bin is the one whose edges enclose v, whichever rounding made the guess.
        let f = (v - self.first) * self.scale;
        let mut i = (f as usize).min(NBINS - 1);
        if v < self.edges[i] {
            i = i.saturating_sub(1);
        } else if i != NBINS - 1 && v >= self.edges[i + 1] {
            i += 1;
        }
        i
    }

    fn count(&self, data: &[f32]) -> Vec<u64> {
        data.par_chunks(1 << 16)
            .map(|chunk| {
                let mut c = vec![0u64; NBINS];
                for &v in chunk.iter().filter(|v| v.is_finite()) {
                    if let Some(slot) = c.get_mut(self.bin(f64::from(v))) {
                        *slot += 1;
                    }
                }
                c
            })
            .reduce(
                || vec![0u64; NBINS],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    a
                },
            )
    }

    fn centers(&self) -> Vec<f64> {
        self.edges.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
    }
}

/// skimage's vectorized Otsu: cumulative weights and means from both ends
/// (sequential cumulative sums, as `np.cumsum`), variance for each split
/// between bin `i` and `i + 1`, threshold at the centre of the first best bin.
fn best_split(counts: &[u64], centers: &[f64]) -> f64 {
    let n = counts.len();
    let weighted: Vec<f64> = counts.iter().zip(centers).map(|(&c, &x)| c as f64 * x).collect();
    let mut w1 = vec![0.0; n];
    let mut m1 = vec![0.0; n];
    let (mut cw, mut cm) = (0u64, 0.0);
    for i in 0..n {
        cw += counts[i];
        cm += weighted[i];
        w1[i] = cw as f64;
        m1[i] = cm / cw as f64;
    }
    let mut w2 = vec![0.0; n];
    let mut m2 = vec![0.0; n];
    let (mut cw, mut cm) = (0u64, 0.0);
    for i in (0..n).rev() {
        cw += counts[i];
        cm += weighted[i];
        w2[i] = cw as f64;
        m2[i] = cm / cw as f64;
    }
    let mut best = (0usize, f64::NEG_INFINITY);
    for i in 0..n - 1 {
        let d = m1[i] - m2[i + 1];
        let v = w1[i] * w2[i + 1] * (d * d);
        // np.argmax: the first maximum; a NaN (empty leading class) would win there,
        // but bin 0 always holds the minimum and the last bin the maximum.
        if v > best.1 {
            best = (i, v);
        }
    }
    centers[best.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_clusters_split_between_them() {
        let mut data = vec![10.0f32; 500];
        data.extend(vec![200.0f32; 300]);
        data.push(f32::NAN);
        let t = otsu_threshold(&data).expect("finite values");
        // Two point masses at the end bins: the first best split is after bin 0,
        // whose centre is min + (max - min) / 512.
        assert_eq!(t, 10.0 + 190.0 / 512.0);
    }

    #[test]
    fn constant_and_empty_inputs() {
        assert_eq!(otsu_threshold(&[3.0, 3.0, f32::NAN]), Some(3.0));
        assert_eq!(otsu_threshold(&[f32::NAN, f32::INFINITY]), None);
    }

    #[test]
    fn values_on_edges_land_in_numpys_bins() {
        let h = Histogram::new(0.0, 1.0);
        assert_eq!(h.bin(0.0), 0);
        assert_eq!(h.bin(1.0), NBINS - 1);
        assert_eq!(h.bin(1.0 / 256.0), 1);
        assert_eq!(h.bin(0.5), 128);
    }
}
