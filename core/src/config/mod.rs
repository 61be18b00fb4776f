//! The daemon's configuration: what every role (`serve`, `scheduler`,
//! `worker`, `migrate`) reads at start-up. Owns the sections and their
//! defaults, loading (TOML files layered with `NEUROBATCH__SECTION__KEY`
//! environment variables, see [`layers`]) and validation. The defaults are
//! the embedded mode, so no file at all is a working configuration.
//! docs/daemon.md lists every key.

mod layers;
mod secret;
mod window;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use layers::{DEFAULT_FILE, ENV_PREFIX, FILE_SUFFIX};
pub use secret::{REDACTED, SecretUrl, redact};
pub use window::NightlyWindow;

/// Why a configuration could not be loaded; each names the file, variable or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("configuration file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("environment variable {var}: secret file {}: {source}", path.display())]
    SecretFile { var: String, path: PathBuf, source: std::io::Error },
    #[error("configuration: {message}")]
    Merged { message: String },
    #[error("configuration key {key} (environment {env}): {reason}")]
    Invalid { key: String, env: String, reason: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub storage: StorageConfig,
    pub scheduler: SchedulerConfig,
    pub worker: WorkerConfig,
    pub pipeline: PipelineConfig,
    pub dicom: DicomConfig,
    pub pacs: PacsConfig,
}

/// `[pacs]`: the PACS's DICOMweb service that the nightly pull queries
/// (QIDO-RS) and retrieves from (WADO-RS) (docs/dicom.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacsConfig {
    /// The DICOMweb root (`https://pacs/dicom-web`), with `user:password@`
    /// for basic authentication; empty: no pull.
    pub url: SecretUrl,
    /// The nightly pull asks for studies of the last this many days (today included).
    pub days: u32,
    /// Seconds one request to the PACS may take.
    pub timeout_secs: u64,
    /// A DICOMweb root results are sent to by STOW-RS (`POST {stow_url}/studies`),
    /// with `user:password@` for basic authentication; empty: none. Sent under
    /// `dicom.send` like the C-STORE destinations.
    pub stow_url: SecretUrl,
}

impl PacsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let http = |key: &'static str, url: &SecretUrl| {
            let scheme = url.scheme();
            match scheme.as_str() {
                "http" | "https" => Ok(()),
                _ => Err(invalid(key, format!("scheme \"{scheme}\" is not http or https"))),
            }
        };
        let (pull, stow) = (!self.url.expose().is_empty(), !self.stow_url.expose().is_empty());
        if pull {
            http("pacs.url", &self.url)?;
            if self.days == 0 {
                return Err(invalid("pacs.days", "must be at least 1".into()));
            }
        }
        if stow {
            http("pacs.stow_url", &self.stow_url)?;
        }
        if (pull || stow) && self.timeout_secs == 0 {
            return Err(invalid("pacs.timeout_secs", "must be at least 1".into()));
        }
        Ok(())
    }
}

impl Default for PacsConfig {
    fn default() -> Self {
        Self { url: SecretUrl::new(""), days: 2, timeout_secs: 300, stow_url: SecretUrl::new("") }
    }
}

/// `[dicom]`: the DICOM node (Storage SCP with C-ECHO) that receives studies
/// from a PACS or a modality into the inbox (docs/dicom.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DicomConfig {
    /// `host:port` to listen on (e.g. `127.0.0.1:11112`); empty: off.
    pub listen: String,
    /// This node's AE title: associations calling another title are refused.
    pub ae_title: String,
    /// Callers allowed to associate: `AET` (from any host) or `AET@host`
    /// (an IP address). Empty: every caller is refused, unless `allow_any_caller`.
    pub allowed_callers: Vec<String>,
    /// Accept any calling AE title from any host (a closed network only).
    pub allow_any_caller: bool,
    /// Largest P-DATA PDU this node receives, in bytes.
    pub max_pdu: u32,
    /// Associations served at once; further connections are closed at once.
    pub max_associations: u32,
    /// An association idle this long is closed.
    pub idle_timeout_secs: u64,
    /// Largest data set of one instance, in bytes; a larger one is refused
    /// (its C-STORE answers "out of resources") and nothing of it is kept.
    pub max_instance_bytes: u64,
    /// Where results go back as DICOM (SEG, SR) by C-STORE: `AET@host:port`
    /// each. Empty (the default): nothing is sent.
    pub destinations: Vec<String>,
    /// Which results are sent: `accepted` (accepted cases only), `all` (every
    /// case at once, routed ones marked as awaiting review), `after_review`
    /// (accepted cases at once, routed ones once a reviewer approves them).
    pub send: DicomSendPolicy,
    /// Attempts per object and destination before it is marked failed.
    pub send_max_attempts: u32,
}

/// `dicom.send`: which results go back to the PACS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DicomSendPolicy {
    Accepted,
    All,
    AfterReview,
}

/// One entry of `dicom.destinations`: the peer's AE title and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomDestination {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl DicomDestination {
    /// Parses `AET@host:port`.
    pub fn parse(entry: &str) -> Result<DicomDestination, String> {
        let (title, address) = entry.split_once('@').ok_or_else(|| format!("`{entry}`: expected AET@host:port"))?;
        let (host, port) = address.rsplit_once(':').ok_or_else(|| format!("`{entry}`: expected AET@host:port"))?;
        let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("`{entry}`: bad port"))?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("`{entry}`: empty or blank host"));
        }
        Ok(DicomDestination { ae_title: valid_ae_title(title)?.to_string(), host: host.to_string(), port })
    }

    /// `host:port`, to connect to.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for DicomDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.ae_title, self.host, self.port)
    }
}

/// One entry of `dicom.allowed_callers`: a calling AE title, and the host it
/// must come from when one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomCaller {
    pub ae_title: String,
    pub host: Option<std::net::IpAddr>,
}

/// An AE title as PS3.5 allows it: 1–16 characters of printable ASCII
/// without a backslash, not only spaces; leading and trailing spaces are not
/// significant.
pub fn valid_ae_title(title: &str) -> Result<&str, String> {
    let trimmed = title.trim_matches(' ');
    if trimmed.is_empty() || title.len() > 16 {
        return Err(format!("AE title `{title}`: expected 1 to 16 characters"));
    }
    if !title.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
        return Err("AE title: printable ASCII without a backslash".into());
    }
    Ok(trimmed)
}

impl DicomConfig {
    /// The parsed `allowed_callers`.
    pub fn callers(&self) -> Result<Vec<DicomCaller>, String> {
        self.allowed_callers
            .iter()
            .map(|entry| {
                let (title, host) = match entry.rsplit_once('@') {
                    Some((t, h)) => {
                        let host = h
                            .trim()
                            .parse::<std::net::IpAddr>()
                            .map_err(|_| format!("`{entry}`: the host after @ must be an IP address"))?;
                        (t, Some(host))
                    }
                    None => (entry.as_str(), None),
                };
                Ok(DicomCaller { ae_title: valid_ae_title(title)?.to_string(), host })
            })
            .collect()
    }

    /// The parsed `destinations`.
    pub fn destinations(&self) -> Result<Vec<DicomDestination>, String> {
        self.destinations.iter().map(|d| DicomDestination::parse(d)).collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.destinations().map_err(|r| invalid("dicom.destinations", r))?;
        if !self.destinations.is_empty() {
            valid_ae_title(&self.ae_title).map_err(|r| invalid("dicom.ae_title", r))?;
        }
        if self.send_max_attempts == 0 {
            return Err(invalid("dicom.send_max_attempts", "must be at least 1".into()));
        }
        if self.listen.is_empty() {
            return Ok(());
        }
        if !self.listen.contains(':') {
            return Err(invalid("dicom.listen", format!("`{}`: expected host:port", self.listen)));
        }
        valid_ae_title(&self.ae_title).map_err(|r| invalid("dicom.ae_title", r))?;
        let callers = self.callers().map_err(|r| invalid("dicom.allowed_callers", r))?;
        if callers.is_empty() && !self.allow_any_caller {
            return Err(invalid(
                "dicom.allowed_callers",
                "empty: every caller would be refused (list the PACS's AE titles, or set dicom.allow_any_caller)"
                    .into(),
            ));
        }
        if !(4_096..=16_777_216).contains(&self.max_pdu) {
            return Err(invalid("dicom.max_pdu", "expected 4096 to 16777216 bytes".into()));
        }
        if self.max_associations == 0 {
            return Err(invalid("dicom.max_associations", "must be at least 1".into()));
        }
        if self.idle_timeout_secs == 0 {
            return Err(invalid("dicom.idle_timeout_secs", "must be at least 1".into()));
        }
        if self.max_instance_bytes < 1024 {
            return Err(invalid("dicom.max_instance_bytes", "must be at least 1024".into()));
        }
        Ok(())
    }
}

impl Default for DicomConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            ae_title: "NEUROBATCH".into(),
            allowed_callers: Vec::new(),
            allow_any_caller: false,
            max_pdu: 65_536,
            max_associations: 16,
            idle_timeout_secs: 60,
            max_instance_bytes: 1 << 30,
            destinations: Vec::new(),
            send: DicomSendPolicy::AfterReview,
            send_max_attempts: 10,
        }
    }
}

/// `[database]`: the job store, the source of truth for job state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (embedded; the file and its folder are created) or `postgres://user:pass@host/db`.
    pub url: SecretUrl,
    /// Connections in the pool.
    pub max_connections: u32,
}

/// `[queue]`: the job transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// `memory://` (in-process, embedded) or `amqp://user:pass@host:5672/vhost`.
    pub url: SecretUrl,
    /// Prefix of every exchange and queue name (`<prefix>.jobs`, `<prefix>.dead`, …).
    pub prefix: String,
    /// Wait before the second attempt of a job that failed transiently; it doubles per attempt…
    pub retry_initial_secs: u64,
    /// …up to this.
    pub retry_max_secs: u64,
    /// Bound on the jobs queue (0: none); beyond it jobs wait in the database's outbox.
    pub max_queued: u32,
}

/// `[storage]`: where studies are read from and results written to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `file://PATH` (embedded) or `s3://bucket/prefix`.
    pub url: SecretUrl,
    /// S3 endpoint for MinIO, Ceph and other S3-compatible servers; empty: AWS.
    pub endpoint: String,
    /// S3 region.
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which MinIO and Ceph usually need.
    pub path_style: bool,
    /// The most objects one study under an S3 prefix may have (submitting
    /// and fetching it); more is refused before anything is downloaded.
    pub max_study_objects: u32,
    /// The most bytes one study under an S3 prefix may have; downloads stream
    /// to disk and stop at this.
    pub max_study_bytes: u64,
}

/// `[scheduler]`: ingest and dispatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Watched folder of NIfTI files and DICOM folders.
    pub inbox: PathBuf,
    /// A DICOM study is ready after this many seconds without a new instance.
    pub quiet_period_secs: u64,
    /// Local-time window for routine work, `HH:MM-HH:MM` (may wrap midnight); empty: any time.
    pub nightly_window: String,
    /// Seconds between inbox scans, outbox passes and reaper passes.
    pub poll_interval_secs: u64,
    /// Address of the HTTP API (`POST /v1/studies`, `GET /v1/studies`).
    pub listen: String,
    /// `host:port` of a second listener with only `/healthz`, `/readyz` and
    /// `/metrics`, without a token, for Prometheus and the kubelet; empty
    /// (the default): none. On `listen`, `/metrics` needs a token.
    pub metrics_listen: String,
    /// Key prefix polled in the configured S3 bucket for new studies (one
    /// study per first-level folder); empty: no S3 polling.
    pub s3_prefix: String,
    /// The built review viewer (`scripts/build-web.sh`); empty: `web/dist` under the
    /// working directory or above the executable.
    pub ui_dir: PathBuf,
    /// Local folders besides the inbox (and a file object store's root) whose
    /// studies may be submitted (`POST /v1/studies`, `backfill`); nothing
    /// else on the server's disk is read.
    pub allowed_roots: Vec<PathBuf>,
    /// `s3://bucket[/prefix]` places besides the storage bucket's prefix
    /// whose studies may be submitted.
    pub allowed_s3_prefixes: Vec<String>,
}

/// `[pipeline]`: what every study is run through, and which series qualify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// The pipeline's name (in job keys, object keys and the database).
    pub name: String,
    /// Folder holding the model folders; empty: `$NEUROBATCH_MODELS`, `./models`, or beside the executable.
    pub models_dir: PathBuf,
    /// The segmentation model folder (under `models_dir`).
    pub model: String,
    /// The scan-quality classifier folder; empty: none (the default: docs/routing.md).
    pub quality_model: String,
    /// Inference profile from the manifest (`cpu`, `full`); empty: by execution provider.
    pub profile: String,
    /// Run only the first N ensemble members (0: the profile's).
    pub members: u32,
    /// Threads ONNX Runtime uses per operator in each session (0: one per core, divided
    /// between the lanes when there are several).
    pub threads: u32,
    /// Inference lanes: sessions per segmentation member running model calls side by side
    /// (0: one per core, at most 4, on the CPU; 1 on a GPU).
    pub lanes: u32,
    /// ONNX Runtime execution providers in order of preference (`cpu`, `cuda`, `tensorrt`);
    /// the CPU is always the fallback.
    pub providers: Vec<String>,
    /// Eligible DICOM modalities.
    pub modalities: Vec<String>,
    /// Regular expression a DICOM series description must match (empty: any).
    pub series_description: String,
    /// Fewest slices an eligible series may have.
    pub min_slices: u32,
    /// Eligible slice orientations (`axial`, `coronal`, `sagittal`); empty: any.
    pub orientations: Vec<String>,
}

/// `[worker]`: consuming and processing jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Jobs processed at once (also the broker prefetch).
    pub concurrency: u32,
    /// A claimed job's lease; renewed while the job runs, reclaimed by the reaper once expired.
    pub lease_secs: u64,
    /// A job running longer than this fails (transiently; for good when its previous attempt timed out too).
    pub job_timeout_secs: u64,
    /// Attempts before a job that keeps failing transiently is dead. A worker
    /// that vanishes while holding the job does not spend one (below).
    pub max_attempts: u32,
    /// A job that was the only one running on this many workers that vanished
    /// (their leases expired) is poison: dead, and dead-lettered.
    pub poison_after_crashes: u32,
    /// A job whose workers vanished this many times in all (beside other jobs
    /// or not) is dead.
    pub max_lease_expiries: u32,
    /// On SIGTERM, how long the job in flight may take to finish before it is handed back.
    pub grace_period_secs: u64,
    /// Address of `neurobatch worker`'s `/healthz`, `/readyz` and `/metrics`; empty: none.
    pub listen: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: SecretUrl::new("sqlite://./data/neurobatch.db"), max_connections: 8 }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            url: SecretUrl::new("memory://"),
            prefix: "neurobatch".into(),
            retry_initial_secs: 30,
            retry_max_secs: 3600,
            max_queued: 0,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            name: "brain-tissue".into(),
            models_dir: PathBuf::new(),
            model: "brain-tissue".into(),
            quality_model: String::new(),
            profile: String::new(),
            members: 0,
            threads: 0,
            lanes: 0,
            providers: vec!["cpu".into()],
            modalities: vec!["MR".into()],
            series_description: String::new(),
            min_slices: 16,
            orientations: Vec::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: SecretUrl::new("file://./data/objects"),
            endpoint: String::new(),
            region: "us-east-1".into(),
            path_style: false,
            max_study_objects: 20_000,
            max_study_bytes: 8 << 30,
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            inbox: PathBuf::from("./inbox"),
            quiet_period_secs: 60,
            nightly_window: "19:00-07:00".into(),
            poll_interval_secs: 5,
            listen: "127.0.0.1:8080".into(),
            metrics_listen: String::new(),
            s3_prefix: String::new(),
            ui_dir: PathBuf::new(),
            allowed_roots: Vec::new(),
            allowed_s3_prefixes: Vec::new(),
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 1,
            lease_secs: 120,
            job_timeout_secs: 3600,
            max_attempts: 3,
            poison_after_crashes: 3,
            max_lease_expiries: 10,
            grace_period_secs: 60,
            listen: "127.0.0.1:9090".into(),
        }
    }
}

impl Config {
    /// The configuration of a process: `config/neurobatch.toml` when it exists
    /// (relative to the working directory), then `files` in order, then the
    /// process environment. Later layers override earlier ones.
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfigError> {
        let mut all = Vec::new();
        let default = Path::new(DEFAULT_FILE);
        if default.is_file() {
            all.push(default.to_path_buf());
        }
        all.extend(files.iter().cloned());
        Self::load_from(&all, layers::process_env())
    }

    /// The configuration from exactly these files (each must exist) and these
    /// environment variables (only `NEUROBATCH__…` ones are read), validated.
    pub fn load_from(files: &[PathBuf], env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let table = layers::merge(files, env)?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Merged { message: one_line(&e.to_string()) })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let db = self.database.url.scheme();
        if !matches!(db.as_str(), "sqlite" | "postgres" | "postgresql") {
            return Err(invalid("database.url", format!("scheme \"{db}\" is not sqlite or postgres")));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1".into()));
        }
        let queue = self.queue.url.scheme();
        if !matches!(queue.as_str(), "memory" | "amqp" | "amqps") {
            return Err(invalid("queue.url", format!("scheme \"{queue}\" is not memory or amqp")));
        }
        let storage = self.storage.url.scheme();
        match storage.as_str() {
            "file" => {}
            "s3" => {
                let bucket = self.storage.url.expose().get("s3://".len()..).unwrap_or("");
                if bucket.split('/').next().unwrap_or("").is_empty() {
                    return Err(invalid("storage.url", "s3 URL has no bucket (s3://bucket/prefix)".into()));
                }
            }
            _ => return Err(invalid("storage.url", format!("scheme \"{storage}\" is not file or s3"))),
        }
        if self.scheduler.inbox.as_os_str().is_empty() {
            return Err(invalid("scheduler.inbox", "must not be empty".into()));
        }
        self.scheduler.window().map_err(|reason| invalid("scheduler.nightly_window", reason))?;
        if self.scheduler.poll_interval_secs == 0 {
            return Err(invalid("scheduler.poll_interval_secs", "must be at least 1".into()));
        }
        self.dicom.validate()?;
        self.pacs.validate()?;
        let w = &self.worker;
        if w.concurrency == 0 {
            return Err(invalid("worker.concurrency", "must be at least 1".into()));
        }
        if w.lease_secs < 5 {
            return Err(invalid("worker.lease_secs", "must be at least 5 seconds".into()));
        }
        if w.job_timeout_secs == 0 {
            return Err(invalid("worker.job_timeout_secs", "must be at least 1".into()));
        }
        if w.max_attempts == 0 {
            return Err(invalid("worker.max_attempts", "must be at least 1".into()));
        }
        if w.poison_after_crashes == 0 {
            return Err(invalid("worker.poison_after_crashes", "must be at least 1".into()));
        }
        if w.max_lease_expiries < w.poison_after_crashes {
            return Err(invalid("worker.max_lease_expiries", "must be at least worker.poison_after_crashes".into()));
        }
        let q = &self.queue;
        if q.prefix.is_empty() || !q.prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(invalid("queue.prefix", "expected letters, digits, `.`, `_` or `-`".into()));
        }
        if q.retry_initial_secs == 0 || q.retry_max_secs < q.retry_initial_secs {
            return Err(invalid(
                "queue.retry_initial_secs",
                "must be at least 1 and at most queue.retry_max_secs".into(),
            ));
        }
        let p = &self.pipeline;
        if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)) {
            return Err(invalid("pipeline.name", "expected letters, digits, `_` or `-`".into()));
        }
        if p.model.is_empty() {
            return Err(invalid("pipeline.model", "must name a model folder".into()));
        }
        if p.providers.is_empty() {
            return Err(invalid("pipeline.providers", "name at least one of cpu, cuda, tensorrt".into()));
        }
        if let Some(e) = p.providers.iter().find(|e| !PROVIDERS.contains(&e.as_str())) {
            return Err(invalid("pipeline.providers", format!("\"{e}\" is not cpu, cuda or tensorrt")));
        }
        for (key, addr) in [("worker.listen", &w.listen), ("scheduler.metrics_listen", &self.scheduler.metrics_listen)]
        {
            let port = addr.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
            if !addr.is_empty() && port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(invalid(key, format!("\"{addr}\" is not HOST:PORT or empty")));
            }
        }
        if let Some(o) = p.orientations.iter().find(|o| !matches!(o.as_str(), "axial" | "coronal" | "sagittal")) {
            return Err(invalid("pipeline.orientations", format!("\"{o}\" is not axial, coronal or sagittal")));
        }
        Ok(())
    }
}

impl SchedulerConfig {
    /// The nightly window, or `None` when routine work may run at any time.
    pub fn window(&self) -> Result<Option<NightlyWindow>, String> {
        let text = self.nightly_window.trim();
        if text.is_empty() { Ok(None) } else { text.parse().map(Some) }
    }

    pub fn quiet_period(&self) -> Duration {
        Duration::from_secs(self.quiet_period_secs)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs)
    }
}

impl QueueConfig {
    /// The queue options these settings and the worker's attempts give.
    pub fn options(&self, worker: &WorkerConfig, connection_name: &str) -> crate::queue::QueueOptions {
        crate::queue::QueueOptions {
            prefix: self.prefix.clone(),
            max_attempts: worker.max_attempts,
            retry_initial: Duration::from_secs(self.retry_initial_secs),
            retry_max: Duration::from_secs(self.retry_max_secs),
            max_queued: (self.max_queued > 0).then_some(self.max_queued),
            connection_name: connection_name.to_string(),
            ..crate::queue::QueueOptions::default()
        }
    }
}

impl WorkerConfig {
    /// The reaper's budget for lost workers; the backoff is the queue's retry backoff.
    pub fn lease_policy(&self, queue: &QueueConfig) -> crate::db::LeasePolicy {
        crate::db::LeasePolicy {
            poison_after: self.poison_after_crashes,
            max_expiries: self.max_lease_expiries,
            backoff_initial: Duration::from_secs(queue.retry_initial_secs),
            backoff_max: Duration::from_secs(queue.retry_max_secs),
        }
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn job_timeout(&self) -> Duration {
        Duration::from_secs(self.job_timeout_secs)
    }

    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.grace_period_secs)
    }
}

/// The execution providers `pipeline.providers` accepts.
pub const PROVIDERS: [&str; 3] = ["cpu", "cuda", "tensorrt"];

/// The environment variable that sets `section.key`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase())
}

fn invalid(key: &str, reason: String) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), env: env_name(key), reason }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
