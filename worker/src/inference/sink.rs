//! Where each finished pass goes: the [`PassSink`] trait, implemented by the
//! uncertainty [`Accumulator`], by closures, by pairs of sinks, and by
//! [`MeanSink`] for callers that want only the plain ensemble mean.

use std::error::Error;

use super::flip::Flip;
use crate::uncertainty::Accumulator;

/// Which pass a probability map comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassInfo {
    /// 0-based position in the run (member-major, then flip, then MC pass).
    pub index: usize,
    /// Index of the member in the ensemble.
    pub member: usize,
    pub flip: Flip,
    /// The MC-dropout pass (0-based), `None` for a deterministic pass.
    pub mc_pass: Option<u32>,
}

/// A consumer of finished passes. `probabilities` is channel-major
/// `[classes][voxels]`, voxels in the image's Fortran order, each voxel a
/// distribution; the buffer is reused for the next pass.
pub trait PassSink {
    fn add_pass(&mut self, pass: &PassInfo, probabilities: &[f32]) -> Result<(), Box<dyn Error + Send + Sync>>;
}

impl PassSink for Accumulator {
    fn add_pass(&mut self, _pass: &PassInfo, probabilities: &[f32]) -> Result<(), Box<dyn Error + Send + Sync>> {
        Accumulator::add_pass(self, probabilities).map_err(Into::into)
    }
}

impl<F, E> PassSink for F
where
    F: FnMut(&PassInfo, &[f32]) -> Result<(), E>,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    fn add_pass(&mut self, pass: &PassInfo, probabilities: &[f32]) -> Result<(), Box<dyn Error + Send + Sync>> {
        self(pass, probabilities).map_err(Into::into)
    }
}

/// Both sinks get every pass, the first one first.
impl<A: PassSink, B: PassSink> PassSink for (A, B) {
    fn add_pass(&mut self, pass: &PassInfo, probabilities: &[f32]) -> Result<(), Box<dyn Error + Send + Sync>> {
        self.0.add_pass(pass, probabilities)?;
        self.1.add_pass(pass, probabilities)
    }
}

/// The plain mean of the passes' probabilities (f64 sums: `8·C` bytes per voxel).
#[derive(Debug, Clone, Default)]
pub struct MeanSink {
    sums: Vec<f64>,
    passes: usize,
}

impl MeanSink {
    pub fn new() -> Self {
        MeanSink::default()
    }

    /// Passes added so far.
    pub fn passes(&self) -> usize {
        self.passes
    }

    /// The mean, channel-major like the passes; `None` before the first pass.
    pub fn mean(&self) -> Option<Vec<f32>> {
        (self.passes > 0).then(|| {
            let inv = 1.0 / self.passes as f64;
            self.sums.iter().map(|s| (s * inv) as f32).collect()
        })
    }
}

impl PassSink for MeanSink {
    fn add_pass(&mut self, _pass: &PassInfo, probabilities: &[f32]) -> Result<(), Box<dyn Error + Send + Sync>> {
        if self.passes == 0 {
            self.sums = vec![0.0; probabilities.len()];
        } else if self.sums.len() != probabilities.len() {
            return Err(
                format!("mean: pass of {} values after passes of {}", probabilities.len(), self.sums.len()).into()
            );
        }
        self.sums.iter_mut().zip(probabilities).for_each(|(s, &p)| *s += f64::from(p));
        self.passes += 1;
        Ok(())
    }
}
