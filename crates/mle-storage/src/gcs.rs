//! `gs://` through `gcloud-storage` (GCS's JSON API). `STORAGE_EMULATOR_HOST` sends every
//! request to that emulator, anonymously: no credentials are read and no token is fetched.

use futures::StreamExt;
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::Error as GcsError;
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};

use crate::{ByteStream, Result, StorageError};

pub(crate) struct Gcs {
    client: Client,
}

/// The emulator's base URL, when `STORAGE_EMULATOR_HOST` names one (`host:port` or a URL).
fn emulator() -> Option<String> {
    let host = std::env::var("STORAGE_EMULATOR_HOST").ok()?;
    let host = host.trim().trim_end_matches('/');
    if host.is_empty() {
        return None;
    }
    Some(if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    })
}

/// A GCS error as the layer names it.
fn error(uri: &str, e: GcsError) -> StorageError {
    let uri = uri.to_string();
    match e {
        GcsError::Response(r) => {
            let text = format!("{} {}", r.code, r.message);
            match r.code {
                404 if r.message.to_lowercase().contains("bucket") => {
                    StorageError::NoSuchBucket { uri }
                }
                404 => StorageError::NoSuchObject { uri },
                401 | 403 => StorageError::AccessDenied { uri, detail: text },
                429 | 500..=599 => StorageError::Unreachable { uri, detail: text },
                _ => StorageError::Other { uri, detail: text },
            }
        }
        GcsError::HttpClient(e) | GcsError::RawResponse(e, _) if e.status().is_some() => {
            let status = e.status().map_or(0, |s| s.as_u16());
            let detail = format!("HTTP {status}");
            match status {
                404 => StorageError::NoSuchObject { uri },
                401 | 403 => StorageError::AccessDenied { uri, detail },
                429 | 500..=599 => StorageError::Unreachable { uri, detail },
                _ => StorageError::Other { uri, detail },
            }
        }
        GcsError::HttpClient(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
            StorageError::Unreachable {
                uri,
                detail: e.to_string(),
            }
        }
        GcsError::TokenSource(e) => StorageError::NoCredentials {
            uri,
            detail: format!(
                "{e}; set GOOGLE_APPLICATION_CREDENTIALS, or STORAGE_EMULATOR_HOST for an emulator"
            ),
        },
        other => StorageError::Other {
            uri,
            detail: other.to_string(),
        },
    }
}

impl Gcs {
    pub(crate) async fn new(uri: &str) -> Result<Self> {
        let config = match emulator() {
            Some(endpoint) => ClientConfig {
                storage_endpoint: endpoint,
                ..ClientConfig::default()
            }
            .anonymous(),
            None => ClientConfig::default()
                .with_auth()
                .await
                .map_err(|e| StorageError::NoCredentials {
                    uri: uri.to_string(),
                    detail: format!(
                        "{e}; set GOOGLE_APPLICATION_CREDENTIALS, or STORAGE_EMULATOR_HOST for an emulator"
                    ),
                })?,
        };
        Ok(Self {
            client: Client::new(config),
        })
    }

    pub(crate) async fn stream(&self, bucket: &str, key: &str, uri: &str) -> Result<ByteStream> {
        let req = GetObjectRequest {
            bucket: bucket.to_string(),
            object: key.to_string(),
            ..Default::default()
        };
        let s = self
            .client
            .download_streamed_object(&req, &Range::default())
            .await
            .map_err(|e| error(uri, e))?;
        Ok(s.map(|r| r.map_err(|e| e.to_string())).boxed())
    }

    pub(crate) async fn put(&self, bucket: &str, key: &str, bytes: &[u8], uri: &str) -> Result<()> {
        let req = UploadObjectRequest {
            bucket: bucket.to_string(),
            ..Default::default()
        };
        // Multipart (metadata + media): GCS's emulators mishandle empty media uploads.
        let meta = Object {
            name: key.to_string(),
            ..Default::default()
        };
        self.client
            .upload_object(&req, bytes.to_vec(), &UploadType::Multipart(Box::new(meta)))
            .await
            .map(|_| ())
            .map_err(|e| error(uri, e))
    }

    pub(crate) async fn delete(&self, bucket: &str, key: &str, uri: &str) -> Result<()> {
        let req = DeleteObjectRequest {
            bucket: bucket.to_string(),
            object: key.to_string(),
            ..Default::default()
        };
        match self
            .client
            .delete_object(&req)
            .await
            .map_err(|e| error(uri, e))
        {
            // Already gone is what was asked for.
            Err(StorageError::NoSuchObject { .. }) => Ok(()),
            r => r,
        }
    }

    pub(crate) async fn list(
        &self,
        bucket: &str,
        key: &str,
        uri: &str,
    ) -> Result<Vec<(String, u64)>> {
        let prefix = if key.is_empty() {
            String::new()
        } else {
            format!("{key}/")
        };
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let req = ListObjectsRequest {
                bucket: bucket.to_string(),
                prefix: Some(prefix.clone()).filter(|p| !p.is_empty()),
                page_token: token.take(),
                ..Default::default()
            };
            let page = self
                .client
                .list_objects(&req)
                .await
                .map_err(|e| error(uri, e))?;
            for o in page.items.unwrap_or_default() {
                out.push((o.name, o.size.max(0) as u64));
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}
