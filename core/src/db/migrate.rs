//! The schema migrations, embedded in the binary from `migrations/postgres/`
//! and `migrations/sqlite/`, and applied with sqlx's migrator (which records
//! them in `_sqlx_migrations` and refuses an applied migration whose text
//! changed). On PostgreSQL the migrator holds `pg_advisory_lock` (keyed on
//! the database name) while it runs, so any number of processes may migrate
//! at start-up at once; on SQLite, migrations in one process are serialized
//! by a mutex (embedded mode is one process).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::DbError;

/// One migration file: version, description, SQL.
type Embedded = (i64, &'static str, &'static str);

/// `migrations/postgres/`, in version order.
pub const POSTGRES: &[Embedded] = &[
    (1, "initial", include_str!("../../../migrations/postgres/0001_initial.sql")),
    (2, "review", include_str!("../../../migrations/postgres/0002_review.sql")),
    (3, "unknown_uncertainty", include_str!("../../../migrations/postgres/0003_unknown_uncertainty.sql")),
    (4, "pacs_pulls", include_str!("../../../migrations/postgres/0004_pacs_pulls.sql")),
    (5, "dicom_sends", include_str!("../../../migrations/postgres/0005_dicom_sends.sql")),
    (6, "review_reasons", include_str!("../../../migrations/postgres/0006_review_reasons.sql")),
    (7, "lease_expiries", include_str!("../../../migrations/postgres/0007_lease_expiries.sql")),
];
/// `migrations/sqlite/`, in version order.
pub const SQLITE: &[Embedded] = &[
    (1, "initial", include_str!("../../../migrations/sqlite/0001_initial.sql")),
    (2, "review", include_str!("../../../migrations/sqlite/0002_review.sql")),
    (3, "unknown_uncertainty", include_str!("../../../migrations/sqlite/0003_unknown_uncertainty.sql")),
    (4, "pacs_pulls", include_str!("../../../migrations/sqlite/0004_pacs_pulls.sql")),
    (5, "dicom_sends", include_str!("../../../migrations/sqlite/0005_dicom_sends.sql")),
    (6, "review_reasons", include_str!("../../../migrations/sqlite/0006_review_reasons.sql")),
    (7, "lease_expiries", include_str!("../../../migrations/sqlite/0007_lease_expiries.sql")),
];

#[derive(Debug)]
struct EmbeddedSource(&'static [Embedded]);

impl<'s> MigrationSource<'s> for EmbeddedSource {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let migrations = self
            .0
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(*version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// The migrator for one backend's embedded migrations, locking on PostgreSQL.
pub(super) async fn migrator(embedded: &'static [Embedded]) -> Result<Migrator, DbError> {
    let mut migrator = Migrator::new(EmbeddedSource(embedded)).await?;
    migrator.set_locking(true);
    Ok(migrator)
}

/// Serializes SQLite migrations within this process.
pub(super) static SQLITE_MIGRATIONS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `NNNN_name.sql` file of a folder, as (version, name, text).
    fn files(backend: &str) -> Vec<(i64, String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(backend);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".sql") else { continue };
            let (version, description) = stem.split_once('_').unwrap_or((stem, ""));
            let version: i64 = version.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
            let text = std::fs::read_to_string(entry.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((version, description.to_string(), text));
        }
        out.sort();
        out
    }

    #[test]
    fn every_migration_file_is_embedded_and_both_backends_have_the_same_versions() {
        for (backend, embedded) in [("postgres", POSTGRES), ("sqlite", SQLITE)] {
            let on_disk = files(backend);
            let embedded: Vec<(i64, String, String)> =
                embedded.iter().map(|(v, d, s)| (*v, d.to_string(), s.to_string())).collect();
            assert_eq!(on_disk, embedded, "{backend}: migrations/{backend} and the embedded list differ");
        }
        let versions = |e: &[Embedded]| e.iter().map(|(v, d, _)| (*v, *d)).collect::<Vec<_>>();
        assert_eq!(versions(POSTGRES), versions(SQLITE));
    }
}
