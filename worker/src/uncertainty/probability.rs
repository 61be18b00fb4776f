//! One probability vector: the checks a pass or a member must pass, the
//! renormalization, entropy in nats and argmax. Shared by the voxelwise
//! accumulator and the classifier figures; knows nothing of voxels or passes.

/// How far a probability may lie outside `[0, 1]`, and a vector's sum from 1,
/// before it is refused. A float32 softmax sums to 1 within a few 1e-7 and
/// trilinear resampling of probability maps keeps the sum (convex weights), but a
/// half-precision softmax (fp16 models on GPU execution providers) is only good to
/// about `C × 2⁻¹¹`; 5e-3 admits that for up to ten classes while still refusing
/// logits, sigmoid outputs, a dropped channel or zero padding, which miss 1 by far
/// more. Accepted vectors are renormalized to sum to exactly 1.
pub const PROBABILITY_TOLERANCE: f32 = 5e-3;

/// What is wrong with one vector; the caller adds which pass/member and voxel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fault {
    NotFinite { class: usize, value: f32 },
    OutOfRange { class: usize, value: f32 },
    NotNormalized { sum: f64 },
}

/// Checks one probability of class `class`.
#[inline]
pub(crate) fn check_value(class: usize, value: f32) -> Result<(), Fault> {
    if !value.is_finite() {
        Err(Fault::NotFinite { class, value })
    } else if !(-PROBABILITY_TOLERANCE..=1.0 + PROBABILITY_TOLERANCE).contains(&value) {
        Err(Fault::OutOfRange { class, value })
    } else {
        Ok(())
    }
}

/// Checks a vector's sum.
#[inline]
pub(crate) fn check_sum(sum: f64) -> Result<(), Fault> {
    if (sum - 1.0).abs() <= f64::from(PROBABILITY_TOLERANCE) { Ok(()) } else { Err(Fault::NotNormalized { sum }) }
}

/// Sets small negative values to 0 and divides by the sum, as
/// `scipy.stats.entropy` normalizes `pk`. The vector must have passed
/// [`check_value`] and [`check_sum`], so the sum is at least `1 − tolerance`.
#[inline]
pub(crate) fn renormalize(q: &mut [f64]) {
    let mut sum = 0.0;
    for x in q.iter_mut() {
        *x = x.max(0.0);
        sum += *x;
    }
    if sum > 0.0 {
        let inv = 1.0 / sum;
        q.iter_mut().for_each(|x| *x *= inv);
    }
}

/// Checks `p`, copies it into `out` (same length) and renormalizes it there.
pub(crate) fn checked_copy(p: &[f32], out: &mut [f64]) -> Result<(), Fault> {
    let mut sum = 0.0;
    for (class, (o, &v)) in out.iter_mut().zip(p).enumerate() {
        check_value(class, v)?;
        *o = f64::from(v);
        sum += *o;
    }
    check_sum(sum)?;
    renormalize(out);
    Ok(())
}

/// `−Σ q ln q` in nats with `0 ln 0 = 0`, for a normalized `q`.
#[inline]
pub(crate) fn entropy(q: &[f64]) -> f64 {
    let s: f64 = q.iter().filter(|&&x| x > 0.0).map(|&x| x * x.ln()).sum();
    // Each term is ≤ 0 for x in (0, 1]; max(0) also turns −0 into +0.
    (-s).max(0.0)
}

/// Index of the largest value, the first one on a tie (as `numpy.argmax`).
#[inline]
pub(crate) fn argmax(q: &[f64]) -> usize {
    let mut best = 0;
    let mut best_value = f64::NEG_INFINITY;
    for (i, &x) in q.iter().enumerate() {
        if x > best_value {
            best = i;
            best_value = x;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_has_entropy_ln_c_and_one_hot_zero() {
        for c in 1..=8 {
            let q = vec![1.0 / c as f64; c];
            assert!((entropy(&q) - (c as f64).ln()).abs() < 1e-12);
        }
        assert_eq!(entropy(&[0.0, 1.0, 0.0]).to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn argmax_takes_the_first_of_equal_values() {
        assert_eq!(argmax(&[0.25, 0.5, 0.25, 0.5]), 1);
        assert_eq!(argmax(&[1.0]), 0);
    }

    #[test]
    fn checks_refuse_what_is_not_a_probability_vector() {
        let mut out = [0.0; 3];
        assert!(matches!(checked_copy(&[0.2, f32::NAN, 0.8], &mut out), Err(Fault::NotFinite { class: 1, .. })));
        assert_eq!(checked_copy(&[0.2, -0.1, 0.9], &mut out), Err(Fault::OutOfRange { class: 1, value: -0.1 }));
        assert!(matches!(checked_copy(&[2.0, -1.0, 0.0], &mut out), Err(Fault::OutOfRange { class: 0, .. })));
        assert!(matches!(checked_copy(&[0.5, 0.5, 0.5], &mut out), Err(Fault::NotNormalized { .. })));
        // Within tolerance: accepted and renormalized, the negative part set to 0.
        checked_copy(&[0.501, -0.001, 0.502], &mut out).expect("within tolerance");
        assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-15 && out[1] == 0.0, "{out:?}");
    }
}
