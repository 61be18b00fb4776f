//! Each rule alone on hand-built figures, several at once, unknown figures,
//! OOD, overrides, the JSON shape, and two properties.

use proptest::prelude::*;

use super::*;
use crate::manifest::RoutingThresholds;
use crate::ood::OodAssessment;
use crate::uncertainty::{ClassificationUncertainty, StructureUncertainty, StudyUncertainty, UncertaintyReport};

fn structure(label: u8, dice: Option<f64>, cv: Option<f64>) -> StructureUncertainty {
    StructureUncertainty {
        label,
        voxels: 1000,
        volume_ml: 1.0,
        pass_volume_ml_mean: 1.0,
        pass_volume_cv: cv,
        pairwise_dice: dice,
        pairwise_iou: dice,
        all_pass_iou: dice,
        mean_entropy: Some(0.1),
        mean_mutual_information: Some(0.01),
    }
}

/// Background (label 0) deliberately bad: it must never be checked.
fn report(score: Option<f64>, gm: (Option<f64>, Option<f64>), wm: (Option<f64>, Option<f64>)) -> UncertaintyReport {
    UncertaintyReport {
        passes: 10,
        voxel_volume_ml: 0.001,
        structures: vec![structure(0, Some(0.0), Some(9.0)), structure(1, gm.0, gm.1), structure(2, wm.0, wm.1)],
        study: StudyUncertainty {
            score,
            foreground_voxels: 2000,
            foreground_volume_ml: 2.0,
            foreground_mean_entropy: Some(0.1),
            foreground_mean_mutual_information: Some(0.01),
        },
    }
}

fn good() -> UncertaintyReport {
    report(Some(0.05), (Some(0.95), Some(0.02)), (Some(0.97), Some(0.01)))
}

fn thresholds() -> RoutingThresholds {
    RoutingThresholds {
        study_uncertainty_max: Some(0.1),
        structure_agreement_min: Some(0.9),
        volume_cv_max: Some(0.05),
        ood_score_max: Some(3.0),
        predicted_dice_min: None,
        probability_min: Some(0.8),
        flag_probability_max: None,
        source: Some("test".into()),
    }
}

fn policy() -> RoutingPolicy {
    RoutingPolicy::new(&thresholds(), None).expect("valid thresholds")
}

fn ood(score: f64) -> OodAssessment {
    OodAssessment { score, signals: vec![] }
}

fn codes(d: &RoutingDecision) -> Vec<(ReasonCode, &'static str, Option<u8>)> {
    d.reasons().iter().map(|r| (r.code, r.metric, r.label)).collect()
}

#[test]
fn good_study_is_accepted() {
    let d = policy().decide(&good(), Some(&ood(1.0)), None);
    assert_eq!((d.decision(), d.reasons().len()), (Decision::Accept, 0));
}

#[test]
fn each_threshold_crossed_alone_gives_its_reason() {
    let p = policy();
    let d = p.decide(&report(Some(0.2), (Some(0.95), Some(0.02)), (Some(0.97), Some(0.01))), Some(&ood(1.0)), None);
    assert_eq!(codes(&d), [(ReasonCode::HighUncertainty, "study_uncertainty", None)]);
    assert_eq!((d.reasons()[0].value, d.reasons()[0].threshold), (Some(0.2), 0.1));

    let d = p.decide(&report(Some(0.05), (Some(0.85), Some(0.02)), (Some(0.97), Some(0.01))), Some(&ood(1.0)), None);
    assert_eq!(codes(&d), [(ReasonCode::LowStructureAgreement, "pairwise_dice", Some(1))]);

    let d = p.decide(&report(Some(0.05), (Some(0.95), Some(0.02)), (Some(0.97), Some(0.08))), Some(&ood(1.0)), None);
    assert_eq!(codes(&d), [(ReasonCode::UnstableVolume, "pass_volume_cv", Some(2))]);
    assert_eq!(d.decision(), Decision::Review);
}

#[test]
fn a_value_at_the_bound_passes() {
    let d =
        policy().decide(&report(Some(0.1), (Some(0.9), Some(0.05)), (Some(0.9), Some(0.05))), Some(&ood(3.0)), None);
    assert!(d.is_accept(), "{d:?}");
}

#[test]
fn every_crossed_threshold_is_listed() {
    let d = policy().decide(&report(Some(0.3), (Some(0.5), Some(0.2)), (Some(0.6), Some(0.01))), Some(&ood(7.0)), None);
    assert_eq!(
        codes(&d),
        [
            (ReasonCode::OutOfDistribution, "ood_score", None),
            (ReasonCode::HighUncertainty, "study_uncertainty", None),
            (ReasonCode::LowStructureAgreement, "pairwise_dice", Some(1)),
            (ReasonCode::UnstableVolume, "pass_volume_cv", Some(1)),
            (ReasonCode::LowStructureAgreement, "pairwise_dice", Some(2)),
        ]
    );
}

#[test]
fn missing_figures_are_unknown_not_certain() {
    // A single pass: no score, no agreement, no CV.
    let d = policy().decide(&report(None, (None, None), (None, None)), None, None);
    let unknown = ReasonCode::UncertaintyUnknown;
    assert_eq!(
        codes(&d),
        [
            (unknown, "ood_score", None),
            (unknown, "study_uncertainty", None),
            (unknown, "pairwise_dice", Some(1)),
            (unknown, "pass_volume_cv", Some(1)),
            (unknown, "pairwise_dice", Some(2)),
            (unknown, "pass_volume_cv", Some(2)),
        ]
    );
    assert!(d.reasons().iter().all(|r| r.value.is_none()));
    // NaN is as unknown as None.
    let d = policy().decide(&good(), Some(&ood(f64::NAN)), None);
    assert_eq!(codes(&d), [(unknown, "ood_score", None)]);
    // An unset threshold needs nothing.
    let d = RoutingPolicy::default().decide(&report(None, (None, None), (None, None)), None, None);
    assert!(d.is_accept());
}

#[test]
fn out_of_distribution_forces_review_however_certain_the_passes() {
    let perfect = report(Some(0.0), (Some(1.0), Some(0.0)), (Some(1.0), Some(0.0)));
    let d = policy().decide(&perfect, Some(&ood(3.5)), None);
    assert_eq!(codes(&d), [(ReasonCode::OutOfDistribution, "ood_score", None)]);
    let d = policy().decide(&perfect, Some(&ood(f64::INFINITY)), None);
    assert_eq!(d.reasons()[0].code, ReasonCode::OutOfDistribution);
    let c = classification(vec![1.0, 0.0]);
    assert_eq!(
        codes(&policy().decide_classification(&c, Some(&ood(9.0)))),
        [(ReasonCode::OutOfDistribution, "ood_score", None)]
    );
}

fn classification(mean_probs: Vec<f64>) -> ClassificationUncertainty {
    ClassificationUncertainty {
        members: 3,
        label: if mean_probs.get(1) > mean_probs.first() { 1 } else { 0 },
        mean_probs,
        predictive_entropy: 0.5,
        expected_entropy: 0.4,
        mutual_information: 0.1,
        disagreement: 0.0,
    }
}

#[test]
fn classification_low_confidence() {
    let p = policy();
    assert!(p.decide_classification(&classification(vec![0.1, 0.9]), Some(&ood(0.0))).is_accept());
    let d = p.decide_classification(&classification(vec![0.3, 0.7]), Some(&ood(0.0)));
    assert_eq!(codes(&d), [(ReasonCode::LowConfidence, "mean_probability", None)]);
    assert_eq!((d.reasons()[0].value, d.reasons()[0].threshold), (Some(0.7), 0.8));
    // Segmentation-only bounds do not apply.
    let only_seg = RoutingThresholds { probability_min: None, ood_score_max: None, ..thresholds() };
    let p = RoutingPolicy::new(&only_seg, None).expect("valid");
    assert!(p.decide_classification(&classification(vec![0.5, 0.5]), None).is_accept());
}

#[test]
fn classification_flagged_class() {
    let t = RoutingThresholds { flag_probability_max: Some(0.5), probability_min: None, ..thresholds() };
    let p = RoutingPolicy::new(&t, None).expect("valid");
    assert!(p.decide_classification(&classification(vec![0.8, 0.2]), Some(&ood(0.0))).is_accept());
    let d = p.decide_classification(&classification(vec![0.3, 0.7]), Some(&ood(0.0)));
    assert_eq!(codes(&d), [(ReasonCode::FlaggedClass, "flagged_probability", Some(1))]);
    assert_eq!((d.reasons()[0].value, d.reasons()[0].threshold), (Some(0.7), 0.5));
    // Exactly at the bound passes, like every other rule.
    assert!(p.decide_classification(&classification(vec![0.5, 0.5]), Some(&ood(0.0))).is_accept());
}

#[test]
fn combined_decisions_keep_every_reason() {
    let p = policy();
    let seg = p.decide(&good(), Some(&ood(9.0)), None);
    let cls = p.decide_classification(&classification(vec![0.3, 0.7]), Some(&ood(0.0)));
    let accepted = p.decide(&good(), Some(&ood(0.0)), None);
    assert!(RoutingDecision::combine([accepted.clone(), accepted]).is_accept());
    let both = RoutingDecision::combine([seg, cls]);
    assert_eq!(both.decision(), Decision::Review);
    assert_eq!(
        codes(&both),
        [(ReasonCode::OutOfDistribution, "ood_score", None), (ReasonCode::LowConfidence, "mean_probability", None)]
    );
}

#[test]
fn overrides_win_per_field() {
    let o = RoutingOverrides { structure_agreement_min: Some(0.8), source: Some("site".into()), ..Default::default() };
    let p = RoutingPolicy::new(&thresholds(), Some(&o)).expect("valid");
    assert_eq!(p.structure_agreement_min(), Some(0.8));
    assert_eq!(p.volume_cv_max(), Some(0.05));
    assert_eq!(p.sources(), ["test", "site"]);
    let study = report(Some(0.05), (Some(0.85), Some(0.02)), (Some(0.97), Some(0.01)));
    assert!(policy().decide(&study, Some(&ood(1.0)), None).reasons().len() == 1);
    assert!(p.decide(&study, Some(&ood(1.0)), None).is_accept());
    // An override can switch on a rule the manifest left off.
    let none = RoutingThresholds::default();
    let o = RoutingOverrides { ood_score_max: Some(2.0), ..Default::default() };
    let p = RoutingPolicy::new(&none, Some(&o)).expect("valid");
    assert_eq!(p.decide(&good(), Some(&ood(2.5)), None).reasons()[0].code, ReasonCode::OutOfDistribution);
}

#[test]
fn invalid_bounds_are_refused_with_their_origin() {
    let cases = [
        (RoutingOverrides { structure_agreement_min: Some(1.2), ..Default::default() }, "structure_agreement_min"),
        (RoutingOverrides { probability_min: Some(-0.1), ..Default::default() }, "probability_min"),
        (RoutingOverrides { volume_cv_max: Some(-1.0), ..Default::default() }, "volume_cv_max"),
        (RoutingOverrides { ood_score_max: Some(f64::NAN), ..Default::default() }, "ood_score_max"),
        (
            RoutingOverrides { study_uncertainty_max: Some(f64::INFINITY), ..Default::default() },
            "study_uncertainty_max",
        ),
    ];
    for (o, field) in cases {
        let e = RoutingPolicy::new(&thresholds(), Some(&o)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(field) && msg.contains("from the config"), "{msg}");
    }
    let bad = RoutingThresholds { volume_cv_max: Some(-0.5), ..thresholds() };
    let e = RoutingPolicy::new(&bad, None).unwrap_err();
    assert_eq!(
        e,
        RoutingError::OutOfRange { field: "volume_cv_max", origin: "manifest", value: -0.5, range: "[0, inf)" }
    );
    assert_eq!(e.to_string(), "routing threshold volume_cv_max from the manifest is -0.5, outside [0, inf)");
    // A valid override fixes a bad manifest value, since it replaces it.
    let o = RoutingOverrides { volume_cv_max: Some(0.1), ..Default::default() };
    assert!(RoutingPolicy::new(&bad, Some(&o)).is_ok());
}

#[test]
fn overrides_parse_strictly_from_toml() {
    let o: RoutingOverrides = toml::from_str("ood_score_max = 4.0\nsource = \"site QA\"").expect("valid toml");
    assert_eq!((o.ood_score_max, o.probability_min), (Some(4.0), None));
    let e = toml::from_str::<RoutingOverrides>("ood_max = 4.0").unwrap_err();
    assert!(e.to_string().contains("unknown field `ood_max`"), "{e}");
}

#[test]
fn decision_serializes_as_report_json_wants() {
    let accept = serde_json::to_value(policy().decide(&good(), Some(&ood(1.0)), None)).expect("serializes");
    assert_eq!(accept, serde_json::json!({"decision": "accept", "reasons": []}));
    let d = policy().decide(&report(None, (Some(0.5), Some(0.02)), (Some(0.97), Some(0.01))), Some(&ood(4.0)), None);
    let v = serde_json::to_value(&d).expect("serializes");
    assert_eq!(
        v,
        serde_json::json!({"decision": "review", "reasons": [
            {"code": "out_of_distribution", "metric": "ood_score", "value": 4.0, "threshold": 3.0},
            {"code": "uncertainty_unknown", "metric": "study_uncertainty", "value": null, "threshold": 0.1},
            {"code": "low_structure_agreement", "metric": "pairwise_dice", "label": 1, "value": 0.5, "threshold": 0.9},
        ]})
    );
}

fn opt(x: impl Strategy<Value = f64>) -> impl Strategy<Value = Option<f64>> {
    prop_oneof![1 => Just(None), 5 => x.prop_map(Some)]
}

fn any_report() -> impl Strategy<Value = UncertaintyReport> {
    (opt(0.0..1.0), (opt(0.0..1.0), opt(0.0..0.5)), (opt(0.0..1.0), opt(0.0..0.5)))
        .prop_map(|(s, gm, wm)| report(s, gm, wm))
}

fn any_thresholds() -> impl Strategy<Value = RoutingThresholds> {
    (opt(0.0..1.0), opt(0.0..1.0), opt(0.0..0.5), opt(0.0..6.0), opt(0.0..1.0), opt(0.0..1.0)).prop_map(
        |(s, a, v, o, p, fl)| RoutingThresholds {
            study_uncertainty_max: s,
            structure_agreement_min: a,
            volume_cv_max: v,
            ood_score_max: o,
            predicted_dice_min: None,
            probability_min: p,
            flag_probability_max: fl,
            source: None,
        },
    )
}

/// Tighter by `f` in [0, 1]: maxima scaled down, minima moved towards 1; an
/// unset bound may become set (at any value) — also tighter.
fn tighten(t: &RoutingThresholds, f: f64, set: Option<f64>) -> RoutingThresholds {
    let max = |b: Option<f64>| b.map(|x| x * f).or(set);
    let min = |b: Option<f64>| b.map(|x| 1.0 - (1.0 - x) * f).or(set);
    RoutingThresholds {
        study_uncertainty_max: max(t.study_uncertainty_max),
        structure_agreement_min: min(t.structure_agreement_min),
        volume_cv_max: max(t.volume_cv_max),
        ood_score_max: max(t.ood_score_max),
        predicted_dice_min: min(t.predicted_dice_min),
        probability_min: min(t.probability_min),
        flag_probability_max: max(t.flag_probability_max),
        source: None,
    }
}

proptest! {
    #[test]
    fn review_iff_reasons_and_tightening_never_accepts_more(
        study in any_report(),
        t in any_thresholds(),
        ood_score in opt(0.0..6.0),
        p1 in 0.0..1.0f64,
        f in 0.0..=1.0f64,
        set in opt(0.0..1.0),
    ) {
        let loose = RoutingPolicy::new(&t, None).expect("in range");
        let tight = RoutingPolicy::new(&tighten(&t, f, set), None).expect("in range");
        let a = ood_score.map(ood);
        let c = classification(vec![1.0 - p1, p1]);
        for (l, r) in [
            (loose.decide(&study, a.as_ref(), None), tight.decide(&study, a.as_ref(), None)),
            (loose.decide_classification(&c, a.as_ref()), tight.decide_classification(&c, a.as_ref())),
        ] {
            prop_assert_eq!(l.decision() == Decision::Review, !l.reasons().is_empty());
            prop_assert_eq!(r.decision() == Decision::Review, !r.reasons().is_empty());
            prop_assert!(!(l.decision() == Decision::Review && r.is_accept()), "{:?} then {:?}", l, r);
            prop_assert!(r.reasons().len() >= l.reasons().len());
        }
    }
}

#[test]
fn reason_codes_read_as_their_serialized_form() {
    use super::ReasonCode::*;
    for code in [
        OutOfDistribution,
        HighUncertainty,
        LowStructureAgreement,
        UnstableVolume,
        LowConfidence,
        FlaggedClass,
        UncertaintyUnknown,
    ] {
        assert_eq!(serde_json::to_value(code).unwrap(), serde_json::Value::String(code.as_str().into()));
    }
}

fn estimate(gm: Option<f64>, wm: Option<f64>) -> crate::quality::QualityEstimate {
    use crate::quality::{QualityEstimate, StructureEstimate};
    let s = |label: u8, name: &str, d: Option<f64>| StructureEstimate { label, name: name.into(), predicted_dice: d };
    QualityEstimate {
        members: 5,
        file: "q.onnx".into(),
        sha256: "0".repeat(64),
        structures: vec![s(1, "grey_matter", gm), s(2, "white_matter", wm)],
        min_predicted_dice: gm.zip(wm).map(|(a, b)| a.min(b)),
        missing_features: vec![],
    }
}

#[test]
fn predicted_dice_below_the_bound_routes_each_structure_and_no_estimate_is_unknown() {
    let t = RoutingThresholds { predicted_dice_min: Some(0.85), source: Some("test".into()), ..Default::default() };
    let p = RoutingPolicy::new(&t, None).expect("valid");
    assert!(p.decide(&good(), None, Some(&estimate(Some(0.9), Some(0.85)))).is_accept(), "at the bound passes");
    let d = p.decide(&good(), None, Some(&estimate(Some(0.84), Some(0.9))));
    assert_eq!(codes(&d), vec![(ReasonCode::LowPredictedDice, "predicted_dice", Some(1))]);
    assert_eq!(d.reasons()[0].value, Some(0.84));
    let d = p.decide(&good(), None, Some(&estimate(Some(0.9), None)));
    assert_eq!(codes(&d), vec![(ReasonCode::UncertaintyUnknown, "predicted_dice", Some(2))]);
    let d = p.decide(&good(), None, None);
    assert_eq!(codes(&d), vec![(ReasonCode::UncertaintyUnknown, "predicted_dice", None)]);
    // Without the bound, an estimate (or its absence) changes nothing.
    assert!(RoutingPolicy::default().decide(&good(), None, None).is_accept());
    assert_eq!(ReasonCode::LowPredictedDice.as_str(), "low_predicted_dice");
}
