//! The S3 backend behind `s3://bucket/prefix` (aws-sdk-s3): AWS, MinIO, Ceph
//! and moto, with endpoint, region, path-style addressing and credentials
//! configurable. Secrets are never logged: [`S3Settings`]'s `Debug` hides them.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

use super::StorageError;

/// How to reach the S3 service. Unset fields fall back to the AWS defaults:
/// region from `AWS_REGION` / `AWS_DEFAULT_REGION` (else `us-east-1`),
/// credentials from the AWS provider chain (environment, profile, web
/// identity, container or instance role).
#[derive(Clone, Default)]
pub struct S3Settings {
    /// For example `http://minio:9000`; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `http://host/bucket/key` instead of `http://bucket.host/key` (MinIO, Ceph, moto).
    pub force_path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl S3Settings {
    /// The settings of `[storage]`: endpoint, region and addressing; credentials from the AWS chain.
    pub fn from_config(config: &crate::config::StorageConfig) -> S3Settings {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        S3Settings {
            endpoint: some(&config.endpoint),
            region: some(&config.region),
            force_path_style: config.path_style,
            ..S3Settings::default()
        }
    }
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Key prefix inside the bucket, without a trailing `/` (may be empty).
    prefix: String,
}

/// Bounds on one request, so that a store that stops answering (a stalled
/// server, a half-open connection) fails the request with an error instead of
/// holding a job until its timeout (issue 18: a download stalled by a paused
/// server held a job for 11 minutes while its lease was renewed): connecting,
/// one attempt of an operation up to its response, and the silence allowed
/// between two chunks of a streamed body.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
const BODY_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn s3_error<E>(op: &'static str, key: &str, e: &aws_sdk_s3::error::SdkError<E>) -> StorageError
where
    E: std::error::Error + 'static,
{
    StorageError::S3 { op, key: key.to_owned(), reason: DisplayErrorContext(e).to_string() }
}

impl S3Store {
    pub async fn new(bucket: &str, prefix: &str, settings: &S3Settings) -> Result<S3Store, StorageError> {
        let region = settings
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(Region::new(region));
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    id,
                    secret,
                    settings.session_token.clone(),
                    None,
                    "neurobatch-config",
                ));
            }
            (None, None) => {}
            _ => {
                return Err(StorageError::Url {
                    url: format!("s3://{bucket}"),
                    reason: "set both the access key id and the secret access key, or neither".into(),
                });
            }
        }
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let shared = loader.timeout_config(timeouts).load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(settings.force_path_style);
        if settings.endpoint.is_some() {
            // S3-compatible servers differ in their support of the newer default checksums.
            config = config
                .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
        }
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The key prefix inside the bucket (no trailing `/`; may be empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) }
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| s3_error("put", key, &e))?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let out = match self.client.get_object().bucket(&self.bucket).key(self.full(key)).send().await {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(StorageError::NotFound { key: key.to_owned() });
            }
            Err(e) => return Err(s3_error("get", key, &e)),
        };
        let body = out.body.collect().await.map_err(|e| StorageError::S3 {
            op: "get",
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(body.into_bytes().to_vec())
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.client.head_object().bucket(&self.bucket).key(self.full(key)).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(s3_error("head", key, &e)),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| s3_error("delete", key, &e))?;
        Ok(())
    }

    /// One `ListObjectsV2` call for at most one key under the prefix.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| s3_error("list", &self.prefix, &e))?;
        Ok(())
    }

    /// Streams an object into `path`, at most `max_bytes` of it; the bytes written.
    pub async fn get_to_file(&self, key: &str, path: &std::path::Path, max_bytes: u64) -> Result<u64, StorageError> {
        use tokio::io::AsyncWriteExt as _;
        let out = match self.client.get_object().bucket(&self.bucket).key(self.full(key)).send().await {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(StorageError::NotFound { key: key.to_owned() });
            }
            Err(e) => return Err(s3_error("get", key, &e)),
        };
        let too_large = || StorageError::TooLarge { key: key.to_owned(), what: "the study's size", limit: max_bytes };
        if out.content_length().is_some_and(|n| u64::try_from(n).unwrap_or(u64::MAX) > max_bytes) {
            return Err(too_large());
        }
        let write = |e: std::io::Error| StorageError::Io { key: key.to_owned(), op: "write", source: e };
        let mut file = tokio::fs::File::create(path).await.map_err(write)?;
        let mut body = out.body;
        let mut written = 0u64;
        let failed = |reason: String| StorageError::S3 { op: "get", key: key.to_owned(), reason };
        loop {
            let next = tokio::time::timeout(BODY_STALL_TIMEOUT, body.try_next()).await.map_err(|_| {
                failed(format!("no data for {} s: the store stopped sending", BODY_STALL_TIMEOUT.as_secs()))
            })?;
            let Some(chunk) = next.map_err(|e| failed(e.to_string()))? else { break };
            written += chunk.len() as u64;
            if written > max_bytes {
                return Err(too_large());
            }
            file.write_all(&chunk).await.map_err(write)?;
        }
        file.flush().await.map_err(write)?;
        Ok(written)
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let full_prefix = self.full(prefix);
        let strip = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&full_prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("list", prefix, &e))?;
            for obj in page.contents() {
                if let Some(k) = obj.key()
                    && k.len() >= strip
                    && let Some(rel) = k.get(strip..)
                {
                    keys.push(rel.to_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}
