//! `s3://` through `object_store`'s `AmazonS3Builder::from_env` (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`).

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{ByteStream, Result, StorageError};

pub(crate) struct S3 {
    store: AmazonS3,
}

/// An `object_store` error as the layer names it.
fn error(uri: &str, e: object_store::Error) -> StorageError {
    let uri = uri.to_string();
    let text = e.to_string();
    let lower = text.to_lowercase();
    match e {
        object_store::Error::NotFound { .. } if lower.contains("nosuchbucket") => {
            StorageError::NoSuchBucket { uri }
        }
        object_store::Error::NotFound { .. } => StorageError::NoSuchObject { uri },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            StorageError::AccessDenied { uri, detail: text }
        }
        _ if lower.contains("nosuchbucket")
            || lower.contains("specified bucket does not exist") =>
        {
            StorageError::NoSuchBucket { uri }
        }
        _ if lower.contains("accessdenied")
            || lower.contains("invalidaccesskeyid")
            || lower.contains("signaturedoesnotmatch") =>
        {
            StorageError::AccessDenied { uri, detail: text }
        }
        _ if lower.contains("credential") => StorageError::NoCredentials {
            uri,
            detail: format!("{text}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        },
        _ if lower.contains("connect")
            || lower.contains("timed out")
            || lower.contains("error sending request")
            || lower.contains("server error")
            || lower.contains(" 5")
            || lower.contains("slowdown") =>
        {
            StorageError::Unreachable { uri, detail: text }
        }
        _ => StorageError::Other { uri, detail: text },
    }
}

impl S3 {
    pub(crate) fn new(bucket: &str, uri: &str) -> Result<Self> {
        // The layer retries itself (with its own budget), so the client's own retries are
        // kept short.
        let retry = object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: std::time::Duration::from_secs(10),
            ..Default::default()
        };
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .build()
            .map_err(|e| error(uri, e))?;
        Ok(Self { store })
    }

    pub(crate) async fn stream(&self, key: &str, uri: &str) -> Result<ByteStream> {
        let got = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| error(uri, e))?;
        Ok(got.into_stream().map_err(|e| e.to_string()).boxed())
    }

    pub(crate) async fn put(&self, key: &str, bytes: &[u8], uri: &str) -> Result<()> {
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(bytes.to_vec()))
            .await
            .map(|_| ())
            .map_err(|e| error(uri, e))
    }

    pub(crate) async fn delete(&self, key: &str, uri: &str) -> Result<()> {
        match self
            .store
            .delete(&ObjectPath::from(key))
            .await
            .map_err(|e| error(uri, e))
        {
            Err(StorageError::NoSuchObject { .. }) => Ok(()),
            r => r,
        }
    }

    pub(crate) async fn list(&self, key: &str, uri: &str) -> Result<Vec<(String, u64)>> {
        let prefix = (!key.is_empty()).then(|| ObjectPath::from(key));
        let mut out = Vec::new();
        let mut items = self.store.list(prefix.as_ref());
        while let Some(meta) = items.next().await {
            let meta = meta.map_err(|e| error(uri, e))?;
            out.push((meta.location.to_string(), meta.size));
        }
        Ok(out)
    }
}
