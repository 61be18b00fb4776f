//! The object store on both backends: a local folder, and the S3-protocol
//! server (moto) that scripts/test.sh starts and names in
//! `NEUROBATCH_TEST_S3_ENDPOINT`. Each S3 test makes its own bucket and
//! deletes it.

use neurobatch_core::storage::{ObjectStore, S3Settings, StorageError, StudyLimits, result_key, result_prefix};

fn s3_settings() -> S3Settings {
    let endpoint = std::env::var("NEUROBATCH_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!("NEUROBATCH_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh, which starts the S3 test server (scripts/s3-server.sh)")
    });
    S3Settings {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        force_path_style: true,
        access_key_id: Some("test-key".into()),
        secret_access_key: Some("test-secret-value".into()),
        session_token: None,
    }
}

/// A fresh bucket for one test; [`Bucket::remove`] empties and deletes it.
struct Bucket {
    name: String,
    store: ObjectStore,
}

impl Bucket {
    async fn new(test: &str, prefix: &str) -> Bucket {
        let name = super::common::unique(test).to_lowercase();
        let url = if prefix.is_empty() { format!("s3://{name}") } else { format!("s3://{name}/{prefix}") };
        let store = ObjectStore::from_url(&url, &s3_settings()).await.expect("s3 store");
        let ObjectStore::S3(s3) = &store else { panic!("an s3:// url gives the S3 backend") };
        s3.client().create_bucket().bucket(&name).send().await.expect("create the test bucket");
        Bucket { name, store }
    }

    async fn remove(self) {
        let ObjectStore::S3(s3) = &self.store else { return };
        let listed = s3.client().list_objects_v2().bucket(&self.name).send().await.expect("list for cleanup");
        for obj in listed.contents() {
            if let Some(k) = obj.key() {
                s3.client().delete_object().bucket(&self.name).key(k).send().await.expect("delete for cleanup");
            }
        }
        s3.client().delete_bucket().bucket(&self.name).send().await.expect("delete the test bucket");
    }
}

/// The same contract on every backend.
async fn contract(store: &ObjectStore) {
    let key = "study/s1/input.json";
    store.put(key, b"one".to_vec()).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), b"one");
    assert!(store.exists(key).await.unwrap());
    assert!(!store.exists("study/s1/missing.json").await.unwrap());
    assert!(matches!(store.get("study/s1/missing.json").await, Err(StorageError::NotFound { .. })));

    // Idempotent put: the same key is overwritten, never duplicated.
    store.put(key, b"two".to_vec()).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), b"two");
    assert_eq!(store.list("").await.unwrap(), vec![key.to_owned()]);

    // The result layout, and listing by prefix.
    let mask = result_key("s1", "brain-tissue", "brain-tissue", "1.0.0", "mask.nii.gz").unwrap();
    let report = result_key("s1", "brain-tissue", "brain-tissue", "1.0.0", "report.json").unwrap();
    let big: Vec<u8> = (0..6 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    store.put(&report, br#"{"ok":true}"#.to_vec()).await.unwrap();
    store.put(&mask, big.clone()).await.unwrap();
    assert_eq!(store.get(&mask).await.unwrap(), big, "a multi-megabyte object round-trips");
    let folder = result_prefix("s1", "brain-tissue", "brain-tissue", "1.0.0").unwrap();
    assert_eq!(store.list(&folder).await.unwrap(), vec![mask.clone(), report.clone()]);
    // Results live under the study key's hash (hex digits sort before `s1`).
    assert_eq!(store.list("study/").await.unwrap(), vec![mask.clone(), report.clone(), key.to_owned()]);
    assert!(store.list("study/other/").await.unwrap().is_empty());

    // Delete, and delete again.
    store.delete(&mask).await.unwrap();
    assert!(!store.exists(&mask).await.unwrap());
    store.delete(&mask).await.unwrap();
    assert_eq!(store.list(&folder).await.unwrap(), vec![report.clone()]);

    // Keys are checked before anything is touched.
    for bad in ["../escape", "/abs", "a//b", ""] {
        assert!(matches!(store.put(bad, vec![1]).await, Err(StorageError::Key { .. })), "{bad:?}");
    }
    store.delete(&report).await.unwrap();
    store.delete(key).await.unwrap();
    assert!(store.list("").await.unwrap().is_empty());
}

/// A study is downloaded object by object to disk, within its limits (issue 15:
/// the S3 study was read whole into memory, with no cap on objects or bytes).
async fn download_within_limits(store: &ObjectStore) {
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i: u32| (i % 249) as u8).collect();
    store.put("a.dcm", vec![1; 1000]).await.unwrap();
    store.put("series/b.dcm", big.clone()).await.unwrap();
    let limits = |max_objects, max_bytes| StudyLimits { max_objects, max_bytes };
    let dir = tempfile::tempdir().unwrap();
    let keys = store.download_all(dir.path(), limits(2, 4 << 20)).await.unwrap();
    assert_eq!(keys, vec!["a.dcm", "series/b.dcm"]);
    assert_eq!(std::fs::read(dir.path().join("series/b.dcm")).unwrap(), big);
    assert_eq!(std::fs::read(dir.path().join("a.dcm")).unwrap(), vec![1; 1000]);
    // One object too many: refused before anything is written.
    let few = tempfile::tempdir().unwrap();
    let err = store.download_all(few.path(), limits(1, 4 << 20)).await.unwrap_err();
    assert!(matches!(err, StorageError::TooLarge { what: "the number of objects", limit: 1, .. }), "{err}");
    assert_eq!(std::fs::read_dir(few.path()).unwrap().count(), 0);
    // One byte short of the whole: refused at the object that goes past it.
    let small = tempfile::tempdir().unwrap();
    let err = store.download_all(small.path(), limits(2, 1000 + big.len() as u64 - 1)).await.unwrap_err();
    assert!(matches!(err, StorageError::TooLarge { what: "the study's size", .. }), "{err}");
    assert!(err.to_string().contains("exceeds the limit of"), "{err}");
}

#[tokio::test]
async fn file_store_downloads_within_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        ObjectStore::from_url(&format!("file://{}", dir.path().display()), &S3Settings::default()).await.unwrap();
    download_within_limits(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_downloads_within_limits() {
    let bucket = Bucket::new("s3dl", "study-7").await;
    download_within_limits(&bucket.store).await;
    bucket.remove().await;
}

#[tokio::test]
async fn file_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let store = ObjectStore::from_url(&url, &S3Settings::default()).await.unwrap();
    contract(&store).await;
    // Deletes tidy the folders they empty; atomic writes leave no temporary files.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn file_store_writes_atomically_and_stays_in_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = ObjectStore::from_url(&format!("file://{}", root.display()), &S3Settings::default()).await.unwrap();
    store.put("a/b/c.bin", vec![7; 1000]).await.unwrap();
    store.put("a/b/c.bin", vec![8; 10]).await.unwrap();
    let names: Vec<String> = std::fs::read_dir(root.join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["c.bin"], "no temporary file survives a write");
    assert_eq!(std::fs::read(root.join("a/b/c.bin")).unwrap(), vec![8; 10]);
    // A temporary file of an interrupted write is never listed.
    std::fs::write(root.join("a/b/.nb-tmp-crashed"), b"half").unwrap();
    assert_eq!(store.list("").await.unwrap(), vec!["a/b/c.bin"]);
    assert!(store.put("a/../../outside", vec![1]).await.is_err());
    assert!(!dir.path().join("outside").exists());
    for bad in ["file://relative/path", "ftp://x", "s3://", "s3://Bad_Bucket!"] {
        assert!(
            matches!(ObjectStore::from_url(bad, &S3Settings::default()).await, Err(StorageError::Url { .. })),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_contract() {
    let bucket = Bucket::new("s3c", "").await;
    contract(&bucket.store).await;
    bucket.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_keeps_keys_under_its_prefix() {
    let bucket = Bucket::new("s3p", "runs/2026/").await;
    bucket.store.put("study/x/report.json", b"{}".to_vec()).await.unwrap();
    assert_eq!(bucket.store.list("").await.unwrap(), vec!["study/x/report.json"]);
    let ObjectStore::S3(s3) = &bucket.store else { panic!("s3 backend") };
    let raw = s3.client().list_objects_v2().bucket(&bucket.name).send().await.unwrap();
    let keys: Vec<&str> = raw.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["runs/2026/study/x/report.json"]);
    bucket.remove().await;
}

#[tokio::test]
async fn s3_settings_never_show_secrets() {
    let shown = format!("{:?}", s3_settings());
    assert!(!shown.contains("test-secret-value"), "{shown}");
    assert!(shown.contains("test-key"), "the key id is not a secret: {shown}");
    let half = S3Settings { secret_access_key: None, ..s3_settings() };
    assert!(matches!(ObjectStore::from_url("s3://b", &half).await, Err(StorageError::Url { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_are_typed() {
    // A bucket that does not exist: a typed S3 error naming the operation, no secret in it.
    let store = ObjectStore::from_url("s3://nbt-no-such-bucket-x", &s3_settings()).await.unwrap();
    match store.put("k", vec![1]).await {
        Err(e @ StorageError::S3 { op: "put", .. }) => assert!(!e.to_string().contains("test-secret-value"), "{e}"),
        other => panic!("expected an s3 error, got {other:?}"),
    }
}
