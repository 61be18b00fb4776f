use time::macros::datetime;

use super::*;

fn job() -> JobMessage {
    JobMessage {
        job_id: 42,
        job_key: "9f2c4e".into(),
        study_uri: "s3://studies/2026/abc".into(),
        series: vec!["1.2.840.1".into(), "1.2.840.2".into()],
        pipeline: "brain-tissue".into(),
        model: ModelRef { name: "brain-tissue".into(), version: "1.0.0".into() },
        priority: Priority::Stat,
        attempt: 1,
        enqueued_at: datetime!(2026-11-27 02:00:00.5 UTC),
    }
}

fn review() -> ReviewEvent {
    let reason = |code: &str, label| ReviewReason {
        code: code.into(),
        metric: "pairwise_dice".into(),
        label,
        value: Some(0.5),
        threshold: 0.8,
    };
    ReviewEvent {
        job_id: 1,
        study_id: 2,
        model: ModelRef { name: "brain.tissue".into(), version: "1.0.0".into() },
        reasons: vec![
            reason("low_structure_agreement", Some(1)),
            reason("high_uncertainty", None),
            reason("low_structure_agreement", Some(2)),
        ],
        published_at: datetime!(2026-11-27 03:00:00 UTC),
    }
}

fn set(json: &[u8], field: &str, value: serde_json::Value) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(json).unwrap();
    v.as_object_mut().unwrap().insert(field.into(), value);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn job_round_trips_with_its_schema_version() {
    let bytes = job().to_json().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["priority"], "stat");
    assert_eq!(v["enqueued_at"], "2026-11-27T02:00:00.5Z");
    assert_eq!(v["job_id"], 42);
    assert_eq!(JobMessage::from_json(&bytes).unwrap(), job());
}

#[test]
fn job_with_an_unknown_or_missing_version_is_refused() {
    let bytes = job().to_json().unwrap();
    let v2 = set(&bytes, "schema", serde_json::json!(2));
    assert_eq!(
        JobMessage::from_json(&v2),
        Err(MessageError::UnsupportedVersion { what: "job", found: "2".into(), supported: 1 })
    );
    let text = set(&bytes, "schema", serde_json::json!("1"));
    assert!(matches!(JobMessage::from_json(&text), Err(MessageError::UnsupportedVersion { .. })));
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v.as_object_mut().unwrap().remove("schema");
    let missing = serde_json::to_vec(&v).unwrap();
    assert_eq!(JobMessage::from_json(&missing), Err(MessageError::MissingVersion { what: "job" }));
}

#[test]
fn job_with_unknown_fields_or_bad_values_is_refused() {
    let bytes = job().to_json().unwrap();
    let extra = set(&bytes, "surprise", serde_json::json!(true));
    let err = JobMessage::from_json(&extra).unwrap_err();
    assert!(matches!(&err, MessageError::Json { reason, .. } if reason.contains("surprise")), "{err}");

    for (field, value, expect) in [
        ("attempt", serde_json::json!(0), "attempt"),
        ("series", serde_json::json!([]), "series"),
        ("series", serde_json::json!(["a", "a"]), "series"),
        ("pipeline", serde_json::json!("brain tissue"), "pipeline"),
        ("study_uri", serde_json::json!("/no/scheme"), "study_uri"),
        ("job_key", serde_json::json!(""), "job_key"),
        ("model", serde_json::json!({"name": "../x", "version": "1"}), "model.name"),
    ] {
        let bad = set(&bytes, field, value);
        match JobMessage::from_json(&bad) {
            Err(MessageError::Invalid { field: f, .. }) => assert_eq!(f, expect),
            other => panic!("{field}: expected an invalid-field error, got {other:?}"),
        }
    }
    for (field, value) in [("priority", serde_json::json!("urgent")), ("enqueued_at", serde_json::json!("yesterday"))] {
        let bad = set(&bytes, field, value);
        assert!(matches!(JobMessage::from_json(&bad), Err(MessageError::Json { .. })), "{field}");
    }
    assert!(matches!(JobMessage::from_json(b"not json"), Err(MessageError::Json { .. })));
    assert!(matches!(JobMessage::from_json(b"[1]"), Err(MessageError::Json { .. })));
    // The struct in array form (serde would accept it) is refused too.
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let as_array: Vec<&serde_json::Value> = v.as_object().unwrap().values().collect();
    let array = serde_json::to_vec(&as_array).unwrap();
    assert!(
        matches!(JobMessage::from_json(&array), Err(MessageError::Json { reason, .. }) if reason == "expected a json object")
    );
}

#[test]
fn invalid_job_is_never_serialized() {
    let mut j = job();
    j.attempt = 0;
    assert!(matches!(j.to_json(), Err(MessageError::Invalid { field: "attempt", .. })));
}

#[test]
fn next_attempt_changes_only_the_attempt() {
    let j = job();
    let n = j.next_attempt();
    assert_eq!(n.attempt, 2);
    assert_eq!(JobMessage { attempt: 1, ..n }, j);
}

#[test]
fn review_round_trips_and_routes_once_per_distinct_reason() {
    let ev = review();
    let bytes = ev.to_json().unwrap();
    assert_eq!(ReviewEvent::from_json(&bytes).unwrap(), ev);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["reasons"][1].get("label"), None);
    assert_eq!(ev.routing_keys(), vec!["low_structure_agreement.brain_tissue", "high_uncertainty.brain_tissue"]);
}

#[test]
fn review_with_bad_version_reason_or_fields_is_refused() {
    let bytes = review().to_json().unwrap();
    let v0 = set(&bytes, "schema", serde_json::json!(0));
    assert!(matches!(ReviewEvent::from_json(&v0), Err(MessageError::UnsupportedVersion { what: "review", .. })));
    let none = set(&bytes, "reasons", serde_json::json!([]));
    assert!(matches!(ReviewEvent::from_json(&none), Err(MessageError::Invalid { field: "reasons", .. })));
    let dotted =
        set(&bytes, "reasons", serde_json::json!([{"code": "a.b", "metric": "m", "value": null, "threshold": 1.0}]));
    assert!(matches!(ReviewEvent::from_json(&dotted), Err(MessageError::Invalid { field: "reasons.code", .. })));
    let extra = set(&bytes, "severity", serde_json::json!("high"));
    assert!(matches!(ReviewEvent::from_json(&extra), Err(MessageError::Json { .. })));
}
