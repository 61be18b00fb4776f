//! The worker's circuit breaker for the services its jobs need (the object
//! store, the job store). A job that found one of them down — and a probe
//! right after confirmed it — is handed back without spending an attempt and
//! trips the breaker; the consume loop then takes no job until every tripped
//! service answers its probe again (docs/daemon.md, "Attempts and outages").
//! Owns the state and the probes, not the loop.

use std::sync::Mutex;
use std::time::Duration;

use neurobatch_core::db::JobStore;
use neurobatch_core::storage::ObjectStore;
use tokio_util::sync::CancellationToken;

use super::error::Dependency;

/// Which services are known to be down.
#[derive(Debug, Default)]
pub struct Outage {
    down: Mutex<Vec<Dependency>>,
}

impl Outage {
    pub fn trip(&self, dependency: Dependency) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if !down.contains(&dependency) {
            down.push(dependency);
        }
    }

    /// The services tripped and not yet answering again.
    pub fn down(&self) -> Vec<Dependency> {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn clear(&self, dependency: Dependency) {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).retain(|d| *d != dependency);
    }

    /// Probes every tripped service, backing off from 1 s to 15 s between
    /// rounds, until all answer (true) or `shutdown` is cancelled (false).
    pub async fn wait_until_up(&self, objects: &ObjectStore, store: &JobStore, shutdown: &CancellationToken) -> bool {
        let mut pause = Duration::from_secs(1);
        loop {
            for dependency in self.down() {
                if probe(dependency, objects, store).await.is_ok() {
                    tracing::info!(service = dependency.as_str(), "service answers again");
                    self.clear(dependency);
                }
            }
            if self.down().is_empty() {
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return false,
            }
            pause = (pause * 2).min(Duration::from_secs(15));
        }
    }
}

/// One cheap request to the service: `Err` with the reason when it does not answer.
pub async fn probe(dependency: Dependency, objects: &ObjectStore, store: &JobStore) -> Result<(), String> {
    match dependency {
        Dependency::ObjectStore => objects.ping().await.map_err(|e| e.to_string()),
        Dependency::JobStore => store.ping().await.map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tripped_service_is_cleared_once_its_probe_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file store whose root is a file: every put and ping fails, as a store that is down.
        let root = dir.path().join("objects");
        std::fs::write(&root, b"not a folder").expect("write");
        let objects = ObjectStore::from_url(&format!("file://{}", root.display()), &Default::default())
            .await
            .expect("file store");
        let store =
            JobStore::connect(&format!("sqlite://{}", dir.path().join("jobs.db").display())).await.expect("sqlite");
        let outage = Outage::default();
        assert!(probe(Dependency::ObjectStore, &objects, &store).await.is_err());
        outage.trip(Dependency::ObjectStore);
        outage.trip(Dependency::ObjectStore);
        assert_eq!(outage.down(), vec![Dependency::ObjectStore], "tripped once");

        // Still down: the wait ends only with the shutdown.
        let shutdown = CancellationToken::new();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            cancel.cancel();
        });
        assert!(!outage.wait_until_up(&objects, &store, &shutdown).await);
        assert_eq!(outage.down(), vec![Dependency::ObjectStore]);

        // The store is back: the next probe clears it.
        std::fs::remove_file(&root).expect("remove");
        assert!(outage.wait_until_up(&objects, &store, &CancellationToken::new()).await);
        assert!(outage.down().is_empty());
    }
}
