//! The job store: the source of truth for job state, on PostgreSQL
//! (production) or SQLite (embedded mode), chosen by URL. One type,
//! [`JobStore`], over both pools; every query is written once in SQL that
//! both backends accept (`$n` parameters, `ON CONFLICT`, `RETURNING`) and
//! checked per backend at compile time through [`dispatch!`]. Queries are
//! run-time strings: there is no database at build time.
//!
//! Times are passed in (`now`) rather than read from the database clock, so
//! that both backends agree and tests can move the clock; they are stored
//! with microsecond precision (PostgreSQL's), in UTC.
//! docs/daemon.md has the schema and the job state machine.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::config::{DatabaseConfig, redact};
use crate::domain::JobState;

/// Runs `$body` with `$pool` bound to the concrete pool of either backend.
/// The body is compiled once per backend, so the same SQL and the same
/// decoding code are type-checked against both drivers.
/// The whole call runs under the store's deadline ([`CALL_DEADLINE`]).
macro_rules! dispatch {
    ($store:expr, |$pool:ident| $body:expr) => {
        $store
            .within_deadline(async {
                match &$store.pool {
                    $crate::db::Pool::Postgres($pool) => $body,
                    $crate::db::Pool::Sqlite($pool) => $body,
                }
            })
            .await
    };
}

mod admin;
mod audit;
mod complete;
mod jobs;
mod lease;
mod migrate;
mod pulls;
mod review;
mod rows;
mod sends;
mod studies;
mod tokens;
mod types;

pub use admin::{AdminStats, RoutingRate};
pub use lease::{LeasePolicy, LeaseVerdict};
pub use migrate::{POSTGRES as POSTGRES_MIGRATIONS, SQLITE as SQLITE_MIGRATIONS};
pub use review::{ReviewCase, ReviewComment, ReviewFilter, ReviewItem, ReviewOutcome};
pub use sends::{DicomSend, SendCandidate};
pub use tokens::ApiToken;
pub use types::*;

/// Why a store operation failed; `is_transient` says whether retrying may help.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {url}: unsupported scheme (expected postgres:// or sqlite://)")]
    Scheme { url: String },
    #[error("database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database: job {0} does not exist")]
    NoSuchJob(JobId),
    #[error("database: job {id} is {state}; results are not recorded for it")]
    Closed { id: JobId, state: JobState },
    #[error("database: row {id}: stored {column} is invalid: {reason}")]
    Corrupt { id: i64, column: &'static str, reason: String },
    #[error("database: job key {key}: no free version after {tries} tries")]
    VersionRace { key: String, tries: u32 },
    #[error("database: {what} is not valid JSON: {source}")]
    Json { what: &'static str, source: serde_json::Error },
    #[error("database: no answer within {secs} s (the connection may be dead)")]
    Deadline { secs: u64 },
}

impl DbError {
    /// Whether the failure is about reaching the database (connection lost,
    /// pool exhausted, lock timeouts, serialization conflicts) rather than
    /// about the data; a worker retries a job that failed this way.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Connect { .. } | DbError::Deadline { .. } => true,
            DbError::Sql(e) => sql_is_transient(e),
            DbError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => sql_is_transient(e),
            _ => false,
        }
    }
}

fn sql_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08…), serialization failure, deadlock,
            // operator intervention (57P…); SQLite: SQLITE_BUSY and SQLITE_LOCKED (and their extended codes).
            code.starts_with("08")
                || code == "40001"
                || code == "40P01"
                || code.starts_with("57P")
                || matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6))
        }
        _ => false,
    }
}

/// The two backends.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The longest one store call (a query, or a transaction from begin to
/// commit) may take before it fails with [`DbError::Deadline`], a transient
/// error. A connection whose peer vanished without a reset (a firewall or NAT
/// dropping its state, a host gone) makes no error of its own: its query
/// waits until TCP gives up, many minutes later, and with every pooled
/// connection in that state the process would hang. The deadline turns that
/// into an outage the callers already handle (the worker's breaker, the
/// scheduler's next pass). Healthy calls take milliseconds.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// The job store. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct JobStore {
    pool: Pool,
    deadline: Duration,
}

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl JobStore {
    /// Connects with the default pool size (8).
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        Self::connect_with(url, 8).await
    }

    /// Connects as `[database]` says.
    pub async fn connect_config(config: &DatabaseConfig) -> Result<Self, DbError> {
        Self::connect_with(config.url.expose(), config.max_connections).await
    }

    /// Connects to `postgres://…` or `sqlite://PATH` (the file and its folder
    /// are created; WAL journal, full sync, foreign keys on). Does not migrate.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self, DbError> {
        let shown = redact(url);
        let connect_err = |source| DbError::Connect { url: shown.clone(), source };
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        let pool = match scheme.as_str() {
            "postgres" | "postgresql" => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(max_connections.max(1))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await
                    .map_err(connect_err)?,
            ),
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(connect_err)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true);
                let file = options.get_filename().to_path_buf();
                let in_memory = file.as_os_str() == ":memory:" || url.contains(":memory:");
                if !in_memory && let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| connect_err(sqlx::Error::Io(e)))?;
                }
                // An in-memory database exists per connection: one connection, kept.
                let pool_options = if in_memory {
                    SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
                } else {
                    SqlitePoolOptions::new().max_connections(max_connections.max(1))
                };
                Pool::Sqlite(
                    pool_options
                        .acquire_timeout(Duration::from_secs(10))
                        .connect_with(options)
                        .await
                        .map_err(connect_err)?,
                )
            }
            _ => return Err(DbError::Scheme { url: shown }),
        };
        Ok(Self { pool, deadline: CALL_DEADLINE })
    }

    /// The same store with another deadline per call (tests; [`CALL_DEADLINE`] otherwise).
    pub fn with_call_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Runs one store call under the deadline.
    async fn within_deadline<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        match tokio::time::timeout(self.deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(DbError::Deadline { secs: self.deadline.as_secs() }),
        }
    }

    /// Applies the pending migrations of this backend; a no-op when there are none.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match &self.pool {
            Pool::Postgres(pool) => migrate::migrator(migrate::POSTGRES).await?.run(pool).await?,
            Pool::Sqlite(pool) => {
                let _serialized = migrate::SQLITE_MIGRATIONS.lock().await;
                migrate::migrator(migrate::SQLITE).await?.run(pool).await?
            }
        }
        Ok(())
    }

    /// The versions of the migrations applied to this database, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, DbError> {
        dispatch!(self, |pool| {
            let versions: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                    .fetch_all(pool)
                    .await?;
            Ok(versions)
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// `SELECT 1` on a pooled connection: whether the database answers (readiness).
    pub async fn ping(&self) -> Result<(), DbError> {
        dispatch!(self, |pool| {
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool).await?;
            Ok(())
        })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }
}

/// A time as stored: UTC, microseconds.
pub(crate) fn stored(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The longest lease: ten years. Longer ones are cut to it, which keeps every
/// stored time a four-digit year (SQLite compares them as text).
const MAX_LEASE: chrono::TimeDelta = chrono::TimeDelta::days(3650);

/// `now + d`, with `d` at most [`MAX_LEASE`].
pub(crate) fn later(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    let d = chrono::TimeDelta::from_std(d).unwrap_or(MAX_LEASE).min(MAX_LEASE);
    stored(now.checked_add_signed(d).unwrap_or(now))
}

/// Begins a transaction that writes: `BEGIN IMMEDIATE` on SQLite, so that the
/// write lock is taken (waiting on `busy_timeout`) up front instead of failing
/// when a read is upgraded.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>> + Send {
        self.begin()
    }
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}
