//! Ranged reads of an uploaded video in S3, for reading its header without downloading it.

use framefleet_core::aws::{describe, is_transient};

use crate::rate::RangeRead;

/// A ranged GET failed.
#[derive(Debug, thiserror::Error)]
#[error("s3://{bucket}/{key}: {message}")]
pub struct ReadError {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Code and message.
    pub message: String,
    /// True for throttling, 5xx, timeouts.
    pub retryable: bool,
}

/// One S3 object read by ranges.
pub struct S3Object<'a> {
    /// Client.
    pub client: &'a aws_sdk_s3::Client,
    /// Bucket.
    pub bucket: &'a str,
    /// Key (decoded).
    pub key: &'a str,
}

impl RangeRead for S3Object<'_> {
    type Error = ReadError;

    async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, ReadError> {
        let error = |message: String, retryable: bool| ReadError {
            bucket: self.bucket.to_string(),
            key: self.key.to_string(),
            message,
            retryable,
        };
        if len == 0 {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(self.bucket)
            .key(self.key)
            .range(format!("bytes={offset}-{}", offset + len - 1))
            .send()
            .await
            .map_err(|e| error(describe(&e), is_transient(&e)))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| error(e.to_string(), true))?
            .into_bytes();
        // A server that ignores Range returns the whole object; keep only what was asked.
        let bytes = if out.content_range.is_none() && bytes.len() as u64 > len {
            let start = (offset as usize).min(bytes.len());
            let end = (offset.saturating_add(len) as usize).min(bytes.len());
            bytes[start..end].to_vec()
        } else {
            bytes.to_vec()
        };
        Ok(bytes)
    }
}
