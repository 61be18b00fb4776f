//! Reorientation to the closest canonical (RAS+) voxel order, and back.
//!
//! Owns the lossless part of geometry: permuting and flipping voxel axes so
//! that voxel axes 0, 1, 2 point (as closely as the affine allows) towards
//! R, A and S — nibabel's `as_closest_canonical` — with the affine adjusted so
//! every voxel keeps its world position, and the exact inverse that takes a
//! volume computed on the canonical grid (a model's mask) back onto the
//! source scan's grid, voxel for voxel. No interpolation happens here: an
//! oblique affine stays oblique. Resampling lives in [`crate::resample`].
//!
//! ```
//! use imaging::{Affine, SourceMeta, Volume};
//! use imaging::orientation::{from_canonical, to_canonical};
//! let lps = Affine::from_rows([[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]);
//! let v = Volume::new([2, 1, 1], vec![1u8, 2], lps, SourceMeta::default()).unwrap();
//! let (canonical, record) = to_canonical(&v).unwrap();
//! assert_eq!(canonical.data(), &[2, 1]);
//! assert_eq!(canonical.affine().orientation_code(), "RAS");
//! assert_eq!(from_canonical(&canonical, &record).unwrap(), v);
//! ```

use nalgebra::Matrix4;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::affine::Affine;
use crate::volume::{Volume, VolumeError};

/// A canonical volume's affine may differ from the recorded one by this much
/// (mm, any entry) and still be accepted by [`from_canonical`]: NIfTI stores
/// the sform in float32, so a mask written and read back carries ~1e-5 mm noise.
pub const AFFINE_TOLERANCE_MM: f64 = 1e-3;

/// Errors reorienting a volume.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OrientationError {
    #[error("{input}: affine is singular or not finite, cannot reorient")]
    InvalidAffine { input: String },
    #[error("{input}: reorientation record is inconsistent: {reason}")]
    InvalidRecord { input: String, reason: &'static str },
    #[error("{input}: canonical volume has shape {actual:?} but the reorientation expects {expected:?}")]
    ShapeMismatch { input: String, expected: [usize; 3], actual: [usize; 3] },
    #[error("{input}: canonical volume's affine is {max_diff_mm} mm away from the recorded canonical affine")]
    AffineMismatch { input: String, max_diff_mm: f64 },
    #[error("{input}: {source}")]
    Volume { input: String, source: VolumeError },
}

/// How a volume was taken to canonical order: enough to undo it exactly.
/// Serializable so a job can record it next to its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reorientation {
    /// Shape of the original volume.
    pub original_dims: [usize; 3],
    /// Affine of the original volume, restored verbatim by [`from_canonical`].
    pub original_affine: Affine,
    /// For canonical axis `a` (0 = R, 1 = A, 2 = S), the original voxel axis it is read from.
    pub source_axis: [usize; 3],
    /// For canonical axis `a`, whether the original axis ran the other way (L, P or I)
    /// and was reversed.
    pub flipped: [bool; 3],
}

impl Reorientation {
    /// The record of a volume that is already in canonical order.
    pub fn identity(dims: [usize; 3], affine: Affine) -> Self {
        Reorientation { original_dims: dims, original_affine: affine, source_axis: [0, 1, 2], flipped: [false; 3] }
    }

    /// Whether the canonical volume is the original one, unchanged.
    pub fn is_identity(&self) -> bool {
        self.source_axis == [0, 1, 2] && self.flipped == [false; 3]
    }

    /// Shape of the canonical volume.
    pub fn canonical_dims(&self) -> [usize; 3] {
        self.source_axis.map(|s| self.original_dims.get(s).copied().unwrap_or(0))
    }

    /// Affine of the canonical volume: the original one composed with the voxel
    /// permutation/flip, exactly nibabel's `affine @ inv_ornt_aff(ornt, shape)`.
    pub fn canonical_affine(&self) -> Affine {
        let mut m = Matrix4::zeros();
        m[(3, 3)] = 1.0;
        for a in 0..3 {
            let s = self.source_axis[a].min(2);
            if self.flipped[a] {
                // Canonical index c reads original index n - 1 - c.
                m[(s, a)] = -1.0;
                m[(s, 3)] = self.original_dims[s].saturating_sub(1) as f64;
            } else {
                m[(s, a)] = 1.0;
            }
        }
        self.original_affine.compose(&Affine::from_matrix(m))
    }

    fn validate(&self, input: &str) -> Result<(), OrientationError> {
        let bad = |reason| Err(OrientationError::InvalidRecord { input: input.to_string(), reason });
        let mut seen = [false; 3];
        for &s in &self.source_axis {
            match seen.get_mut(s) {
                Some(slot) if !*slot => *slot = true,
                _ => return bad("source axes are not a permutation of 0, 1, 2"),
            }
        }
        if crate::volume::voxel_count(self.original_dims).is_err() {
            return bad("original shape is empty or overflows");
        }
        if !self.original_affine.is_valid() {
            return bad("original affine is singular or not finite");
        }
        Ok(())
    }
}

fn input_name<T>(v: &Volume<T>) -> String {
    if v.meta.source.is_empty() { "volume".to_string() } else { v.meta.source.clone() }
}

/// The record that takes `volume` to canonical order.
pub fn plan_canonical<T>(volume: &Volume<T>) -> Result<Reorientation, OrientationError> {
    let input = input_name(volume);
    if !volume.affine().is_valid() {
        return Err(OrientationError::InvalidAffine { input });
    }
    let mut record = Reorientation::identity(volume.dims(), *volume.affine());
    for (c, code) in volume.affine().axis_codes().iter().enumerate() {
        let a = code.world_axis.min(2);
        record.source_axis[a] = c;
        record.flipped[a] = !code.positive;
    }
    record.validate(&input)?;
    Ok(record)
}

/// Reorders `volume`'s voxels to the closest canonical RAS+ order (nibabel's
/// `as_closest_canonical`, axes chosen by [`Affine::axis_codes`], which follows
/// `io_orientation`). Returns the canonical volume and the record that
/// [`from_canonical`] needs to undo it. A volume already in RAS order is copied;
/// [`into_canonical`] avoids the copy when the volume is not needed afterwards.
pub fn to_canonical<T: Copy + Default + Send + Sync>(
    volume: &Volume<T>,
) -> Result<(Volume<T>, Reorientation), OrientationError> {
    let record = plan_canonical(volume)?;
    let map = [0, 1, 2].map(|a| (record.source_axis[a], record.flipped[a]));
    let data = permute(volume.data(), volume.dims(), record.canonical_dims(), map);
    let out = Volume::new(record.canonical_dims(), data, record.canonical_affine(), volume.meta.clone())
        .map_err(|source| OrientationError::Volume { input: input_name(volume), source })?;
    Ok((out, record))
}

/// [`to_canonical`] taking ownership: when only axes need reversing (LPS, LAS,
/// RAI, … — most DICOM-derived scans) the voxels are swapped in place and no
/// second buffer is allocated; a permutation still copies once.
pub fn into_canonical<T: Copy + Default + Send + Sync>(
    mut volume: Volume<T>,
) -> Result<(Volume<T>, Reorientation), OrientationError> {
    let record = plan_canonical(&volume)?;
    if record.source_axis != [0, 1, 2] {
        return to_canonical(&volume);
    }
    flip_in_place(volume.data_mut(), record.original_dims, record.flipped);
    volume.set_affine(record.canonical_affine());
    Ok((volume, record))
}

/// Reverses the flagged axes of a Fortran-ordered buffer in place. Each flip is an
/// involution on its own axis, so they are applied one after the other.
fn flip_in_place<T: Copy + Send>(data: &mut [T], [nx, ny, nz]: [usize; 3], flipped: [bool; 3]) {
    let slice_len = nx * ny;
    if flipped[0] && flipped[1] {
        // Reversing both in-plane axes of a Fortran slice is reversing the slice buffer:
        // one pass instead of two (LPS, the DICOM patient frame, is this case).
        data.par_chunks_mut(slice_len).for_each(|slice| slice.reverse());
    } else if flipped[0] {
        data.par_chunks_mut(nx).for_each(|row| row.reverse());
    } else if flipped[1] {
        data.par_chunks_mut(slice_len).for_each(|slice| {
            let (front, back) = slice.split_at_mut(nx * (ny / 2));
            // back holds the middle row (odd ny) and then the mirrored rows.
            let mirrored = &mut back[nx * (ny % 2)..];
            front.chunks_mut(nx).zip(mirrored.chunks_mut(nx).rev()).for_each(|(a, b)| a.swap_with_slice(b));
        });
    }
    if flipped[2] {
        let (front, back) = data.split_at_mut(slice_len * (nz / 2));
        let mirrored = &mut back[slice_len * (nz % 2)..];
        front
            .par_chunks_mut(slice_len)
            .zip(mirrored.par_chunks_mut(slice_len).rev())
            .for_each(|(a, b)| a.swap_with_slice(b));
    }
}

/// Takes a volume on the canonical grid recorded in `record` back to the
/// original grid: the exact inverse permutation/flip, and the original affine
/// restored verbatim (so the result lines up voxel for voxel with the source
/// scan). Refuses a volume whose shape differs from the recorded canonical
/// shape, or whose affine is more than [`AFFINE_TOLERANCE_MM`] away from it.
pub fn from_canonical<T: Copy + Default + Send + Sync>(
    canonical: &Volume<T>,
    record: &Reorientation,
) -> Result<Volume<T>, OrientationError> {
    let input = input_name(canonical);
    record.validate(&input)?;
    let expected = record.canonical_dims();
    if canonical.dims() != expected {
        return Err(OrientationError::ShapeMismatch { input, expected, actual: canonical.dims() });
    }
    let max_diff_mm = (canonical.affine().matrix() - record.canonical_affine().matrix()).amax();
    if !canonical.affine().is_valid() || max_diff_mm.is_nan() || max_diff_mm > AFFINE_TOLERANCE_MM {
        return Err(OrientationError::AffineMismatch { input, max_diff_mm });
    }
    // Original axis `source_axis[a]` is read from canonical axis `a`.
    let mut map = [(0, false); 3];
    for a in 0..3 {
        map[record.source_axis[a]] = (a, record.flipped[a]);
    }
    let data = permute(canonical.data(), expected, record.original_dims, map);
    Volume::new(record.original_dims, data, record.original_affine, canonical.meta.clone())
        .map_err(|source| OrientationError::Volume { input, source })
}

/// Length of the contiguous source runs copied at a time when the output's fast
/// axis is not the source's (a transpose, e.g. sagittal PIR ↔ RAS). The RUN output
/// rows (or slices) written meanwhile stay in L1; measured faster than 16 on the
/// MNI transposes (`benches/geometry.rs`).
const RUN: usize = 32;

/// Copies `src` (shape `src_dims`, Fortran order) into a new buffer of shape
/// `out_dims` whose axis `a` reads source axis `map[a].0`, reversed when
/// `map[a].1`. Callers guarantee `map` is a permutation and the shapes agree.
fn permute<T: Copy + Default + Send + Sync>(
    src: &[T],
    src_dims: [usize; 3],
    out_dims: [usize; 3],
    map: [(usize, bool); 3],
) -> Vec<T> {
    let src_strides = [1isize, src_dims[0] as isize, (src_dims[0] * src_dims[1]) as isize];
    // Source offset of output voxel (0,0,0), and the signed source step of each output axis.
    let mut start = 0isize;
    let mut step = [0isize; 3];
    for a in 0..3 {
        let (s, flipped) = map[a];
        step[a] = if flipped { -src_strides[s] } else { src_strides[s] };
        if flipped {
            start += (src_dims[s] as isize - 1) * src_strides[s];
        }
    }
    let at = |i: usize, j: usize, k: usize| start + i as isize * step[0] + j as isize * step[1] + k as isize * step[2];
    // The output axis that walks the source's contiguous axis. When it is not the output's
    // own fast axis, read contiguous source runs along it and scatter them with a stride,
    // so every cache line read is used whole.
    let fast = (0..3).find(|&a| map[a].0 == 0).unwrap_or(0);
    let [nx, ny, _] = out_dims;
    let slice_len = nx * ny;
    let slices_per_task = if fast == 2 { RUN } else { 1 };
    // A zero default lets `vec!` take fresh zeroed pages (calloc) instead of writing
    // every element first: the pages are then first touched by the parallel copy
    // below, so the page faults of a 35 MB output are taken on every core.
    let mut out = vec![T::default(); src.len()];
    out.par_chunks_mut(slice_len * slices_per_task).enumerate().for_each(|(b, chunk)| {
        let k0 = b * slices_per_task;
        let nk = chunk.len() / slice_len;
        match fast {
            0 => {
                for (kk, slice) in chunk.chunks_mut(slice_len).enumerate() {
                    for (j, row) in slice.chunks_mut(nx).enumerate() {
                        copy_strided(src, at(0, j, k0 + kk), step[0], row);
                    }
                }
            }
            1 => {
                for (kk, slice) in chunk.chunks_mut(slice_len).enumerate() {
                    for j0 in (0..ny).step_by(RUN) {
                        let len = (j0 + RUN).min(ny) - j0;
                        for i in 0..nx {
                            let column = slice[j0 * nx + i..].iter_mut().step_by(nx);
                            copy_run(src, at(i, j0, k0 + kk), step[1] > 0, len, column);
                        }
                    }
                }
            }
            _ => {
                for j in 0..ny {
                    for i in 0..nx {
                        let column = chunk[j * nx + i..].iter_mut().step_by(slice_len);
                        copy_run(src, at(i, j, k0), step[2] > 0, nk, column);
                    }
                }
            }
        }
    });
    out
}

/// Writes the `len` source voxels from `from` onwards (or backwards) through `dst`.
fn copy_run<'a, T: Copy + 'a>(
    src: &[T],
    from: isize,
    forwards: bool,
    len: usize,
    dst: impl Iterator<Item = &'a mut T>,
) {
    let from = from as usize;
    if forwards {
        dst.zip(&src[from..from + len]).for_each(|(o, s)| *o = *s);
    } else {
        dst.zip(src[from + 1 - len..=from].iter().rev()).for_each(|(o, s)| *o = *s);
    }
}

/// `row[i] = src[start + i * step]`, with no per-element bounds checks.
fn copy_strided<T: Copy>(src: &[T], start: isize, step: isize, row: &mut [T]) {
    let Some(last) = row.len().checked_sub(1) else { return };
    let end = start + last as isize * step;
    let (lo, hi) = (start.min(end) as usize, start.max(end) as usize);
    let seg = &src[lo..=hi];
    match step {
        // The common cases (axis kept or reversed) are plain and reversed memcpy.
        1 => row.copy_from_slice(seg),
        -1 => row.iter_mut().zip(seg.iter().rev()).for_each(|(o, s)| *o = *s),
        s if s > 0 => row.iter_mut().zip(seg.iter().step_by(s.unsigned_abs())).for_each(|(o, s)| *o = *s),
        s => row.iter_mut().zip(seg.iter().rev().step_by(s.unsigned_abs().max(1))).for_each(|(o, s)| *o = *s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::SourceMeta;

    fn vol(dims: [usize; 3], affine: Affine) -> Volume<u16> {
        let n = dims.iter().product::<usize>();
        Volume::new(dims, (0..n as u16).collect(), affine, SourceMeta::default()).expect("valid")
    }

    #[test]
    fn pir_volume_becomes_ras_and_keeps_world_positions() {
        // i -> P, j -> I, k -> R
        let a = Affine::from_rows([
            [0.0, 0.0, 2.0, -10.0],
            [-1.0, 0.0, 0.0, 20.0],
            [0.0, -3.0, 0.0, 5.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        let v = vol([3, 4, 5], a);
        let (c, rec) = to_canonical(&v).expect("valid");
        assert_eq!(c.dims(), [5, 3, 4]);
        assert_eq!(c.affine().orientation_code(), "RAS");
        assert_eq!(rec.source_axis, [2, 0, 1]);
        assert_eq!(rec.flipped, [false, true, true]);
        for (i, j, k) in [(0, 0, 0), (4, 2, 3), (1, 2, 0)] {
            // canonical (i, j, k) reads original (2 - j, 3 - k, i)
            let (oi, oj, ok) = (2 - j, 3 - k, i);
            assert_eq!(c.get(i, j, k), v.get(oi, oj, ok));
            let w1 = c.affine().apply([i as f64, j as f64, k as f64]);
            let w2 = a.apply([oi as f64, oj as f64, ok as f64]);
            assert_eq!(w1, w2);
        }
        assert_eq!(from_canonical(&c, &rec).expect("round trip"), v);
    }

    #[test]
    fn in_place_flips_match_the_copying_path() {
        for flips in 0..8u8 {
            let diag = [0, 1, 2].map(|a| if flips & (1 << a) != 0 { -1.5 } else { 1.5 });
            let affine = Affine::from_rows([
                [diag[0], 0.0, 0.0, 3.0],
                [0.0, diag[1], 0.0, -4.0],
                [0.0, 0.0, diag[2], 5.0],
                [0.0, 0.0, 0.0, 1.0],
            ]);
            for dims in [[3, 4, 5], [4, 3, 2], [1, 1, 3], [2, 5, 1]] {
                let v = vol(dims, affine);
                let copied = to_canonical(&v).expect("valid");
                let in_place = into_canonical(v.clone()).expect("valid");
                assert_eq!(copied, in_place, "flips {flips:03b} dims {dims:?}");
                assert_eq!(from_canonical(&in_place.0, &in_place.1).expect("fits"), v);
            }
        }
    }

    #[test]
    fn ras_volume_is_an_identity_record() {
        let v = vol([2, 3, 4], Affine::identity());
        let (c, rec) = to_canonical(&v).expect("valid");
        assert!(rec.is_identity());
        assert_eq!(c, v);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let mut rows = Affine::identity().to_rows();
        rows[1][1] = 0.0;
        let err = to_canonical(&vol([2, 2, 2], Affine::from_rows(rows))).unwrap_err();
        assert!(matches!(err, OrientationError::InvalidAffine { .. }));

        let v = vol([2, 3, 4], Affine::identity());
        let (c, mut rec) = to_canonical(&v).expect("valid");
        let wrong = vol([3, 2, 4], Affine::identity());
        assert!(matches!(from_canonical(&wrong, &rec), Err(OrientationError::ShapeMismatch { .. })));
        let mut moved = c.clone();
        moved.set_affine(Affine::from_rows([
            [1.0, 0.0, 0.0, 1.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]));
        assert!(matches!(from_canonical(&moved, &rec), Err(OrientationError::AffineMismatch { .. })));
        rec.source_axis = [0, 0, 2];
        assert!(matches!(from_canonical(&c, &rec), Err(OrientationError::InvalidRecord { .. })));
        rec.source_axis = [0, 1, 7];
        assert!(matches!(from_canonical(&c, &rec), Err(OrientationError::InvalidRecord { .. })));
    }

    #[test]
    fn record_round_trips_through_json() {
        let rec = Reorientation {
            original_dims: [3, 4, 5],
            original_affine: Affine::identity(),
            source_axis: [2, 0, 1],
            flipped: [false, true, false],
        };
        let text = serde_json::to_string(&rec).expect("serializes");
        assert_eq!(serde_json::from_str::<Reorientation>(&text).expect("parses"), rec);
    }
}
