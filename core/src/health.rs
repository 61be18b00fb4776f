//! Liveness and readiness, the same on every process: [`Health`] holds the
//! process's [`Metrics`] and runs the readiness checks — the database, the
//! broker and the object store answer and, on workers, the models are
//! loaded — each bounded by [`CHECK_TIMEOUT`]. Plain data, no HTTP: the
//! `probes` crate serves it as `/healthz`, `/readyz` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::db::JobStore;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::storage::ObjectStore;

/// How long one readiness check may take before its backend counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

const MODELS_NOT_NEEDED: u8 = 0;
const MODELS_LOADING: u8 = 1;
const MODELS_LOADED: u8 = 2;

/// What `/readyz` checks and `/metrics` encodes. Cheap to clone (clones share
/// everything); the backends are attached once connected, so the endpoints
/// can answer (unready) while a process is still starting.
#[derive(Clone)]
pub struct Health {
    metrics: Metrics,
    backends: Arc<RwLock<Option<Backends>>>,
    models: Arc<AtomicU8>,
}

#[derive(Clone)]
struct Backends {
    store: JobStore,
    queue: Queue,
    objects: ObjectStore,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("models", &self.models.load(Ordering::SeqCst)).finish_non_exhaustive()
    }
}

/// The answer of `/readyz`: each check's result (`ok` or why not) and the ones that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// `database`, `broker`, `storage` (and `models` on workers) → `ok` or the reason.
    pub checks: BTreeMap<&'static str, String>,
    /// The names of the failed checks.
    pub down: Vec<&'static str>,
}

impl Health {
    /// Readiness over no backends yet (unready until [`Health::attach`]), models not needed.
    pub fn new(metrics: Metrics) -> Health {
        Health { metrics, backends: Arc::new(RwLock::new(None)), models: Arc::new(AtomicU8::new(MODELS_NOT_NEEDED)) }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The backends the readiness checks reach.
    pub fn attach(&self, store: JobStore, queue: Queue, objects: ObjectStore) {
        let mut guard = self.backends.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some(Backends { store, queue, objects });
    }

    /// Workers: unready until [`Health::models_loaded`].
    pub fn expect_models(&self) {
        let _ = self.models.compare_exchange(MODELS_NOT_NEEDED, MODELS_LOADING, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn models_loaded(&self) {
        self.models.store(MODELS_LOADED, Ordering::SeqCst);
    }

    /// Runs every check (each bounded by [`CHECK_TIMEOUT`], all at once).
    pub async fn check(&self) -> Readiness {
        let backends = self.backends.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut checks = BTreeMap::new();
        match backends {
            None => {
                for name in ["database", "broker", "storage"] {
                    checks.insert(name, "not connected yet".to_string());
                }
            }
            Some(b) => {
                let (db, broker, storage) = tokio::join!(
                    bounded(b.store.ping()),
                    bounded(async { b.queue.ping(CHECK_TIMEOUT).await.map(drop) }),
                    bounded(b.objects.ping()),
                );
                checks.insert("database", db);
                checks.insert("broker", broker);
                checks.insert("storage", storage);
            }
        }
        match self.models.load(Ordering::SeqCst) {
            MODELS_LOADING => {
                checks.insert("models", "loading".to_string());
            }
            MODELS_LOADED => {
                checks.insert("models", "ok".to_string());
            }
            _ => {}
        }
        let down: Vec<&'static str> = checks.iter().filter(|(_, v)| v.as_str() != "ok").map(|(k, _)| *k).collect();
        Readiness { ready: down.is_empty(), checks, down }
    }
}

/// `ok`, or the error (or the timeout) as text.
async fn bounded<E: std::fmt::Display>(check: impl std::future::Future<Output = Result<(), E>>) -> String {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => "ok".into(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn unready_until_the_backends_are_attached_and_the_models_loaded() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let health = Health::new(Metrics::new());
            health.expect_models();
            let r = health.check().await;
            assert!(!r.ready);
            assert_eq!(r.down, vec!["broker", "database", "models", "storage"], "{r:?}");

            let db = format!("sqlite://{}", dir.path().join("h.db").display());
            let store = JobStore::connect(&db).await.unwrap_or_else(|e| panic!("{e}"));
            let queue = Queue::connect("memory://health-test", crate::queue::QueueOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let objects = ObjectStore::File(crate::storage::FileStore::new(dir.path().join("objects")));
            health.attach(store, queue, objects);
            let r = health.check().await;
            assert_eq!(r.down, vec!["models"], "{r:?}");
            assert_eq!(r.checks.get("database").map(String::as_str), Some("ok"));

            health.models_loaded();
            let r = health.check().await;
            assert!(r.ready, "{r:?}");
            assert!(dir.path().join("objects").is_dir(), "the file store's root is created");
        });
    }

    #[test]
    fn a_store_that_cannot_answer_is_named() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let blocker = dir.path().join("a-file");
            std::fs::write(&blocker, b"x").unwrap_or_else(|e| panic!("{e}"));
            let health = Health::new(Metrics::new());
            let store = JobStore::connect(&format!("sqlite://{}", dir.path().join("h.db").display()))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let queue = Queue::connect("memory://health-test-2", crate::queue::QueueOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            // The object root lies under a regular file: it can never be created.
            let objects = ObjectStore::File(crate::storage::FileStore::new(blocker.join("objects")));
            health.attach(store.clone(), queue, objects);
            let r = health.check().await;
            assert_eq!(r.down, vec!["storage"], "{r:?}");
            store.close().await;
            let r = health.check().await;
            assert_eq!(r.down, vec!["database", "storage"], "{r:?}");
        });
    }
}
