//! Structured slice descriptors → `imaging::dicom::assemble_stack`: it must
//! never panic, and a stack it accepts must be usable downstream.
//!
//! Raw `f64`s alone would almost always stop at the first finiteness or
//! orientation check, so most inputs are built around a regular stack (one
//! of a few orientations or a rotation, a spacing, an origin) whose slices
//! are then placed, jittered, tilted or replaced by raw values.
#![no_main]

use imaging::dicom::{SliceGeometry, assemble_stack};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Orientation {
    Axial,
    Sagittal,
    Coronal,
    /// Euler angles in 1/1000 rad.
    Rotated(i16, i16, i16),
    Raw([f64; 6]),
}

#[derive(Debug, Arbitrary)]
enum Slice {
    /// Plane `k` of the regular stack.
    At(u8),
    /// Plane `k`, moved by `d` µm (duplicates, gaps, tilt, rounding).
    Jittered(u8, [i16; 3]),
    /// The stack's orientation and spacing at any position at all.
    Anywhere([f64; 3]),
    /// On the stack's normal at `d` × 2^(e mod 1030) mm from the origin:
    /// distances of every magnitude up to the edge of the f64 range (DS allows "1e308").
    Along(i16, u16),
    /// Plane `k` with its orientation cosines nudged by `d` × 1e-4.
    Bent(u8, [i8; 6]),
    /// Plane `k` with another pixel spacing / thickness.
    Spacing(u8, [f64; 2], Option<f64>),
    /// Anything at all.
    Raw { position: [f64; 3], orientation: [f64; 6], pixel_spacing: [f64; 2], thickness: Option<f64> },
}

#[derive(Debug, Arbitrary)]
struct Input {
    orientation: Orientation,
    /// Slice spacing in µm (negative reverses the stack).
    step_um: i32,
    pixel_spacing: [u16; 2],
    origin: [i32; 3],
    thickness: Option<f64>,
    slices: Vec<Slice>,
}

fn cosines(o: &Orientation) -> [f64; 6] {
    match *o {
        Orientation::Axial => [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        Orientation::Sagittal => [0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
        Orientation::Coronal => [1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
        Orientation::Rotated(a, b, c) => {
            let (a, b, c) = (f64::from(a) * 1e-3, f64::from(b) * 1e-3, f64::from(c) * 1e-3);
            let r = imaging_rotation(a, b, c);
            [r[0][0], r[1][0], r[2][0], r[0][1], r[1][1], r[2][1]]
        }
        Orientation::Raw(v) => v,
    }
}

/// Rotation matrix from roll/pitch/yaw (rows), as nalgebra's `from_euler_angles`.
fn imaging_rotation(roll: f64, pitch: f64, yaw: f64) -> [[f64; 3]; 3] {
    let (sr, cr) = roll.sin_cos();
    let (sp, cp) = pitch.sin_cos();
    let (sy, cy) = yaw.sin_cos();
    [
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ]
}

fn build(input: &Input) -> Vec<SliceGeometry> {
    let o = cosines(&input.orientation);
    let normal = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
    let step = f64::from(input.step_um) * 1e-3;
    let ps = input.pixel_spacing.map(|v| f64::from(v) * 1e-3);
    let origin = input.origin.map(|v| f64::from(v) * 1e-3);
    let plane = |k: u8| -> [f64; 3] { [0, 1, 2].map(|a| origin[a] + normal[a] * step * f64::from(k)) };
    let regular =
        |k: u8| SliceGeometry { position: plane(k), orientation: o, pixel_spacing: ps, thickness: input.thickness };
    input
        .slices
        .iter()
        .map(|s| match *s {
            Slice::At(k) => regular(k),
            Slice::Jittered(k, d) => {
                let mut g = regular(k);
                for (p, d) in g.position.iter_mut().zip(d) {
                    *p += f64::from(d) * 1e-3;
                }
                g
            }
            Slice::Anywhere(position) => SliceGeometry { position, ..regular(0) },
            Slice::Along(d, e) => {
                let d = f64::from(d) * 2f64.powi(i32::from(e % 1030));
                SliceGeometry { position: [0, 1, 2].map(|a| origin[a] + normal[a] * d), ..regular(0) }
            }
            Slice::Bent(k, d) => {
                let mut g = regular(k);
                for (c, d) in g.orientation.iter_mut().zip(d) {
                    *c += f64::from(d) * 1e-4;
                }
                g
            }
            Slice::Spacing(k, pixel_spacing, thickness) => SliceGeometry { pixel_spacing, thickness, ..regular(k) },
            Slice::Raw { position, orientation, pixel_spacing, thickness } => {
                SliceGeometry { position, orientation, pixel_spacing, thickness }
            }
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let slices = build(&input);
    if let Ok(stack) = assemble_stack(&slices) {
        // `order` is a permutation of the input slices.
        let mut seen = stack.order.clone();
        seen.sort_unstable();
        assert!(seen.iter().copied().eq(0..slices.len()), "order {:?} for {} slices", stack.order, slices.len());
        // Volumes carry finite affines (the NIfTI reader refuses others). A
        // singular one is not checked: NIfTI input may carry one too (nibabel
        // reads it), and the writer refuses it with an error.
        let rows = stack.affine.to_rows();
        assert!(rows.iter().flatten().all(|v| v.is_finite()), "accepted stack with affine {rows:?}");
        assert!(stack.slice_spacing.is_finite() && stack.slice_spacing > 0.0, "spacing {}", stack.slice_spacing);
    }
});
