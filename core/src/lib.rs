//! The daemon's shared layer (issue 4): what the scheduler and the workers
//! both need and that has nothing to do with images.
//!
//! Modules (each owns one concern; see docs/architecture.md):
//! - `config`: TOML files layered with `NEUROBATCH__*` environment variables,
//!   validated at start-up, secrets never logged;
//! - `domain`: job and review states, priorities, job keys;
//! - `message`: the versioned JSON job message and review event;
//! - `db`: PostgreSQL and SQLite (sqlx) behind one job store, migrations;
//! - `queue`: RabbitMQ (lapin) and the in-process memory queue;
//! - `storage`: S3 (aws-sdk-s3) and local files;
//! - `metrics`: every Prometheus metric name, one registry per process;
//! - `health`: `/healthz`, `/readyz` and `/metrics` (axum routes both processes serve);
//! - `install`: where the folders shipped with the binary (models, the viewer) are found.
//!
//! Dependencies point one way: binary → scheduler/worker → core; core
//! depends on nothing of ours (the imaging crate is the scheduler's and the
//! worker's, not core's).

pub mod config;
pub mod db;
pub mod domain;
pub mod health;
pub mod install;
pub mod message;
pub mod metrics;
pub mod queue;
pub mod scratch;
pub mod storage;
