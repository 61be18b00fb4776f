//! The per-voxel loops: trilinear and nearest-neighbour sampling, each with
//! a separable path (per-axis tables) and a general path (per-voxel
//! coordinates), parallel over output slices.
//!
//! Both paths share the per-axis rules in [`linear_tap`] and [`nearest_tap`],
//! which reproduce scipy.ndimage's `mode="constant"` edge behaviour (see the
//! module docs of [`crate::resample`]), so they agree bit for bit on where a
//! sample falls.

use rayon::prelude::*;

use super::EDGE_EPSILON;
use super::plan::{Plan, Transform};

/// Two neighbours along one axis: source offsets (index × stride) and weights.
#[derive(Debug, Clone, Copy)]
struct LinearTap {
    o0: usize,
    o1: usize,
    w0: f32,
    w1: f32,
}

/// Clamps `x` into `[0, n − 1]` when it is inside (scipy `mode="constant"`:
/// inside iff `0 ≤ x ≤ n − 1`, here with [`EDGE_EPSILON`] of slack); `None`
/// outside or for NaN.
#[inline]
fn inside(x: f64, n: usize) -> Option<f64> {
    let last = n.saturating_sub(1) as f64;
    (x >= -EDGE_EPSILON && x <= last + EDGE_EPSILON).then(|| x.clamp(0.0, last))
}

#[inline]
fn linear_tap(x: f64, n: usize, stride: usize) -> Option<LinearTap> {
    let x = inside(x, n)?;
    // x ≥ 0 here, so truncation is floor. Converting through i64 keeps it to one
    // instruction each way on baseline x86-64 (usize ↔ f64 takes several).
    let f = x as i64;
    let t = x - f as f64;
    let i0 = f as usize;
    // At x = n − 1 the second neighbour has weight 0; clamp it onto the grid.
    let i1 = (i0 + 1).min(n - 1);
    Some(LinearTap { o0: i0 * stride, o1: i1 * stride, w0: (1.0 - t) as f32, w1: t as f32 })
}

#[inline]
fn nearest_tap(x: f64, n: usize, stride: usize) -> Option<usize> {
    // scipy's order-0 spline starts at floor(x + 0.5): half-way ties round up. x + 0.5 > 0,
    // so the truncating conversion is that floor.
    let x = inside(x, n)?;
    Some(((x + 0.5) as i64 as usize).min(n - 1) * stride)
}

/// Input coordinate of output voxel `(i, j, k)`, summed in the order
/// scipy's `NI_GeometricTransform` does, so ties and edges fall identically.
#[inline]
fn coordinate(t: &[f64; 4], i: f64, j: f64, k: f64) -> f64 {
    t[0] * i + t[1] * j + t[2] * k + t[3]
}

/// Per output axis, the tap of every output index (separable path).
fn tables<Tap: Send>(
    plan: &Plan,
    maps: &[super::plan::AxisMap; 3],
    tap: fn(f64, usize, usize) -> Option<Tap>,
) -> [Vec<Option<Tap>>; 3] {
    let strides = plan.in_strides();
    [0, 1, 2].map(|d| {
        let m = maps[d];
        (0..plan.out_dims[d])
            .map(|o| tap(m.scale * o as f64 + m.offset, plan.in_dims[m.src_axis], strides[m.src_axis]))
            .collect()
    })
}

/// Trilinear resampling of `src` into `out` (length = output voxels).
pub(super) fn linear(src: &[f32], plan: &Plan, fill: f32, out: &mut [f32]) {
    let [nx, ny, _] = plan.out_dims;
    match &plan.transform {
        Transform::Separable(maps) => {
            let [tx, ty, tz] = tables(plan, maps, linear_tap);
            out.par_chunks_mut(nx * ny).zip(tz.par_iter()).for_each(|(slice, z)| {
                let Some(z) = z else { return slice.fill(fill) };
                for (row, y) in slice.chunks_mut(nx).zip(&ty) {
                    let Some(y) = y else {
                        row.fill(fill);
                        continue;
                    };
                    // The four (y, z) corners, combined once per row.
                    let yz = [
                        (y.o0 + z.o0, y.w0 * z.w0),
                        (y.o1 + z.o0, y.w1 * z.w0),
                        (y.o0 + z.o1, y.w0 * z.w1),
                        (y.o1 + z.o1, y.w1 * z.w1),
                    ];
                    for (v, x) in row.iter_mut().zip(&tx) {
                        *v = match x {
                            Some(x) => yz.iter().map(|&(o, w)| w * (x.w0 * src[o + x.o0] + x.w1 * src[o + x.o1])).sum(),
                            None => fill,
                        };
                    }
                }
            });
        }
        Transform::General(t) => {
            let [sx, sy, sz] = plan.in_strides();
            let [mx, my, mz] = plan.in_dims;
            out.par_chunks_mut(nx * ny).enumerate().for_each(|(k, slice)| {
                let fk = k as f64;
                for (j, row) in slice.chunks_mut(nx).enumerate() {
                    let fj = j as f64;
                    // A float counter: exact for any grid size, and cheaper than converting i.
                    let mut fi = -1.0;
                    for v in row.iter_mut() {
                        fi += 1.0;
                        let taps = (
                            linear_tap(coordinate(&t[0], fi, fj, fk), mx, sx),
                            linear_tap(coordinate(&t[1], fi, fj, fk), my, sy),
                            linear_tap(coordinate(&t[2], fi, fj, fk), mz, sz),
                        );
                        *v = match taps {
                            (Some(x), Some(y), Some(z)) => {
                                let row_value = |o: usize| x.w0 * src[o + x.o0] + x.w1 * src[o + x.o1];
                                y.w0 * z.w0 * row_value(y.o0 + z.o0)
                                    + y.w1 * z.w0 * row_value(y.o1 + z.o0)
                                    + y.w0 * z.w1 * row_value(y.o0 + z.o1)
                                    + y.w1 * z.w1 * row_value(y.o1 + z.o1)
                            }
                            _ => fill,
                        };
                    }
                }
            });
        }
    }
}

/// Nearest-neighbour resampling of `src` into `out` (length = output voxels).
pub(super) fn nearest<T: Copy + Send + Sync>(src: &[T], plan: &Plan, fill: T, out: &mut [T]) {
    let [nx, ny, _] = plan.out_dims;
    match &plan.transform {
        Transform::Separable(maps) => {
            let [tx, ty, tz] = tables(plan, maps, nearest_tap);
            out.par_chunks_mut(nx * ny).zip(tz.par_iter()).for_each(|(slice, z)| {
                let Some(z) = z else { return slice.fill(fill) };
                for (row, y) in slice.chunks_mut(nx).zip(&ty) {
                    let Some(y) = y else {
                        row.fill(fill);
                        continue;
                    };
                    let yz = y + z;
                    for (v, x) in row.iter_mut().zip(&tx) {
                        *v = match x {
                            Some(x) => src[yz + x],
                            None => fill,
                        };
                    }
                }
            });
        }
        Transform::General(t) => {
            let [sx, sy, sz] = plan.in_strides();
            let [mx, my, mz] = plan.in_dims;
            out.par_chunks_mut(nx * ny).enumerate().for_each(|(k, slice)| {
                let fk = k as f64;
                for (j, row) in slice.chunks_mut(nx).enumerate() {
                    let fj = j as f64;
                    let mut fi = -1.0;
                    for v in row.iter_mut() {
                        fi += 1.0;
                        let taps = (
                            nearest_tap(coordinate(&t[0], fi, fj, fk), mx, sx),
                            nearest_tap(coordinate(&t[1], fi, fj, fk), my, sy),
                            nearest_tap(coordinate(&t[2], fi, fj, fk), mz, sz),
                        );
                        *v = match taps {
                            (Some(x), Some(y), Some(z)) => src[x + y + z],
                            _ => fill,
                        };
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_rule_matches_scipy_constant_mode() {
        // scipy 1.17: map_coordinates([10, 20, 30, 40], order=1, mode="constant") is 0 at
        // -1e-9, -0.5, 3.0000001 and 3.5, and 40 at exactly 3.0 (no blending with cval).
        assert!(linear_tap(-0.5, 4, 1).is_none());
        assert!(linear_tap(-1e-6, 4, 1).is_none());
        assert!(linear_tap(3.5, 4, 1).is_none());
        assert!(linear_tap(3.0000001, 4, 1).is_none());
        assert!(linear_tap(f64::NAN, 4, 1).is_none());
        let t = linear_tap(3.0, 4, 1).expect("inside");
        assert_eq!((t.o0, t.o1, t.w0, t.w1), (3, 3, 1.0, 0.0));
        let t = linear_tap(0.25, 4, 7).expect("inside");
        assert_eq!((t.o0, t.o1, t.w0, t.w1), (0, 7, 0.75, 0.25));
        // order=0: 0.5 -> index 1, 2.5 -> 3, 0.49999999999999994 -> 1 (floor(x + 0.5) in f64).
        assert_eq!(nearest_tap(0.5, 4, 1), Some(1));
        assert_eq!(nearest_tap(2.5, 4, 1), Some(3));
        assert_eq!(nearest_tap(0.49999999999999994, 4, 1), Some(1));
        assert_eq!(nearest_tap(3.2, 4, 1), None);
    }
}
