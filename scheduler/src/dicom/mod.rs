//! The DICOM node (issue 14, receiving): a Storage SCP with C-ECHO on
//! `dicom.listen`, built on dicom-rs's upper layer (`dicom-ul`). It accepts
//! the MR, Enhanced MR, CT and Enhanced CT storage SOP classes (and
//! Verification) in exactly the transfer syntaxes the DICOM reader decodes
//! ([`imaging::dicom::DECODABLE_TRANSFER_SYNTAXES`]); other presentation
//! contexts are refused at negotiation with the reason PS3.8 gives. Who may
//! associate is `access.rs`; one association's DIMSE exchange is
//! `association.rs`; how an instance reaches the inbox is `instance.rs`.
//! The inbox scan then stages each study folder as it stages any other, once
//! it has been quiet for `scheduler.quiet_period_secs`. docs/dicom.md is the
//! conformance statement.

mod access;
mod association;
pub(crate) mod instance;
pub(crate) mod store_scu;

use std::sync::Arc;
use std::time::Duration;

use dicom_dictionary_std::uids;
use dicom_ul::association::ServerAssociationOptions;
use neurobatch_core::config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::SchedulerError;

/// The storage SOP classes received, by C-STORE and by STOW-RS.
pub const STORAGE_SOP_CLASSES: &[&str] =
    &[uids::MR_IMAGE_STORAGE, uids::ENHANCED_MR_IMAGE_STORAGE, uids::CT_IMAGE_STORAGE, uids::ENHANCED_CT_IMAGE_STORAGE];

/// The listener's settings, checked once.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    ae_title: String,
    callers: Vec<neurobatch_core::config::DicomCaller>,
    any_caller: bool,
    max_pdu: u32,
    max_associations: usize,
    settings: association::Settings,
}

impl Node {
    /// `None` when `dicom.listen` is empty (the node is off).
    pub fn from_config(config: &Config) -> Result<Option<Node>, SchedulerError> {
        let d = &config.dicom;
        if d.listen.trim().is_empty() {
            return Ok(None);
        }
        let callers = d.callers().map_err(|reason| SchedulerError::Config { key: "dicom.allowed_callers", reason })?;
        let ae_title = neurobatch_core::config::valid_ae_title(&d.ae_title)
            .map_err(|reason| SchedulerError::Config { key: "dicom.ae_title", reason })?
            .to_string();
        Ok(Some(Node {
            ae_title,
            callers,
            any_caller: d.allow_any_caller,
            max_pdu: d.max_pdu,
            max_associations: usize::try_from(d.max_associations).unwrap_or(usize::MAX).max(1),
            settings: association::Settings {
                inbox: config.scheduler.inbox.clone(),
                idle: Duration::from_secs(d.idle_timeout_secs.max(1)),
                max_instance_bytes: d.max_instance_bytes,
            },
        }))
    }

    /// Accepts associations on `listener` until `shutdown`; each runs on its
    /// own task, at most `dicom.max_associations` at once (a connection
    /// beyond that is closed at once, and the caller retries later).
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        let node = Arc::new(self);
        let slots = Arc::new(tokio::sync::Semaphore::new(node.max_associations));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            while tasks.try_join_next().is_some() {}
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "dicom listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, limit = node.max_associations, "dicom association refused: at the limit");
                drop(socket);
                continue;
            };
            let node = node.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let _slot = slot;
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = node.associate(socket, peer) => {}
                }
            });
        }
        tasks.shutdown().await;
        Ok(())
    }

    /// Negotiates and serves one association; failures end it and are logged.
    async fn associate(&self, socket: tokio::net::TcpStream, peer: std::net::SocketAddr) {
        let mut options = ServerAssociationOptions::new()
            .ae_access_control(access::Callers {
                allowed: self.callers.clone(),
                any: self.any_caller,
                peer: Some(peer.ip()),
            })
            .ae_title(self.ae_title.clone())
            .max_pdu_length(self.max_pdu)
            .read_timeout(self.settings.idle)
            .write_timeout(self.settings.idle);
        options = options.with_abstract_syntax(uids::VERIFICATION);
        for uid in STORAGE_SOP_CLASSES {
            options = options.with_abstract_syntax(*uid);
        }
        for ts in imaging::dicom::DECODABLE_TRANSFER_SYNTAXES {
            options = options.with_transfer_syntax(*ts);
        }
        let assoc = match options.establish_async(socket).await {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(%peer, error = %e, "dicom association not established");
                return;
            }
        };
        let caller = dicom_ul::association::Association::peer_ae_title(&assoc).to_string();
        tracing::info!(%peer, %caller, "dicom association established");
        let tally = association::serve(assoc, &self.settings).await;
        tracing::info!(%peer, %caller, echoes = tally.echoes, stored = tally.stored, failed = tally.failed, "dicom association closed");
    }
}

/// Binds `dicom.listen` (when set): the listener and its node, or the reason it cannot listen.
pub(crate) async fn bind(config: &Config) -> Result<Option<(Node, TcpListener)>, SchedulerError> {
    let Some(node) = Node::from_config(config)? else { return Ok(None) };
    let addr = config.dicom.listen.clone();
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| SchedulerError::Dicom { addr: addr.clone(), reason: e.to_string() })?;
    let shown = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    tracing::info!(addr = %shown, ae_title = %node.ae_title, "dicom storage scp listening");
    Ok(Some((node, listener)))
}
