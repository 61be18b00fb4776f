//! Multi-channel probability maps (a model's softmax output) on one grid.
//!
//! Owns the channel-major layout `[C][voxels]`, each channel a Fortran-ordered
//! volume: resampling runs channel by channel over contiguous memory with one
//! shared plan, and a channel is handed out as a plain slice. It does not own
//! what the channels mean.

use crate::affine::Affine;

use super::{ResampleError, input_name};

/// `channels` volumes of shape `dims` sharing one affine, stored channel-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbabilityMaps {
    channels: usize,
    dims: [usize; 3],
    affine: Affine,
    data: Vec<f32>,
    source: String,
}

impl ProbabilityMaps {
    /// Wraps a channel-major buffer of `channels × nx·ny·nz` values; `source`
    /// names the input in error messages.
    pub fn new(
        channels: usize,
        dims: [usize; 3],
        affine: Affine,
        data: Vec<f32>,
        source: impl Into<String>,
    ) -> Result<Self, ResampleError> {
        let source = source.into();
        let expected = super::saturating_count(&[dims[0] as u64, dims[1] as u64, dims[2] as u64, channels as u64]);
        if channels == 0 || dims.contains(&0) || expected != data.len() as u128 {
            return Err(ResampleError::ChannelShape {
                input: input_name(&source),
                channels,
                dims,
                expected,
                actual: data.len(),
            });
        }
        Ok(ProbabilityMaps { channels, dims, affine, data, source })
    }

    /// Number of channels (at least one).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Shape of each channel.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Voxel → RAS+ mm, shared by all channels.
    pub fn affine(&self) -> &Affine {
        &self.affine
    }

    /// What the maps were computed from (for error messages).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Voxels per channel.
    pub fn voxels(&self) -> usize {
        self.data.len() / self.channels
    }

    /// Channel `c` as a Fortran-ordered slice (empty when `c` is out of range).
    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.voxels();
        c.checked_mul(n).and_then(|start| self.data.get(start..)).and_then(|rest| rest.get(..n)).unwrap_or(&[])
    }

    /// The whole channel-major buffer.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Takes the buffer out.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_contiguous_and_shapes_are_checked() {
        let m = ProbabilityMaps::new(2, [2, 1, 1], Affine::identity(), vec![0.1, 0.2, 0.9, 0.8], "net").expect("valid");
        assert_eq!(m.channel(1), &[0.9, 0.8]);
        assert!(m.channel(2).is_empty());
        let err = ProbabilityMaps::new(3, [2, 1, 1], Affine::identity(), vec![0.0; 4], "net").unwrap_err();
        assert!(err.to_string().starts_with("net: 3 channels"), "{err}");
        assert!(ProbabilityMaps::new(0, [2, 1, 1], Affine::identity(), vec![], "net").is_err());
    }
}
