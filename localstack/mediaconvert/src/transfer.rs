//! S3 transfers: the input comes down to a local file for ffmpeg, captures (a bounded number at
//! once) and MP4 outputs go up under their MediaConvert names.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tracing::instrument;

use crate::naming::OutputNaming;

/// Captures uploaded at once per job.
pub const UPLOAD_CONCURRENCY: usize = 8;

/// A transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// GetObject failed.
    #[error("cannot read s3://{bucket}/{key}: {message}")]
    Download {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// The service's error code (`NoSuchKey`, `AccessDenied`, …), when it answered.
        code: Option<String>,
        /// Code and message.
        message: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// PutObject failed.
    #[error("cannot write s3://{bucket}/{key}: {message}")]
    Upload {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Code and message.
        message: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A local file could not be read or written.
    #[error("cannot use {path}: {source}")]
    Local {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl TransferError {
    /// True when the input object or its bucket does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Download { code: Some(code), .. } if code == "NoSuchKey" || code == "NoSuchBucket" || code == "NotFound")
    }
}

/// Downloads `s3://bucket/key` to `dest`; returns the bytes written.
#[instrument(skip(s3, dest), err)]
pub async fn download(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    dest: &Path,
) -> Result<u64, TransferError> {
    let failed =
        |code: Option<&str>, message: String, source: Box<dyn std::error::Error + Send + Sync>| {
            TransferError::Download {
                bucket: bucket.to_string(),
                key: key.to_string(),
                code: code.map(String::from),
                message,
                source,
            }
        };
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            let code = e
                .as_service_error()
                .and_then(|s| s.code())
                .map(String::from);
            failed(
                code.as_deref(),
                framefleet_core::aws::describe(&e),
                e.into(),
            )
        })?;
    let local = |source| TransferError::Local {
        path: dest.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::create(dest).await.map_err(local)?;
    let mut body = object.body;
    let mut written = 0u64;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| failed(None, e.to_string(), e.into()))?
    {
        file.write_all(&chunk).await.map_err(local)?;
        written += chunk.len() as u64;
    }
    file.flush().await.map_err(local)?;
    Ok(written)
}

/// Uploads `frames` (capture 0, 1, …) under `naming`, [`UPLOAD_CONCURRENCY`] at a time,
/// counting each in `uploaded`.
#[instrument(skip_all, fields(bucket = %naming.bucket, prefix = %naming.prefix, frames = frames.len()), err)]
pub async fn upload_captures(
    s3: &aws_sdk_s3::Client,
    naming: &OutputNaming,
    frames: &[PathBuf],
    uploaded: &AtomicU64,
) -> Result<(), TransferError> {
    let mut queued = frames.iter().enumerate();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < UPLOAD_CONCURRENCY {
            let Some((index, path)) = queued.next() else {
                break;
            };
            running.push(upload_capture(s3, naming, index as u64, path));
        }
        match running.next().await {
            Some(result) => {
                result?;
                uploaded.fetch_add(1, Ordering::Relaxed);
            }
            None => return Ok(()),
        }
    }
}

/// Uploads the single-file output at `path` (an MP4) under `naming`.
#[instrument(skip_all, fields(bucket = %naming.bucket, key = %naming.file_key()), err)]
pub async fn upload_file(
    s3: &aws_sdk_s3::Client,
    naming: &OutputNaming,
    path: &Path,
    content_type: &str,
) -> Result<(), TransferError> {
    put_file(s3, &naming.bucket, naming.file_key(), path, content_type).await
}

async fn upload_capture(
    s3: &aws_sdk_s3::Client,
    naming: &OutputNaming,
    index: u64,
    path: &Path,
) -> Result<(), TransferError> {
    put_file(s3, &naming.bucket, naming.key(index), path, "image/jpeg").await
}

async fn put_file(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: String,
    path: &Path,
    content_type: &str,
) -> Result<(), TransferError> {
    let body = ByteStream::from_path(path)
        .await
        .map_err(|e| TransferError::Local {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .content_type(content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| TransferError::Upload {
            bucket: bucket.to_string(),
            message: framefleet_core::aws::describe(&e),
            key,
            source: e.into(),
        })?;
    Ok(())
}
