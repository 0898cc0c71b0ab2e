//! The archive store: one bucket on any S3 endpoint, spoken to with SigV4-signed requests
//! (rusty-s3 signs; the shared reqwest client sends). Path or virtual-host style, region and
//! keys are settings, so Garage here and MinIO or AWS S3 in production need no code change.
//!
//! Every request is signed as a short-lived presigned URL (60 s) and sent at once; replay links
//! are the same kind of URL with a 15-minute lifetime, handed to the client instead.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use rusty_s3::actions::{ListObjectsV2, ListObjectsV2Response};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::config::Config;

/// Lifetime of the URLs the store signs for its own requests (sent at once).
const REQUEST_URL_TTL: Duration = Duration::from_secs(60);
/// Keys listed per ListObjectsV2 page (S3's own maximum).
const LIST_PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The endpoint did not answer (down, refused, timed out).
    #[error("S3 is unreachable: {0}")]
    Unreachable(String),
    /// The endpoint answered with an error status.
    #[error("S3 answered {status} to {action}: {body}")]
    Status {
        action: &'static str,
        status: u16,
        body: String,
    },
    #[error("S3's answer to {action} could not be read: {reason}")]
    Malformed { action: &'static str, reason: String },
    #[error("the object is larger than {limit} bytes")]
    TooLarge { limit: usize },
}

pub struct ArchiveStore {
    bucket: Bucket,
    credentials: Credentials,
    client: reqwest::Client,
    /// Endpoint and bucket, for logs and readiness.
    pub description: String,
}

impl ArchiveStore {
    /// The store configured by the `s3_*` settings; `None` without `s3_endpoint`.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(endpoint) = &config.s3_endpoint else {
            return Ok(None);
        };
        let (Some(key), Some(secret)) = (&config.s3_access_key_id, &config.s3_secret_access_key) else {
            anyhow::bail!("setting s3_endpoint needs s3_access_key_id and s3_secret_access_key");
        };
        let url = url::Url::parse(endpoint).map_err(|e| anyhow::anyhow!("setting s3_endpoint: {e}"))?;
        let style = if config.s3_path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(url, style, config.s3_bucket.clone(), config.s3_region.clone())
            .map_err(|e| anyhow::anyhow!("settings s3_endpoint/s3_bucket: {e}"))?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.s3_timeout.min(Duration::from_secs(5)))
            .timeout(config.s3_timeout)
            .build()?;
        Ok(Some(Self {
            description: format!("{endpoint} bucket {}", config.s3_bucket),
            bucket,
            credentials: Credentials::new(key.clone(), secret.0.clone()),
            client,
        }))
    }

    /// Creates the bucket unless it exists (HeadBucket first: creating an existing bucket is an
    /// error on some servers and a no-op on others).
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        let head = self.bucket.head_bucket(Some(&self.credentials)).sign(REQUEST_URL_TTL);
        let response = send(self.client.head(head)).await?;
        if response.status().is_success() {
            return Ok(());
        }
        if response.status() != StatusCode::NOT_FOUND {
            return Err(status_error("HeadBucket", response).await);
        }
        let create = self.bucket.create_bucket(&self.credentials);
        let body = create.body();
        let response = send(self.client.put(create.sign(REQUEST_URL_TTL)).body(body)).await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            // Another sidecar created it meanwhile.
            StatusCode::CONFLICT => Ok(()),
            _ => Err(status_error("CreateBucket", response).await),
        }
    }

    /// Writes the whole object in one PUT: S3 makes it visible only once complete, so an upload
    /// cut short (the process killed) leaves the previous version or nothing, never half.
    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(REQUEST_URL_TTL);
        let request = self
            .client
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
        let response = send(request).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error("PutObject", response).await)
        }
    }

    /// The object's bytes, `None` when it does not exist; refused past `limit` bytes.
    pub async fn get(&self, key: &str, limit: usize) -> Result<Option<Bytes>, StoreError> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(REQUEST_URL_TTL);
        let mut response = send(self.client.get(url)).await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if !s.is_success() => return Err(status_error("GetObject", response).await),
            _ => {}
        }
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(StoreError::TooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| StoreError::Unreachable(e.to_string()))?
        {
            if body.len() + chunk.len() > limit {
                return Err(StoreError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(Bytes::from(body)))
    }

    /// Deletes one object; deleting a missing one succeeds (S3 answers 204 either way).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(REQUEST_URL_TTL);
        let response = send(self.client.delete(url)).await?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(status_error("DeleteObject", response).await)
        }
    }

    /// Every key under the prefix, following continuation tokens.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action: ListObjectsV2<'_> = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(prefix);
            action.with_max_keys(LIST_PAGE);
            if let Some(token) = &token {
                action.with_continuation_token(token.as_str());
            }
            let response = send(self.client.get(action.sign(REQUEST_URL_TTL))).await?;
            if !response.status().is_success() {
                return Err(status_error("ListObjectsV2", response).await);
            }
            let text = response
                .text()
                .await
                .map_err(|e| StoreError::Unreachable(e.to_string()))?;
            let page: ListObjectsV2Response =
                ListObjectsV2::parse_response(&text).map_err(|e| StoreError::Malformed {
                    action: "ListObjectsV2",
                    reason: e.to_string(),
                })?;
            keys.extend(page.contents.into_iter().map(|c| c.key));
            match page.next_continuation_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(keys),
            }
        }
    }

    /// Deletes every object under the prefix and answers their keys (the deletion's receipt).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let keys = self.list(prefix).await?;
        for key in &keys {
            self.delete(key).await?;
        }
        Ok(keys)
    }

    /// A GET URL of the object that anyone holding it may use until it expires.
    pub fn presigned_get(&self, key: &str, ttl: Duration) -> url::Url {
        self.bucket.get_object(Some(&self.credentials), key).sign(ttl)
    }

    /// A PUT URL of the object (the archive benchmark's peer and the tests send raw uploads).
    pub fn presigned_put(&self, key: &str, ttl: Duration) -> url::Url {
        self.bucket.put_object(Some(&self.credentials), key).sign(ttl)
    }

    /// Reachable and the bucket there (for readiness).
    pub async fn probe(&self) -> Result<(), StoreError> {
        let head = self.bucket.head_bucket(Some(&self.credentials)).sign(REQUEST_URL_TTL);
        let response = send(self.client.head(head)).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error("HeadBucket", response).await)
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, StoreError> {
    request.send().await.map_err(|e| StoreError::Unreachable(e.to_string()))
}

async fn status_error(action: &'static str, response: reqwest::Response) -> StoreError {
    let status = response.status().as_u16();
    // S3 errors are short XML documents; keep the start for the log.
    let body = response.text().await.unwrap_or_default();
    StoreError::Status {
        action,
        status,
        body: body.chars().take(500).collect(),
    }
}
