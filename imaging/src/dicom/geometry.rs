//! Slice geometry → stack order and affine.
//!
//! Owns the pure part of series assembly: given one descriptor per slice
//! (ImagePositionPatient, ImageOrientationPatient, PixelSpacing), it orders
//! the slices by their position projected on the slice normal, checks that
//! the stack is regular (parallel, no duplicates, no gaps, no gantry tilt) and
//! builds the voxel → RAS+ affine. It reads no files and decodes no pixels, so
//! it is tested on in-memory descriptors.
//!
//! Voxel axes follow dcm2niix and nibabel's `nicom`: `i` along a row (the IOP
//! row cosine, spacing `PixelSpacing[1]`), `j` down the columns (IOP column
//! cosine, `PixelSpacing[0]`), `k` along `row × column` in increasing
//! position. DICOM's LPS world becomes RAS+ by negating x and y.

use nalgebra::{Matrix4, Vector3};

use crate::affine::Affine;

/// Orientation cosines of two slices of one stack may differ by this much
/// (DICOM writes IOP as decimal strings; scanners round at 1e-5..1e-6).
const PARALLEL_TOL_DEG: f64 = 0.05;
/// Two slices closer than this along the normal are the same position.
const DUPLICATE_TOL_MM: f64 = 0.01;
/// In-plane drift of slice positions allowed, as a fraction of the distance
/// along the normal (tan 0.05°) plus an absolute rounding allowance.
const TILT_TOL_RATIO: f64 = 8.7e-4;
const TILT_TOL_MM: f64 = 1e-3;
/// A spacing deviating from the median by more than this is a gap or an
/// irregular stack: 2 % of the median, at least 0.02 mm.
const GAP_TOL_FRACTION: f64 = 0.02;
const GAP_TOL_MM: f64 = 0.02;

/// Where one slice (one DICOM frame) lies, in DICOM patient (LPS) mm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SliceGeometry {
    /// ImagePositionPatient: the centre of the first transmitted pixel.
    pub position: [f64; 3],
    /// ImageOrientationPatient: row cosine then column cosine.
    pub orientation: [f64; 6],
    /// PixelSpacing: `[between rows, between columns]` (the DICOM order).
    pub pixel_spacing: [f64; 2],
    /// SpacingBetweenSlices, else SliceThickness: the third axis of a
    /// single-slice stack.
    pub thickness: Option<f64>,
}

/// A checked stack: which slice goes to which `k`, and the affine.
#[derive(Debug, Clone, PartialEq)]
pub struct StackGeometry {
    /// `order[k]` is the index (into the input) of the slice at voxel plane `k`.
    pub order: Vec<usize>,
    /// Voxel → RAS+ mm.
    pub affine: Affine,
    /// Distance between consecutive planes along the normal, mm.
    pub slice_spacing: f64,
    /// Non-fatal findings (e.g. single slice without a thickness).
    pub warnings: Vec<String>,
}

/// Why a set of slices does not form a regular stack.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    #[error("no slices")]
    Empty,
    #[error("non-finite slice position or orientation")]
    NonFinite,
    #[error("slice positions too far apart for a finite affine (spacing {spacing} mm)")]
    OutOfRange { spacing: f64 },
    #[error("invalid image orientation: row and column cosines must be orthogonal unit vectors")]
    BadOrientation,
    #[error("invalid pixel spacing {0:?}")]
    BadPixelSpacing([f64; 2]),
    #[error("pixel spacing differs between slices ({first:?} and {other:?} at {position})")]
    MixedPixelSpacing { first: [f64; 2], other: [f64; 2], position: String },
    #[error("slices are not parallel: the slice at {position} is tilted {degrees:.3} degrees against the first")]
    NonParallel { position: String, degrees: f64 },
    #[error("{count} slices share the position {position}")]
    DuplicatePosition { position: String, count: usize },
    #[error(
        "gantry tilt of {degrees:.2} degrees: slice positions do not follow the slice normal (tilted stacks are refused, not resampled)"
    )]
    GantryTilt { degrees: f64 },
    #[error(
        "gap in slice positions between {from} and {to}: spacing {spacing:.3} mm where the median is {median:.3} mm (missing slice?)"
    )]
    Gap { from: String, to: String, spacing: f64, median: f64 },
}

/// Formats an LPS position the way error messages name it.
fn fmt_pos(p: &Vector3<f64>) -> String {
    format!("({:.2}, {:.2}, {:.2}) mm", p[0], p[1], p[2])
}

fn unit_axes(o: &[f64; 6]) -> Result<(Vector3<f64>, Vector3<f64>), GeometryError> {
    let row = Vector3::new(o[0], o[1], o[2]);
    let col = Vector3::new(o[3], o[4], o[5]);
    let (rn, cn) = (row.norm(), col.norm());
    // Loose: DICOM IOP strings carry few digits, but anything further off is not an orientation.
    if !(0.99..=1.01).contains(&rn) || !(0.99..=1.01).contains(&cn) || (row.dot(&col) / (rn * cn)).abs() > 0.01 {
        return Err(GeometryError::BadOrientation);
    }
    Ok((row / rn, col / cn))
}

fn angle_deg(a: &Vector3<f64>, b: &Vector3<f64>) -> f64 {
    a.dot(b).clamp(-1.0, 1.0).acos().to_degrees()
}

/// Orders and checks the slices of one stack and builds its affine.
pub fn assemble_stack(slices: &[SliceGeometry]) -> Result<StackGeometry, GeometryError> {
    let first = slices.first().ok_or(GeometryError::Empty)?;
    if slices.iter().any(|s| s.position.iter().chain(&s.orientation).chain(&s.pixel_spacing).any(|v| !v.is_finite())) {
        return Err(GeometryError::NonFinite);
    }
    let (row, col) = unit_axes(&first.orientation)?;
    let normal = row.cross(&col).normalize();
    let ps = first.pixel_spacing;
    if ps.iter().any(|&v| v <= 0.0) {
        return Err(GeometryError::BadPixelSpacing(ps));
    }
    let pos: Vec<Vector3<f64>> = slices.iter().map(|s| Vector3::from(s.position)).collect();
    for (s, p) in slices.iter().zip(&pos) {
        let (r, c) = unit_axes(&s.orientation)?;
        let degrees = angle_deg(&row, &r).max(angle_deg(&col, &c));
        if degrees > PARALLEL_TOL_DEG {
            return Err(GeometryError::NonParallel { position: fmt_pos(p), degrees });
        }
        let rel = |a: f64, b: f64| (a - b).abs() > 1e-4 * a.abs().max(b.abs());
        if rel(s.pixel_spacing[0], ps[0]) || rel(s.pixel_spacing[1], ps[1]) {
            return Err(GeometryError::MixedPixelSpacing { first: ps, other: s.pixel_spacing, position: fmt_pos(p) });
        }
    }

    // dcm2niix and nibabel's nicom sort by IPP projected on the normal, never by file name or InstanceNumber.
    let dist: Vec<f64> = pos.iter().map(|p| p.dot(&normal)).collect();
    let mut order: Vec<usize> = (0..slices.len()).collect();
    order.sort_by(|&a, &b| dist[a].total_cmp(&dist[b]));
    let mut warnings = Vec::new();

    let (step, slice_spacing) = if let [only] = order.as_slice() {
        let t = match slices.get(*only).and_then(|s| s.thickness).filter(|t| t.is_finite() && *t > 0.0) {
            Some(t) => t,
            None => {
                warnings.push("single slice without SliceThickness: third axis set to 1 mm".to_string());
                1.0
            }
        };
        (normal * t, t)
    } else {
        check_stack(&order, &pos, &dist, &normal)?
    };

    let origin = order.first().and_then(|&i| pos.get(i)).copied().unwrap_or_else(Vector3::zeros);
    let lps = Matrix4::new(
        row[0] * ps[1],
        col[0] * ps[0],
        step[0],
        origin[0],
        row[1] * ps[1],
        col[1] * ps[0],
        step[1],
        origin[1],
        row[2] * ps[1],
        col[2] * ps[0],
        step[2],
        origin[2],
        0.0,
        0.0,
        0.0,
        1.0,
    );
    // Finite positions can still overflow: DS allows "1e308", and slices at ±1e308
    // are 2e308 = inf apart, which every check above lets through as NaN comparisons.
    if !slice_spacing.is_finite() || lps.iter().any(|v| !v.is_finite()) {
        return Err(GeometryError::OutOfRange { spacing: slice_spacing });
    }
    let lps_to_ras = Matrix4::from_diagonal(&nalgebra::Vector4::new(-1.0, -1.0, 1.0, 1.0));
    Ok(StackGeometry { order, affine: Affine::from_matrix(lps_to_ras * lps), slice_spacing, warnings })
}

/// Duplicate, tilt and gap checks on a sorted stack of ≥ 2 slices; returns
/// the per-plane step vector and the median spacing.
fn check_stack(
    order: &[usize],
    pos: &[Vector3<f64>],
    dist: &[f64],
    normal: &Vector3<f64>,
) -> Result<(Vector3<f64>, f64), GeometryError> {
    let at = |k: usize| order.get(k).and_then(|&i| pos.get(i)).copied().unwrap_or_else(Vector3::zeros);
    let d = |k: usize| order.get(k).and_then(|&i| dist.get(i)).copied().unwrap_or(0.0);
    let n = order.len();
    let diffs: Vec<f64> = (1..n).map(|k| d(k) - d(k - 1)).collect();

    if let Some(k) = diffs.iter().position(|&x| x < DUPLICATE_TOL_MM) {
        let count = 1 + diffs.iter().skip(k).take_while(|&&x| x < DUPLICATE_TOL_MM).count();
        return Err(GeometryError::DuplicatePosition { position: fmt_pos(&at(k)), count });
    }

    let (p0, plast) = (at(0), at(n - 1));
    for k in 1..n {
        let v = at(k) - p0;
        let along = v.dot(normal);
        let drift = (v - normal * along).norm();
        if drift > TILT_TOL_MM + TILT_TOL_RATIO * along.abs() {
            let whole = plast - p0;
            let a = whole.dot(normal);
            let degrees = (whole - normal * a).norm().atan2(a.abs()).to_degrees();
            return Err(GeometryError::GantryTilt { degrees });
        }
    }

    let mut sorted = diffs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => 0.0,
        l if l % 2 == 1 => sorted.get(l / 2).copied().unwrap_or(0.0),
        l => (sorted.get(l / 2 - 1).copied().unwrap_or(0.0) + sorted.get(l / 2).copied().unwrap_or(0.0)) / 2.0,
    };
    let tol = GAP_TOL_MM.max(GAP_TOL_FRACTION * median);
    if let Some(k) = diffs.iter().position(|&x| (x - median).abs() > tol) {
        return Err(GeometryError::Gap { from: fmt_pos(&at(k)), to: fmt_pos(&at(k + 1)), spacing: diffs[k], median });
    }
    // The mean step (first to last) equals normal × spacing when the stack passed the checks above.
    let step = (plast - p0) / (n - 1) as f64;
    Ok((step, median))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn axial(z: f64) -> SliceGeometry {
        SliceGeometry {
            position: [-10.0, -20.0, z],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [0.5, 0.25],
            thickness: Some(3.0),
        }
    }

    #[test]
    fn axial_stack_is_sorted_and_flipped_to_ras() {
        let s: Vec<_> = [6.0, 0.0, 3.0].map(axial).to_vec();
        let g = assemble_stack(&s).expect("regular stack");
        assert_eq!(g.order, vec![1, 2, 0]);
        assert_eq!(g.affine.orientation_code(), "LPS");
        assert_eq!(g.affine.apply([0.0, 0.0, 0.0]), [10.0, 20.0, 0.0]);
        assert_eq!(g.affine.apply([4.0, 2.0, 2.0]), [9.0, 19.0, 6.0]);
        assert_eq!(g.slice_spacing, 3.0);
    }

    #[test]
    fn each_irregularity_has_its_own_error() {
        let gap: Vec<_> = [0.0, 3.0, 6.0, 12.0, 15.0].map(axial).to_vec();
        assert!(
            matches!(assemble_stack(&gap), Err(GeometryError::Gap { spacing, .. }) if (spacing - 6.0).abs() < 1e-9)
        );
        let dup: Vec<_> = [0.0, 3.0, 3.0, 6.0].map(axial).to_vec();
        assert!(matches!(assemble_stack(&dup), Err(GeometryError::DuplicatePosition { count: 2, .. })));
        let mut tilt: Vec<_> = [0.0, 3.0, 6.0].map(axial).to_vec();
        for (k, s) in tilt.iter_mut().enumerate() {
            s.position[1] += k as f64 * 3.0 * 0.2f64.tan();
        }
        match assemble_stack(&tilt) {
            Err(GeometryError::GantryTilt { degrees }) => assert!((degrees - 0.2f64.to_degrees()).abs() < 1e-6),
            other => panic!("expected tilt, got {other:?}"),
        }
        let mut bent: Vec<_> = [0.0, 3.0, 6.0].map(axial).to_vec();
        let a = 1f64.to_radians();
        bent[1].orientation = [1.0, 0.0, 0.0, 0.0, a.cos(), a.sin()];
        assert!(matches!(assemble_stack(&bent), Err(GeometryError::NonParallel { .. })));
        assert_eq!(assemble_stack(&[]), Err(GeometryError::Empty));
    }

    // Found while fuzzing (fuzz/fuzz_targets/dicom_series.rs): finite but huge
    // positions were accepted with an infinite spacing and a NaN affine.
    #[test]
    fn positions_at_the_edge_of_f64_are_refused() {
        for zs in [&[-1e308, 1e308][..], &[-1e308, 0.0, 1e308], &[1e308, -1e308]] {
            let s: Vec<_> = zs.iter().map(|&z| axial(z)).collect();
            assert!(
                matches!(assemble_stack(&s), Err(GeometryError::OutOfRange { spacing }) if spacing.is_infinite()),
                "{zs:?}"
            );
        }
        // Far from the origin but representable: still a stack.
        let s: Vec<_> = [1e300, 1e300 + 3e284].map(axial).to_vec();
        assert!(assemble_stack(&s).is_ok_and(|g| g.affine.matrix().iter().all(|v| v.is_finite())));
    }

    #[test]
    fn single_slice_uses_thickness() {
        let g = assemble_stack(&[axial(5.0)]).expect("one slice");
        assert_eq!(g.affine.spacing(), [0.25, 0.5, 3.0]);
        let mut no_t = axial(5.0);
        no_t.thickness = None;
        let g = assemble_stack(&[no_t]).expect("one slice");
        assert_eq!(g.affine.spacing()[2], 1.0);
        assert_eq!(g.warnings.len(), 1);
    }

    fn rotation(a: f64, b: f64, c: f64) -> nalgebra::Rotation3<f64> {
        nalgebra::Rotation3::from_euler_angles(a, b, c)
    }

    proptest! {
        // Shuffled regular stacks in any orientation: the assembly restores the
        // order and the affine maps plane k onto the position of its slice.
        #[test]
        fn shuffled_stacks_are_reassembled(
            n in 2usize..40, spacing in 0.3f64..6.0, angles in (-3.2f64..3.2, -1.5f64..1.5, -3.2f64..3.2),
            seed in any::<u64>(), origin in (-200f64..200.0, -200f64..200.0, -200f64..200.0),
        ) {
            let r = rotation(angles.0, angles.1, angles.2);
            let (row, col) = (r * Vector3::x(), r * Vector3::y());
            let normal = row.cross(&col);
            let o = Vector3::new(origin.0, origin.1, origin.2);
            let mut perm: Vec<usize> = (0..n).collect();
            let mut state = seed;
            for i in (1..n).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                perm.swap(i, (state >> 33) as usize % (i + 1));
            }
            let slices: Vec<SliceGeometry> = perm.iter().map(|&k| SliceGeometry {
                position: (o + normal * (k as f64 * spacing)).into(),
                orientation: [row[0], row[1], row[2], col[0], col[1], col[2]],
                pixel_spacing: [0.9, 1.1],
                thickness: None,
            }).collect();
            let g = assemble_stack(&slices).expect("regular stack assembles");
            for (k, &i) in g.order.iter().enumerate() {
                prop_assert_eq!(perm[i], k);
                let w = g.affine.apply([0.0, 0.0, k as f64]);
                let p = slices[i].position;
                prop_assert!((w[0] + p[0]).abs() < 1e-6 && (w[1] + p[1]).abs() < 1e-6 && (w[2] - p[2]).abs() < 1e-6);
            }
            prop_assert!((g.slice_spacing - spacing).abs() < 1e-9);
        }

        // Arbitrary perturbations: either a consistent ordering or a typed error, never a panic.
        #[test]
        fn perturbed_stacks_order_or_refuse(
            positions in prop::collection::vec((-50f64..50.0, -50f64..50.0, -50f64..50.0), 0..20),
            tweak in prop::collection::vec(-1f64..1.0, 6),
            spacing in prop::array::uniform2(-1f64..3.0),
        ) {
            let slices: Vec<SliceGeometry> = positions.iter().enumerate().map(|(i, p)| SliceGeometry {
                position: [p.0, p.1, p.2],
                orientation: if i == 1 { [tweak[0], tweak[1], tweak[2], tweak[3], tweak[4], tweak[5]] } else { [1.0, 0.0, 0.0, 0.0, 1.0, 0.0] },
                pixel_spacing: spacing,
                thickness: None,
            }).collect();
            if let Ok(g) = assemble_stack(&slices) {
                prop_assert_eq!(g.order.len(), slices.len());
                let mut seen = g.order.clone();
                seen.sort_unstable();
                prop_assert!(seen.iter().enumerate().all(|(k, &i)| k == i));
                for w in g.order.windows(2) {
                    prop_assert!(slices[w[1]].position[2] > slices[w[0]].position[2]);
                }
            }
        }
    }
}
