//! `neurobatch migrate` as a user runs it: with no configuration it creates
//! the embedded SQLite database under ./data; pointed at PostgreSQL through
//! `NEUROBATCH__DATABASE__URL` it migrates that database (twice is a no-op),
//! never printing the password; a bad configuration ends in exit code 1 and
//! one `error:` line.

use std::path::Path;
use std::process::{Command, Output};

use sqlx::Connection as _;

/// The binary in `dir` with only the given `NEUROBATCH__` variables.
fn migrate(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_neurobatch"));
    cmd.arg("migrate").args(args).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("NEUROBATCH__") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap_or_else(|e| panic!("running neurobatch: {e}"))
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn with_no_configuration_the_embedded_database_is_created_under_data() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for run in 0..2 {
        let out = migrate(dir.path(), &[], &[]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "run {run}: {stdout}{stderr}");
        assert!(
            stdout.contains("sqlite://./data/neurobatch.db: schema up to date (7 migrations, latest 7)"),
            "{stdout}"
        );
    }
    assert!(dir.path().join("data/neurobatch.db").is_file());
}

#[test]
fn a_config_file_given_with_config_is_used() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("site.toml");
    std::fs::write(&file, "[database]\nurl = \"sqlite://./elsewhere/jobs.db\"\n").unwrap_or_else(|e| panic!("{e}"));
    let out = migrate(dir.path(), &[], &["--config", "site.toml"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(dir.path().join("elsewhere/jobs.db").is_file());
    assert!(!dir.path().join("data").exists());
}

#[tokio::test]
async fn postgres_from_the_environment_without_showing_the_password() {
    let server =
        std::env::var("NEUROBATCH_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let db = format!("nb_test_cli_migrate_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(&format!("CREATE DATABASE \"{db}\"")).execute(&mut admin).await.unwrap_or_else(|e| panic!("{e}"));
    // Trust authentication ignores the password; it only has to stay out of the output.
    let url = format!("{}/{db}", server.replacen("postgres://postgres@", "postgres://postgres:topsecret@", 1));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let cwd = dir.path().to_path_buf();
        let env_url = url.clone();
        let out = tokio::task::spawn_blocking(move || {
            migrate(&cwd, &[("NEUROBATCH__DATABASE__URL", &env_url)], &["--log-level", "info"])
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        outputs.push(out);
    }
    let mut db_conn = sqlx::PgConnection::connect(&format!("{server}/{db}")).await.unwrap_or_else(|e| panic!("{e}"));
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut db_conn)
        .await
        .unwrap_or_default();
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_one(&mut db_conn)
    .await
    .unwrap_or_default();
    let _ = db_conn.close().await;
    sqlx::query(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for out in &outputs {
        let (stdout, stderr) = text(out);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains(":***@") && stdout.contains("schema up to date"), "{stdout}");
        assert!(!stdout.contains("topsecret") && !stderr.contains("topsecret"), "{stdout}{stderr}");
    }
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        tables, 15,
        "studies, series, jobs, results, structure_metrics, classification_outputs, review_items, audit_events, \
         api_tokens, review_comments, review_corrections, pacs_pulls, dicom_sends, review_reasons, lease_expiries"
    );
}

#[test]
fn a_bad_configuration_is_one_error_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = migrate(dir.path(), &[("NEUROBATCH__DATABASE__URL", "mysql://root:pw1234@db/nb")], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: configuration key database.url (environment NEUROBATCH__DATABASE__URL)"),
        "{stderr}"
    );
    assert!(!stderr.contains("pw1234"), "{stderr}");

    let out = migrate(dir.path(), &[], &["--config", "missing.toml"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("missing.toml"), "{stderr}");

    // The database cannot be reached: the error names it, redacted.
    let out = migrate(dir.path(), &[("NEUROBATCH__DATABASE__URL", "postgres://app:pw1234@127.0.0.1:1/nb")], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("postgres://app:***@127.0.0.1:1/nb") && !stderr.contains("pw1234"), "{stderr}");
}
