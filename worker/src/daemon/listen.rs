//! The worker's own HTTP listener (`worker.listen`): `/healthz`, `/readyz`
//! and `/metrics` as [`neurobatch_core::health`] serves them, for the
//! kubelet's probes and Prometheus. A worker has no other HTTP surface.

use neurobatch_core::health::Health;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::WorkerError;

/// Binds `addr` and serves `health` until `shutdown` is cancelled. `Ok(None)`
/// when `addr` is empty (no listener); an error names the address when it
/// cannot be bound. The task's result says whether the server failed.
pub async fn start(
    addr: &str,
    health: Health,
    shutdown: CancellationToken,
) -> Result<Option<JoinHandle<Result<(), WorkerError>>>, WorkerError> {
    if addr.is_empty() {
        return Ok(None);
    }
    let (shown, server) = probes::bind(addr, health, async move { shutdown.cancelled().await })
        .await
        .map_err(|e| WorkerError::Listen { addr: addr.to_string(), reason: e.to_string() })?;
    tracing::info!(addr = %shown, "worker health and metrics listening");
    Ok(Some(tokio::spawn(async move {
        server.await.map_err(|e| WorkerError::Listen { addr: shown, reason: e.to_string() })
    })))
}
