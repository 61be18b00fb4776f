//! `worker::uncertainty` against numpy/scipy (`scipy.stats.entropy`, argmax,
//! volumes, Dice and IoU over every explicit pass pair) on the probability maps
//! stored in the fixture (generator: scripts/testdata/uncertainty.py).

use std::path::Path;

use serde_json::Value;
use worker::uncertainty::{Accumulator, ClassificationUncertainty, StructureUncertainty, UncertaintyMaps};

fn reference() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/uncertainty/reference.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(f).collect()
}

fn uint(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol, "{what}: {got} vs scipy {want} (|Δ| = {:e})", (got - want).abs());
}

/// `null` in the fixture must be `None` here and a number a close `Some`.
fn close_opt(what: &str, got: Option<f64>, want: &Value, tol: f64) {
    match (got, want.is_null()) {
        (None, true) => {}
        (Some(g), false) => close(what, g, f(want), tol),
        _ => panic!("{what}: {got:?} vs reference {want}"),
    }
}

fn max_abs_diff(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(&g, &w)| (f64::from(g) - w).abs()).fold(0.0, f64::max)
}

fn accumulate(case: &Value, order: &[usize]) -> UncertaintyMaps {
    let classes = uint(&case["classes"]) as usize;
    let voxels = uint(&case["voxels"]) as usize;
    let passes: Vec<Vec<f32>> = case["passes"]
        .as_array()
        .expect("passes")
        .iter()
        .map(|p| floats(p).into_iter().map(|x| x as f32).collect())
        .collect();
    let mut acc = Accumulator::new(classes, voxels, f(&case["voxel_volume_ml"])).expect("valid shape");
    for &t in order {
        acc.add_pass(&passes[t]).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
    }
    acc.finish().expect("passes were added")
}

fn check_structure(name: &str, got: &StructureUncertainty, want: &Value, tol: f64) {
    let what = |m: &str| format!("{name} label {}: {m}", got.label);
    assert_eq!(u64::from(got.label), uint(&want["label"]));
    assert_eq!(got.voxels, uint(&want["voxels"]), "{}", what("final-mask voxels"));
    close(&what("volume_ml"), got.volume_ml, f(&want["volume_ml"]), 1e-9);
    close(&what("pass_volume_ml_mean"), got.pass_volume_ml_mean, f(&want["pass_volume_ml_mean"]), 1e-9);
    close_opt(&what("pass_volume_cv"), got.pass_volume_cv, &want["pass_volume_cv"], 1e-9);
    // The streaming counters must give exactly what the explicit pairs give.
    close_opt(&what("pooled pairwise Dice"), got.pairwise_dice, &want["pairwise_dice"], 1e-9);
    close_opt(&what("pooled pairwise IoU"), got.pairwise_iou, &want["pairwise_iou"], 1e-9);
    close_opt(&what("all-pass IoU"), got.all_pass_iou, &want["all_pass_iou"], 1e-9);
    close_opt(&what("mean entropy in mask"), got.mean_entropy, &want["mean_entropy"], tol);
    close_opt(&what("mean MI in mask"), got.mean_mutual_information, &want["mean_mutual_information"], tol);
}

#[test]
fn segmentation_maps_and_report_match_scipy() {
    let r = reference();
    let tol = f(&r["tolerance"]);
    for case in r["segmentation"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let want = &case["expected"];
        let passes = case["passes"].as_array().expect("passes").len();
        let m = accumulate(case, &(0..passes).collect::<Vec<_>>());
        assert_eq!(m.passes, passes);
        for key in ["mean_probs", "predictive_entropy", "expected_entropy", "mutual_information"] {
            let got = match key {
                "mean_probs" => &m.mean_probs,
                "predictive_entropy" => &m.predictive_entropy,
                "expected_entropy" => &m.expected_entropy,
                _ => &m.mutual_information,
            };
            let d = max_abs_diff(got, &floats(&want[key]));
            assert!(d <= tol, "{name} {key}: max |Δ| {d:e} > {tol:e}");
        }
        // The generator refuses near-ties, so labels must agree everywhere.
        let labels: Vec<u64> = want["labels"].as_array().expect("labels").iter().map(uint).collect();
        assert_eq!(m.labels.iter().map(|&l| u64::from(l)).collect::<Vec<_>>(), labels, "{name} labels");

        let structures = want["structures"].as_array().expect("structures");
        assert_eq!(m.report.structures.len(), structures.len());
        for (got, want) in m.report.structures.iter().zip(structures) {
            check_structure(name, got, want, tol);
        }
        let (s, w) = (&m.report.study, &want["study"]);
        close_opt(&format!("{name} study score"), s.score, &w["score"], 1e-9);
        assert_eq!(s.foreground_voxels, uint(&w["foreground_voxels"]));
        close(&format!("{name} foreground volume"), s.foreground_volume_ml, f(&w["foreground_volume_ml"]), 1e-9);
        close_opt(&format!("{name} fg entropy"), s.foreground_mean_entropy, &w["foreground_mean_entropy"], tol);
        close_opt(
            &format!("{name} fg MI"),
            s.foreground_mean_mutual_information,
            &w["foreground_mean_mutual_information"],
            tol,
        );
    }
}

/// Same passes in another order: same figures within float tolerance (the
/// integer counters make the agreement figures identical).
#[test]
fn pass_order_does_not_change_the_result() {
    let r = reference();
    for case in r["segmentation"].as_array().expect("cases") {
        let n = case["passes"].as_array().expect("passes").len();
        let forward = accumulate(case, &(0..n).collect::<Vec<_>>());
        let shuffled: Vec<usize> = (0..n).map(|t| (t * 3 + 1) % n).collect();
        let mut seen = shuffled.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>(), "a permutation");
        let other = accumulate(case, &shuffled);
        assert_eq!(forward.labels, other.labels);
        let mean: Vec<f64> = other.mean_probs.iter().map(|&x| f64::from(x)).collect();
        assert!(max_abs_diff(&forward.mean_probs, &mean) < 1e-6);
        for (a, b) in forward.report.structures.iter().zip(&other.report.structures) {
            assert_eq!(
                (a.pairwise_dice, a.pairwise_iou, a.all_pass_iou),
                (b.pairwise_dice, b.pairwise_iou, b.all_pass_iou)
            );
        }
    }
}

#[test]
fn classification_matches_scipy() {
    let r = reference();
    let tol = f(&r["tolerance"]);
    for case in r["classification"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let members: Vec<Vec<f32>> = case["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| floats(m).into_iter().map(|x| x as f32).collect())
            .collect();
        let u = ClassificationUncertainty::from_member_probs(&members).unwrap_or_else(|e| panic!("{name}: {e}"));
        let w = &case["expected"];
        assert_eq!(u.members, members.len());
        assert_eq!(u.label as u64, uint(&w["label"]), "{name} label");
        for (c, (&g, want)) in u.mean_probs.iter().zip(floats(&w["mean_probs"])).enumerate() {
            close(&format!("{name} mean p[{c}]"), g, want, tol);
        }
        close(&format!("{name} predictive entropy"), u.predictive_entropy, f(&w["predictive_entropy"]), tol);
        close(&format!("{name} expected entropy"), u.expected_entropy, f(&w["expected_entropy"]), tol);
        close(&format!("{name} mutual information"), u.mutual_information, f(&w["mutual_information"]), tol);
        close(&format!("{name} disagreement"), u.disagreement, f(&w["disagreement"]), 1e-9);
    }
}
