//! Multiplicative bias-field (intensity non-uniformity) correction: a smooth
//! field `exp(b(x))`, `b` a Legendre polynomial of the voxel coordinates, fitted
//! to the log intensities of the foreground against piecewise-constant tissue
//! classes, then divided out.
//!
//! The method is the parametric one of Styner et al. (PABIC, IEEE TMI 2000) in
//! its simplest form, the alternating estimate also used by FSL FAST and SPM:
//! tissue intensities are constant per class up to a multiplicative field, so
//! in the log domain `ln x = μ_class + b(x) + noise`. Starting from `b = 0`,
//! each iteration
//!
//! 1. classifies the corrected log intensities `c = ln x − b` into `classes`
//!    groups by one-dimensional k-means (Lloyd, warm-started; initial centres at
//!    the `(k + ½)/classes` quantiles, numpy's "linear" definition),
//! 2. fits `b` to the residuals `ln x − μ_class` by least squares over a basis of
//!    products of Legendre polynomials `P_i(u) P_j(v) P_k(w)` of total degree ≤
//!    `degree` (`u, v, w` the voxel indices mapped onto [−1, 1] over the
//!    foreground's bounding box; an axis spanning `n` voxels gets degrees < `n`),
//! 3. removes the field's mean over the foreground (the correction changes
//!    contrast, not overall scale),
//!
//! until no sample's `b` moves by `tolerance` or more, or `max_iterations`
//! (defaults 1e-3 and 50: below ~5e-4 the estimate jitters as voxels near a
//! class boundary change class).
//! The corrected volume is `x / exp(b)` on every voxel, with `b` clamped to the
//! range it takes on the foreground (a polynomial extrapolates wildly outside).
//!
//! Samples are the foreground voxels with a finite, positive intensity.
//! `scripts/testdata/intensity.py` has the same algorithm in numpy and writes
//! the fixtures the tests compare with, plus the known-field recoveries.
//!
//! Owns the estimate and its application; not the mask (see [`crate::mask`]) or
//! where in a study it runs (the worker's model-grid stage, when a model's
//! manifest asks for it).

use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::volume::Volume;

/// How to estimate the field: a model manifest's `[bias_correction]` table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BiasFieldParams {
    /// Total degree of the Legendre polynomial of `ln field` (0..=6).
    #[serde(default = "default_degree")]
    pub degree: usize,
    /// Tissue classes of the piecewise-constant model (1..=8; 3 for a
    /// skull-stripped T1: CSF, grey and white matter).
    #[serde(default = "default_classes")]
    pub classes: usize,
    #[serde(default = "default_max_iterations")]
    pub max_iterations: usize,
    /// Stop when no sample's log field changes by this much (1e-3 ≈ 0.1 %).
    /// Much below that the estimate jitters as voxels near a class boundary
    /// change class, instead of converging.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_degree() -> usize {
    3
}
fn default_classes() -> usize {
    3
}
fn default_max_iterations() -> usize {
    50
}
fn default_tolerance() -> f64 {
    1e-3
}

impl Default for BiasFieldParams {
    fn default() -> Self {
        BiasFieldParams {
            degree: default_degree(),
            classes: default_classes(),
            max_iterations: default_max_iterations(),
            tolerance: default_tolerance(),
        }
    }
}

/// Most Lloyd steps per outer iteration (warm-started, they converge in a few).
const LLOYD_STEPS: usize = 10;

/// Samples per parallel task.
const CHUNK: usize = 8192;

fn add(a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter().zip(&b).map(|(x, y)| x + y).collect()
}

/// Errors estimating a bias field.
#[derive(Debug, thiserror::Error)]
pub enum BiasError {
    #[error("invalid bias-field parameter: {0}")]
    BadParameter(String),
    #[error("mask shape {mask:?} does not match volume {source_name:?} of shape {volume:?}")]
    MaskShape { source_name: String, mask: [usize; 3], volume: [usize; 3] },
    #[error("bias field of volume {source_name:?}: {samples} positive foreground voxels, at least {needed} needed")]
    TooFewSamples { source_name: String, samples: usize, needed: usize },
    #[error("bias field of volume {0:?}: the polynomial fit is degenerate on this foreground")]
    Degenerate(String),
}

impl BiasFieldParams {
    pub fn validate(&self) -> Result<(), BiasError> {
        let bad = |m: String| Err(BiasError::BadParameter(m));
        if self.degree > 6 {
            return bad(format!("degree {} is above 6", self.degree));
        }
        if !(1..=8).contains(&self.classes) {
            return bad(format!("classes {} is outside 1..=8", self.classes));
        }
        if self.max_iterations == 0 || self.max_iterations > 10_000 {
            return bad(format!("max_iterations {} is outside 1..=10000", self.max_iterations));
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return bad(format!("tolerance {} must be a positive number", self.tolerance));
        }
        Ok(())
    }
}

/// A fitted field: `ln field(i, j, k) = clamp(Σ coef_t P_t(u(i), v(j), w(k)))`.
#[derive(Debug, Clone, PartialEq)]
pub struct BiasField {
    dims: [usize; 3],
    /// First and last foreground voxel index per axis (the [−1, 1] mapping).
    lo: [usize; 3],
    hi: [usize; 3],
    /// Degrees `(i, j, k)` of each basis term, in fitting order.
    terms: Vec<[usize; 3]>,
    coefficients: Vec<f64>,
    /// Range of the log field over the samples; evaluation is clamped to it.
    log_range: (f64, f64),
    iterations: usize,
    converged: bool,
    samples: usize,
}

impl BiasField {
    /// Multiplicative field range over the foreground, `(min, max)` of `exp(b)`.
    pub fn range(&self) -> (f64, f64) {
        (self.log_range.0.exp(), self.log_range.1.exp())
    }

    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Whether the fit met `tolerance` before `max_iterations`.
    pub fn converged(&self) -> bool {
        self.converged
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn coefficients(&self) -> &[f64] {
        &self.coefficients
    }

    /// `ln field` at every voxel (Fortran order, like [`Volume`]).
    pub fn log_field(&self) -> Vec<f64> {
        let [nx, ny, nz] = self.dims;
        let mut out = vec![0.0f64; nx * ny * nz];
        self.for_each_row(&mut out, |dst, src| dst.copy_from_slice(src));
        out
    }

    /// `vol / field`; non-finite voxels stay as they are.
    pub fn correct(&self, vol: &Volume<f32>) -> Result<Volume<f32>, BiasError> {
        if vol.dims() != self.dims {
            return Err(BiasError::MaskShape {
                source_name: vol.meta.source.clone(),
                mask: self.dims,
                volume: vol.dims(),
            });
        }
        let mut out = vol.data().to_vec();
        self.for_each_row(&mut out, |dst, log_field| {
            for (x, b) in dst.iter_mut().zip(log_field) {
                if x.is_finite() {
                    *x = (f64::from(*x) / b.exp()) as f32;
                }
            }
        });
        Ok(vol.with_data(out).expect("same dimensions"))
    }

    /// Calls `f(row of out, ln field along that row)` for every `(j, k)` row
    /// of the grid, in parallel over `k`. Separable: the `j`, `k` factors of
    /// each term are folded into its coefficient once per row.
    fn for_each_row<T: Send>(&self, out: &mut [T], f: impl Fn(&mut [T], &[f64]) + Sync) {
        let [nx, ny, _] = self.dims;
        let tables = self.tables();
        let s = tables.stride;
        out.par_chunks_mut(nx * ny).enumerate().for_each(|(k, slab)| {
            let mut weights = vec![0.0f64; self.terms.len()];
            let mut row = vec![0.0f64; nx];
            for (j, dst) in slab.chunks_mut(nx).enumerate() {
                for ((w, t), c) in weights.iter_mut().zip(&self.terms).zip(&self.coefficients) {
                    *w = c * tables.values[1][j * s + t[1]] * tables.values[2][k * s + t[2]];
                }
                for (i, r) in row.iter_mut().enumerate() {
                    let px = &tables.values[0][i * s..(i + 1) * s];
                    let v: f64 = weights.iter().zip(&self.terms).map(|(w, t)| w * px[t[0]]).sum();
                    *r = v.clamp(self.log_range.0, self.log_range.1);
                }
                f(dst, &row);
            }
        });
    }

    fn tables(&self) -> AxisTables {
        AxisTables::new(self.dims, self.lo, self.hi, self.max_axis_degree())
    }

    fn max_axis_degree(&self) -> usize {
        self.terms.iter().flat_map(|t| t.iter().copied()).max().unwrap_or(0)
    }
}

/// Legendre values `P_d(u)` for every voxel index of each axis, `d ≤ degree`.
struct AxisTables {
    /// `values[axis][index * (degree + 1) + d]`.
    values: [Vec<f64>; 3],
    stride: usize,
}

impl AxisTables {
    fn new(dims: [usize; 3], lo: [usize; 3], hi: [usize; 3], degree: usize) -> Self {
        let stride = degree + 1;
        let axis = |a: usize| {
            let span = (hi[a] - lo[a]).max(1) as f64;
            let mut v = vec![0.0; dims[a] * stride];
            for (idx, values) in v.chunks_exact_mut(stride).enumerate() {
                legendre(2.0 * (idx as f64 - lo[a] as f64) / span - 1.0, values);
            }
            v
        };
        AxisTables { values: [axis(0), axis(1), axis(2)], stride }
    }

    #[inline]
    fn term(&self, t: [usize; 3], ijk: [usize; 3]) -> f64 {
        let s = self.stride;
        self.values[0][ijk[0] * s + t[0]] * self.values[1][ijk[1] * s + t[1]] * self.values[2][ijk[2] * s + t[2]]
    }
}

/// `P_0(u) … P_{n-1}(u)` by Bonnet's recursion.
fn legendre(u: f64, out: &mut [f64]) {
    let (mut previous, mut current) = (0.0, 1.0);
    for (d, slot) in out.iter_mut().enumerate() {
        if d > 0 {
            let n = (d - 1) as f64;
            let next = if d == 1 { u } else { ((2.0 * n + 1.0) * u * current - n * previous) / (n + 1.0) };
            previous = current;
            current = next;
        }
        *slot = current;
    }
}

/// The basis terms: degrees `(i, j, k)` with `i + j + k ≤ degree` and each
/// below its axis's extent in voxels, in the order `i`, then `j`, then `k`.
fn basis_terms(degree: usize, extent: [usize; 3]) -> Vec<[usize; 3]> {
    let mut terms = Vec::new();
    for i in 0..=degree {
        for j in 0..=degree - i {
            for k in 0..=degree - i - j {
                if i < extent[0] && j < extent[1] && k < extent[2] {
                    terms.push([i, j, k]);
                }
            }
        }
    }
    terms
}

/// Estimates the field of `vol` from its voxels inside `mask` (non-zero).
pub fn estimate(vol: &Volume<f32>, mask: &Volume<u8>, params: &BiasFieldParams) -> Result<BiasField, BiasError> {
    params.validate()?;
    let source_name = vol.meta.source.clone();
    if mask.dims() != vol.dims() {
        return Err(BiasError::MaskShape { source_name, mask: mask.dims(), volume: vol.dims() });
    }
    let dims = vol.dims();
    let [nx, ny, _] = dims;
    // Samples in Fortran order: index and ln x.
    let mut at: Vec<[usize; 3]> = Vec::new();
    let mut log_x: Vec<f64> = Vec::new();
    for (n, (&x, &m)) in vol.data().iter().zip(mask.data()).enumerate() {
        if m != 0 && x.is_finite() && x > 0.0 {
            at.push([n % nx, (n / nx) % ny, n / (nx * ny)]);
            log_x.push(f64::from(x).ln());
        }
    }
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for p in &at {
        for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(p) {
            *l = (*l).min(v);
            *h = (*h).max(v);
        }
    }
    let extent = if at.is_empty() { [0; 3] } else { [0, 1, 2].map(|a| hi[a] - lo[a] + 1) };
    let terms = basis_terms(params.degree, extent);
    let needed = (terms.len() * 10).max(params.classes * 10).max(100);
    if at.len() < needed {
        return Err(BiasError::TooFewSamples { source_name, samples: at.len(), needed });
    }

    // The basis at every sample, row-major (N × T, f64: 32 MB for 200 000
    // samples and degree 3), built once; each iteration is then two passes of
    // multiply-adds over it.
    let tables = AxisTables::new(dims, lo, hi, params.degree);
    let nt = terms.len();
    let mut basis = vec![0.0f64; at.len() * nt];
    basis.par_chunks_mut(nt).zip(at.par_iter()).for_each(|(row, &p)| {
        for (r, t) in row.iter_mut().zip(&terms) {
            *r = tables.term(*t, p);
        }
    });
    // Normal matrix BᵀB, once (the samples do not change).
    let gram = basis
        .par_chunks(nt * CHUNK)
        .map(|rows| {
            let mut g = vec![0.0f64; nt * nt];
            for row in rows.chunks_exact(nt) {
                for (a, ra) in row.iter().enumerate() {
                    for (b, rb) in row.iter().enumerate().skip(a) {
                        g[a * nt + b] += ra * rb;
                    }
                }
            }
            g
        })
        .reduce(|| vec![0.0f64; nt * nt], add);
    let gram = DMatrix::from_fn(nt, nt, |a, b| if a <= b { gram[a * nt + b] } else { gram[b * nt + a] });
    let chol = gram.cholesky().ok_or_else(|| BiasError::Degenerate(source_name.clone()))?;

    let n = at.len();
    let mut b = vec![0.0f64; n];
    let mut c: Vec<f64> = log_x.clone();
    let mut centres = initial_centres(&c, params.classes);
    let mut class = vec![0usize; n];
    let mut coef = DVector::<f64>::zeros(nt);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < params.max_iterations {
        iterations += 1;
        for ((c, l), b) in c.iter_mut().zip(&log_x).zip(&b) {
            *c = l - b;
        }
        lloyd(&c, &mut centres, &mut class);
        // Bᵀ r with r = ln x − μ_class.
        let rhs = basis
            .par_chunks(nt * CHUNK)
            .zip(log_x.par_chunks(CHUNK))
            .zip(class.par_chunks(CHUNK))
            .map(|((rows, ls), cls)| {
                let mut acc = vec![0.0f64; nt];
                for ((row, &l), &k) in rows.chunks_exact(nt).zip(ls).zip(cls) {
                    let r = l - centres[k];
                    for (a, v) in acc.iter_mut().zip(row) {
                        *a += v * r;
                    }
                }
                acc
            })
            .reduce(|| vec![0.0f64; nt], add);
        coef = chol.solve(&DVector::from_vec(rhs));
        let mut next: Vec<f64> =
            basis.par_chunks(nt).map(|row| row.iter().zip(coef.iter()).map(|(r, c)| r * c).sum()).collect();
        let mean = next.iter().sum::<f64>() / n as f64;
        let mut moved = 0.0f64;
        for (nb, ob) in next.iter_mut().zip(&b) {
            *nb -= mean;
            moved = moved.max((*nb - ob).abs());
        }
        // The constant term is P_0 P_0 P_0 = 1, first in the basis.
        coef[0] -= mean;
        b = next;
        if moved < params.tolerance {
            converged = true;
            break;
        }
    }
    let log_range = b.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    Ok(BiasField {
        dims,
        lo,
        hi,
        terms,
        coefficients: coef.iter().copied().collect(),
        log_range,
        iterations,
        converged,
        samples: n,
    })
}

/// `np.quantile(c, (k + 0.5) / classes)` for each class (numpy "linear").
fn initial_centres(c: &[f64], classes: usize) -> Vec<f64> {
    let mut sorted = c.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let last = sorted.len() - 1;
    (0..classes)
        .map(|k| {
            let pos = last as f64 * ((k as f64 + 0.5) / classes as f64);
            let below = pos.floor() as usize;
            let above = (below + 1).min(last);
            let g = pos - below as f64;
            sorted[below] + g * (sorted[above] - sorted[below])
        })
        .collect()
}

/// Lloyd steps of 1-D k-means from `centres` (nearest centre, ties to the lower
/// class; an empty class keeps its centre), until the classes stop changing.
fn lloyd(c: &[f64], centres: &mut [f64], class: &mut [usize]) {
    let k = centres.len();
    for _ in 0..LLOYD_STEPS {
        let mut changed = false;
        let mut sum = vec![0.0f64; k];
        let mut count = vec![0usize; k];
        for (v, cl) in c.iter().zip(class.iter_mut()) {
            let mut best = 0;
            let mut best_distance = (v - centres[0]).abs();
            for (m, centre) in centres.iter().enumerate().skip(1) {
                let distance = (v - centre).abs();
                if distance < best_distance {
                    best = m;
                    best_distance = distance;
                }
            }
            if *cl != best {
                *cl = best;
                changed = true;
            }
            sum[best] += v;
            count[best] += 1;
        }
        for ((centre, s), &n) in centres.iter_mut().zip(&sum).zip(&count) {
            if n > 0 {
                *centre = s / n as f64;
            }
        }
        if !changed {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Affine, SourceMeta};

    fn volume(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Volume<f32> {
        let mut data = Vec::with_capacity(dims.iter().product());
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    data.push(f(i, j, k));
                }
            }
        }
        Volume::new(dims, data, Affine::identity(), SourceMeta::default()).unwrap()
    }

    #[test]
    fn legendre_matches_closed_forms() {
        let mut p = [0.0; 5];
        for u in [-1.0, -0.3, 0.0, 0.7, 1.0] {
            legendre(u, &mut p);
            assert!((p[2] - (3.0 * u * u - 1.0) / 2.0).abs() < 1e-12);
            assert!((p[3] - (5.0 * u * u * u - 3.0 * u) / 2.0).abs() < 1e-12);
            assert!((p[4] - (35.0 * u.powi(4) - 30.0 * u * u + 3.0) / 8.0).abs() < 1e-12);
        }
    }

    #[test]
    fn basis_is_limited_by_degree_and_extent() {
        assert_eq!(basis_terms(3, [50, 50, 50]).len(), 20);
        assert_eq!(basis_terms(0, [50, 50, 50]), vec![[0, 0, 0]]);
        // A single slice: no term varies along k.
        let flat = basis_terms(3, [50, 50, 1]);
        assert_eq!(flat.len(), 10);
        assert!(flat.iter().all(|t| t[2] == 0));
    }

    /// Two tissues in stripes under a known smooth field: the estimate recovers
    /// the field up to its mean, and the corrected volume is two-valued again.
    #[test]
    fn recovers_a_polynomial_field_on_two_classes() {
        let dims = [40, 36, 30];
        let truth = |i: usize, j: usize, k: usize| {
            let u = 2.0 * i as f64 / 39.0 - 1.0;
            let v = 2.0 * j as f64 / 35.0 - 1.0;
            let w = 2.0 * k as f64 / 29.0 - 1.0;
            0.2 * u - 0.15 * v * w + 0.1 * w * w
        };
        let tissue = |i: usize, j: usize, _k: usize| if (i / 4 + j / 3).is_multiple_of(2) { 100.0 } else { 60.0 };
        let vol = volume(dims, |i, j, k| (tissue(i, j, k) * truth(i, j, k).exp()) as f32);
        let mask = vol.map(|_| 1u8);
        let params = BiasFieldParams { classes: 2, ..BiasFieldParams::default() };
        let field = estimate(&vol, &mask, &params).unwrap();
        assert!(field.converged(), "{} iterations", field.iterations());
        let est = field.log_field();
        let truth_all: Vec<f64> = (0..dims[2])
            .flat_map(|k| (0..dims[1]).flat_map(move |j| (0..dims[0]).map(move |i| (i, j, k))))
            .map(|(i, j, k)| truth(i, j, k))
            .collect();
        let offset = truth_all.iter().sum::<f64>() / truth_all.len() as f64;
        let worst = est.iter().zip(&truth_all).map(|(e, t)| (e - (t - offset)).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-6, "field error {worst}");
        let corrected = field.correct(&vol).unwrap();
        let ratio = |a: f32, b: f32| a / b;
        let d = corrected.data();
        let (mut lo, mut hi) = (f32::MAX, 0.0f32);
        for &x in d {
            lo = lo.min(x);
            hi = hi.max(x);
        }
        // Two values whose ratio is the tissues' 100 / 60.
        assert!((ratio(hi, lo) - 100.0 / 60.0).abs() < 1e-4, "{lo} {hi}");
    }

    #[test]
    fn a_flat_volume_gets_a_flat_field() {
        let vol = volume([20, 20, 20], |i, j, _| if (i + j).is_multiple_of(5) { 50.0 } else { 80.0 });
        let mask = vol.map(|_| 1u8);
        let field = estimate(&vol, &mask, &BiasFieldParams { classes: 2, ..Default::default() }).unwrap();
        let (lo, hi) = field.range();
        assert!((lo - 1.0).abs() < 1e-9 && (hi - 1.0).abs() < 1e-9, "{lo} {hi}");
        assert_eq!(field.correct(&vol).unwrap().data(), vol.data());
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let vol = volume([4, 4, 4], |_, _, _| 1.0);
        let mask = vol.map(|_| 1u8);
        assert!(matches!(
            estimate(&vol, &mask, &BiasFieldParams::default()),
            Err(BiasError::TooFewSamples { samples: 64, .. })
        ));
        let other = volume([4, 4, 5], |_, _, _| 1.0).map(|_| 1u8);
        assert!(matches!(estimate(&vol, &other, &BiasFieldParams::default()), Err(BiasError::MaskShape { .. })));
        for p in [
            BiasFieldParams { degree: 7, ..Default::default() },
            BiasFieldParams { classes: 0, ..Default::default() },
            BiasFieldParams { tolerance: f64::NAN, ..Default::default() },
            BiasFieldParams { max_iterations: 0, ..Default::default() },
        ] {
            assert!(matches!(estimate(&vol, &mask, &p), Err(BiasError::BadParameter(_))), "{p:?}");
        }
        // Zero and negative intensities are not samples.
        let dark = volume([30, 30, 30], |_, _, _| 0.0);
        assert!(matches!(
            estimate(&dark, &dark.map(|_| 1u8), &BiasFieldParams::default()),
            Err(BiasError::TooFewSamples { samples: 0, .. })
        ));
    }
}
