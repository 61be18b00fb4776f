//! Spawning a scheduler on real backends, test data, mtimes and a minimal HTTP client.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use neurobatch_core::config::{Config, SecretUrl};
use neurobatch_core::db::JobStore;
use neurobatch_core::queue::Queue;
use neurobatch_core::storage::ObjectStore;
use scheduler::{PipelineSpec, Scheduler};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// The test data folder (`scripts/env.sh` sets `NEUROBATCH_TESTDATA`).
pub fn testdata_root() -> PathBuf {
    std::env::var_os("NEUROBATCH_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.testdata"))
}

/// A file or folder of the test data.
pub fn testdata(rel: &str) -> PathBuf {
    let p = testdata_root().join(rel);
    assert!(p.exists(), "test data {} is missing: run `source scripts/env.sh` and scripts/testdata", p.display());
    p
}

pub fn pipeline() -> PipelineSpec {
    PipelineSpec {
        name: "brain-tissue".into(),
        model_name: "brain-tissue".into(),
        model_version: "1.0.0".into(),
        harmonizer_version: "zscore-1".into(),
        labels: ["background", "grey_matter", "white_matter"]
            .iter()
            .zip(0u32..)
            .map(|(name, value)| scheduler::PipelineLabel { value, name: (*name).into(), color: [200, 50, 50] })
            .collect(),
    }
}

/// Which database a test app uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A scheduler on its own database, queue, object store and inbox.
pub struct App {
    pub sched: Scheduler,
    pub store: JobStore,
    pub queue: Queue,
    pub objects: ObjectStore,
    pub config: Config,
    pub inbox: PathBuf,
    pub dir: tempfile::TempDir,
    pg_db: Option<String>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{name}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn postgres_server() -> String {
    std::env::var("NEUROBATCH_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// Runs SQL on the server's maintenance database.
async fn admin(sql: &str) {
    use sqlx::Connection as _;
    let server = postgres_server();
    let mut c = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {server} (set NEUROBATCH_TEST_POSTGRES): {e}"));
    sqlx::query(sql).execute(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = c.close().await;
}

impl App {
    /// A fresh app; `edit` adjusts the configuration first (quiet period 0, any-time window by default).
    pub async fn start(db: Db, name: &str, edit: impl FnOnce(&mut Config)) -> App {
        let dir = ok(tempfile::tempdir());
        let mut config = Config::default();
        let (url, pg_db) = match db {
            Db::Sqlite => (format!("sqlite://{}/nb.db", dir.path().display()), None),
            Db::Postgres => {
                let db = unique(&format!("nb_sched_{name}")).to_ascii_lowercase();
                admin(&format!("CREATE DATABASE \"{db}\"")).await;
                (format!("{}/{db}", postgres_server()), Some(db))
            }
        };
        config.database.url = SecretUrl::new(&url);
        config.queue.url = SecretUrl::new(format!("memory://{}", unique(name)));
        config.storage.url = SecretUrl::new(format!("file://{}/objects", dir.path().display()));
        config.scheduler.inbox = dir.path().join("inbox");
        config.scheduler.quiet_period_secs = 0;
        config.scheduler.nightly_window = String::new();
        config.scheduler.poll_interval_secs = 1;
        // Tests submit files from their own folder and the test data.
        config.scheduler.allowed_roots = vec![dir.path().to_path_buf(), testdata_root()];
        edit(&mut config);
        ok(config.validate());
        let store = ok(JobStore::connect(&url).await);
        ok(store.migrate().await);
        let queue = ok(Queue::connect(config.queue.url.expose(), config.queue.options(&config.worker, "test")).await);
        let objects = ok(ObjectStore::from_config(&config.storage).await);
        let sched = ok(Scheduler::new(&config, store.clone(), queue.clone(), objects.clone(), pipeline()).await);
        let inbox = config.scheduler.inbox.clone();
        App { sched, store, queue, objects, config, inbox, dir, pg_db }
    }

    /// A second scheduler on the same backends: a restarted process (empty in-memory caches).
    /// A live API token of `role` called `name`.
    pub async fn token(&self, name: &str, role: neurobatch_core::domain::Role) -> String {
        let token = scheduler::new_token();
        ok(self.store.create_token(name, role, &scheduler::token_sha256(&token), chrono::Utc::now()).await);
        token
    }

    /// The database URL (for raw SQL in tests).
    pub fn db_url(&self) -> String {
        self.config.database.url.expose().to_string()
    }

    pub async fn restarted(&self) -> Scheduler {
        ok(Scheduler::new(&self.config, self.store.clone(), self.queue.clone(), self.objects.clone(), pipeline()).await)
    }

    /// Closes the store and drops a PostgreSQL database.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some(db) = &self.pg_db {
            admin(&format!("DROP DATABASE \"{db}\" WITH (FORCE)")).await;
        }
    }
}

/// Copies the files of `src` (not recursive) into `dst`, those `keep` accepts.
pub fn copy_files(src: &Path, dst: &Path, keep: impl Fn(usize, &str) -> bool) -> usize {
    ok(std::fs::create_dir_all(dst));
    let mut names: Vec<String> = ok(std::fs::read_dir(src))
        .map(|e| ok(e).file_name().to_string_lossy().into_owned())
        .filter(|n| src.join(n).is_file())
        .collect();
    names.sort();
    let mut n = 0;
    for (i, name) in names.iter().enumerate() {
        if keep(i, name) {
            ok(std::fs::copy(src.join(name), dst.join(name)));
            n += 1;
        }
    }
    n
}

/// Sets the mtime of `path` and everything below it to `secs` seconds ago.
pub fn age(path: &Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    let mut paths: Vec<PathBuf> = walk(path);
    // Children first: setting a file's time does not touch its folder, but be explicit about order anyway.
    paths.reverse();
    for p in paths {
        let f = ok(std::fs::File::open(&p));
        ok(f.set_modified(t));
    }
}

fn walk(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_path_buf()];
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = ok(std::fs::read_dir(path)).map(|e| ok(e).path()).collect();
        entries.sort();
        for e in entries {
            out.extend(walk(&e));
        }
    }
    out
}

/// A minimal HTTP/1.1 exchange: status and body.
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_as(addr, None, method, path, body.map(str::as_bytes)).await
}

/// A request with `Authorization: Bearer <token>` when a token is given.
pub async fn http_as(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> (u16, String) {
    http_typed(addr, token, method, path, "application/json", body.unwrap_or(b"")).await
}

/// A request with a body of `content_type`.
pub async fn http_typed(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let stream = ok(tokio::net::TcpStream::connect(addr).await);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         {auth}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    exchange(stream, &request).await
}

/// One request written as given (headers and all): status and body.
pub async fn http_raw(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    exchange(ok(tokio::net::TcpStream::connect(addr).await), request.as_bytes()).await
}

async fn exchange(mut stream: tokio::net::TcpStream, request: &[u8]) -> (u16, String) {
    ok(stream.write_all(request).await);
    let mut raw = Vec::new();
    ok(ok(tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| "http timeout")));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {text:?}"));
    let status: u16 =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line {head:?}"));
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(after.get(..n).unwrap_or(after));
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The app serving its API on a loopback port.
pub struct Served {
    pub app: App,
    pub addr: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<Result<(), scheduler::SchedulerError>>,
}

pub async fn serve(db: Db, name: &str, edit: impl FnOnce(&mut Config)) -> Served {
    let app = App::start(db, name, edit).await;
    let listener = ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let addr = ok(listener.local_addr());
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let (s, t) = (app.sched.clone(), stop.clone());
        async move { s.serve_http(listener, t).await }
    });
    Served { app, addr, stop, server }
}

impl Served {
    pub async fn finish(self) {
        self.stop.cancel();
        ok(ok(self.server.await));
        self.app.finish().await;
    }

    pub async fn call(&self, token: Option<&str>, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
        http_as(self.addr, token, method, path, body).await
    }
}
