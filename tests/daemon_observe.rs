//! Watching the daemon (issue 6): metrics, health and logs, end to end.
//!
//! - `neurobatch serve --log-json` (embedded backends) on a DICOM study with
//!   planted patient fields and an out-of-distribution NIfTI: `/metrics` is
//!   scraped and parsed as a Prometheus scraper parses it (every family with
//!   sane values after the jobs), `/healthz` and `/readyz` answer, every log
//!   line is JSON, the job's events carry the `job` span with `job_id` and
//!   `study_id`, and no patient name, ID or birth date reaches any line.
//! - A scheduler and a worker on PostgreSQL and RabbitMQ reached through TCP
//!   proxies this test controls: `/readyz` is 200, goes 503 naming the
//!   database while the PostgreSQL proxy is down, 200 again once it is back,
//!   and the same for the broker. The machine's services are never touched.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::{dechunk, embedded_settings, env, fast_settings, free_port, sqlite_jobs, wait_for};
use neurobatch_core::queue::Queue;
use sqlx::Connection as _;

/// The planted patient fields of `daemon/studies/dicom_0` (name, given name, patient ID, accession, birth date).
const PLANTED: [&str; 5] = ["ZZLEAKNAME", "SECRETGIVEN", "PIDLEAK314159", "ACCLEAK271828", "19010203"];

/// The two tests share the machine's two cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A `neurobatch` child with its stderr (the log) and stdout in separate files; killed on drop.
struct Daemon {
    name: String,
    child: std::cell::RefCell<Option<Child>>,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(name: &str, dir: &Path, args: &[&str], vars: &[(String, String)]) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let out = dir.join(format!("{name}.out"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_neurobatch"));
        cmd.args(args).current_dir(dir).stdin(Stdio::null());
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("NEUROBATCH__") || var == "RUST_LOG" {
                cmd.env_remove(var);
            }
        }
        cmd.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stderr(std::fs::File::create(&log).expect("log file"));
        cmd.stdout(std::fs::File::create(out).expect("out file"));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Daemon { name: name.into(), child: std::cell::RefCell::new(Some(child)), log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&self) {
        if let Some(c) = self.child.borrow_mut().as_mut()
            && let Some(status) = c.try_wait().expect("wait")
        {
            panic!("{} exited with {status}:\n{}", self.name, self.log_text());
        }
    }

    /// SIGTERM, then the exit status (within `within`).
    fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut c = self.child.get_mut().take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                panic!("{} did not stop within {within:?}:\n{}", self.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.get_mut().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET path` on `127.0.0.1:port`: (status, content type, body).
fn get(port: u16, path: &str) -> Option<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v))
        .unwrap_or("")
        .trim()
        .to_string();
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    Some((status, content_type, body))
}

/// `/metrics` as a Prometheus scraper reads it.
fn scrape(port: u16) -> prometheus_parse::Scrape {
    let (status, content_type, body) = get(port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "content type {content_type}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("the text format parses")
}

/// The samples of one metric, as (labels, value) with counters, gauges and untyped values as numbers.
fn samples(scrape: &prometheus_parse::Scrape, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| {
            let labels: BTreeMap<String, String> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some((labels, v)),
                _ => None,
            }
        })
        .collect()
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(scrape, name)
        .into_iter()
        .find(|(l, _)| labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, v)| v)
}

#[test]
fn serve_logs_json_without_patient_fields_and_exposes_its_metrics() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    for name in ["dicom_0", "phantom.nii.gz"] {
        common::daemon::copy_entry(&common::testdata(&format!("daemon/studies/{name}")), &inbox.join(name));
    }
    let db = root.join("data").join("nb.db");
    let (port, metrics_port) = (free_port(), free_port());
    let mut settings = embedded_settings(root, &db, &inbox, port);
    settings.push(("scheduler.metrics_listen", format!("127.0.0.1:{metrics_port}")));
    let mut serve = Daemon::start("serve", root, &["--log-json", "--log-level", "info", "serve"], &env(&settings));

    let rows = wait_for(
        "both studies final",
        Duration::from_secs(300),
        || {
            serve.assert_running();
            let rows = sqlite_jobs(&db);
            let done = rows.len() == 2 && rows.iter().all(|r| !matches!(r.state.as_str(), "queued" | "running"));
            done.then_some(rows)
        },
        || format!("{:#?}\n{}", sqlite_jobs(&db), serve.log_text()),
    );
    assert!(rows.iter().all(|r| r.state == "succeeded"), "{rows:#?}");
    let reviewed = rows.iter().filter(|r| r.decision.as_deref() == Some("review")).count();
    assert!(reviewed >= 1, "the phantom is out of distribution: {rows:#?}");

    // Health: alive, and ready (database, broker, storage, models).
    let (status, _, body) = get(port, "/healthz").expect("GET /healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _, body) = get(port, "/readyz").expect("GET /readyz");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    for check in ["database", "broker", "storage", "models"] {
        assert_eq!(ready["checks"][check], "ok", "{body}");
    }
    // `/metrics` on the API listener needs a token; the metrics listener
    // (scheduler.metrics_listen) serves it and the probes without one.
    let (status, _, body) = get(port, "/metrics").expect("GET /metrics on the API");
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = get(metrics_port, "/healthz").expect("GET /healthz on the metrics listener");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let port = metrics_port;

    // The gauges are sampled every poll interval (1 s): wait for the backlog to show the review items.
    let scraped = wait_for(
        "the review backlog in /metrics",
        Duration::from_secs(30),
        || {
            let s = scrape(port);
            (value(&s, "neurobatch_review_backlog", &[]) == Some(reviewed as f64)).then_some(s)
        },
        || get(port, "/metrics").map(|(_, _, b)| b).unwrap_or_default(),
    );
    let text = get(port, "/metrics").map(|(_, _, b)| b).unwrap_or_default();
    for name in neurobatch_core::metrics::NAMES {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} declared:\n{text}");
    }
    let jobs = samples(&scraped, "neurobatch_jobs_total");
    let succeeded: f64 =
        jobs.iter().filter(|(l, _)| l.get("state").map(String::as_str) == Some("succeeded")).map(|(_, v)| v).sum();
    assert_eq!(succeeded, 2.0, "{jobs:?}");
    assert_eq!(
        value(&scraped, "neurobatch_jobs_total", &[("state", "succeeded"), ("outcome", "review")]),
        Some(reviewed as f64),
        "{jobs:?}"
    );
    for stage in ["fetch", "harmonize", "inference", "upload", "database"] {
        let count = value(&scraped, "neurobatch_stage_duration_seconds_count", &[("stage", stage)]);
        assert_eq!(count, Some(2.0), "{stage}: one observation per job");
        let sum = value(&scraped, "neurobatch_stage_duration_seconds_sum", &[("stage", stage)]).unwrap_or(-1.0);
        assert!((0.0..600.0).contains(&sum), "{stage}: {sum} s");
    }
    let inference = value(&scraped, "neurobatch_stage_duration_seconds_sum", &[("stage", "inference")]);
    assert!(inference.is_some_and(|s| s > 0.0), "inference took time: {inference:?}");
    let histogram = scraped
        .samples
        .iter()
        .find(|s| s.metric == "neurobatch_stage_duration_seconds" && s.labels.get("stage") == Some("inference"))
        .expect("the inference histogram");
    let prometheus_parse::Value::Histogram(buckets) = &histogram.value else { panic!("{histogram:?}") };
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count), "cumulative buckets: {buckets:?}");
    assert_eq!(buckets.last().map(|b| (b.less_than, b.count)), Some((f64::INFINITY, 2.0)), "{buckets:?}");

    let routed = samples(&scraped, "neurobatch_routed_total");
    assert!(!routed.is_empty(), "a case went to review");
    for (labels, n) in &routed {
        assert_eq!(labels.get("model").map(String::as_str), Some("brain-tissue"), "{routed:?}");
        assert!(labels.get("scanner").is_some_and(|s| !s.is_empty()), "{routed:?}");
        assert!(*n >= 1.0, "{routed:?}");
    }
    assert_eq!(value(&scraped, "neurobatch_queue_depth", &[("queue", "jobs")]), Some(0.0));
    assert_eq!(value(&scraped, "neurobatch_queue_depth", &[("queue", "database")]), Some(0.0));
    let oldest = value(&scraped, "neurobatch_review_oldest_age_seconds", &[]).unwrap_or(-1.0);
    assert!(oldest > 0.0 && oldest < 600.0, "oldest review item age {oldest}");
    let models = samples(&scraped, "neurobatch_model_info");
    let names: Vec<&str> = models.iter().filter_map(|(l, _)| l.get("model").map(String::as_str)).collect();
    // The scan-quality classifier is not in the defaults (docs/routing.md): one model loaded.
    assert_eq!(names, ["brain-tissue"], "{models:?}");
    assert!(models.iter().all(|(l, v)| *v == 1.0 && l.get("version").is_some_and(|v| !v.is_empty())), "{models:?}");
    assert_eq!(value(&scraped, "neurobatch_worker_concurrency", &[]), Some(1.0));
    assert_eq!(value(&scraped, "neurobatch_execution_provider_info", &[("provider", "cpu")]), Some(1.0));

    let exit = serve.terminate(Duration::from_secs(60));
    assert!(exit.success(), "serve exited with {exit}:\n{}", serve.log_text());

    // Logs: JSON lines only, the job span on the job's events, no patient field anywhere.
    let log = serve.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.len() > 10, "{log}");
    let in_job: Vec<&serde_json::Value> = lines.iter().filter(|l| l["span"]["name"] == "job").collect();
    let job_ids: Vec<i64> = rows.iter().map(|r| r.job_id).collect();
    assert!(
        in_job.iter().any(|l| l["span"]["job_id"].as_i64().is_some_and(|id| job_ids.contains(&id))
            && l["span"]["study_id"].as_i64().is_some()
            && l["fields"]["message"] == "job succeeded"),
        "no `job succeeded` event inside a job span with job_id and study_id:\n{log}"
    );
    // The pipeline runs on the blocking pool: its events carry the job span too (issue 17).
    assert!(
        in_job.iter().any(|l| l["span"]["job_id"].as_i64().is_some_and(|id| job_ids.contains(&id))
            && l["fields"]["message"] == "pipeline finished"),
        "no `pipeline finished` event inside a job span:\n{log}"
    );
    // The stages have spans of their own, inside the job's: the upload's event lists both.
    assert!(
        lines.iter().any(|l| l["span"]["name"] == "upload"
            && l["fields"]["message"] == "results uploaded"
            && l["spans"].as_array().is_some_and(|spans| spans
                .iter()
                .any(|s| s["name"] == "job" && s["job_id"].as_i64().is_some_and(|id| job_ids.contains(&id))))),
        "no `results uploaded` event in an upload span inside a job span:\n{log}"
    );
    for secret in PLANTED {
        assert!(!log.contains(secret), "{secret} reached a log line");
    }
}

/// A TCP forwarder on 127.0.0.1:`port` → `target` that the test closes
/// (listener and every open connection) and opens again on the same port.
struct Proxy {
    port: u16,
    target: String,
    rt: Arc<tokio::runtime::Runtime>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    fn new(rt: Arc<tokio::runtime::Runtime>, target: &str) -> Proxy {
        let p = Proxy {
            port: free_port(),
            target: target.into(),
            rt,
            accept: Mutex::new(None),
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        p.open();
        p
    }

    fn open(&self) {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port)))
            .unwrap_or_else(|e| panic!("proxy port {}: {e}", self.port));
        let target = self.target.clone();
        let conns = self.conns.clone();
        let task = self.rt.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn.abort_handle());
            }
        });
        *self.accept.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
    }

    /// Stops listening and cuts every forwarded connection.
    fn close(&self) {
        if let Some(task) = self.accept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            task.abort();
            let _ = self.rt.block_on(task);
        }
        for conn in self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            conn.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.close();
    }
}

fn postgres_server() -> String {
    std::env::var("NEUROBATCH_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn amqp_url() -> String {
    std::env::var("NEUROBATCH_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// `scheme://user[:password]@host:port/rest` with `host:port` replaced by 127.0.0.1:`port`, and that `host:port`.
fn through(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
    let (hostport, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let at = if user.is_empty() { String::new() } else { format!("{user}@") };
    let path = if path.is_empty() { String::new() } else { format!("/{path}") };
    (format!("{scheme}://{at}127.0.0.1:{port}{path}"), hostport.to_string())
}

/// Waits until `/readyz` on `port` answers `want`, and returns its body.
fn readyz_becomes(daemon: &Daemon, port: u16, want: u16, what: &str, timeout: Duration) -> serde_json::Value {
    let body = wait_for(
        what,
        timeout,
        || {
            daemon.assert_running();
            get(port, "/readyz").filter(|(s, _, _)| *s == want).map(|(_, _, b)| b)
        },
        || format!("{:?}\n{}", get(port, "/readyz"), daemon.log_text()),
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/readyz body is JSON ({e}): {body}"))
}

fn down(body: &serde_json::Value) -> Vec<String> {
    body["down"].as_array().map_or(Vec::new(), |d| d.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
}

#[test]
fn readiness_follows_postgres_and_rabbitmq_going_away_and_coming_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = Arc::new(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt"));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("nbo-ready-{}-{nanos}", std::process::id());
    let db = name.replace('-', "_");
    rt.block_on(async {
        let mut admin =
            sqlx::PgConnection::connect(&format!("{}/postgres", postgres_server())).await.expect("postgres");
        sqlx::query(&format!("CREATE DATABASE \"{db}\"")).execute(&mut admin).await.expect("create database");
        let _ = admin.close().await;
    });
    let _cleanup = Cleanup { rt: rt.clone(), name: name.clone(), db: db.clone() };

    let (pg_url, pg_target) = through(&format!("{}/{db}", postgres_server()), 0);
    let (_, mq_target) = through(&amqp_url(), 0);
    let pg = Proxy::new(rt.clone(), &pg_target);
    let mq = Proxy::new(rt.clone(), &mq_target);
    let (pg_url, _) = through(&pg_url, pg.port);
    let (mq_url, _) = through(&amqp_url(), mq.port);

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (api, health) = (free_port(), free_port());
    let mut settings = fast_settings();
    settings.extend([
        ("database.url", pg_url),
        ("database.max_connections", "2".into()),
        ("queue.url", mq_url),
        ("queue.prefix", name.clone()),
        ("storage.url", format!("file://{}", root.join("objects").display())),
        ("scheduler.inbox", root.join("inbox").display().to_string()),
        ("scheduler.listen", format!("127.0.0.1:{api}")),
        ("worker.listen", format!("127.0.0.1:{health}")),
    ]);
    let vars = env(&settings);
    let mut scheduler = Daemon::start("scheduler", root, &["--log-level", "info", "scheduler"], &vars);
    let mut worker = Daemon::start("worker", root, &["--log-level", "info", "worker"], &vars);

    let startup = Duration::from_secs(180);
    readyz_becomes(&scheduler, api, 200, "the scheduler ready", startup);
    let ready = readyz_becomes(&worker, health, 200, "the worker ready (models loaded)", startup);
    assert_eq!(ready["checks"]["models"], "ok", "{ready}");
    let (status, _, body) = get(health, "/healthz").expect("GET /healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let scraped = scrape(health);
    assert_eq!(value(&scraped, "neurobatch_worker_concurrency", &[]), Some(1.0));
    assert_eq!(value(&scraped, "neurobatch_execution_provider_info", &[("provider", "cpu")]), Some(1.0));

    let outage = Duration::from_secs(60);
    let back = Duration::from_secs(120);
    for (proxy, backend) in [(&pg, "database"), (&mq, "broker")] {
        proxy.close();
        for (daemon, port) in [(&scheduler, api), (&worker, health)] {
            let what = format!("{} unready without the {backend}", daemon.name);
            let body = readyz_becomes(daemon, port, 503, &what, outage);
            assert!(down(&body).contains(&backend.to_string()), "{backend} named as down: {body}");
            assert!(body["checks"][backend].as_str().is_some_and(|r| !r.is_empty() && r != "ok"), "{body}");
        }
        proxy.open();
        for (daemon, port) in [(&scheduler, api), (&worker, health)] {
            let what = format!("{} ready with the {backend} back", daemon.name);
            let body = readyz_becomes(daemon, port, 200, &what, back);
            assert!(down(&body).is_empty(), "{body}");
        }
    }
    for d in [&mut worker, &mut scheduler] {
        let exit = d.terminate(Duration::from_secs(60));
        assert!(exit.success(), "{} exited with {exit}:\n{}", d.name, d.log_text());
    }
}

/// Drops the test's database and queue topology.
struct Cleanup {
    rt: Arc<tokio::runtime::Runtime>,
    name: String,
    db: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.rt.block_on(async {
            if let Ok(q) = Queue::connect(&amqp_url(), common::daemon::fast_queue_options(&self.name)).await {
                let _ = q.delete_topology().await;
                let _ = q.close().await;
            }
            if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{}/postgres", postgres_server())).await {
                let q = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db);
                let _ = sqlx::query(&q).execute(&mut admin).await;
                let _ = admin.close().await;
            }
        });
    }
}
