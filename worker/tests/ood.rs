//! `worker::ood` on a real brain: the MNI152 2009 T1 shipped with nilearn
//! (`.testdata/nifti/mni_t1.nii.gz`), foreground by `imaging::mask`, z-scored
//! by `imaging::harmonize`. A reference fitted on it must place it and mildly
//! degraded copies inside the training distribution, and a noise volume, a
//! constant volume, an unharmonized or shifted copy and a contrast-inverted copy
//! (T2-like) far outside. The bounds (1 and 3 spreads) are the meaning of the
//! score, not values read off this implementation.

mod common;

use imaging::Volume;
use imaging::harmonize::{self, HarmonizeMethod};
use imaging::mask::foreground_mask;
use imaging::nifti::{self, ReadOptions};
use worker::ood::{FitOptions, OodAssessment, OodReference, assess};

fn mni() -> Volume<f32> {
    nifti::read(&common::testdata("nifti/mni_t1.nii.gz"), &ReadOptions::default()).expect("reads the MNI T1")
}

/// Foreground and z-score, as the engine prepares a study.
fn prepare(raw: &Volume<f32>) -> (Volume<f32>, Volume<u8>) {
    let fg = foreground_mask(raw).expect("has a foreground");
    let z = harmonize::apply(raw, &HarmonizeMethod::ZScore, Some(&fg)).expect("harmonizes");
    (z, fg)
}

/// Deterministic standard normal draws (xorshift64* and Box–Muller).
fn gaussian(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.max(1);
    let mut uniform = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n).map(|_| (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos()).collect()
}

fn foreground_mean(raw: &Volume<f32>, fg: &Volume<u8>) -> f64 {
    let (sum, n) = raw
        .data()
        .iter()
        .zip(fg.data())
        .filter(|(_, m)| **m != 0)
        .fold((0.0, 0.0), |(s, n), (v, _)| (s + f64::from(*v), n + 1.0));
    sum / n
}

fn fitted() -> (Volume<f32>, Volume<f32>, Volume<u8>, OodReference) {
    let raw = mni();
    let (z, fg) = prepare(&raw);
    let r = OodReference::fit(&[(&z, &fg)], &FitOptions::new(-5.0, 5.0, 40)).expect("fits");
    (raw, z, fg, r)
}

fn show(name: &str, a: &OodAssessment) {
    let parts: Vec<String> =
        a.signals.iter().map(|s| format!("{}={:?} (d={:?})", s.name, s.value, s.distance)).collect();
    eprintln!("{name}: score {:.3}; {}", a.score, parts.join(", "));
}

#[test]
fn the_training_scan_and_mild_degradations_are_in_distribution() {
    let (raw, z, fg, r) = fitted();
    let own = assess(&z, &fg, &r).expect("assessed");
    show("itself", &own);
    assert!(own.score < 1e-9, "{own:?}");

    // 1 % Gaussian noise (of the foreground mean) and a 10 % global gain: what a
    // rescan on another scanner might do after harmonization.
    let sigma = 0.01 * foreground_mean(&raw, &fg);
    let noisy: Vec<f32> = raw
        .data()
        .iter()
        .zip(gaussian(raw.len(), 7))
        .map(|(&v, g)| ((f64::from(v) + sigma * g) * 1.1) as f32)
        .collect();
    let (zn, fgn) = prepare(&raw.with_data(noisy).expect("same shape"));
    let a = assess(&zn, &fgn, &r).expect("assessed");
    show("1% noise, gain 1.1", &a);
    assert!(a.score < 1.0, "{a:?}");
}

#[test]
fn out_of_distribution_volumes_score_high() {
    let (raw, z, fg, r) = fitted();
    let mut cases: Vec<(&str, OodAssessment)> = Vec::new();

    // Pure noise on the same grid, masked and harmonized like a study.
    let noise: Vec<f32> = gaussian(raw.len(), 11).iter().map(|g| (100.0 + 20.0 * g) as f32).collect();
    let (zn, fgn) = prepare(&raw.with_data(noise).expect("same shape"));
    cases.push(("noise", assess(&zn, &fgn, &r).expect("assessed")));

    // A constant volume has no Otsu foreground; treat it all as foreground.
    let constant = raw.with_data(vec![0.0f32; raw.len()]).expect("same shape");
    let all = raw.with_data(vec![1u8; raw.len()]).expect("same shape");
    cases.push(("constant", assess(&constant, &all, &r).expect("assessed")));

    // Harmonization skipped: raw intensities against a z-score reference.
    cases.push(("unharmonized", assess(&raw, &fg, &r).expect("assessed")));

    // Harmonized intensities shifted by 2 standard deviations.
    let shifted = z.map(|v| v + 2.0);
    cases.push(("shifted by 2 sd", assess(&shifted, &fg, &r).expect("assessed")));

    // Contrast inverted inside the head (T2-like), which a z-score cannot undo.
    let top = raw.data().iter().copied().fold(f32::MIN, f32::max);
    let inverted = raw.map(|&v| if v > 0.0 { top - v } else { 0.0 });
    let zi = harmonize::apply(&inverted, &HarmonizeMethod::ZScore, Some(&fg)).expect("harmonizes");
    cases.push(("contrast inverted", assess(&zi, &fg, &r).expect("assessed")));

    for (name, a) in &cases {
        show(name, a);
        assert!(a.score > 3.0, "{name}: {a:?}");
    }
}
