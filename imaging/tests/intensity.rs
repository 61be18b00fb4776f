//! `imaging::stats`, `imaging::mask` and `imaging::harmonize` against numpy,
//! scipy.ndimage and intensity-normalization 3.0.1 on the MNI152 T1 and derived
//! volumes (generator: scripts/testdata/intensity.py).

mod common;

use imaging::Volume;
use imaging::harmonize::{self, Contrast, HarmonizeConfig, HarmonizeMethod, NyulParams, NyulScale, whitestripe};
use imaging::mask::foreground;
use imaging::stats::{Summary, finite_values, summarize, summarize_masked};
use serde_json::Value;

fn raw(name: &str) -> Volume<f32> {
    common::load_raw_f32(&common::testdata(&format!("intensity/{name}.json")).with_extension(""))
}

fn raw_mask(name: &str) -> Volume<u8> {
    raw(name).map(|&v| u8::from(v != 0.0))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(f).collect()
}

/// Distance in units in the last place. serde_json without its `float_roundtrip`
/// feature may parse a fixture's shortest-repr float one ulp off, so "exact"
/// comparisons allow one ulp.
fn ulps(a: f64, b: f64) -> u64 {
    if a == b {
        0
    } else if a.is_sign_negative() != b.is_sign_negative() {
        u64::MAX
    } else {
        a.to_bits().abs_diff(b.to_bits())
    }
}

fn assert_exact(what: &str, got: f64, want: f64) {
    assert!(ulps(got, want) <= 1, "{what}: {got} vs {want}");
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn check_summary(what: &str, got: &Summary, want: &Value) {
    assert_eq!(got.count as u64, want["count"].as_u64().expect("count"), "{what}: count");
    assert_eq!(got.nan as u64, want["nan"].as_u64().expect("nan"), "{what}: nan");
    assert_eq!(got.pos_inf as u64, want["posinf"].as_u64().expect("posinf"), "{what}: +inf");
    assert_eq!(got.neg_inf as u64, want["neginf"].as_u64().expect("neginf"), "{what}: -inf");
    assert_exact(&format!("{what}: min"), got.min, f(&want["min"]));
    assert_exact(&format!("{what}: max"), got.max, f(&want["max"]));
    // numpy sums pairwise, rayon in chunks: equal to rounding.
    assert!(rel(got.mean, f(&want["mean"])) < 1e-12, "{what}: mean {} vs {}", got.mean, want["mean"]);
    assert!(rel(got.std, f(&want["std"])) < 1e-12, "{what}: std {} vs {}", got.std, want["std"]);
    // Same order statistics and numpy's own interpolation formula: bit-identical.
    for (p, w) in got.percentiles.iter().zip(floats(&want["percentiles"])) {
        assert_exact(&format!("{what}: percentile {}", p.0), p.1, w);
    }
    assert_eq!(got.percentiles.len(), want["percentiles"].as_array().map_or(0, Vec::len), "{what}: percentile count");
}

#[test]
fn stats_match_numpy() {
    let refs = common::load_json("intensity/stats.json");
    let ps = floats(&refs["percentiles"]);
    let t1 = raw("mni_t1");
    let noisy = raw("mni_t1_noisy");
    let brain = raw_mask("brain_mask");
    check_summary("mni_t1", &summarize(&t1, &ps).expect("summary"), &refs["mni_t1"]);
    check_summary("mni_t1_noisy", &summarize(&noisy, &ps).expect("summary"), &refs["mni_t1_noisy"]);
    let s = summarize_masked(&noisy, &brain, &ps).expect("summary");
    check_summary("mni_t1_noisy in brain", &s, &refs["mni_t1_noisy_in_brain"]);

    let nf = &refs["nonfinite"];
    let mut broken = t1.clone();
    for (key, value) in [("nan", f32::NAN), ("posinf", f32::INFINITY), ("neginf", f32::NEG_INFINITY)] {
        for i in nf[key].as_array().expect("indices") {
            broken.data_mut()[i.as_u64().expect("index") as usize] = value;
        }
    }
    check_summary("mni_t1 with NaN/Inf", &summarize(&broken, &ps).expect("summary"), &nf["summary"]);
    check_summary("mni_t1 with NaN/Inf in brain", &summarize_masked(&broken, &brain, &ps).expect("s"), &nf["in_brain"]);
}

#[test]
fn foreground_mask_matches_the_scipy_pipeline() {
    let refs = common::load_json("intensity/mask.json");
    for name in ["mni_t1", "mni_t1_noisy"] {
        let want = &refs[name];
        let vol = raw(name);
        let scipy = raw_mask(&format!("{name}_scipy_mask"));
        // The stored scipy mask is the one this fixture describes.
        let dims = scipy.dims();
        let mut marg = [vec![0u64; dims[0]], vec![0u64; dims[1]], vec![0u64; dims[2]]];
        for (idx, &m) in scipy.data().iter().enumerate() {
            let (i, j, k) = (idx % dims[0], (idx / dims[0]) % dims[1], idx / (dims[0] * dims[1]));
            for (axis, at) in [(0, i), (1, j), (2, k)] {
                marg[axis][at] += u64::from(m);
            }
        }
        for (axis, m) in marg.iter().enumerate() {
            let w: Vec<u64> =
                want["marginals"][axis].as_array().expect("marginal").iter().filter_map(Value::as_u64).collect();
            assert_eq!(m, &w, "{name}: stored scipy mask marginals, axis {axis}");
        }

        let fg = foreground(&vol).expect("foreground");
        assert_exact(&format!("{name}: otsu threshold"), fg.threshold, f(&want["otsu_threshold"]));
        let ours: u64 = fg.mask.data().iter().map(|&v| u64::from(v)).sum();
        let theirs: u64 = scipy.data().iter().map(|&v| u64::from(v)).sum();
        let both: u64 = fg.mask.data().iter().zip(scipy.data()).map(|(&a, &b)| u64::from(a & b)).sum();
        let dice = 2.0 * both as f64 / (ours + theirs) as f64;
        eprintln!("{name}: otsu {} voxels {ours} (scipy {theirs}) dice {dice}", fg.threshold);
        assert_eq!(theirs, want["mask_voxels"].as_u64().expect("count"), "{name}: fixture count");
        assert!(dice >= 0.999, "{name}: dice {dice}");
        assert_eq!(ours, theirs, "{name}: mask voxel count");
        assert!(fg.mask.data() == scipy.data(), "{name}: masks differ voxelwise");
    }
}

/// Values at the fixture's sample indices, compared within 1e-3 of the
/// reference's sampled output range; returns the worst error as that fraction.
fn check_values(what: &str, got: &Volume<f32>, indices: &[usize], want: &Value) -> f64 {
    let want = floats(want);
    let (lo, hi) = want.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let range = (hi - lo).max(1e-12);
    let worst =
        indices.iter().zip(&want).map(|(&i, &w)| (f64::from(got.data()[i]) - w).abs() / range).fold(0.0f64, f64::max);
    eprintln!("{what}: worst |ours - reference| / range = {worst:.2e}");
    assert!(worst < 1e-3, "{what}: worst relative error {worst}");
    worst
}

#[test]
fn harmonization_matches_intensity_normalization() {
    let refs = common::load_json("intensity/harmonize.json");
    let indices: Vec<usize> =
        refs["indices"].as_array().expect("indices").iter().filter_map(Value::as_u64).map(|i| i as usize).collect();
    let brain = raw_mask("brain_mask");
    assert_eq!(brain.data().iter().map(|&v| v as u64).sum::<u64>(), refs["mask_voxels"].as_u64().expect("count"));
    for name in ["mni_t1", "mni_t1_noisy"] {
        let want = &refs[name];
        let vol = raw(name);
        let values = finite_values(vol.data(), Some(brain.data()));

        let z = harmonize::zscore::fit(&values).expect("z-score fits");
        assert!(rel(z.mean, f(&want["zscore"]["mean"])) < 1e-9, "{name}: z mean {}", z.mean);
        assert!(rel(z.std, f(&want["zscore"]["std"])) < 1e-9, "{name}: z std {}", z.std);
        let out = harmonize::apply(&vol, &HarmonizeMethod::ZScore, Some(&brain)).expect("z-score");
        check_values(&format!("{name} zscore"), &out, &indices, &want["zscore"]["values"]);

        let p = harmonize::percentile::fit(&mut values.clone(), 0.5, 99.5).expect("percentiles");
        assert_exact(&format!("{name}: p0.5"), p.lower_value, f(&want["percentile"]["lower_value"]));
        assert_exact(&format!("{name}: p99.5"), p.upper_value, f(&want["percentile"]["upper_value"]));
        let method = HarmonizeMethod::Percentile { lower: 0.5, upper: 99.5 };
        let out = harmonize::apply(&vol, &method, Some(&brain)).expect("percentile");
        check_values(&format!("{name} percentile"), &out, &indices, &want["percentile"]["values"]);

        for (key, contrast) in [("whitestripe_t1", Contrast::T1), ("whitestripe_t2", Contrast::T2)] {
            let ws = whitestripe::fit(values.clone(), contrast, 0.05, name).expect("white stripe fits");
            let w = &want[key];
            eprintln!(
                "{name} {key}: mode {} stripe ({}, {}) voxels {}",
                ws.mode, ws.lower_value, ws.upper_value, ws.stripe_voxels
            );
            assert_eq!(ws.stripe_voxels as u64, w["stripe_voxels"].as_u64().expect("count"), "{name} {key}: stripe");
            assert!(rel(ws.mean, f(&w["mean"])) < 1e-9, "{name} {key}: mean {} vs {}", ws.mean, w["mean"]);
            assert!(rel(ws.std, f(&w["std"])) < 1e-9, "{name} {key}: std {} vs {}", ws.std, w["std"]);
            let out = harmonize::apply(&vol, &HarmonizeMethod::WhiteStripe { contrast, width: 0.05 }, Some(&brain))
                .expect("white stripe");
            check_values(&format!("{name} {key}"), &out, &indices, &w["values"]);
        }
    }
}

#[test]
fn nyul_fit_and_apply_match_intensity_normalization() {
    let refs = common::load_json("intensity/harmonize.json");
    let want = &refs["nyul"];
    let indices: Vec<usize> =
        refs["indices"].as_array().expect("indices").iter().filter_map(Value::as_u64).map(|i| i as usize).collect();
    let train: Vec<(Volume<f32>, Option<Volume<u8>>)> =
        (0..4).map(|i| (raw(&format!("nyul_{i}")), Some(raw_mask(&format!("nyul_{i}_mask"))))).collect();
    for ((_, m), w) in train.iter().zip(want["train_mask_voxels"].as_array().expect("counts")) {
        let count: u64 = m.as_ref().map_or(0, |m| m.data().iter().map(|&v| u64::from(v)).sum());
        assert_eq!(count, w.as_u64().expect("count"));
    }
    let scale = harmonize::nyul::fit(&train, &NyulParams::default()).expect("nyul fits");
    assert_eq!(scale.percentiles, floats(&want["percentiles"]));
    for (got, w) in scale.standard_scale.iter().zip(floats(&want["standard_scale"])) {
        assert!((got - w).abs() < 1e-9, "standard scale {got} vs {w}");
    }

    let dir = std::env::temp_dir().join(format!("intensity-nyul-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("scale.json");
    scale.save(&path).expect("saves");
    let method = HarmonizeMethod::Nyul { scale_file: path.clone() };
    let brain = raw_mask("brain_mask");
    for name in ["mni_t1", "mni_t1_noisy"] {
        let vol = raw(name);
        let mut values = finite_values(vol.data(), Some(brain.data()));
        let map = NyulScale::load(&path).expect("loads").mapping_for(&mut values, name).expect("landmarks");
        for (got, w) in map.landmarks().iter().zip(floats(&want["applied"][name]["landmarks"])) {
            assert_exact(&format!("{name}: landmark"), *got, w);
        }
        let out = harmonize::apply(&vol, &method, Some(&brain)).expect("nyul applies");
        check_values(&format!("{name} nyul"), &out, &indices, &want["applied"][name]["values"]);
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn example_config_deserializes_and_validates() {
    // config.json is config/harmonization.toml as Python's tomllib reads it.
    let cfg: HarmonizeConfig =
        serde_json::from_value(common::load_json("intensity/config.json")).expect("valid config");
    cfg.harmonize.validate().expect("valid parameters");
    assert_eq!(cfg.harmonize, HarmonizeMethod::WhiteStripe { contrast: Contrast::T1, width: 0.05 });
}
