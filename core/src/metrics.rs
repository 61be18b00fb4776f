//! The daemon's Prometheus metrics: every metric name, its labels and its
//! meaning live here, in one registry per process ([`Metrics`], cheap to
//! clone) that the scheduler and the workers record into and `/metrics`
//! encodes (Prometheus text format 0.0.4). deploy/grafana/neurobatch.json
//! and docs/daemon.md ("Metrics and health") use exactly these names.
//!
//! Label values are bounded: job states and outcomes, stage and queue names
//! and routing reason codes are fixed sets; models, scanners and providers
//! are the few a site runs. Nothing patient-identifying is ever a label.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// `Content-Type` of [`Metrics::encode`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Counter: job deliveries settled by workers, by the state the job reached and how (`{state, outcome}`).
pub const JOBS_TOTAL: &str = "neurobatch_jobs_total";
/// Histogram: seconds per stage of a job (`{stage}`: fetch, harmonize, inference, upload, database).
pub const STAGE_DURATION_SECONDS: &str = "neurobatch_stage_duration_seconds";
/// Gauge: jobs waiting (`{queue}`: `jobs` on the broker, `database` queued in the job store).
pub const QUEUE_DEPTH: &str = "neurobatch_queue_depth";
/// Gauge: review items pending or claimed.
pub const REVIEW_BACKLOG: &str = "neurobatch_review_backlog";
/// Gauge: age of the oldest review item pending or claimed (0 when none).
pub const REVIEW_OLDEST_AGE_SECONDS: &str = "neurobatch_review_oldest_age_seconds";
/// Counter: cases routed to review, per reason (`{reason, model, scanner}`).
pub const ROUTED_TOTAL: &str = "neurobatch_routed_total";
/// Gauge, always 1: a model this process loaded (`{model, version}`).
pub const MODEL_INFO: &str = "neurobatch_model_info";
/// Gauge: jobs this worker runs at once.
pub const WORKER_CONCURRENCY: &str = "neurobatch_worker_concurrency";
/// Gauge, always 1: an ONNX Runtime execution provider this worker's sessions got (`{provider}`).
pub const EXECUTION_PROVIDER_INFO: &str = "neurobatch_execution_provider_info";

/// Every metric name, for documentation checks and tests.
pub const NAMES: [&str; 9] = [
    JOBS_TOTAL,
    STAGE_DURATION_SECONDS,
    QUEUE_DEPTH,
    REVIEW_BACKLOG,
    REVIEW_OLDEST_AGE_SECONDS,
    ROUTED_TOTAL,
    MODEL_INFO,
    WORKER_CONCURRENCY,
    EXECUTION_PROVIDER_INFO,
];

/// Upper bounds of the stage-duration buckets, in seconds: 50 ms to about 27 min, doubling.
fn stage_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.05, 2.0, 16))
}

/// The stages of a job whose durations are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Getting the study's images into memory: download (S3) and decoding the series.
    Fetch,
    /// Resampling and intensity harmonization onto the model's grid.
    Harmonize,
    /// The ensemble's passes (and the quality classifier's).
    Inference,
    /// Writing the outputs to the object store.
    Upload,
    /// Committing the results (one transaction).
    Database,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Harmonize => "harmonize",
            Stage::Inference => "inference",
            Stage::Upload => "upload",
            Stage::Database => "database",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobLabels {
    state: String,
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StageLabels {
    stage: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RoutedLabels {
    reason: String,
    model: String,
    scanner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

/// One process's metrics. Cheap to clone (clones share the registry).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    stages: Family<StageLabels, Histogram, fn() -> Histogram>,
    queue_depth: Family<QueueLabels, Gauge>,
    review_backlog: Gauge,
    review_oldest: Gauge<f64, AtomicU64>,
    routed: Family<RoutedLabels, Counter>,
    models: Family<ModelLabels, Gauge>,
    concurrency: Gauge,
    providers: Family<ProviderLabels, Gauge>,
    /// Scanner label values admitted so far (at most [`MAX_SCANNERS`]).
    scanners: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Distinct `scanner` label values one process keeps; later ones are `other`.
/// A site runs a handful of scanner models; a header that names a new one per
/// study (or garbage) must not grow the series without bound.
pub const MAX_SCANNERS: usize = 16;

/// Longest scanner label value kept (characters).
const MAX_SCANNER_CHARS: usize = 64;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `name` without `suffix` (prometheus-client appends `_total` to counters and the unit to unit-ful metrics).
fn stem<'a>(name: &'a str, suffix: &str) -> &'a str {
    name.strip_suffix(suffix).unwrap_or(name)
}

impl Metrics {
    /// A registry with every metric registered (the families empty until recorded).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            stem(JOBS_TOTAL, "_total"),
            "Job deliveries settled by workers, by the state the job reached and the outcome",
            jobs.clone(),
        );
        let stages = Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(stage_buckets);
        registry.register_with_unit(
            stem(STAGE_DURATION_SECONDS, "_seconds"),
            "Seconds per job stage (fetch, harmonize, inference, upload, database)",
            Unit::Seconds,
            stages.clone(),
        );
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            QUEUE_DEPTH,
            "Jobs waiting: on the broker's jobs queue (queue=jobs) and queued in the job store (queue=database)",
            queue_depth.clone(),
        );
        let review_backlog = Gauge::default();
        registry.register(REVIEW_BACKLOG, "Review items pending or claimed", review_backlog.clone());
        let review_oldest = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            stem(REVIEW_OLDEST_AGE_SECONDS, "_seconds"),
            "Age of the oldest review item pending or claimed (0 when there is none)",
            Unit::Seconds,
            review_oldest.clone(),
        );
        let routed = Family::<RoutedLabels, Counter>::default();
        registry.register(
            stem(ROUTED_TOTAL, "_total"),
            "Cases routed to review, once per reason, by model and scanner",
            routed.clone(),
        );
        let models = Family::<ModelLabels, Gauge>::default();
        registry.register(MODEL_INFO, "Models loaded by this process (always 1)", models.clone());
        let concurrency = Gauge::default();
        registry.register(WORKER_CONCURRENCY, "Jobs this worker runs at once", concurrency.clone());
        let providers = Family::<ProviderLabels, Gauge>::default();
        registry.register(
            EXECUTION_PROVIDER_INFO,
            "ONNX Runtime execution providers this worker's sessions got (always 1)",
            providers.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                jobs,
                stages,
                queue_depth,
                review_backlog,
                review_oldest,
                routed,
                models,
                concurrency,
                providers,
                scanners: std::sync::Mutex::new(std::collections::HashSet::new()),
            }),
        }
    }

    /// A job delivery settled: the state the job reached and how (`succeeded`/`accept`, `failed`/`permanent`, …).
    pub fn job_settled(&self, state: &str, outcome: &str) {
        self.inner.jobs.get_or_create(&JobLabels { state: state.into(), outcome: outcome.into() }).inc();
    }

    /// One stage of one job took `seconds`.
    pub fn observe_stage(&self, stage: Stage, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            self.inner.stages.get_or_create(&StageLabels { stage: stage.as_str().into() }).observe(seconds);
        }
    }

    /// Jobs waiting in `queue` now.
    pub fn set_queue_depth(&self, queue: &str, jobs: i64) {
        self.inner.queue_depth.get_or_create(&QueueLabels { queue: queue.into() }).set(jobs);
    }

    /// The review backlog and the age of its oldest item (`None`: empty).
    pub fn set_review_backlog(&self, items: i64, oldest_age_seconds: Option<f64>) {
        self.inner.review_backlog.set(items);
        self.inner.review_oldest.set(oldest_age_seconds.filter(|s| s.is_finite()).unwrap_or(0.0).max(0.0));
    }

    /// A case went to review for `reason` (one call per reason of the case).
    /// `scanner` is cut to 64 characters (control characters dropped); after
    /// [`MAX_SCANNERS`] distinct values, new ones count as `other`.
    pub fn routed(&self, reason: &str, model: &str, scanner: &str) {
        let scanner = self.scanner_label(scanner);
        let labels = RoutedLabels { reason: reason.into(), model: model.into(), scanner };
        self.inner.routed.get_or_create(&labels).inc();
    }

    fn scanner_label(&self, scanner: &str) -> String {
        let clean: String = scanner.chars().filter(|c| !c.is_control()).take(MAX_SCANNER_CHARS).collect();
        // A poisoned lock only means another recorder panicked; the set is still usable.
        let mut seen = self.inner.scanners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(&clean) {
            return clean;
        }
        if seen.len() < MAX_SCANNERS {
            seen.insert(clean.clone());
            return clean;
        }
        "other".to_string()
    }

    /// This process loaded `model` at `version`.
    pub fn model_loaded(&self, model: &str, version: &str) {
        self.inner.models.get_or_create(&ModelLabels { model: model.into(), version: version.into() }).set(1);
    }

    /// This worker runs `jobs` at once.
    pub fn set_worker_concurrency(&self, jobs: i64) {
        self.inner.concurrency.set(jobs);
    }

    /// This worker's sessions run on `provider` (`cpu`, `cuda`, `tensorrt`).
    pub fn execution_provider(&self, provider: &str) {
        self.inner.providers.get_or_create(&ProviderLabels { provider: provider.into() }).set(1);
    }

    /// Every metric in the Prometheus text format (version 0.0.4), as [`CONTENT_TYPE`] says.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; a metric that could not be encoded is left out.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.inner.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next())
    }

    #[test]
    fn the_scanner_label_is_a_bounded_set() {
        let m = Metrics::new();
        for i in 0..100 {
            m.routed("out_of_distribution", "brain-tissue", &format!("VENDOR model-{i}\n{}", "x".repeat(200)));
        }
        m.routed("out_of_distribution", "brain-tissue", &format!("VENDOR model-3\n{}", "x".repeat(200)));
        let text = m.encode();
        let series: Vec<&str> = text.lines().filter(|l| l.starts_with("neurobatch_routed_total{")).collect();
        assert_eq!(series.len(), MAX_SCANNERS + 1, "{text}");
        assert!(series.iter().any(|l| l.contains("scanner=\"other\"") && l.ends_with(" 84")), "{text}");
        // The 4th scanner was admitted and counted twice; values are cut, newlines dropped.
        let fourth = series.iter().find(|l| l.contains("model-3x")).expect("model-3");
        assert!(fourth.ends_with(" 2"), "{fourth}");
        assert!(series.iter().all(|l| l.len() < 200), "{text}");
    }

    #[test]
    fn every_name_is_encoded_with_its_type_once_recorded() {
        let m = Metrics::new();
        m.job_settled("succeeded", "review");
        m.job_settled("succeeded", "review");
        m.observe_stage(Stage::Inference, 1.5);
        m.set_queue_depth("jobs", 3);
        m.set_review_backlog(2, Some(90.0));
        m.routed("out_of_distribution", "brain-tissue", "SIEMENS Prisma");
        m.model_loaded("brain-tissue", "1.0.0");
        m.set_worker_concurrency(4);
        m.execution_provider("cpu");
        let text = m.encode();
        for (name, kind) in [
            (JOBS_TOTAL, "counter"),
            (STAGE_DURATION_SECONDS, "histogram"),
            (QUEUE_DEPTH, "gauge"),
            (REVIEW_BACKLOG, "gauge"),
            (REVIEW_OLDEST_AGE_SECONDS, "gauge"),
            (ROUTED_TOTAL, "counter"),
            (MODEL_INFO, "gauge"),
            (WORKER_CONCURRENCY, "gauge"),
            (EXECUTION_PROVIDER_INFO, "gauge"),
        ] {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} {kind}:\n{text}");
        }
        assert_eq!(sample(&text, "neurobatch_jobs_total{state=\"succeeded\",outcome=\"review\"}"), Some("2"), "{text}");
        assert_eq!(sample(&text, "neurobatch_stage_duration_seconds_count{stage=\"inference\"}"), Some("1"));
        assert_eq!(sample(&text, "neurobatch_stage_duration_seconds_sum{stage=\"inference\"}"), Some("1.5"));
        assert_eq!(sample(&text, "neurobatch_review_oldest_age_seconds "), Some("90.0"), "{text}");
        assert_eq!(sample(&text, "neurobatch_worker_concurrency "), Some("4"));
    }

    #[test]
    fn impossible_durations_and_ages_are_not_recorded() {
        let m = Metrics::new();
        m.observe_stage(Stage::Fetch, f64::NAN);
        m.observe_stage(Stage::Fetch, -1.0);
        m.set_review_backlog(0, Some(f64::INFINITY));
        let text = m.encode();
        assert!(!text.contains("stage=\"fetch\""), "{text}");
        assert_eq!(sample(&text, "neurobatch_review_oldest_age_seconds "), Some("0.0"), "{text}");
    }
}
