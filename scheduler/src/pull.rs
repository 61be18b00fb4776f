//! The pull from the PACS's DICOMweb service (`[pacs] url`): QIDO-RS at
//! series level for the configured modalities and a study-date range, the
//! series selection rules applied to what the query tells
//! ([`Rules::worth_retrieving`](crate::select::Rules::worth_retrieving)),
//! WADO-RS retrieval of only those series, each instance streamed into the
//! inbox exactly as a C-STORE'd or STOW'd one (`dicom/instance.rs`), and a
//! row per series in the job store (`pacs_pulls`) so that a second night
//! fetches only series that are new or grew. The inbox scan then stages the
//! studies. Runs at the start of each nightly window and on `neurobatch pull`.
//! Logs and errors carry counts and the PACS's address without credentials,
//! never a UID or a patient attribute.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use serde_json::Value;

use crate::dicom::instance::Incoming;
use crate::select::Candidate;
use crate::{Scheduler, SchedulerError};

/// What one pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Series the query returned.
    pub series_found: usize,
    /// Series the selection rules chose.
    pub series_chosen: usize,
    /// Chosen series already pulled with as many instances (not fetched again).
    pub series_known: usize,
    /// Series retrieved.
    pub series_pulled: usize,
    /// Instances now in the inbox.
    pub instances: usize,
    /// Instances the PACS sent that were refused (with the reason counts in the log).
    pub refused: usize,
}

/// One series as QIDO-RS described it.
#[derive(Debug, Clone)]
struct FoundSeries {
    study_uid: String,
    candidate: Candidate,
}

/// The PACS's DICOMweb root and how to reach it.
pub(crate) struct Pacs {
    client: reqwest::Client,
    base: String,
    /// The root without credentials, for messages.
    shown: String,
    auth: Option<(String, Option<String>)>,
}

impl Pacs {
    /// The root `url` (the configuration key `key` names it in errors).
    pub(crate) fn new(url: &str, timeout: Duration, key: &'static str) -> Result<Pacs, SchedulerError> {
        let bad = |reason: String| SchedulerError::Config { key, reason };
        let mut parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let auth = (!parsed.username().is_empty()).then(|| {
            let decode = |s: &str| percent_decode(s);
            (decode(parsed.username()), parsed.password().map(decode))
        });
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let base = parsed.as_str().trim_end_matches('/').to_string();
        let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| bad(e.to_string()))?;
        Ok(Pacs { client, shown: base.clone(), base, auth })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.authorized(self.client.get(format!("{}{path}", self.base)))
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((user, password)) => req.basic_auth(user, password.as_deref()),
            None => req,
        }
    }

    /// STOW-RS: one Part 10 object to `{root}/studies`. Ok on 200 (stored); an
    /// error naming the root (without credentials) and the status otherwise.
    pub(crate) async fn stow(&self, part10: Vec<u8>) -> Result<(), String> {
        let boundary = format!("nb-{}", uuid::Uuid::new_v4().simple());
        let mut body = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
        body.extend_from_slice(&part10);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let resp = self
            .authorized(self.client.post(format!("{}/studies", self.base)))
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
            )
            .header(reqwest::header::ACCEPT, "application/dicom+json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("STOW-RS to {}: {}", self.shown, e.without_url()))?;
        match resp.status() {
            reqwest::StatusCode::OK => Ok(()),
            status => Err(format!("STOW-RS to {}: HTTP {status}", self.shown)),
        }
    }

    fn failed(&self, what: &str, reason: impl std::fmt::Display) -> SchedulerError {
        SchedulerError::Pacs { pacs: self.shown.clone(), reason: format!("{what}: {reason}") }
    }

    /// QIDO-RS: the series of `modality` in studies dated `from`..=`to`.
    async fn series(&self, modality: &str, from: NaiveDate, to: NaiveDate) -> Result<Vec<FoundSeries>, SchedulerError> {
        let dates = format!("{}-{}", from.format("%Y%m%d"), to.format("%Y%m%d"));
        let resp = self
            .get("/series")
            .query(&[
                ("Modality", modality),
                ("StudyDate", dates.as_str()),
                ("includefield", "0008103E"),
                ("includefield", "00201209"),
            ])
            .header(reqwest::header::ACCEPT, "application/dicom+json")
            .send()
            .await
            .map_err(|e| self.failed("QIDO-RS series query", e))?;
        if resp.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        if !resp.status().is_success() {
            return Err(self.failed("QIDO-RS series query", resp.status()));
        }
        let body: Value = resp.json().await.map_err(|e| self.failed("QIDO-RS answer", e))?;
        let items = body.as_array().ok_or_else(|| self.failed("QIDO-RS answer", "not a JSON array"))?;
        Ok(items.iter().filter_map(found_series).collect())
    }

    /// WADO-RS: one series' instances, each streamed into the inbox. Counts of
    /// stored and refused instances.
    async fn retrieve(
        &self,
        inbox: &std::path::Path,
        study: &str,
        series: &str,
        limit: u64,
    ) -> Result<(usize, usize), SchedulerError> {
        let resp = self
            .get(&format!("/studies/{study}/series/{series}"))
            .header(reqwest::header::ACCEPT, "multipart/related; type=\"application/dicom\"")
            .send()
            .await
            .map_err(|e| self.failed("WADO-RS retrieval", e))?;
        if !resp.status().is_success() {
            return Err(self.failed("WADO-RS retrieval", resp.status()));
        }
        let content_type =
            resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let boundary = content_type
            .parse::<mime::Mime>()
            .ok()
            .filter(|m| m.type_() == mime::MULTIPART)
            .and_then(|m| m.get_param(mime::BOUNDARY).map(|b| b.as_str().to_string()))
            .ok_or_else(|| self.failed("WADO-RS retrieval", "the answer is not multipart"))?;
        let mut parts = multer::Multipart::new(resp.bytes_stream(), boundary);
        let (mut stored, mut refused) = (0, 0);
        while let Some(mut field) = parts.next_field().await.map_err(|e| self.failed("WADO-RS answer", e))? {
            let mut incoming = Incoming::for_part10(inbox, limit).map_err(|e| self.failed("writing the inbox", e))?;
            while let Some(bytes) = field.chunk().await.map_err(|e| self.failed("WADO-RS answer", e))? {
                if let Err(e) = incoming.append(&bytes) {
                    incoming.discard();
                    return Err(self.failed("writing the inbox", e));
                }
            }
            let (inbox, study) = (inbox.to_path_buf(), study.to_string());
            match tokio::task::spawn_blocking(move || incoming.finish(&inbox, Some(&study))).await {
                Ok(Ok(_)) => stored += 1,
                Ok(Err(r)) => {
                    tracing::warn!(pacs = %self.shown, reason = %r.error, "pulled instance refused");
                    refused += 1;
                }
                Err(e) => return Err(SchedulerError::Task { what: "pull", reason: e.to_string() }),
            }
        }
        Ok((stored, refused))
    }
}

/// A QIDO-RS result item (DICOM JSON) as a series candidate; `None` without UIDs.
fn found_series(item: &Value) -> Option<FoundSeries> {
    let first = |tag: &str| item.get(tag)?.get("Value")?.get(0).cloned();
    let text = |tag: &str| first(tag).and_then(|v| v.as_str().map(str::to_string)).filter(|s| !s.trim().is_empty());
    let count = first("00201209").and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok())).unwrap_or(0);
    Some(FoundSeries {
        study_uid: text("0020000D")?,
        candidate: Candidate {
            series_uid: text("0020000E")?,
            modality: text("00080060"),
            description: text("0008103E"),
            slices: usize::try_from(count).unwrap_or(usize::MAX),
            orientation: None,
        },
    })
}

/// `%xx` escapes of a URL's user or password.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Scheduler {
    /// Pulls the studies dated `from`..=`to` from `[pacs] url` (see the module docs).
    pub async fn pull_once(&self, from: NaiveDate, to: NaiveDate) -> Result<PullReport, SchedulerError> {
        let inner = &self.inner;
        let url = inner.config.pacs.url.expose();
        if url.is_empty() {
            return Err(SchedulerError::Config { key: "pacs.url", reason: "empty: no PACS to pull from".into() });
        }
        let pacs = Pacs::new(url, Duration::from_secs(inner.config.pacs.timeout_secs), "pacs.url")?;
        let mut by_study: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        let mut report = PullReport::default();
        for modality in &inner.config.pipeline.modalities {
            for s in pacs.series(modality, from, to).await? {
                report.series_found += 1;
                by_study.entry(s.study_uid).or_default().push(s.candidate);
            }
        }
        let inbox = inner.config.scheduler.inbox.clone();
        let limit = inner.config.dicom.max_instance_bytes;
        for (study, candidates) in &by_study {
            for i in inner.rules.worth_retrieving(candidates) {
                let Some(c) = candidates.get(i) else { continue };
                report.series_chosen += 1;
                let count = i64::try_from(c.slices).unwrap_or(i64::MAX);
                if inner.store.pulled_instances(study, &c.series_uid).await?.is_some_and(|n| n >= count) {
                    report.series_known += 1;
                    continue;
                }
                let (stored, refused) = pacs.retrieve(&inbox, study, &c.series_uid, limit).await?;
                inner.store.record_pull(study, &c.series_uid, count, Utc::now()).await?;
                report.series_pulled += 1;
                report.instances += stored;
                report.refused += refused;
            }
        }
        tracing::info!(
            pacs = %pacs.shown,
            found = report.series_found,
            chosen = report.series_chosen,
            known = report.series_known,
            pulled = report.series_pulled,
            instances = report.instances,
            refused = report.refused,
            "pacs pull"
        );
        Ok(report)
    }

    /// The nightly pull: once when the nightly window opens (or, with no
    /// window, once per local day), for the last `pacs.days` days. `None`
    /// when it was not time.
    pub async fn pull_nightly_once(
        &self,
        now: chrono::DateTime<chrono::Local>,
    ) -> Result<Option<PullReport>, SchedulerError> {
        use chrono::Timelike as _;
        let minute = u16::try_from(now.hour() * 60 + now.minute()).unwrap_or(0);
        let inside = self.inner.window.is_none_or(|w| w.contains(minute));
        let today = now.date_naive();
        let due = {
            let mut last = self.inner.pull_state.lock().unwrap_or_else(|e| e.into_inner());
            let due = match self.inner.window {
                Some(_) => inside && !last.inside,
                None => last.day != Some(today),
            };
            last.inside = inside;
            due
        };
        if !due {
            return Ok(None);
        }
        let days = i64::from(self.inner.config.pacs.days.max(1)) - 1;
        let from = today - chrono::TimeDelta::days(days);
        let report = self.pull_once(from, today).await;
        if report.is_ok() {
            self.inner.pull_state.lock().unwrap_or_else(|e| e.into_inner()).day = Some(today);
        } else {
            // Not pulled: try again on the next pass.
            self.inner.pull_state.lock().unwrap_or_else(|e| e.into_inner()).inside = false;
        }
        report.map(Some)
    }
}

/// Whether the nightly pull ran: inside the window at the last pass, and the last day pulled.
#[derive(Debug, Default)]
pub(crate) struct PullState {
    inside: bool,
    day: Option<NaiveDate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qido_items_become_candidates() {
        let item = serde_json::json!({
            "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
            "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
            "00080060": {"vr": "CS", "Value": ["MR"]},
            "0008103E": {"vr": "LO", "Value": ["T1 MPRAGE"]},
            "00201209": {"vr": "IS", "Value": [176]}
        });
        let s = found_series(&item).unwrap_or_else(|| panic!("a series"));
        assert_eq!(
            (s.study_uid.as_str(), s.candidate.series_uid.as_str(), s.candidate.slices),
            ("1.2.3", "1.2.3.4", 176)
        );
        assert_eq!(s.candidate.description.as_deref(), Some("T1 MPRAGE"));
        let as_string = serde_json::json!({"0020000D": {"Value": ["1"]}, "0020000E": {"Value": ["2"]}, "00201209": {"Value": ["41"]}});
        assert_eq!(found_series(&as_string).map(|s| s.candidate.slices), Some(41), "IS may come as a string");
        assert!(found_series(&serde_json::json!({"0020000E": {"Value": ["2"]}})).is_none(), "no study UID");
    }

    #[test]
    fn credentials_leave_the_url_and_are_decoded() {
        let p = Pacs::new("https://nb%40site:p%2Fw@pacs.example/dicom-web/", Duration::from_secs(1), "pacs.url")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.base, "https://pacs.example/dicom-web");
        assert_eq!(p.auth, Some(("nb@site".to_string(), Some("p/w".to_string()))));
    }
}
