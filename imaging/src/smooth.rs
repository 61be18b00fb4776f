//! Gaussian smoothing of a volume, and the anti-aliasing σ to apply before
//! resampling a scan onto a coarser grid.
//!
//! [`gaussian`] is `scipy.ndimage.gaussian_filter(x, sigma)` on a float32
//! array: a separable kernel per axis (`exp(-x²/2σ²)` normalized over
//! `[-r, r]`, `r = ⌊4σ + 0.5⌋`, scipy's default `truncate = 4`), axes in the
//! order i, j, k, each pass summed in f64 and stored in f32, edges extended by
//! mode `"reflect"` (`d c b a | a b c d | d c b a`). An axis with σ = 0 is
//! left as is. [`anti_aliasing_sigma`] chooses σ per axis so that a scan at
//! spacing `s` looks as if acquired at the coarser spacing `t` (Gaussian PSFs
//! add in quadrature: FWHM `√(t² − s²)`), the rule the pipeline applies before
//! trilinear resampling, which by itself averages at most two samples per axis
//! and so passes the fine-grid noise through. Checked against scipy in
//! `imaging/tests/smooth.rs`.

use rayon::prelude::*;
use thiserror::Error;

use crate::volume::Volume;

/// `2·√(2·ln 2)`: FWHM = this × σ for a Gaussian.
const FWHM_PER_SIGMA: f64 = 2.354_820_045_030_949_4;
/// scipy's default: the kernel reaches 4σ each side.
const TRUNCATE: f64 = 4.0;

/// Why a volume cannot be smoothed.
#[derive(Debug, Error)]
pub enum SmoothError {
    #[error("smoothing {source_name}: sigma {sigma:?} (voxels) must be finite and >= 0 on every axis")]
    Sigma { source_name: String, sigma: [f64; 3] },
}

/// The σ per voxel axis (in voxels of the scan) that blurs a scan with voxel
/// spacing `spacing_mm` to the resolution of `target_mm` on that axis:
/// `√(t² − s²) / 2.3548 / s`, 0 where the scan is already as coarse. A 1 mm
/// axis going to 2 mm gets σ = 0.735 voxel.
pub fn anti_aliasing_sigma(spacing_mm: [f64; 3], target_mm: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|a| {
        let (s, t) = (spacing_mm[a], target_mm[a]);
        if !(s.is_finite() && t.is_finite() && s > 0.0 && t > s) {
            return 0.0;
        }
        (t * t - s * s).sqrt() / FWHM_PER_SIGMA / s
    })
}

/// `vol` smoothed with a Gaussian of standard deviation `sigma` voxels per axis
/// (`scipy.ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=4)`).
pub fn gaussian(vol: &Volume<f32>, sigma: [f64; 3]) -> Result<Volume<f32>, SmoothError> {
    if sigma.iter().any(|s| !s.is_finite() || *s < 0.0) {
        return Err(SmoothError::Sigma { source_name: vol.meta.source.to_string(), sigma });
    }
    let mut smoothed: Option<Vec<f32>> = None;
    for (axis, &s) in sigma.iter().enumerate() {
        // scipy skips an axis whose sigma is (close to) 0.
        if s > 1e-15 {
            let input = smoothed.as_deref().unwrap_or(vol.data());
            smoothed = Some(smooth_axis(input, vol.dims(), axis, &kernel(s)));
        }
    }
    let mut out = vol.clone();
    if let Some(data) = smoothed {
        out.data_mut().copy_from_slice(&data);
    }
    Ok(out)
}

/// scipy's `_gaussian_kernel1d(sigma, 0, radius)`: taps `-r..=r`, normalized.
fn kernel(sigma: f64) -> Vec<f64> {
    let radius = (TRUNCATE * sigma + 0.5) as usize;
    let taps: Vec<f64> =
        (0..=2 * radius).map(|t| (t as f64 - radius as f64).powi(2) * (-0.5 / (sigma * sigma))).map(f64::exp).collect();
    let sum: f64 = taps.iter().sum();
    taps.into_iter().map(|w| w / sum).collect()
}

/// Index `i` (may lie outside `0..n`) reflected into it, mode "reflect"
/// (the edge sample repeated: `… 1 0 | 0 1 … n-1 | n-1 n-2 …`), periodic with 2n.
fn reflect(i: isize, n: usize) -> usize {
    let period = 2 * n as isize;
    let m = i.rem_euclid(period) as usize;
    if m < n { m } else { 2 * n - 1 - m }
}

/// One separable pass along `axis` of a Fortran-ordered volume. Every output
/// k-slab is independent: along i each row is copied into a reflect-padded
/// line and convolved; along j (k) the slab's row (the output slab) is the
/// weighted sum of whole input rows (slabs), chosen through `reflect`. Sums in
/// f64, stored in f32, as scipy does per pass.
fn smooth_axis(data: &[f32], dims: [usize; 3], axis: usize, weights: &[f64]) -> Vec<f32> {
    let [nx, ny, nz] = dims;
    let slab = nx * ny;
    let radius = weights.len() / 2;
    let source = |p: usize, t: usize, n: usize| reflect(p as isize + t as isize - radius as isize, n);
    let mut out = vec![0f32; data.len()];
    out.par_chunks_mut(slab).enumerate().for_each(|(k, out_slab)| match axis {
        0 => {
            let mut line = vec![0f64; nx + 2 * radius];
            for (row_in, row_out) in data[k * slab..(k + 1) * slab].chunks_exact(nx).zip(out_slab.chunks_exact_mut(nx))
            {
                for (p, v) in line.iter_mut().enumerate() {
                    *v = f64::from(row_in[reflect(p as isize - radius as isize, nx)]);
                }
                for (i, o) in row_out.iter_mut().enumerate() {
                    *o = weights.iter().zip(&line[i..]).map(|(w, x)| w * x).sum::<f64>() as f32;
                }
            }
        }
        1 => {
            let input = &data[k * slab..(k + 1) * slab];
            let mut acc = vec![0f64; nx];
            for (j, row_out) in out_slab.chunks_exact_mut(nx).enumerate() {
                acc.fill(0.0);
                for (t, &w) in weights.iter().enumerate() {
                    let row = &input[source(j, t, ny) * nx..][..nx];
                    acc.iter_mut().zip(row).for_each(|(a, &x)| *a += w * f64::from(x));
                }
                row_out.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
            }
        }
        _ => {
            let mut acc = vec![0f64; slab];
            for (t, &w) in weights.iter().enumerate() {
                let input = &data[source(k, t, nz) * slab..][..slab];
                acc.iter_mut().zip(input).for_each(|(a, &x)| *a += w * f64::from(x));
            }
            out_slab.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Affine, SourceMeta};

    #[test]
    fn kernel_is_scipys() {
        // scipy.ndimage._filters._gaussian_kernel1d(0.735, 0, 3)
        let k = kernel(0.735);
        assert_eq!(k.len(), 7);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!((k[3] - 0.542_753_451_542_452_6).abs() < 1e-15, "{}", k[3]);
        assert_eq!(kernel(0.1).len(), 1);
    }

    #[test]
    fn reflect_repeats_the_edge_and_is_periodic() {
        let n = 3;
        let got: Vec<usize> = (-7..10).map(|i| reflect(i, n)).collect();
        assert_eq!(got, vec![0, 0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1, 2, 2]);
    }

    #[test]
    fn anti_aliasing_sigma_follows_the_resolution_gap() {
        let s = anti_aliasing_sigma([1.0, 1.0, 5.0], [2.0, 2.0, 2.0]);
        assert!((s[0] - 3f64.sqrt() / FWHM_PER_SIGMA).abs() < 1e-12 && s[0] == s[1]);
        assert_eq!(s[2], 0.0, "a thick-slice axis is already coarser than the target");
        assert_eq!(anti_aliasing_sigma([2.0; 3], [2.0; 3]), [0.0; 3]);
        assert_eq!(anti_aliasing_sigma([f64::NAN, 0.0, 1.0], [2.0, 2.0, f64::INFINITY]), [0.0; 3]);
    }

    #[test]
    fn constants_and_bad_sigmas() {
        let vol = Volume::new([4, 3, 5], vec![7.5f32; 60], Affine::identity(), SourceMeta::default()).unwrap();
        let out = gaussian(&vol, [1.0, 2.0, 3.0]).unwrap();
        assert!(out.data().iter().all(|&v| (v - 7.5).abs() < 1e-5), "a constant stays constant under reflect");
        assert_eq!(gaussian(&vol, [0.0; 3]).unwrap().data(), vol.data());
        assert!(gaussian(&vol, [f64::NAN, 0.0, 0.0]).is_err());
        assert!(gaussian(&vol, [0.0, -1.0, 0.0]).is_err());
    }
}
