//! The segmentation pass loop: for each pass (member × flip × MC pass), every
//! window in batches (one window over the whole padded grid when the plan
//! tiles `whole` and the grid fits) — flipped, run (on whichever inference lane is free),
//! flipped back, weighted by the importance map — blended in window order as
//! `Σ w·p / Σ w` on the (padded) model grid, cropped back to the image and
//! handed to the sink. Buffers are allocated once per run and reused by every
//! pass.

use std::borrow::Cow;

use ndarray::{Array5, ArrayD};
use rayon::prelude::*;

use super::error::InferenceError;
use super::features::FeaturePool;
use super::flip::Flip;
use super::importance::ImportanceMap;
use super::sink::{PassInfo, PassSink};
use super::windows::WindowLayout;
use super::{Ensemble, ImageRef, Progress, gate_for, lanes, softmax_strided};
use crate::manifest::{Activation, Task, Tiling};
use crate::runtime::Model;

/// What a finished segmentation run did.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentationRun {
    /// Passes handed to the sink.
    pub passes: usize,
    /// The windows of every pass.
    pub layout: WindowLayout,
    /// Model calls made (passes × ⌈windows / batch⌉).
    pub model_calls: usize,
    /// How the passes covered the grid (`whole` falls back to `windows` on a grid too large).
    pub tiling: Tiling,
    /// Each member's bottleneck features pooled over the brain
    /// ([`FeaturePool`]) from its deterministic, unflipped pass (its first MC
    /// pass when every pass is one): empty when the manifest names no
    /// `output.features`, `None` for a member that saw no brain.
    pub features: Vec<Option<Vec<f64>>>,
}

impl Ensemble<'_> {
    /// Runs every pass over `image` (harmonized, on the model grid) and hands
    /// each pass's probabilities (`[classes][voxels]`, the image's Fortran
    /// voxel order) to `sink` as soon as it is blended; `progress` hears after
    /// every model call. Model calls (one batch of windows of one pass) run on
    /// the ensemble's lanes side by side and are blended on this thread in
    /// the one-lane order, so lanes change the speed, not the result.
    /// Memory: the probability map being blended and the weight sums
    /// (`4·(C + 1)` bytes per voxel, on the padded grid when the image is
    /// smaller than a patch), a few batches of patches in and out per lane,
    /// plus a padded copy of the image and a cropped map when padding is needed.
    pub fn segment<S: PassSink + ?Sized>(
        &self,
        image: ImageRef<'_>,
        sink: &mut S,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<SegmentationRun, InferenceError> {
        let plan = self.plan();
        if plan.task != Task::Segmentation {
            return Err(InferenceError::Plan { reason: format!("segment called on a {} model", plan.task) });
        }
        let (tiling, patch, layout, weights) = match plan.whole_grid_patch(image.dims()) {
            Some(grid) => {
                (Tiling::Whole, grid, WindowLayout::new(image.dims(), grid, 0.0)?, ImportanceMap::uniform(grid))
            }
            None => (
                Tiling::Windows,
                plan.patch_size,
                WindowLayout::new(image.dims(), plan.patch_size, plan.overlap)?,
                ImportanceMap::gaussian(plan.patch_size, plan.sigma_scale),
            ),
        };
        let padded: Cow<'_, [f32]> =
            if layout.is_padded() { Cow::Owned(pad(image, &layout)?) } else { Cow::Borrowed(image.voxels()) };
        let mut blend = Blend::new(&layout, &weights, plan.classes, image.voxels().len())?;

        let order = self.pass_order();
        let batches: Vec<&[[usize; 3]]> = layout.starts.chunks(plan.batch_size).collect();
        let windows = layout.starts.len();
        let unit_of = |unit: usize| (&order[unit / batches.len()], batches[unit % batches.len()]);
        let pooled = |pass: &PassInfo| pass.flip == Flip::IDENTITY && pass.mc_pass.is_none_or(|m| m == 0);
        let compute = |lane: usize, unit: usize| {
            let (pass, batch) = unit_of(unit);
            let member = self.lanes[lane][pass.member];
            let input = extract(&padded, layout.padded, batch, patch, pass.flip);
            let (output, features) = match &plan.features {
                Some(name) if pooled(pass) => {
                    let (output, features) = member.run_with_features(input.view(), gate_for(pass), name)?;
                    (output, Some(window_features(member, features, batch.len(), patch)?))
                }
                _ => (member.run_gated(input.view(), gate_for(pass))?, None),
            };
            let probs = window_probabilities(member, output, batch.len(), plan.classes, patch, plan.activation, pass)?;
            Ok((probs, features))
        };
        let mut done = 0;
        let mut pools: Vec<Option<FeaturePool>> =
            vec![None; if plan.features.is_some() { self.members().len() } else { 0 }];
        let consume = |unit: usize, (probs, features): (Vec<f32>, Option<WindowFeatures>)| {
            let (pass, batch) = unit_of(unit);
            if unit.is_multiple_of(batches.len()) {
                blend.start();
                done = 0;
            }
            if let (Some(f), Some(slot)) = (features, pools.get_mut(pass.member)) {
                let pool = slot.get_or_insert_with(|| FeaturePool::new(f.channels));
                let (per_probs, per_features) =
                    (plan.classes * patch.iter().product::<usize>(), f.values.len() / batch.len());
                for n in 0..batch.len() {
                    let values = &f.values[n * per_features..][..per_features];
                    pool.add_window(values, f.dims, &probs[n * per_probs..][..per_probs], patch)?;
                }
            }
            blend.add(&probs, batch, pass.flip);
            done += batch.len();
            progress(&Progress { pass: pass.index, passes: order.len(), windows_done: done, windows });
            if done == windows {
                let out = blend.finish();
                sink.add_pass(pass, out).map_err(|source| InferenceError::Sink { pass: pass.index, source })?;
            }
            Ok(())
        };
        let units = order.len() * batches.len();
        lanes::run_in_order(self.lanes(), units, compute, consume)?;
        let features = pools.into_iter().map(|p| p.and_then(|p| p.mean())).collect();
        Ok(SegmentationRun { passes: order.len(), layout, model_calls: units, tiling, features })
    }
}

/// One pass being blended: `Σ w·p` per channel on the padded grid, divided by
/// `Σ w` and cropped to the image when the pass is complete. Buffers are
/// allocated once per run and reused by every pass.
struct Blend<'a> {
    layout: &'a WindowLayout,
    weights: &'a ImportanceMap,
    classes: usize,
    weight_sum: Vec<f32>,
    blended: Vec<f32>,
    cropped: Vec<f32>,
}

impl<'a> Blend<'a> {
    fn new(
        layout: &'a WindowLayout,
        weights: &'a ImportanceMap,
        classes: usize,
        image_voxels: usize,
    ) -> Result<Self, InferenceError> {
        let too_large = |what: &'static str, voxels: usize| InferenceError::OutOfMemory {
            what,
            bytes: classes as u128 * voxels as u128 * std::mem::size_of::<f32>() as u128,
        };
        let vp = layout.padded_voxels();
        let maps = classes.checked_mul(vp).ok_or_else(|| too_large("the blended probabilities", vp))?;
        let blended = zeroed::<f32>(maps, "the blended probabilities")?;
        let cropped = if layout.is_padded() {
            let len = classes
                .checked_mul(image_voxels)
                .ok_or_else(|| too_large("the cropped probabilities", image_voxels))?;
            zeroed::<f32>(len, "the cropped probabilities")?
        } else {
            Vec::new()
        };
        let weight_sum = weight_sums(layout, weights)?;
        Ok(Blend { layout, weights, classes, weight_sum, blended, cropped })
    }

    fn start(&mut self) {
        self.blended.fill(0.0);
    }

    fn add(&mut self, probs: &[f32], batch: &[[usize; 3]], flip: Flip) {
        accumulate(&mut self.blended, probs, self.layout, batch, flip, self.weights, self.classes);
    }

    /// The pass's probabilities on the image grid, `[classes][voxels]`.
    fn finish(&mut self) -> &[f32] {
        let vp = self.layout.padded_voxels();
        for channel in self.blended.chunks_exact_mut(vp) {
            channel.iter_mut().zip(&self.weight_sum).for_each(|(p, w)| *p /= w);
        }
        if self.layout.is_padded() {
            crop(&self.blended, &mut self.cropped, self.layout, self.classes);
            &self.cropped
        } else {
            &self.blended
        }
    }
}

/// The image inside constant-0 padding (MONAI's `F.pad(mode="constant", value=0)`).
fn pad(image: ImageRef<'_>, layout: &WindowLayout) -> Result<Vec<f32>, InferenceError> {
    let [d0, d1, d2] = layout.image;
    let [n0, n1, _] = layout.padded;
    let [b0, b1, b2] = layout.pad_before;
    let mut out = zeroed::<f32>(layout.padded_voxels(), "the padded image")?;
    let src = image.voxels();
    for k in 0..d2 {
        for j in 0..d1 {
            let from = d0 * (j + d1 * k);
            let to = b0 + n0 * ((b1 + j) + n1 * (b2 + k));
            out[to..to + d0].copy_from_slice(&src[from..from + d0]);
        }
    }
    Ok(out)
}

/// `Σ w` over the windows at every voxel of the padded grid, in window order (MONAI's count map).
fn weight_sums(layout: &WindowLayout, weights: &ImportanceMap) -> Result<Vec<f32>, InferenceError> {
    let [p0, p1, p2] = layout.patch;
    let [n0, n1, _] = layout.padded;
    let mut sums = zeroed::<f32>(layout.padded_voxels(), "the weight sums")?;
    for s in &layout.starts {
        for k in 0..p2 {
            for j in 0..p1 {
                let dst = s[0] + n0 * ((s[1] + j) + n1 * (s[2] + k));
                let w = &weights.values[p0 * (j + p1 * k)..][..p0];
                sums[dst..dst + p0].iter_mut().zip(w).for_each(|(a, &w)| *a += w);
            }
        }
    }
    Ok(sums)
}

/// A batch of windows as the model's `[N, 1, p0, p1, p2]` input, each mirrored by `flip`.
pub(super) fn extract(
    img: &[f32],
    dims: [usize; 3],
    starts: &[[usize; 3]],
    patch: [usize; 3],
    flip: Flip,
) -> Array5<f32> {
    let [p0, p1, p2] = patch;
    let [n0, n1, _] = dims;
    let mut data = vec![0f32; starts.len() * p0 * p1 * p2];
    let per = p0 * p1 * p2;
    for (window, s) in data.chunks_exact_mut(per).zip(starts) {
        for (a, plane) in window.chunks_exact_mut(p1 * p2).enumerate() {
            let i = s[0] + flip.index(0, a, p0);
            for (b, row) in plane.chunks_exact_mut(p2).enumerate() {
                let j = s[1] + flip.index(1, b, p1);
                for (c, v) in row.iter_mut().enumerate() {
                    let k = s[2] + flip.index(2, c, p2);
                    *v = img[i + n0 * (j + n1 * k)];
                }
            }
        }
    }
    // The length is N·p0·p1·p2 by construction.
    Array5::from_shape_vec((starts.len(), 1, p0, p1, p2), data).unwrap_or_else(|_| Array5::zeros((0, 1, 0, 0, 0)))
}

/// Checks a model output's shape and values and returns it as standard-layout
/// probabilities (softmax applied to logits).
fn window_probabilities(
    model: &Model,
    output: ArrayD<f32>,
    batch: usize,
    classes: usize,
    patch: [usize; 3],
    activation: Activation,
    pass: &PassInfo,
) -> Result<Vec<f32>, InferenceError> {
    let expected = vec![batch, classes, patch[0], patch[1], patch[2]];
    if output.shape() != expected.as_slice() {
        return Err(InferenceError::OutputShape {
            path: model.path().to_path_buf(),
            expected,
            actual: output.shape().to_vec(),
        });
    }
    let len = output.len();
    let mut values = if output.is_standard_layout() {
        match output.into_raw_vec_and_offset() {
            (raw, offset) if offset.unwrap_or(0) == 0 && raw.len() == len => raw,
            (raw, offset) => raw.into_iter().skip(offset.unwrap_or(0)).take(len).collect(),
        }
    } else {
        output.as_standard_layout().iter().copied().collect()
    };
    if let Some(&value) = values.iter().find(|v| !v.is_finite()) {
        return Err(InferenceError::NonFinite { path: model.path().to_path_buf(), pass: pass.index, value });
    }
    if activation == Activation::Identity {
        let per = patch.iter().product::<usize>();
        for window in values.chunks_exact_mut(classes * per) {
            for v in 0..per {
                softmax_strided(window, classes, per, v);
            }
        }
    }
    Ok(values)
}

/// A batch's bottleneck features: standard-layout `[N, channels, dims]` values.
struct WindowFeatures {
    values: Vec<f32>,
    channels: usize,
    dims: [usize; 3],
}

/// Checks a features output (`[N, F, d, h, w]`, finite) and returns it in standard layout.
fn window_features(
    model: &Model,
    output: ArrayD<f32>,
    batch: usize,
    patch: [usize; 3],
) -> Result<WindowFeatures, InferenceError> {
    let shape = output.shape().to_vec();
    let bad = || InferenceError::FeatureShape { path: model.path().to_path_buf(), patch, actual: shape.clone() };
    let &[n, channels, d, h, w] = shape.as_slice() else { return Err(bad()) };
    if n != batch || channels == 0 || [d, h, w].iter().zip(patch).any(|(&f, p)| f == 0 || !p.is_multiple_of(f)) {
        return Err(bad());
    }
    let values: Vec<f32> = output.as_standard_layout().iter().copied().collect();
    if let Some(&value) = values.iter().find(|v| !v.is_finite()) {
        return Err(InferenceError::NonFiniteFeatures { path: model.path().to_path_buf(), value });
    }
    Ok(WindowFeatures { values, channels, dims: [d, h, w] })
}

/// Adds `w · p` of every window of the batch into `blended`, reading each
/// output back through the flip (so the sum is on the unflipped grid).
fn accumulate(
    blended: &mut [f32],
    probs: &[f32],
    layout: &WindowLayout,
    batch: &[[usize; 3]],
    flip: Flip,
    weights: &ImportanceMap,
    classes: usize,
) {
    let [p0, p1, p2] = layout.patch;
    let [n0, n1, _] = layout.padded;
    let per = p0 * p1 * p2;
    let vp = layout.padded_voxels();
    // Windows in batch order within each channel: the same summation order as MONAI.
    blended.par_chunks_mut(vp).enumerate().for_each(|(c, channel)| {
        for (n, s) in batch.iter().enumerate() {
            let out = &probs[(n * classes + c) * per..][..per];
            for k in 0..p2 {
                let fk = flip.index(2, k, p2);
                for j in 0..p1 {
                    let fj = flip.index(1, j, p1);
                    let dst = s[0] + n0 * ((s[1] + j) + n1 * (s[2] + k));
                    let w = &weights.values[p0 * (j + p1 * k)..][..p0];
                    for (i, (a, &w)) in channel[dst..dst + p0].iter_mut().zip(w).enumerate() {
                        let fi = flip.index(0, i, p0);
                        *a += w * out[(fi * p1 + fj) * p2 + fk];
                    }
                }
            }
        }
    });
}

/// The image's part of the padded grid, channel by channel.
fn crop(blended: &[f32], out: &mut [f32], layout: &WindowLayout, classes: usize) {
    let [d0, d1, d2] = layout.image;
    let [n0, n1, _] = layout.padded;
    let [b0, b1, b2] = layout.pad_before;
    let (v, vp) = (d0 * d1 * d2, layout.padded_voxels());
    for c in 0..classes {
        for k in 0..d2 {
            for j in 0..d1 {
                let from = c * vp + b0 + n0 * ((b1 + j) + n1 * (b2 + k));
                let to = c * v + d0 * (j + d1 * k);
                out[to..to + d0].copy_from_slice(&blended[from..from + d0]);
            }
        }
    }
}

/// A zero-filled buffer, an error instead of an abort when memory is short.
pub(super) fn zeroed<T: Clone + Default>(len: usize, what: &'static str) -> Result<Vec<T>, InferenceError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| InferenceError::OutOfMemory { what, bytes: len as u128 * std::mem::size_of::<T>() as u128 })?;
    v.resize(len, T::default());
    Ok(v)
}
