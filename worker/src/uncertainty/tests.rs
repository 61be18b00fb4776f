//! Unit tests of the accumulator: closed forms, bad input, a naive per-voxel
//! reference across chunk boundaries, the f32-sum precision the docs quote,
//! and a property test of the invariants.

use proptest::prelude::*;

use super::*;

const LN3: f64 = 1.098_612_288_668_109_8;

/// Channel-major buffer from voxel-major vectors.
fn channel_major(voxels: &[Vec<f32>]) -> Vec<f32> {
    let c = voxels.first().map_or(0, Vec::len);
    (0..c).flat_map(|k| voxels.iter().map(move |v| v[k])).collect()
}

fn run(classes: usize, voxels: usize, passes: &[Vec<f32>]) -> UncertaintyMaps {
    let mut acc = Accumulator::new(classes, voxels, 0.001).expect("valid shape");
    for p in passes {
        acc.add_pass(p).expect("valid pass");
    }
    acc.finish().expect("at least one pass")
}

#[test]
fn uniform_passes_have_entropy_ln_c_and_no_information() {
    let uniform = vec![1.0f32 / 3.0; 3 * 4];
    let m = run(3, 4, &[uniform.clone(), uniform.clone(), uniform]);
    for v in 0..4 {
        assert!((f64::from(m.predictive_entropy[v]) - LN3).abs() < 1e-6, "{}", m.predictive_entropy[v]);
        assert!((f64::from(m.expected_entropy[v]) - LN3).abs() < 1e-6);
        assert!(m.mutual_information[v] < 1e-6);
        assert_eq!(m.labels[v], 0, "a three-way tie goes to the first class, as numpy.argmax");
    }
}

#[test]
fn identical_passes_agree_perfectly() {
    let pass = channel_major(&[vec![0.7, 0.2, 0.1], vec![0.1, 0.3, 0.6], vec![0.2, 0.5, 0.3], vec![0.05, 0.9, 0.05]]);
    let m = run(3, 4, &vec![pass; 5]);
    assert!(m.mutual_information.iter().all(|&i| i < 1e-6), "{:?}", m.mutual_information);
    assert_eq!(m.labels, vec![0, 2, 1, 1]);
    let s = &m.report.structures;
    assert_eq!(s.len(), 3);
    for x in s {
        assert_eq!((x.pairwise_dice, x.pairwise_iou, x.all_pass_iou), (Some(1.0), Some(1.0), Some(1.0)));
        assert_eq!(x.pass_volume_cv, Some(0.0));
    }
    assert_eq!(s[1].voxels, 2);
    assert!((s[1].volume_ml - 0.002).abs() < 1e-15);
    assert_eq!(m.report.study.score, Some(0.0));
}

#[test]
fn one_hot_disagreeing_passes_are_all_epistemic() {
    // Voxel 0: passes say 0, 1, 0, 1; voxel 1: all say 2.
    let a = channel_major(&[vec![1.0, 0.0, 0.0], vec![0.0, 0.0, 1.0]]);
    let b = channel_major(&[vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]]);
    let m = run(3, 2, &[a.clone(), b.clone(), a, b]);
    assert_eq!(m.expected_entropy, vec![0.0, 0.0]);
    let ln2 = std::f32::consts::LN_2;
    assert!((m.predictive_entropy[0] - ln2).abs() < 1e-7 && m.predictive_entropy[1] == 0.0);
    assert_eq!(m.mutual_information, m.predictive_entropy);
    let s = &m.report.structures;
    // Class 0: n = 2 on voxel 0 → Σ n(n−1) = 2, (P−1) Σ n = 6.
    assert_eq!(s[0].pairwise_dice, Some(2.0 / 6.0));
    assert_eq!(s[0].all_pass_iou, Some(0.0));
    assert_eq!(s[2].pairwise_dice, Some(1.0));
    // Foreground (classes 1, 2): Σ n(n−1) = 2 + 12, (P−1) Σ n = 3·(2 + 4).
    assert_eq!(m.report.study.score, Some(1.0 - 14.0 / 18.0));
}

#[test]
fn bad_input_is_refused_and_leaves_the_state_unchanged() {
    assert_eq!(Accumulator::new(0, 4, 1.0).unwrap_err(), UncertaintyError::ZeroClasses);
    assert_eq!(Accumulator::new(3, 0, 1.0).unwrap_err(), UncertaintyError::ZeroVoxels);
    assert_eq!(Accumulator::new(257, 4, 1.0).unwrap_err(), UncertaintyError::TooManyClasses { classes: 257 });
    assert!(matches!(Accumulator::new(3, 4, f64::NAN), Err(UncertaintyError::VoxelVolume { .. })));
    assert!(matches!(Accumulator::new(3, 4, 0.0), Err(UncertaintyError::VoxelVolume { .. })));
    assert!(matches!(Accumulator::new(200, usize::MAX / 2, 1.0), Err(UncertaintyError::TooLarge { .. })));
    assert_eq!(Accumulator::new(2, 3, 1.0).expect("valid").finish().unwrap_err(), UncertaintyError::NoPasses);

    let good = channel_major(&[vec![0.9, 0.1], vec![0.4, 0.6], vec![0.5, 0.5]]);
    let mut acc = Accumulator::new(2, 3, 0.001).expect("valid");
    acc.add_pass(&good).expect("valid pass");
    let e = acc.add_pass(&good[..5]).unwrap_err();
    assert_eq!(e.to_string(), "pass 1: buffer holds 5 values, expected 6 (2 classes × 3 voxels)");
    let mut nan = good.clone();
    nan[4] = f32::NAN; // class 1, voxel 1
    assert_eq!(acc.add_pass(&nan).unwrap_err().to_string(), "pass 1: voxel 1 class 1: probability NaN is not finite");
    let mut logits = good.clone();
    logits[2] = 0.7; // voxel 2 sums to 1.2
    let e = acc.add_pass(&logits).unwrap_err();
    assert!(matches!(e, UncertaintyError::NotNormalized { pass: 1, voxel: 2, .. }), "{e}");
    let mut negative = good.clone();
    negative[0] = -0.5;
    assert!(matches!(acc.add_pass(&negative), Err(UncertaintyError::OutOfRange { voxel: 0, class: 0, .. })));
    assert_eq!(acc.passes(), 1);

    let other = channel_major(&[vec![0.2, 0.8], vec![0.4, 0.6], vec![0.5, 0.5]]);
    acc.add_pass(&other).expect("valid pass");
    assert_eq!(acc.finish().expect("two passes"), run(2, 3, &[good, other]));
}

/// Deterministic pseudo-random probability vectors (xorshift), no dependency.
fn random_passes(classes: usize, voxels: usize, passes: usize, mut seed: u64) -> Vec<Vec<f32>> {
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let base: Vec<Vec<f64>> = (0..voxels).map(|_| (0..classes).map(|_| next().powi(3)).collect()).collect();
    (0..passes)
        .map(|_| {
            let vox: Vec<Vec<f32>> = base
                .iter()
                .map(|b| {
                    let w: Vec<f64> = b.iter().map(|x| x + 0.3 * next().powi(2)).collect();
                    let s: f64 = w.iter().sum();
                    w.iter().map(|x| (x / s) as f32).collect()
                })
                .collect();
            channel_major(&vox)
        })
        .collect()
}

/// The per-voxel definitions in f64 with every pass kept, and pairwise Dice
/// over explicit pass pairs.
struct Naive {
    mean: Vec<Vec<f64>>,
    predictive: Vec<f64>,
    expected: Vec<f64>,
    weighted_dice: Vec<Option<f64>>,
}

// The reference spells the index formulas out on purpose.
#[allow(clippy::needless_range_loop)]
fn naive(classes: usize, voxels: usize, passes: &[Vec<f32>]) -> Naive {
    let p = passes.len();
    let norm = |t: usize, v: usize| -> Vec<f64> {
        let q: Vec<f64> = (0..classes).map(|c| f64::from(passes[t][c * voxels + v])).collect();
        let s: f64 = q.iter().sum();
        q.iter().map(|x| x / s).collect()
    };
    let h = |q: &[f64]| -> f64 { -q.iter().filter(|&&x| x > 0.0).map(|x| x * x.ln()).sum::<f64>() };
    let am = |q: &[f64]| -> usize { (0..q.len()).fold(0, |b, i| if q[i] > q[b] { i } else { b }) };
    let mut mean = vec![vec![0.0; classes]; voxels];
    let mut expected = vec![0.0; voxels];
    let mut labels = vec![vec![0usize; voxels]; p];
    for t in 0..p {
        for v in 0..voxels {
            let q = norm(t, v);
            expected[v] += h(&q) / p as f64;
            labels[t][v] = am(&q);
            for c in 0..classes {
                mean[v][c] += q[c] / p as f64;
            }
        }
    }
    let predictive = mean.iter().map(|m| h(m)).collect();
    let weighted_dice = (0..classes)
        .map(|c| {
            let (mut num, mut den) = (0.0, 0.0);
            for i in 0..p {
                for j in i + 1..p {
                    let a = labels[i].iter().filter(|&&l| l == c).count() as f64;
                    let b = labels[j].iter().filter(|&&l| l == c).count() as f64;
                    let both = (0..voxels).filter(|&v| labels[i][v] == c && labels[j][v] == c).count() as f64;
                    num += 2.0 * both;
                    den += a + b;
                }
            }
            (den > 0.0).then(|| num / den)
        })
        .collect();
    Naive { mean, predictive, expected, weighted_dice }
}

#[test]
fn matches_the_per_voxel_definitions_across_chunk_boundaries() {
    let (classes, voxels) = (4, 2 * 8192 + 1000);
    let passes = random_passes(classes, voxels, 6, 0x9e37_79b9_7f4a_7c15);
    let m = run(classes, voxels, &passes);
    let r = naive(classes, voxels, &passes);
    let mut worst = 0.0f64;
    for v in 0..voxels {
        for c in 0..classes {
            worst = worst.max((f64::from(m.mean_probs[c * voxels + v]) - r.mean[v][c]).abs());
        }
        worst = worst.max((f64::from(m.predictive_entropy[v]) - r.predictive[v]).abs());
        worst = worst.max((f64::from(m.expected_entropy[v]) - r.expected[v]).abs());
        let mi = (r.predictive[v] - r.expected[v]).max(0.0);
        worst = worst.max((f64::from(m.mutual_information[v]) - mi).abs());
    }
    assert!(worst < 1e-6, "max abs difference {worst:e}");
    for (c, s) in m.report.structures.iter().enumerate() {
        let (a, b) = (s.pairwise_dice.expect("labelled"), r.weighted_dice[c].expect("labelled"));
        assert!((a - b).abs() < 1e-12, "class {c}: pooled {a} vs explicit pairs {b}");
    }
}

/// The figure quoted in the module docs: f32 running sums of 400 passes stay
/// within a few 1e-6 of f64.
#[test]
fn f32_running_sums_are_precise_enough_for_400_passes() {
    let (classes, voxels, p) = (3, 2000, 400);
    let passes = random_passes(classes, voxels, p, 42);
    let m = run(classes, voxels, &passes);
    let r = naive(classes, voxels, &passes);
    let worst = (0..voxels)
        .flat_map(|v| (0..classes).map(move |c| (v, c)))
        .map(|(v, c)| (f64::from(m.mean_probs[c * voxels + v]) - r.mean[v][c]).abs())
        .fold(0.0, f64::max);
    assert!(worst < 5e-6, "max abs error of the mean {worst:e}");
}

fn probability_vector(classes: usize) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(prop_oneof![Just(0.0f64), 0.0f64..1.0], classes).prop_map(|w| {
        let s: f64 = w.iter().sum();
        if s <= 0.0 {
            let mut one_hot = vec![0.0; w.len()];
            one_hot[0] = 1.0;
            return one_hot;
        }
        w.iter().map(|x| (x / s) as f32).collect()
    })
}

fn study() -> impl Strategy<Value = (usize, usize, Vec<Vec<f32>>)> {
    (1usize..5, 1usize..40, 1usize..7).prop_flat_map(|(classes, voxels, passes)| {
        let pass = proptest::collection::vec(probability_vector(classes), voxels).prop_map(|v| channel_major(&v));
        (Just(classes), Just(voxels), proptest::collection::vec(pass, passes))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn invariants_hold_and_order_does_not_matter((classes, voxels, passes) in study()) {
        let m = run(classes, voxels, &passes);
        let ln_c = (classes as f32).ln();
        for v in 0..voxels {
            let (h, e, i) = (m.predictive_entropy[v], m.expected_entropy[v], m.mutual_information[v]);
            prop_assert!((0.0..=ln_c + 1e-6).contains(&h), "predictive {h}");
            prop_assert!((0.0..=ln_c + 1e-6).contains(&e), "expected {e}");
            prop_assert!(i >= 0.0 && i <= h + 1e-6, "information {i} vs predictive {h}");
        }
        for s in &m.report.structures {
            for x in [s.pairwise_dice, s.pairwise_iou, s.all_pass_iou].into_iter().flatten() {
                prop_assert!((0.0..=1.0).contains(&x), "{s:?}");
            }
            if let (Some(d), Some(j)) = (s.pairwise_dice, s.pairwise_iou) {
                prop_assert!(j <= d + 1e-12, "IoU {j} above Dice {d}");
            }
        }
        if let Some(score) = m.report.study.score {
            prop_assert!((0.0..=1.0).contains(&score));
        }

        let mut reversed = passes.clone();
        reversed.reverse();
        let r = run(classes, voxels, &reversed);
        for (a, b) in m.mean_probs.iter().zip(&r.mean_probs) {
            prop_assert!((a - b).abs() < 1e-6);
        }
        for (a, b) in [(&m.predictive_entropy, &r.predictive_entropy), (&m.expected_entropy, &r.expected_entropy),
                       (&m.mutual_information, &r.mutual_information)] {
            for (x, y) in a.iter().zip(b.iter()) {
                prop_assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            }
        }
        for (a, b) in m.report.structures.iter().zip(&r.report.structures) {
            prop_assert_eq!(a.pairwise_dice, b.pairwise_dice);
            prop_assert_eq!(a.all_pass_iou, b.all_pass_iou);
            prop_assert!(a.pass_volume_cv.zip(b.pass_volume_cv).is_none_or(|(x, y)| (x - y).abs() < 1e-12));
        }
    }

    #[test]
    fn arbitrary_buffers_never_panic(values in proptest::collection::vec(proptest::num::f32::ANY, 0..40),
                                     classes in 0usize..5, voxels in 0usize..10) {
        if let Ok(mut acc) = Accumulator::new(classes, voxels, 1.0) {
            let accepted = acc.add_pass(&values).is_ok();
            prop_assert_eq!(acc.passes(), usize::from(accepted));
            let _ = acc.finish();
        }
    }
}
