//! The streaming accumulator: passes go in one at a time, running sums and
//! per-voxel pass counters stay, and `finish` turns them into the maps and the
//! report. Owns the memory layout described in the module docs; the per-class
//! agreement arithmetic is in `agreement`, the report in `report`.

use rayon::prelude::*;

use super::agreement::{AgreementSums, agreement_sums};
use super::error::UncertaintyError;
use super::probability::{self, Fault};
use super::report::{MaskSums, UncertaintyReport};

/// Voxels per parallel work item: large enough that the per-chunk scratch and
/// slice bookkeeping vanish next to the work, small enough to balance 2–16 cores.
const CHUNK: usize = 8192;

/// Values the accumulator agrees to hold (classes × voxels): 2³³, i.e. 32 GiB of
/// f32 sums; anything larger is a wrong header, not a brain.
const MAX_VALUES: u128 = 1 << 33;

/// Running state for one study on one grid. Memory does not grow with passes
/// beyond `P × C` per-pass voxel counts.
#[derive(Debug)]
pub struct Accumulator {
    classes: usize,
    voxels: usize,
    voxel_volume_ml: f64,
    /// Channel-major `[C][V]` running sums of the renormalized probabilities.
    prob_sums: Vec<f32>,
    /// `[V]` running sum of each pass's entropy (nats).
    entropy_sums: Vec<f32>,
    /// Channel-major `[C][V]`: how many passes had their argmax at this class.
    counts: Vec<u16>,
    /// `[P][C]` voxels each pass labelled as each class (its argmax).
    pass_voxels: Vec<Vec<u64>>,
}

/// What `finish` returns: the voxelwise maps (each Fortran-ordered like the
/// input channels) and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct UncertaintyMaps {
    pub classes: usize,
    pub voxels: usize,
    pub passes: usize,
    /// Channel-major `[C][V]` mean of the renormalized pass probabilities.
    pub mean_probs: Vec<f32>,
    /// Argmax of the mean, the lowest class on a tie.
    pub labels: Vec<u8>,
    /// `H[p̄]`, nats.
    pub predictive_entropy: Vec<f32>,
    /// Mean over passes of `H[p_t]`, nats (aleatoric).
    pub expected_entropy: Vec<f32>,
    /// `max(H[p̄] − E H[p_t], 0)`, nats (epistemic).
    pub mutual_information: Vec<f32>,
    /// Per-structure and study figures.
    pub report: UncertaintyReport,
}

impl Accumulator {
    /// An empty accumulator for `classes` channels of `voxels` voxels each, a
    /// voxel being `voxel_volume_ml` millilitres (|det| of the affine's 3×3 / 1000).
    pub fn new(classes: usize, voxels: usize, voxel_volume_ml: f64) -> Result<Self, UncertaintyError> {
        if classes == 0 {
            return Err(UncertaintyError::ZeroClasses);
        }
        if classes > usize::from(u8::MAX) + 1 {
            return Err(UncertaintyError::TooManyClasses { classes });
        }
        if voxels == 0 {
            return Err(UncertaintyError::ZeroVoxels);
        }
        if !(voxel_volume_ml.is_finite() && voxel_volume_ml > 0.0) {
            return Err(UncertaintyError::VoxelVolume { ml: voxel_volume_ml });
        }
        let values = classes as u128 * voxels as u128;
        if values > MAX_VALUES {
            return Err(UncertaintyError::TooLarge { classes, voxels });
        }
        // Bounded by MAX_VALUES above, so this fits usize on 64-bit targets.
        let values = usize::try_from(values).map_err(|_| UncertaintyError::TooLarge { classes, voxels })?;
        Ok(Accumulator {
            classes,
            voxels,
            voxel_volume_ml,
            prob_sums: zeroed(values)?,
            entropy_sums: zeroed(voxels)?,
            counts: zeroed(values)?,
            pass_voxels: Vec::new(),
        })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Voxels per class.
    pub fn voxels(&self) -> usize {
        self.voxels
    }

    /// Passes added so far.
    pub fn passes(&self) -> usize {
        self.pass_voxels.len()
    }

    /// Adds one pass: `probs` is channel-major `[classes][voxels]`. Every value
    /// is checked first (finite, within [`super::PROBABILITY_TOLERANCE`] of
    /// `[0, 1]`, each voxel summing to 1 within it); a refused pass changes nothing.
    pub fn add_pass(&mut self, probs: &[f32]) -> Result<(), UncertaintyError> {
        let pass = self.passes();
        let (classes, voxels) = (self.classes, self.voxels);
        if probs.len() != self.prob_sums.len() {
            return Err(UncertaintyError::BufferLength {
                pass,
                actual: probs.len(),
                expected: self.prob_sums.len(),
                classes,
                voxels,
            });
        }
        if pass >= usize::from(u16::MAX) {
            return Err(UncertaintyError::TooManyPasses { pass, max: usize::from(u16::MAX) });
        }
        validate(probs, classes, voxels).map_err(|(voxel, fault)| fault_error(pass, voxel, fault))?;

        let sums = channel_chunks(&mut self.prob_sums, voxels);
        let counts = channel_chunks(&mut self.counts, voxels);
        let label_voxels = sums
            .into_par_iter()
            .zip(counts)
            .zip(self.entropy_sums.par_chunks_mut(CHUNK))
            .enumerate()
            .map_init(
                || Scratch::new(classes),
                |scratch, (chunk, ((mut sums, mut counts), entropy))| {
                    let start = chunk * CHUNK;
                    let n = entropy.len();
                    scratch.gather(probs, voxels, start, n);
                    let mut label_voxels = vec![0u64; classes];
                    for ((q, label), h) in
                        scratch.q.chunks_exact_mut(classes).zip(scratch.labels.iter_mut()).zip(entropy.iter_mut())
                    {
                        probability::renormalize(q);
                        *h += probability::entropy(q) as f32;
                        let l = probability::argmax(q);
                        *label = l;
                        if let Some(v) = label_voxels.get_mut(l) {
                            *v += 1;
                        }
                    }
                    for (c, (sum, count)) in sums.iter_mut().zip(counts.iter_mut()).enumerate() {
                        for (s, &q) in sum.iter_mut().zip(scratch.q.iter().skip(c).step_by(classes)) {
                            *s += q as f32;
                        }
                        for (k, &l) in count.iter_mut().zip(&scratch.labels[..n]) {
                            *k += u16::from(l == c);
                        }
                    }
                    label_voxels
                },
            )
            .reduce(|| vec![0u64; classes], add_vectors);
        self.pass_voxels.push(label_voxels);
        Ok(())
    }

    /// Means, labels, the three entropy maps and the report. Needs at least one pass.
    pub fn finish(self) -> Result<UncertaintyMaps, UncertaintyError> {
        let Accumulator { classes, voxels, voxel_volume_ml, mut prob_sums, mut entropy_sums, counts, pass_voxels } =
            self;
        let passes = pass_voxels.len();
        if passes == 0 {
            return Err(UncertaintyError::NoPasses);
        }
        let agreement: Vec<AgreementSums> = counts.par_chunks(voxels).map(|n| agreement_sums(n, passes)).collect();
        drop(counts);

        let inv = 1.0 / passes as f64;
        // Predictive entropy needs the f64 means, not the f32 ones stored, so it
        // is computed from the sums before they are scaled in place.
        let mut predictive_entropy = zeroed::<f32>(voxels)?;
        let mut mutual_information = zeroed::<f32>(voxels)?;
        let mut labels = zeroed::<u8>(voxels)?;
        let mask_sums = channel_chunks(&mut prob_sums, voxels)
            .into_par_iter()
            .zip(entropy_sums.par_chunks_mut(CHUNK))
            .zip(predictive_entropy.par_chunks_mut(CHUNK))
            .zip(mutual_information.par_chunks_mut(CHUNK))
            .zip(labels.par_chunks_mut(CHUNK))
            .map_init(
                || Scratch::new(classes),
                |scratch, ((((mut sums, expected), predictive), mi), label)| {
                    let n = expected.len();
                    let q = &mut scratch.q[..n * classes];
                    for (c, sum) in sums.iter_mut().enumerate() {
                        for (dst, s) in q.iter_mut().skip(c).step_by(classes).zip(sum.iter_mut()) {
                            *dst = f64::from(*s) * inv;
                            *s = *dst as f32;
                        }
                    }
                    let mut mask = MaskSums::new(classes);
                    for ((((p, e), h), m), l) in q
                        .chunks_exact(classes)
                        .zip(expected.iter_mut())
                        .zip(predictive.iter_mut())
                        .zip(mi.iter_mut())
                        .zip(label.iter_mut())
                    {
                        let hp = probability::entropy(p);
                        let he = f64::from(*e) * inv;
                        let info = (hp - he).max(0.0);
                        let class = probability::argmax(p);
                        *e = he as f32;
                        *h = hp as f32;
                        *m = info as f32;
                        // class < classes ≤ 256, checked in `new`.
                        *l = u8::try_from(class).unwrap_or(u8::MAX);
                        mask.add(class, hp, info);
                    }
                    mask
                },
            )
            .reduce(|| MaskSums::new(classes), MaskSums::merge);

        let report = UncertaintyReport::new(&pass_voxels, &agreement, &mask_sums, voxel_volume_ml);
        Ok(UncertaintyMaps {
            classes,
            voxels,
            passes,
            mean_probs: prob_sums,
            labels,
            predictive_entropy,
            expected_entropy: entropy_sums,
            mutual_information,
            report,
        })
    }
}

/// Per-thread buffers reused across chunks (no per-voxel allocation).
struct Scratch {
    classes: usize,
    /// Voxel-major `[n][C]` probabilities of one chunk, f64.
    q: Vec<f64>,
    labels: Vec<usize>,
}

impl Scratch {
    fn new(classes: usize) -> Self {
        Scratch { classes, q: vec![0.0; CHUNK * classes], labels: vec![0; CHUNK] }
    }

    /// Copies voxels `start..start + n` of every channel into `q`, voxel-major.
    fn gather(&mut self, probs: &[f32], voxels: usize, start: usize, n: usize) {
        let classes = self.classes;
        for (c, channel) in probs.chunks_exact(voxels).enumerate() {
            let src = channel.iter().skip(start).take(n);
            for (dst, &p) in self.q.iter_mut().skip(c).step_by(classes).zip(src) {
                *dst = f64::from(p);
            }
        }
    }
}

/// Checks every value and every voxel's sum; on failure, the lowest failing
/// chunk's first fault (voxel, fault).
fn validate(probs: &[f32], classes: usize, voxels: usize) -> Result<(), (usize, Fault)> {
    let chunks = voxels.div_ceil(CHUNK);
    (0..chunks).into_par_iter().try_for_each_init(
        || vec![0.0f64; CHUNK],
        |sums, chunk| {
            let start = chunk * CHUNK;
            let n = CHUNK.min(voxels - start);
            let sums = &mut sums[..n];
            sums.fill(0.0);
            for (c, channel) in probs.chunks_exact(voxels).take(classes).enumerate() {
                for (i, (s, &p)) in sums.iter_mut().zip(channel.iter().skip(start)).enumerate() {
                    probability::check_value(c, p).map_err(|f| (start + i, f))?;
                    *s += f64::from(p);
                }
            }
            for (i, &s) in sums.iter().enumerate() {
                probability::check_sum(s).map_err(|f| (start + i, f))?;
            }
            Ok(())
        },
    )
}

fn fault_error(pass: usize, voxel: usize, fault: Fault) -> UncertaintyError {
    let tolerance = super::PROBABILITY_TOLERANCE;
    match fault {
        Fault::NotFinite { class, value } => UncertaintyError::NotFinite { pass, voxel, class, value },
        Fault::OutOfRange { class, value } => UncertaintyError::OutOfRange { pass, voxel, class, value, tolerance },
        Fault::NotNormalized { sum } => UncertaintyError::NotNormalized { pass, voxel, sum, tolerance },
    }
}

/// Splits a channel-major `[C][V]` buffer into work items: item k holds voxels
/// `k·CHUNK..` of every channel.
fn channel_chunks<T>(buf: &mut [T], voxels: usize) -> Vec<Vec<&mut [T]>> {
    let chunks = voxels.div_ceil(CHUNK);
    let classes = buf.len() / voxels.max(1);
    let mut items: Vec<Vec<&mut [T]>> = (0..chunks).map(|_| Vec::with_capacity(classes)).collect();
    for channel in buf.chunks_exact_mut(voxels) {
        for (item, part) in items.iter_mut().zip(channel.chunks_mut(CHUNK)) {
            item.push(part);
        }
    }
    items
}

fn add_vectors(mut a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    a
}

/// A zero-filled buffer, refused with an error instead of aborting when memory is short.
fn zeroed<T: Clone + Default>(len: usize) -> Result<Vec<T>, UncertaintyError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| UncertaintyError::OutOfMemory { bytes: len as u128 * std::mem::size_of::<T>() as u128 })?;
    v.resize(len, T::default());
    Ok(v)
}
