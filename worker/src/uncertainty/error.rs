//! The one error type of [`crate::uncertainty`]: what was wrong with which
//! pass or member, never a panic.

use thiserror::Error;

/// Why probabilities were refused. A refused pass leaves the accumulator as it was.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum UncertaintyError {
    #[error("uncertainty: zero classes")]
    ZeroClasses,
    #[error("uncertainty: {classes} classes, labels are u8 so at most 256")]
    TooManyClasses { classes: usize },
    #[error("uncertainty: zero voxels")]
    ZeroVoxels,
    #[error("uncertainty: {classes} classes × {voxels} voxels is more than this accumulator holds")]
    TooLarge { classes: usize, voxels: usize },
    #[error("uncertainty: cannot allocate {bytes} bytes for the running sums")]
    OutOfMemory { bytes: u128 },
    #[error("uncertainty: voxel volume {ml} mL is not a positive finite number")]
    VoxelVolume { ml: f64 },
    #[error("pass {pass}: buffer holds {actual} values, expected {expected} ({classes} classes × {voxels} voxels)")]
    BufferLength { pass: usize, actual: usize, expected: usize, classes: usize, voxels: usize },
    #[error("pass {pass}: more than {max} passes, the per-voxel pass counters are u16")]
    TooManyPasses { pass: usize, max: usize },
    #[error("pass {pass}: voxel {voxel} class {class}: probability {value} is not finite")]
    NotFinite { pass: usize, voxel: usize, class: usize, value: f32 },
    #[error("pass {pass}: voxel {voxel} class {class}: probability {value} is outside [0, 1] by more than {tolerance}")]
    OutOfRange { pass: usize, voxel: usize, class: usize, value: f32, tolerance: f32 },
    #[error("pass {pass}: voxel {voxel}: probabilities sum to {sum}, not 1 within {tolerance}")]
    NotNormalized { pass: usize, voxel: usize, sum: f64, tolerance: f32 },
    #[error("uncertainty: no passes were added")]
    NoPasses,
    #[error("classification: no members")]
    NoMembers,
    #[error("classification: member {member} has {actual} classes, member 0 has {expected}")]
    MemberLength { member: usize, actual: usize, expected: usize },
    #[error("classification: member {member} class {class}: probability {value} is not finite")]
    MemberNotFinite { member: usize, class: usize, value: f32 },
    #[error(
        "classification: member {member} class {class}: probability {value} is outside [0, 1] by more than {tolerance}"
    )]
    MemberOutOfRange { member: usize, class: usize, value: f32, tolerance: f32 },
    #[error("classification: member {member}: probabilities sum to {sum}, not 1 within {tolerance}")]
    MemberNotNormalized { member: usize, sum: f64, tolerance: f32 },
}
