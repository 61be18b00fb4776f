//! Logging set-up for the binary: tracing to stderr, text or JSON, and the
//! operator's status lines ([`status`]), which follow the same format.
//!
//! JSON lines carry the event's fields, the current span's fields (`span`)
//! and every enclosing span's (`spans`): a worker's events inside a job show
//! its `job_id` and `study_id`.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`.
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    JSON.store(json, Ordering::SeqCst);
    // A second initialization (tests) is harmless: keep the first.
    let _ =
        if json { builder.json().with_current_span(true).with_span_list(true).try_init() } else { builder.try_init() };
}

/// A status line for the operator (where a daemon listens, what it watches):
/// printed to stderr as is, or, with `--log-json`, logged as an info event so
/// that stderr holds only JSON lines.
pub fn status(text: &str) {
    if JSON.load(Ordering::SeqCst) {
        tracing::info!(status = text, "status");
    } else {
        eprintln!("{text}");
    }
}
