//! Finite-value statistics of a volume: the summary `neurobatch inspect` prints
//! and the mean, standard deviation and percentiles harmonization is built on.
//!
//! Owns: gathering the finite voxels (optionally within a mask), counting
//! NaN/±Inf, mean and population standard deviation (numpy's `ddof=0`), and
//! percentiles with numpy's default `"linear"` definition (Hyndman & Fan
//! type 7), computed in `f64` exactly as `np.percentile` computes them on the
//! `float64` copy of the voxels. Does not own masks (see [`crate::mask`]) or
//! any intensity transform (see [`crate::harmonize`]).
//!
//! Non-finite voxels never enter a statistic: they are only counted.

use std::cmp::Ordering;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::volume::Volume;

/// Voxels per rayon task: large enough that task overhead is noise.
const CHUNK: usize = 1 << 16;

/// Errors computing statistics.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatsError {
    #[error("volume {source_name:?} has no finite voxels{}", if *.masked { " inside the mask" } else { "" })]
    NoFiniteValues { source_name: String, masked: bool },
    #[error("percentile {0} is outside 0..=100")]
    PercentileOutOfRange(f64),
    #[error("mask shape {mask:?} does not match volume {source_name:?} of shape {volume:?}")]
    MaskShape { source_name: String, mask: [usize; 3], volume: [usize; 3] },
}

/// Summary of the finite voxels of a volume (or of a masked part of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Finite voxels summarized.
    pub count: usize,
    pub nan: usize,
    pub pos_inf: usize,
    pub neg_inf: usize,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Population standard deviation (numpy's `np.std`, `ddof=0`).
    pub std: f64,
    /// `(percentile in 0..=100, value)` in the order asked for.
    pub percentiles: Vec<(f64, f64)>,
}

/// Non-finite voxel counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct NonFinite {
    nan: usize,
    pos_inf: usize,
    neg_inf: usize,
}

impl NonFinite {
    fn add(self, o: NonFinite) -> NonFinite {
        NonFinite { nan: self.nan + o.nan, pos_inf: self.pos_inf + o.pos_inf, neg_inf: self.neg_inf + o.neg_inf }
    }
}

/// Summarizes all finite voxels.
pub fn summarize(vol: &Volume<f32>, percentiles: &[f64]) -> Result<Summary, StatsError> {
    summarize_impl(vol, None, percentiles)
}

/// Summarizes the finite voxels where `mask` is non-zero; the non-finite counts
/// are also restricted to the mask.
pub fn summarize_masked(vol: &Volume<f32>, mask: &Volume<u8>, percentiles: &[f64]) -> Result<Summary, StatsError> {
    summarize_impl(vol, Some(mask), percentiles)
}

fn summarize_impl(vol: &Volume<f32>, mask: Option<&Volume<u8>>, percentiles: &[f64]) -> Result<Summary, StatsError> {
    check_percentiles(percentiles)?;
    let mask_data = match mask {
        Some(m) => Some(check_mask(vol, m)?),
        None => None,
    };
    let nonfinite = count_nonfinite(vol.data(), mask_data);
    let mut values = finite_values(vol.data(), mask_data);
    if values.is_empty() {
        return Err(StatsError::NoFiniteValues { source_name: vol.meta.source.clone(), masked: mask.is_some() });
    }
    let (min, max) = min_max(&values);
    let (mean, std) = mean_std(&values);
    let pct = percentiles_in_place(&mut values, percentiles)?;
    Ok(Summary {
        count: values.len(),
        nan: nonfinite.nan,
        pos_inf: nonfinite.pos_inf,
        neg_inf: nonfinite.neg_inf,
        min,
        max,
        mean,
        std,
        percentiles: percentiles.iter().copied().zip(pct).collect(),
    })
}

/// The mask's voxels when its shape matches the volume's.
pub fn check_mask<'m>(vol: &Volume<f32>, mask: &'m Volume<u8>) -> Result<&'m [u8], StatsError> {
    if mask.dims() != vol.dims() {
        return Err(StatsError::MaskShape {
            source_name: vol.meta.source.clone(),
            mask: mask.dims(),
            volume: vol.dims(),
        });
    }
    Ok(mask.data())
}

fn check_percentiles(percentiles: &[f64]) -> Result<(), StatsError> {
    match percentiles.iter().find(|p| !(0.0..=100.0).contains(*p)) {
        Some(&p) => Err(StatsError::PercentileOutOfRange(p)),
        None => Ok(()),
    }
}

fn count_nonfinite(data: &[f32], mask: Option<&[u8]>) -> NonFinite {
    let classify = |v: f32| {
        if v.is_nan() {
            NonFinite { nan: 1, ..NonFinite::default() }
        } else if v == f32::INFINITY {
            NonFinite { pos_inf: 1, ..NonFinite::default() }
        } else if v == f32::NEG_INFINITY {
            NonFinite { neg_inf: 1, ..NonFinite::default() }
        } else {
            NonFinite::default()
        }
    };
    match mask {
        None => data.par_iter().with_min_len(CHUNK).map(|&v| classify(v)).reduce(NonFinite::default, NonFinite::add),
        Some(m) => data
            .par_iter()
            .zip(m.par_iter())
            .with_min_len(CHUNK)
            .filter(|(_, m)| **m != 0)
            .map(|(&v, _)| classify(v))
            .reduce(NonFinite::default, NonFinite::add),
    }
}

/// The finite voxels (where `mask` is non-zero, if given), in voxel order.
pub fn finite_values(data: &[f32], mask: Option<&[u8]>) -> Vec<f32> {
    match mask {
        None => data.par_iter().with_min_len(CHUNK).copied().filter(|v| v.is_finite()).collect(),
        Some(m) => data
            .par_iter()
            .zip(m.par_iter())
            .with_min_len(CHUNK)
            .filter(|(v, m)| **m != 0 && v.is_finite())
            .map(|(&v, _)| v)
            .collect(),
    }
}

/// Minimum and maximum of finite values (`(+inf, -inf)` for none).
pub fn min_max(values: &[f32]) -> (f64, f64) {
    let (lo, hi) = values
        .par_iter()
        .with_min_len(CHUNK)
        .fold(|| (f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        .reduce(|| (f32::INFINITY, f32::NEG_INFINITY), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    (f64::from(lo), f64::from(hi))
}

/// Minimum and maximum of the finite voxels of `data`, `None` when there are none.
pub fn min_max_finite(data: &[f32]) -> Option<(f64, f64)> {
    let (lo, hi) = data
        .par_chunks(CHUNK)
        .map(|c| {
            c.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                // ±Inf would win min/max; NaN loses both comparisons anyway.
                if v.is_finite() { (lo.min(v), hi.max(v)) } else { (lo, hi) }
            })
        })
        .reduce(|| (f32::INFINITY, f32::NEG_INFINITY), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    (lo <= hi).then(|| (f64::from(lo), f64::from(hi)))
}

/// Mean and population standard deviation in `f64`, two-pass like numpy's
/// `np.mean`/`np.std` (which subtract the mean before squaring). NaN for none.
pub fn mean_std(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let sum: f64 = values.par_iter().with_min_len(CHUNK).map(|&v| f64::from(v)).sum();
    let mean = sum / n;
    let ss: f64 = values
        .par_iter()
        .with_min_len(CHUNK)
        .map(|&v| {
            let d = f64::from(v) - mean;
            d * d
        })
        .sum();
    (mean, (ss / n).sqrt())
}

/// Count, mean and population standard deviation of the finite voxels of
/// `data` where `mask` is non-zero, without collecting them: the same two-pass
/// arithmetic as [`mean_std`]. `None` when no voxel qualifies.
pub fn masked_mean_std(data: &[f32], mask: &[u8]) -> Option<(usize, f64, f64)> {
    let (count, sum) = masked_fold(data, mask, f64::from);
    if count == 0 {
        return None;
    }
    let mean = sum / count as f64;
    let (_, ss) = masked_fold(data, mask, |v| {
        let d = f64::from(v) - mean;
        d * d
    });
    Some((count, mean, (ss / count as f64).sqrt()))
}

/// Count and sum of `f(v)` over finite masked voxels, in chunks with four
/// independent accumulators so the additions pipeline.
fn masked_fold(data: &[f32], mask: &[u8], f: impl Fn(f32) -> f64 + Sync) -> (usize, f64) {
    data.par_chunks(CHUNK)
        .zip(mask.par_chunks(CHUNK))
        .map(|(d, m)| {
            let mut count = 0usize;
            let mut acc = [0.0f64; 4];
            let (d4, m4) = (d.chunks_exact(4), m.chunks_exact(4));
            let (dr, mr) = (d4.remainder(), m4.remainder());
            for (d, m) in d4.zip(m4) {
                for lane in 0..4 {
                    let keep = m[lane] != 0 && d[lane].is_finite();
                    count += usize::from(keep);
                    acc[lane] += if keep { f(d[lane]) } else { 0.0 };
                }
            }
            for (&v, &k) in dr.iter().zip(mr) {
                let keep = k != 0 && v.is_finite();
                count += usize::from(keep);
                acc[0] += if keep { f(v) } else { 0.0 };
            }
            (count, (acc[0] + acc[1]) + (acc[2] + acc[3]))
        })
        .reduce(|| (0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// `np.percentile(values, percentiles)` (method `"linear"`) of finite values,
/// partially reordering `values`: one multi-way selection (each requested rank
/// splits the slice for the next ones), not a full sort.
pub fn percentiles_in_place(values: &mut [f32], percentiles: &[f64]) -> Result<Vec<f64>, StatsError> {
    check_percentiles(percentiles)?;
    let n = values.len();
    if n == 0 {
        return Ok(vec![f64::NAN; percentiles.len()]);
    }
    let positions: Vec<Position> = percentiles.iter().map(|&p| Position::of(n, p / 100.0)).collect();
    let mut ranks: Vec<usize> = positions.iter().flat_map(|p| [p.below, p.above]).collect();
    ranks.sort_unstable();
    ranks.dedup();
    multi_select(values, &ranks, 0);
    Ok(positions.iter().map(|p| p.value(|i| values.get(i).copied().unwrap_or(f32::NAN))).collect())
}

/// `np.quantile(sorted, q)` (method `"linear"`) of an ascending slice.
pub fn quantile_sorted(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    Position::of(sorted.len(), q).value(|i| sorted.get(i).copied().unwrap_or(f32::NAN))
}

/// `np.percentile(sorted, p)` (method `"linear"`) of an ascending slice.
pub fn percentile_sorted(sorted: &[f32], p: f64) -> f64 {
    // numpy divides by 100 first (`np.true_divide(q, 100)`), then interpolates.
    quantile_sorted(sorted, p / 100.0)
}

/// Where quantile `q` falls in `n` sorted values, as numpy's `_quantile` finds it.
#[derive(Debug, Clone, Copy)]
struct Position {
    below: usize,
    above: usize,
    gamma: f64,
}

impl Position {
    fn of(n: usize, q: f64) -> Position {
        // numpy "linear": virtual index (n - 1) * q; at or past the last index both
        // neighbours are the last value.
        let last = n - 1;
        let virtual_index = last as f64 * q;
        if virtual_index >= last as f64 {
            return Position { below: last, above: last, gamma: 0.0 };
        }
        let floor = virtual_index.floor().max(0.0);
        let below = (floor as usize).min(last);
        Position { below, above: (below + 1).min(last), gamma: virtual_index - floor }
    }

    fn value(&self, at: impl Fn(usize) -> f32) -> f64 {
        lerp(f64::from(at(self.below)), f64::from(at(self.above)), self.gamma)
    }
}

/// numpy's `_lerp`: interpolates from the nearer end so that t = 1 gives b exactly.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 { b - diff * (1.0 - t) } else { a + diff * t }
}

fn total(a: &f32, b: &f32) -> Ordering {
    a.total_cmp(b)
}

/// Places the elements of rank `ranks` (ascending, relative to `offset`) where a
/// full sort would put them, selecting the middle rank first and recursing on
/// both sides in parallel: O(n log k) instead of k passes over the data.
fn multi_select(values: &mut [f32], ranks: &[usize], offset: usize) {
    let Some(&rank) = ranks.get(ranks.len() / 2) else { return };
    let Some(k) = rank.checked_sub(offset).filter(|&k| k < values.len()) else { return };
    values.select_nth_unstable_by(k, total);
    let (left, right) = values.split_at_mut(k);
    let (lo_ranks, hi_ranks) = ranks.split_at(ranks.len() / 2);
    let hi_ranks = hi_ranks.get(1..).unwrap_or(&[]);
    let right = right.get_mut(1..).unwrap_or(&mut []);
    if left.len() + right.len() > 4 * CHUNK {
        rayon::join(|| multi_select(left, lo_ranks, offset), || multi_select(right, hi_ranks, offset + k + 1));
    } else {
        multi_select(left, lo_ranks, offset);
        multi_select(right, hi_ranks, offset + k + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Affine, SourceMeta};

    fn vol(data: Vec<f32>) -> Volume<f32> {
        let n = data.len();
        Volume::new([n, 1, 1], data, Affine::identity(), SourceMeta::default()).expect("shape")
    }

    #[test]
    fn percentiles_interpolate_linearly_between_order_statistics() {
        // np.percentile([4, 1, 3, 2], [0, 25, 50, 62.5, 100]) == [1, 1.75, 2.5, 2.875, 4]
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        let got = percentiles_in_place(&mut v, &[0.0, 25.0, 50.0, 62.5, 100.0]).expect("valid");
        assert_eq!(got, vec![1.0, 1.75, 2.5, 2.875, 4.0]);
    }

    #[test]
    fn multi_select_agrees_with_a_full_sort() {
        let mut v: Vec<f32> = (0..100_000u32).map(|i| ((i.wrapping_mul(2_654_435_761)) % 10_007) as f32).collect();
        let mut sorted = v.clone();
        sorted.sort_by(f32::total_cmp);
        let ps = [0.0, 0.1, 1.0, 33.3, 50.0, 99.9, 100.0];
        let got = percentiles_in_place(&mut v, &ps).expect("valid");
        let want: Vec<f64> = ps.iter().map(|&p| percentile_sorted(&sorted, p)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn summary_ignores_and_counts_non_finite_voxels() {
        let v = vol(vec![1.0, f32::NAN, 3.0, f32::INFINITY, f32::NEG_INFINITY, 2.0]);
        let s = summarize(&v, &[50.0]).expect("finite voxels exist");
        assert_eq!((s.count, s.nan, s.pos_inf, s.neg_inf), (3, 1, 1, 1));
        assert_eq!((s.min, s.max, s.mean), (1.0, 3.0, 2.0));
        assert!((s.std - (2.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(s.percentiles, vec![(50.0, 2.0)]);
    }

    #[test]
    fn masked_summary_uses_only_masked_voxels() {
        let v = vol(vec![1.0, 10.0, f32::NAN, 20.0]);
        let m = v.with_data(vec![0u8, 1, 1, 1]).expect("shape");
        let s = summarize_masked(&v, &m, &[0.0, 100.0]).expect("finite voxels exist");
        assert_eq!((s.count, s.nan, s.mean), (2, 1, 15.0));
        assert_eq!(s.percentiles, vec![(0.0, 10.0), (100.0, 20.0)]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let v = vol(vec![f32::NAN, f32::INFINITY]);
        assert!(matches!(summarize(&v, &[50.0]), Err(StatsError::NoFiniteValues { masked: false, .. })));
        let w = vol(vec![1.0, 2.0]);
        assert_eq!(summarize(&w, &[101.0]), Err(StatsError::PercentileOutOfRange(101.0)));
        assert_eq!(
            summarize(&w, &[f64::NAN]).map(|_| ()).unwrap_err().to_string(),
            "percentile NaN is outside 0..=100"
        );
        let m = Volume::new([1, 2, 1], vec![1u8, 1], crate::Affine::identity(), SourceMeta::default()).expect("shape");
        assert!(matches!(summarize_masked(&w, &m, &[]), Err(StatsError::MaskShape { .. })));
    }
}
