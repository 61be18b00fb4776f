//! Running the daemon's processes in tests: a child process with its
//! configuration in `NEUROBATCH__…` variables and its log in a file, killed
//! when dropped; waiting for conditions; reading the job store's outcome.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `neurobatch <role>` child process.
pub struct Proc {
    pub name: String,
    child: std::cell::RefCell<Option<Child>>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `neurobatch <args>` in `dir` with exactly `env` as its `NEUROBATCH__…` variables.
    pub fn start(name: &str, dir: &Path, args: &[&str], env: &[(String, String)]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_neurobatch"));
        cmd.args(["--log-level", "info"]).args(args).current_dir(dir);
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("NEUROBATCH__") {
                cmd.env_remove(var);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdout(file.try_clone().expect("log file")).stderr(file).stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc { name: name.into(), child: std::cell::RefCell::new(Some(child)), log }
    }

    pub fn pid(&self) -> u32 {
        self.child.borrow().as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.get_mut().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit status (at most `within`).
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        self.wait_exit(within)
    }

    /// Waits for the process to exit on its own (at most `within`, then kills it and panics).
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut c = self.child.get_mut().take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("{} did not finish within {within:?}:\n{}", self.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&self) {
        if let Some(c) = self.child.borrow_mut().as_mut()
            && let Some(status) = c.try_wait().expect("wait")
        {
            panic!("{} exited with {status}:\n{}", self.name, self.log_text());
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `neurobatch token create --role <role> --name <name>` against the configuration in `env`: the token.
pub fn make_token(dir: &Path, env: &[(String, String)], role: &str, name: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_neurobatch"));
    cmd.args(["token", "create", "--role", role, "--name", name]).current_dir(dir);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("NEUROBATCH__") {
            cmd.env_remove(var);
        }
    }
    let out = cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).output().expect("token create runs");
    assert!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout.lines().last().unwrap_or("").trim().to_string();
    assert!(token.starts_with("nbt_"), "{stdout}");
    token
}

/// Polls `check` every 250 ms until it returns `Some`, or panics with `what` and `context()` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `GET path` on `127.0.0.1:port` with a bearer token: (status, body).
pub fn http_get(port: u16, token: &str, path: &str) -> Option<(u16, String)> {
    http(port, token, "GET", path, "application/json", b"")
}

pub fn http_post(port: u16, token: &str, path: &str, json: &str) -> Option<(u16, String)> {
    http(port, token, "POST", path, "application/json", json.as_bytes())
}

/// `PUT path` with a binary body (a corrected mask).
pub fn http_put_bytes(port: u16, token: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    http(port, token, "PUT", path, "application/octet-stream", body)
}

fn http(port: u16, token: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.into() };
    Some((status, body))
}

pub use super::orthanc::dechunk;

/// Copies a file or folder (recursively) to `to`.
pub fn copy_entry(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read_dir") {
            let e = e.expect("entry");
            copy_entry(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    }
}

/// Environment variables for a configuration (`section.key` → `NEUROBATCH__SECTION__KEY`).
pub fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (format!("NEUROBATCH__{}", k.replace('.', "__").to_uppercase()), v.clone())).collect()
}

/// The settings every daemon test shares: a quick pipeline (the cpu profile's first member,
/// the quality classifier on), a 1 s quiet period and poll, no nightly window, short leases
/// and retries.
pub fn fast_settings() -> Vec<(&'static str, String)> {
    vec![
        ("scheduler.quiet_period_secs", "1".into()),
        ("scheduler.poll_interval_secs", "1".into()),
        ("scheduler.nightly_window", String::new()),
        ("pipeline.profile", "cpu".into()),
        ("pipeline.members", "1".into()),
        ("pipeline.threads", "1".into()),
        ("worker.lease_secs", "6".into()),
        ("worker.max_attempts", "3".into()),
        ("worker.grace_period_secs", "20".into()),
        ("queue.retry_initial_secs", "1".into()),
        ("queue.retry_max_secs", "2".into()),
        // No health/metrics listener: several workers share this machine (tests that need one set it).
        ("worker.listen", String::new()),
    ]
}

/// The queue options of daemons run with [`fast_settings`] under `prefix`: the same retry
/// schedule, so a test's cleanup deletes the very retry queues (`<prefix>.retry.1000ms`, …)
/// the daemons declared, not the default schedule's.
pub fn fast_queue_options(prefix: &str) -> neurobatch_core::queue::QueueOptions {
    neurobatch_core::queue::QueueOptions {
        prefix: prefix.to_string(),
        max_attempts: 3,
        retry_initial: Duration::from_secs(1),
        retry_max: Duration::from_secs(2),
        ..Default::default()
    }
}

/// [`fast_settings`] for `neurobatch serve` on the embedded backends under `root`: SQLite at
/// `db`, files under `root/objects`, the memory queue, `inbox`, the API on `port`.
pub fn embedded_settings(root: &Path, db: &Path, inbox: &Path, port: u16) -> Vec<(&'static str, String)> {
    let mut settings = fast_settings();
    settings.extend([
        ("database.url", format!("sqlite://{}", db.display())),
        ("storage.url", format!("file://{}", root.join("objects").display())),
        ("queue.url", "memory://".into()),
        ("scheduler.inbox", inbox.display().to_string()),
        ("scheduler.listen", format!("127.0.0.1:{port}")),
    ]);
    settings
}

/// One job as the store has it, joined with its study and result.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub job_id: i64,
    pub study_key: String,
    pub version: i64,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub decision: Option<String>,
    pub object_keys: BTreeMap<String, String>,
    pub review_items: i64,
}

/// The query behind [`JobRow`] (the same text on PostgreSQL and SQLite).
pub const JOBS_SQL: &str = "SELECT j.id, s.study_key, j.version, j.state, j.attempts, j.last_error, r.decision, \
     r.object_keys, (SELECT COUNT(*) FROM review_items ri WHERE ri.job_id = j.id) AS reviews \
     FROM jobs j JOIN studies s ON s.id = j.study_id LEFT JOIN results r ON r.job_id = j.id ORDER BY j.id";

pub fn job_row<R: sqlx::Row>(row: &R) -> JobRow
where
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let keys: Option<String> = row.get("object_keys");
    JobRow {
        job_id: row.get("id"),
        study_key: row.get("study_key"),
        version: row.get("version"),
        state: row.get("state"),
        attempts: row.get("attempts"),
        last_error: row.get("last_error"),
        decision: row.get("decision"),
        object_keys: keys.map(|k| serde_json::from_str(&k).expect("object_keys JSON")).unwrap_or_default(),
        review_items: row.get("reviews"),
    }
}

/// Every job of a SQLite job store, read with a connection of its own (empty while it cannot be opened).
pub fn sqlite_jobs(db: &Path) -> Vec<JobRow> {
    use sqlx::Connection as _;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let Ok(mut c) = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await else {
            return Vec::new();
        };
        let rows = sqlx::query(JOBS_SQL).fetch_all(&mut c).await.unwrap_or_default();
        let _ = c.close().await;
        rows.iter().map(job_row).collect()
    })
}

/// The SHA-256 of a file, as the scheduler keys NIfTI studies.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).expect("read");
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}
