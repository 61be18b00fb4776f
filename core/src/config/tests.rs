//! Layering, environment overrides, secret files, validation and redaction.

use std::io::Write;
use std::path::PathBuf;

use super::*;

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load(files: &[PathBuf], pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load_from(files, env(pairs))
}

fn err_text(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

#[test]
fn no_files_and_no_environment_is_the_embedded_mode() {
    let c = load(&[], &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c, Config::default());
    assert_eq!(c.database.url.expose(), "sqlite://./data/neurobatch.db");
    assert_eq!(c.queue.url.expose(), "memory://");
    assert_eq!(c.storage.url.expose(), "file://./data/objects");
    assert_eq!(c.scheduler.inbox, PathBuf::from("./inbox"));
    assert_eq!(c.scheduler.window(), Ok(Some(NightlyWindow { start_minute: 19 * 60, end_minute: 7 * 60 })));
}

#[test]
fn the_shipped_file_documents_exactly_the_defaults() {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(DEFAULT_FILE);
    let c = load(&[shipped], &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c, Config::default());
}

#[test]
fn later_files_override_earlier_ones_key_by_key() {
    let dir = tmp();
    let base = file(
        &dir,
        "base.toml",
        "[database]\nurl = \"postgres://app@db/nb\"\nmax_connections = 4\n[worker]\nconcurrency = 2\nlease_secs = 30\n",
    );
    let site = file(&dir, "site.toml", "[database]\nmax_connections = 16\n[worker]\nconcurrency = 6\n");
    let c = load(&[base, site], &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.database.url.expose(), "postgres://app@db/nb", "kept from the first file");
    assert_eq!(c.database.max_connections, 16, "overridden by the second file");
    assert_eq!(c.worker.concurrency, 6);
    assert_eq!(c.worker.lease_secs, 30, "kept from the first file");
    assert_eq!(c.worker.max_attempts, WorkerConfig::default().max_attempts, "default where no file sets it");
}

#[test]
fn environment_overrides_files_with_the_keys_types() {
    let dir = tmp();
    let base = file(&dir, "base.toml", "[worker]\nconcurrency = 2\n[storage]\npath_style = false\n");
    let c = load(
        &[base],
        &[
            ("NEUROBATCH__WORKER__CONCURRENCY", "8"),
            ("NEUROBATCH__STORAGE__PATH_STYLE", "true"),
            ("NEUROBATCH__STORAGE__URL", "s3://results/neurobatch"),
            ("NEUROBATCH__SCHEDULER__NIGHTLY_WINDOW", ""),
            // A password of digits stays a string.
            ("NEUROBATCH__STORAGE__ENDPOINT", "12345"),
            ("NEUROBATCH_TESTDATA", "/not/a/config/variable"),
            ("PATH", "/usr/bin"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.worker.concurrency, 8);
    assert!(c.storage.path_style);
    assert_eq!(c.storage.url.expose(), "s3://results/neurobatch");
    assert_eq!(c.storage.endpoint, "12345");
    assert_eq!(c.scheduler.window(), Ok(None), "an empty window means any time");
    assert_eq!(env_name("worker.concurrency"), "NEUROBATCH__WORKER__CONCURRENCY");
}

#[test]
fn secrets_come_from_files_named_by_file_variables() {
    let dir = tmp();
    let secret = file(&dir, "db_url", "postgres://app:hunter2@db:5432/nb\n");
    let c = load(&[], &[("NEUROBATCH__DATABASE__URL__FILE", secret.to_str().unwrap_or_default())])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.database.url.expose(), "postgres://app:hunter2@db:5432/nb", "trailing newline removed");

    let both = load(
        &[],
        &[
            ("NEUROBATCH__DATABASE__URL", "postgres://db/nb"),
            ("NEUROBATCH__DATABASE__URL__FILE", secret.to_str().unwrap_or_default()),
        ],
    );
    let text = err_text(both);
    assert!(text.contains("NEUROBATCH__DATABASE__URL") && text.contains("set only one"), "{text}");

    let missing = dir.path().join("absent");
    let text = err_text(load(&[], &[("NEUROBATCH__QUEUE__URL__FILE", missing.to_str().unwrap_or_default())]));
    assert!(text.contains("NEUROBATCH__QUEUE__URL__FILE") && text.contains("absent"), "{text}");
}

#[test]
fn unknown_names_are_errors_naming_the_variable_or_file() {
    let text = err_text(load(&[], &[("NEUROBATCH__WORKER__CONCURRENCE", "2")]));
    assert!(text.contains("NEUROBATCH__WORKER__CONCURRENCE") && text.contains("[worker] concurrence"), "{text}");
    let text = err_text(load(&[], &[("NEUROBATCH__WORKER", "2")]));
    assert!(text.contains("SECTION__KEY"), "{text}");

    let dir = tmp();
    let typo = file(&dir, "typo.toml", "[worker]\nconcurency = 2\n");
    let text = err_text(load(&[typo], &[]));
    assert!(text.contains("typo.toml") && text.contains("concurency"), "{text}");
    let section = file(&dir, "section.toml", "[workers]\nconcurrency = 2\n");
    let text = err_text(load(&[section], &[]));
    assert!(text.contains("section.toml") && text.contains("workers"), "{text}");
    let syntax = file(&dir, "syntax.toml", "[worker\n");
    assert!(err_text(load(&[syntax], &[])).contains("syntax.toml"));
    let absent = dir.path().join("absent.toml");
    assert!(err_text(load(&[absent], &[])).contains("absent.toml"));
}

#[test]
fn wrong_types_are_refused_without_echoing_the_value() {
    let text = err_text(load(&[], &[("NEUROBATCH__WORKER__CONCURRENCY", "s3cret-ish")]));
    assert!(text.contains("NEUROBATCH__WORKER__CONCURRENCY") && text.contains("integer"), "{text}");
    assert!(!text.contains("s3cret-ish"), "{text}");
    let text = err_text(load(&[], &[("NEUROBATCH__STORAGE__PATH_STYLE", "maybe")]));
    assert!(text.contains("true or false"), "{text}");
}

#[test]
fn validation_names_the_key_its_variable_and_the_reason() {
    let cases: [(&str, &str, &str, &str); 11] = [
        ("NEUROBATCH__DATABASE__URL", "mysql://db/nb", "database.url", "mysql"),
        ("NEUROBATCH__QUEUE__URL", "kafka://broker", "queue.url", "kafka"),
        ("NEUROBATCH__STORAGE__URL", "s3://", "storage.url", "no bucket"),
        ("NEUROBATCH__STORAGE__URL", "gs://bucket", "storage.url", "gs"),
        ("NEUROBATCH__SCHEDULER__NIGHTLY_WINDOW", "7pm-7am", "scheduler.nightly_window", "HH:MM"),
        ("NEUROBATCH__WORKER__CONCURRENCY", "0", "worker.concurrency", "at least 1"),
        ("NEUROBATCH__WORKER__LEASE_SECS", "1", "worker.lease_secs", "at least 5"),
        ("NEUROBATCH__WORKER__MAX_ATTEMPTS", "0", "worker.max_attempts", "at least 1"),
        ("NEUROBATCH__PIPELINE__PROVIDERS", "cuda,rocm", "pipeline.providers", "rocm"),
        ("NEUROBATCH__PIPELINE__PROVIDERS", "", "pipeline.providers", "at least one"),
        ("NEUROBATCH__WORKER__LISTEN", "9090", "worker.listen", "HOST:PORT"),
    ];
    for (var, value, key, reason) in cases {
        let text = err_text(load(&[], &[(var, value)]));
        assert!(text.contains(key) && text.contains(var) && text.contains(reason), "{var}={value}: {text}");
    }
    let text = err_text(load(&[], &[("NEUROBATCH__WORKER__CONCURRENCY", "-1")]));
    assert!(text.contains("concurrency"), "{text}");
}

#[test]
fn passwords_never_show_in_debug_or_serialized_configuration() {
    let c = load(
        &[],
        &[
            ("NEUROBATCH__DATABASE__URL", "postgres://app:hunter2@db:5432/nb"),
            ("NEUROBATCH__QUEUE__URL", "amqp://guest:rabbitpw@127.0.0.1:5672/%2f"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let debug = format!("{c:?}");
    let pretty = format!("{c:#?}");
    let shown = toml::to_string(&c).unwrap_or_default();
    for text in [&debug, &pretty, &shown] {
        assert!(!text.contains("hunter2") && !text.contains("rabbitpw"), "{text}");
        assert!(text.contains("postgres://app:***@db:5432/nb"), "{text}");
    }
    assert_eq!(c.database.url.expose(), "postgres://app:hunter2@db:5432/nb");
}

#[test]
fn providers_and_the_worker_listener_come_from_the_environment() {
    let c = load(&[], &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pipeline.providers, vec!["cpu".to_string()]);
    assert_eq!(c.worker.listen, "127.0.0.1:9090");
    let c = load(
        &[],
        &[("NEUROBATCH__PIPELINE__PROVIDERS", "tensorrt, cuda"), ("NEUROBATCH__WORKER__LISTEN", "0.0.0.0:9100")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pipeline.providers, vec!["tensorrt".to_string(), "cuda".to_string()]);
    assert_eq!(c.worker.listen, "0.0.0.0:9100");
    let c = load(&[], &[("NEUROBATCH__WORKER__LISTEN", "")]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.worker.listen, "", "empty: no listener");
}
