//! Ranged reads of an uploaded video in S3, for reading its header without downloading it.

use framefleet_core::aws::{describe, is_transient};

use crate::rate::RangeRead;

/// A ranged GET failed.
#[derive(Debug, thiserror::Error)]
#[error("s3://{bucket}/{key}: {message}")]
pub struct ReadError {
    /// The ingress bucket the video was uploaded to.
    pub bucket: String,
    /// The uploaded video's key (decoded).
    pub key: String,
    /// Code and message.
    pub message: String,
    /// True for throttling, 5xx, timeouts.
    pub retryable: bool,
}

/// A read whose last byte lies past the largest offset an object can have (`u64::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes from byte {offset} end past the largest possible offset")]
pub struct RangeOverflow {
    /// First byte asked for.
    pub offset: u64,
    /// Bytes asked for.
    pub len: u64,
}

/// The `Range` header value of `len` bytes from `offset`: `bytes=first-last`, both inclusive
/// ("Byte Ranges", RFC 9110 section 14.1.2,
/// <https://www.rfc-editor.org/rfc/rfc9110#section-14.1.2>),
/// `None` when `len` is 0 (an inclusive range cannot be empty, so nothing is asked for).
fn byte_range(offset: u64, len: u64) -> Result<Option<String>, RangeOverflow> {
    let Some(span) = len.checked_sub(1) else {
        return Ok(None);
    };
    let last = offset
        .checked_add(span)
        .ok_or(RangeOverflow { offset, len })?;
    Ok(Some(format!("bytes={offset}-{last}")))
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
        let range = match byte_range(offset, len) {
            Ok(Some(range)) => range,
            Ok(None) => return Ok(Vec::new()),
            // Offsets come from the video's own box sizes: refuse, never wrap or panic.
            Err(overflow) => return Err(error(overflow.to_string(), false)),
        };
        let out = self
            .client
            .get_object()
            .bucket(self.bucket)
            .key(self.key)
            .range(range)
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
            let at = |position: u64| {
                usize::try_from(position).map_or(bytes.len(), |p| p.min(bytes.len()))
            };
            let (start, end) = (at(offset), at(offset.saturating_add(len)));
            bytes[start..end].to_vec()
        } else {
            bytes.to_vec()
        };
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_and_never_wrap() {
        assert_eq!(byte_range(0, 16), Ok(Some("bytes=0-15".into())));
        assert_eq!(byte_range(7, 1), Ok(Some("bytes=7-7".into())));
        assert_eq!(byte_range(9, 0), Ok(None));
        assert_eq!(byte_range(u64::MAX, 0), Ok(None));
        assert_eq!(
            byte_range(u64::MAX, 1),
            Ok(Some(format!("bytes={0}-{0}", u64::MAX)))
        );
        assert_eq!(
            byte_range(0, u64::MAX),
            Ok(Some(format!("bytes=0-{}", u64::MAX - 1)))
        );
        assert_eq!(
            byte_range(u64::MAX, 2),
            Err(RangeOverflow {
                offset: u64::MAX,
                len: 2
            })
        );
        assert_eq!(
            byte_range(2, u64::MAX),
            Err(RangeOverflow {
                offset: 2,
                len: u64::MAX
            })
        );
    }

    /// A range past `u64::MAX` is refused with a typed, final error before any request (the
    /// client points at a closed port: a request would fail differently, and retryably).
    #[tokio::test]
    async fn an_overflowing_read_is_refused_not_sent() {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        let object = S3Object {
            client: &client,
            bucket: "ingress",
            key: "huge.mp4",
        };
        let error = object.read(u64::MAX - 3, 16).await.unwrap_err();
        assert!(!error.retryable, "{error}");
        assert!(error.message.contains("largest possible offset"), "{error}");
        assert_eq!(object.read(5, 0).await.unwrap(), Vec::<u8>::new());
    }
}
