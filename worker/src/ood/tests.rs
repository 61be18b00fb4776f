//! Hand-computed figures on tiny volumes, and the refusals.

use imaging::{Affine, SourceMeta, Volume};

use super::stats::{Bins, image_stats};
use super::*;

fn vol<T>(dims: [usize; 3], data: Vec<T>) -> Volume<T> {
    let meta = SourceMeta { source: "tiny".into(), ..Default::default() };
    Volume::new(dims, data, Affine::identity(), meta).expect("consistent shape")
}

#[test]
fn stats_of_a_tiny_volume_match_hand_values() {
    // Two rows of 4 along i; the last voxel is outside the mask.
    let v = vol([4, 2, 1], vec![0.0, 1.0, 2.0, 9.0, 0.0, 0.0, 1.0, 1.0]);
    let m = vol([4, 2, 1], vec![1, 1, 1, 0, 1, 1, 1, 1]);
    let s = image_stats(&v, &m, Bins { lo: 0.0, hi: 2.0, count: 2 }).expect("valid");
    // Values 0,1,2 | 0,0,1,1: bin [0,1) holds 0,0,0 → 3; [1,2] holds 1,2,1,1 → 4 (2 clamps to the last bin).
    assert_eq!(s.histogram, [3.0 / 7.0, 4.0 / 7.0]);
    // Identity affine: 1 mm³ voxels, 7 of them in the mask.
    assert_eq!(s.foreground_volume_ml, 7.0 / 1000.0);
    // Adjacent pairs: (0,1),(1,2) | (0,0),(0,1),(1,1): squared diffs 1,1,0,1,0 → δ² = 3/5.
    // Mean 5/7, E[x²] = 7/7 = 1, s² = 1 − 25/49 = 24/49.
    let expected = (0.6f64 / (2.0 * 24.0 / 49.0)).sqrt();
    assert!((s.noise_ratio.expect("defined") - expected).abs() < 1e-12);
}

#[test]
fn constant_foreground_has_no_noise_ratio_and_still_a_score() {
    let bins = FitOptions::new(-1.0, 1.0, 4);
    let ramp = vol([4, 1, 1], vec![-0.9f32, -0.3, 0.3, 0.9]);
    let all = vol([4, 1, 1], vec![1u8; 4]);
    let r = OodReference::fit(&[(&ramp, &all)], &bins).expect("fits");
    assert_eq!(r.histogram.probabilities, [0.25; 4]);
    let flat = vol([4, 1, 1], vec![0.5f32; 4]);
    let a = assess(&flat, &all, &r).expect("assessed");
    assert_eq!(a.signals[2].value, None);
    // All mass in bin 3 ((0.5 + 1) / 2 · 4) vs uniform, by hand:
    // m = (1/8, 1/8, 5/8, 1/8); KL(p‖m) = log2(8/5); KL(q‖m) = ¾·log2(2) + ¼·log2(2/5).
    let js = 0.5 * (1.6f64.log2() + 0.75 + 0.25 * 0.4f64.log2());
    assert!((a.score - js.sqrt() / 0.05).abs() < 1e-9, "{a:?}");
}

#[test]
fn refusals_are_typed() {
    let v = vol([2, 1, 1], vec![1.0f32, 2.0]);
    let m = vol([1, 2, 1], vec![1u8, 1]);
    let opts = FitOptions::new(0.0, 3.0, 3);
    assert!(matches!(OodReference::fit(&[(&v, &m)], &opts), Err(OodError::ShapeMismatch { .. })));
    let empty = vol([2, 1, 1], vec![0u8, 0]);
    assert_eq!(OodReference::fit(&[(&v, &empty)], &opts), Err(OodError::EmptyForeground("tiny".into())));
    assert_eq!(OodReference::fit(&[], &opts), Err(OodError::NoTrainingVolumes));
    let nan = vol([2, 1, 1], vec![f32::NAN, f32::NAN]);
    let ones = vol([2, 1, 1], vec![1u8, 1]);
    assert!(OodReference::fit(&[(&nan, &ones)], &opts).is_err());
    for bad in [FitOptions::new(1.0, 1.0, 3), FitOptions::new(0.0, f64::NAN, 3), FitOptions::new(0.0, 1.0, 0)] {
        assert!(matches!(OodReference::fit(&[(&v, &ones)], &bad), Err(OodError::InvalidReference(_))));
    }
    let mut r = OodReference::fit(&[(&v, &ones)], &opts).expect("fits");
    r.histogram.probabilities[0] += 0.5;
    let e = assess(&v, &ones, &r).unwrap_err();
    assert!(e.to_string().starts_with("ood reference: histogram probabilities sum to 1.5"), "{e}");
    let mut r = OodReference::fit(&[(&v, &ones)], &opts).expect("fits");
    r.noise_ratio.spread = 0.0;
    assert!(matches!(assess(&v, &ones, &r), Err(OodError::InvalidReference(_))));
}

#[test]
fn reference_round_trips_through_toml_and_refuses_unknown_keys() {
    let v = vol([3, 1, 1], vec![0.0f32, 1.0, 3.0]);
    let ones = vol([3, 1, 1], vec![1u8; 3]);
    let r = OodReference::fit(&[(&v, &ones)], &FitOptions::new(0.0, 3.0, 3)).expect("fits");
    let text = toml::to_string(&r).expect("serializes");
    assert_eq!(toml::from_str::<OodReference>(&text).expect("parses"), r);
    assert!(toml::from_str::<OodReference>(&format!("{text}\nextra = 1")).is_err());
}

proptest::proptest! {
    /// Any intensities (NaN and infinities included) and any mask: an error or a
    /// score that is ≥ 0 and the largest defined distance, never a panic.
    #[test]
    fn assess_never_panics_and_the_score_is_the_largest_distance(
        data in proptest::collection::vec(proptest::prelude::any::<f32>(), 24),
        mask in proptest::collection::vec(0u8..3, 24),
    ) {
        let ramp = vol([4, 3, 2], (0..24).map(|i| i as f32 / 8.0 - 1.5).collect());
        let all = vol([4, 3, 2], vec![1u8; 24]);
        let r = OodReference::fit(&[(&ramp, &all)], &FitOptions::new(-2.0, 2.0, 8)).expect("fits");
        if let Ok(a) = assess(&vol([4, 3, 2], data), &vol([4, 3, 2], mask), &r) {
            let largest = a.signals.iter().filter_map(|s| s.distance).fold(0.0, f64::max);
            proptest::prop_assert!(a.score >= 0.0 && a.score == largest, "{:?}", a);
        }
    }
}

#[test]
fn padding_the_field_of_view_does_not_move_the_score() {
    // The same 4×3×2 "head" alone and inside a grid padded with zeros on every side.
    let head: Vec<f32> = (0..24).map(|i| (i % 7) as f32 / 7.0).collect();
    let all = vol([4, 3, 2], vec![1u8; 24]);
    let reference =
        OodReference::fit(&[(&vol([4, 3, 2], head.clone()), &all)], &FitOptions::new(0.0, 1.0, 4)).expect("fits");
    let dims = [10, 9, 8];
    let mut padded = vec![0.0f32; 720];
    let mut mask = vec![0u8; 720];
    for k in 0..2 {
        for j in 0..3 {
            for i in 0..4 {
                let at = (i + 3) + 10 * ((j + 3) + 9 * (k + 3));
                padded[at] = head[i + 4 * (j + 3 * k)];
                mask[at] = 1;
            }
        }
    }
    let alone = assess(&vol([4, 3, 2], head), &all, &reference).expect("assessed");
    let inside = assess(&vol(dims, padded), &vol(dims, mask), &reference).expect("assessed");
    assert_eq!(alone, inside);
    assert_eq!(alone.signals[1].name, "foreground_volume_ml");
    assert_eq!(alone.signals[1].value, Some(24.0 / 1000.0));
}
