//! Where the sliding windows go: MONAI 1.6.1's `sliding_window_inference`
//! rules (`_get_scan_interval`, `dense_patch_slices`, and its padding of an
//! image smaller than the patch), reproduced exactly so the two place the same
//! windows on the same image.

use super::error::InferenceError;

/// The windows over one image, in MONAI's order (axis 0 slowest, axis 2 fastest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowLayout {
    /// The image, voxels along i, j, k.
    pub image: [usize; 3],
    /// The patch every window has.
    pub patch: [usize; 3],
    /// Constant-0 voxels added before the image on each axis (after: `padded − image − pad_before`).
    pub pad_before: [usize; 3],
    /// The grid the windows tile: `max(image, patch)` on each axis.
    pub padded: [usize; 3],
    /// Scan interval on each axis.
    pub interval: [usize; 3],
    /// Window start corners on the padded grid.
    pub starts: Vec<[usize; 3]>,
}

impl WindowLayout {
    /// MONAI's layout for `image` with `patch` and `overlap` (in [0, 1)).
    ///
    /// Per axis, with `P = max(image, patch)` after symmetric padding
    /// (`⌊(patch − image)/2⌋` before): the interval is `patch` when `P = patch`,
    /// else `int(patch·(1 − overlap))`, 1 if that is 0; window `d` starts at
    /// `d·interval`, pulled back so it ends inside the image, for
    /// `d = 0, 1, …` up to the first window that reaches the end.
    pub fn new(image: [usize; 3], patch: [usize; 3], overlap: f64) -> Result<Self, InferenceError> {
        if image.contains(&0) {
            return Err(InferenceError::Plan { reason: format!("image {image:?} has an empty axis") });
        }
        if patch.contains(&0) {
            return Err(InferenceError::Plan { reason: format!("patch {patch:?} has an empty axis") });
        }
        if !(overlap.is_finite() && (0.0..1.0).contains(&overlap)) {
            return Err(InferenceError::Plan { reason: format!("overlap {overlap} is not in [0, 1)") });
        }
        let volume = |d: [usize; 3]| d.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
        if volume(image.map(|n| n.max(1))).zip(volume(patch)).is_none()
            || volume([image[0].max(patch[0]), image[1].max(patch[1]), image[2].max(patch[2])]).is_none()
        {
            return Err(InferenceError::Plan { reason: format!("image {image:?} or patch {patch:?} is too large") });
        }
        let mut pad_before = [0; 3];
        let mut padded = [0; 3];
        let mut interval = [0; 3];
        let mut axis_starts: [Vec<usize>; 3] = Default::default();
        for d in 0..3 {
            let diff = patch[d].saturating_sub(image[d]);
            pad_before[d] = diff / 2;
            padded[d] = image[d].max(patch[d]);
            interval[d] = scan_interval(padded[d], patch[d], overlap);
            axis_starts[d] = axis_windows(padded[d], patch[d], interval[d]);
        }
        let mut starts = Vec::with_capacity(axis_starts.iter().map(Vec::len).product());
        for &s0 in &axis_starts[0] {
            for &s1 in &axis_starts[1] {
                for &s2 in &axis_starts[2] {
                    starts.push([s0, s1, s2]);
                }
            }
        }
        Ok(WindowLayout { image, patch, pad_before, padded, interval, starts })
    }

    /// Whether the image had to be padded to hold one patch.
    pub fn is_padded(&self) -> bool {
        self.padded != self.image
    }

    /// Voxels of the padded grid.
    pub fn padded_voxels(&self) -> usize {
        self.padded.iter().product()
    }
}

/// `_get_scan_interval` for one axis (after padding, so `size ≥ patch`).
fn scan_interval(size: usize, patch: usize, overlap: f64) -> usize {
    if size == patch {
        return patch;
    }
    // Python's `int(roi * (1 - o))`: truncation of the f64 product.
    let interval = (patch as f64 * (1.0 - overlap)) as usize;
    interval.max(1)
}

/// `dense_patch_slices` for one axis: the window starts.
fn axis_windows(size: usize, patch: usize, interval: usize) -> Vec<usize> {
    let patch = patch.min(size);
    let count = if interval == 0 {
        1
    } else {
        let num = size.div_ceil(interval);
        (0..num).find(|d| d * interval + patch >= size).map_or(1, |d| d + 1)
    };
    (0..count)
        .map(|d| {
            let start = d * interval;
            start - (start + patch).saturating_sub(size)
        })
        .collect()
}
