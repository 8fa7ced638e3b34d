//! Content pinning: before anything reads an upload, the dispatcher copies exactly the registered
//! bytes to a key only this job uses, and every later read (the rate probe, MediaConvert) reads
//! that copy.
//!
//! Why: the video id names one eTag, but MediaConvert reads its input by bucket and key when the
//! job *starts*, which may be long after registration (jobs wait on the MediaConvert queue). An
//! overwrite of the key in between would give this job another upload's frames while its record
//! and manifest claim the registered eTag. S3 versioning alone would not help: MediaConvert's
//! input is a plain `s3://bucket/key` path with no version id (Input `fileInput` in the
//! MediaConvert API Reference, "Jobs",
//! <https://docs.aws.amazon.com/mediaconvert/latest/apireference/jobs.html>; HTTP inputs
//! "can't include parameters",
//! <https://docs.aws.amazon.com/mediaconvert/latest/ug/http-input-requirements.html>).
//!
//! How: a server-side copy to `s3://<frames bucket>/sources/<video id>/<basename>` guarded by
//! `x-amz-copy-source-if-match` on the registered eTag, so S3 copies the registered bytes or
//! answers 412 PreconditionFailed ("CopyObject", Amazon S3 API Reference,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html>). The basename is kept
//! because MediaConvert names the captured frames after its input's basename. One CopyObject
//! copies at most 5 GiB; above [`PinLimits::multipart_threshold`] the copy is a multipart upload
//! whose every UploadPartCopy carries the same condition ("UploadPartCopy",
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html>; "Copying an
//! object using multipart upload",
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/CopyingObjectsMPUapi.html>), aborted
//! on failure so no parts are left billed. The copy records the source eTag in its metadata, so
//! a redelivered registration recognises a copy an earlier attempt made even after the upload
//! was overwritten. The frames bucket's lifecycle expiry covers `sources/`.

use std::collections::HashMap;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, TaggingDirective,
};
use aws_smithy_runtime_api::client::result::SdkError;
use framefleet_core::aws::{describe, is_transient, HasStatus};
use framefleet_core::video::VideoId;
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Metadata key (`x-amz-meta-source-etag`) of a pinned copy: the eTag it was copied from.
pub const SOURCE_ETAG_METADATA: &str = "source-etag";

/// Largest object one CopyObject may copy (5 GiB).
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest part of a multipart upload except the last (5 MiB).
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// Most parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// UploadPartCopy calls in flight at once for one pin.
const PART_CONCURRENCY: usize = 8;

/// Characters percent-encoded in `x-amz-copy-source`: everything but unreserved ones and `/`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// When to switch from one CopyObject to a multipart copy, and the part size it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinLimits {
    /// Objects larger than this many bytes are copied in parts. At most [`MAX_SINGLE_COPY`],
    /// which is also the default; tests lower it to exercise the multipart path on small files.
    pub multipart_threshold: u64,
    /// Bytes per part, raised as needed so no upload needs more than [`MAX_PARTS`] parts, and
    /// kept between [`MIN_PART`] and [`MAX_SINGLE_COPY`].
    pub part_size: u64,
}

impl Default for PinLimits {
    fn default() -> Self {
        Self {
            multipart_threshold: MAX_SINGLE_COPY,
            part_size: 512 * 1024 * 1024,
        }
    }
}

impl PinLimits {
    /// The part size used for an object of `size` bytes.
    fn part_size_for(&self, size: u64) -> u64 {
        self.part_size
            .max(size.div_ceil(MAX_PARTS))
            .clamp(MIN_PART, MAX_SINGLE_COPY)
    }

    /// Inclusive byte ranges of the parts of an object of `size` bytes.
    fn parts(&self, size: u64) -> Vec<(u64, u64)> {
        let part = self.part_size_for(size);
        (0..size.div_ceil(part))
            .map(|i| (i * part, ((i + 1) * part).min(size) - 1))
            .collect()
    }
}

/// The registered upload: where it is and which content the job was registered for.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// Ingress bucket the upload landed in.
    pub bucket: &'a str,
    /// Key of the upload, decoded.
    pub key: &'a str,
    /// eTag the job was registered for (quotes optional).
    pub etag: &'a str,
    /// Version the job was registered for, on a versioned bucket: the copy reads exactly that
    /// version, so an overwrite of the key before the pin leaves the registered bytes
    /// reachable (and `s3:GetObjectVersion` is what S3 authorises that read as).
    pub version_id: Option<&'a str>,
    /// Size in bytes from the notification; decides between one copy and a multipart copy.
    pub size: u64,
}

/// The job's own copy of its upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedSource {
    /// The frames bucket, where the copy lives beside the frames it yields.
    pub bucket: String,
    /// `sources/<video id>/<basename of the upload>`.
    pub key: String,
}

impl PinnedSource {
    /// Where the copy of `upload_key` for `video_id` lives in `frames_bucket`.
    pub fn location(frames_bucket: &str, video_id: &VideoId, upload_key: &str) -> Self {
        let basename = upload_key.rsplit('/').next().unwrap_or(upload_key);
        Self {
            bucket: frames_bucket.to_string(),
            key: format!("sources/{video_id}/{basename}"),
        }
    }

    /// `s3://bucket/key`, MediaConvert's input.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// Pinning failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The registered content is no longer at its key: overwritten (412 PreconditionFailed) or
    /// deleted (NoSuchKey). The job can never be processed with the bytes it was registered for.
    #[error(
        "the upload s3://{bucket}/{key} with eTag {etag} is gone ({code}): it was overwritten or \
         deleted before its content was pinned, so it is not processed with other bytes"
    )]
    Gone {
        /// Ingress bucket.
        bucket: String,
        /// Upload key.
        key: String,
        /// The registered eTag.
        etag: String,
        /// S3's error code, `PreconditionFailed` or `NoSuchKey`.
        code: String,
    },
    /// An S3 call failed otherwise (throttling and 5xx are retryable; access denied is not).
    #[error(
        "pinning s3://{bucket}/{key} to s3://{pinned_bucket}/{pinned_key}: {operation}: {message}"
    )]
    S3 {
        /// Ingress bucket.
        bucket: String,
        /// Upload key.
        key: String,
        /// Frames bucket.
        pinned_bucket: String,
        /// Key of the copy.
        pinned_key: String,
        /// The S3 operation that failed.
        operation: &'static str,
        /// S3's code and message.
        message: String,
        /// True for throttling, 5xx, timeouts.
        retryable: bool,
        /// The SDK error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl PinError {
    /// True when leaving the message for redelivery may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Gone { .. } => false,
            Self::S3 { retryable, .. } => *retryable,
        }
    }
}

/// One pin: the upload, where its copy goes, and the S3 client.
struct Pin<'a> {
    s3: &'a aws_sdk_s3::Client,
    upload: Upload<'a>,
    /// `"etag"`, as S3 writes entity tags.
    quoted_etag: String,
    copy_source: String,
    pinned: PinnedSource,
}

/// Copies exactly the registered content of `upload` to the job's own key in `frames_bucket`
/// and returns where. Idempotent: repeating it (a redelivered registration) copies the same
/// bytes to the same key, or finds the copy an earlier attempt made.
pub async fn pin_upload(
    s3: &aws_sdk_s3::Client,
    upload: Upload<'_>,
    frames_bucket: &str,
    video_id: &VideoId,
    limits: &PinLimits,
) -> Result<PinnedSource, PinError> {
    let etag = upload.etag.trim_matches('"');
    let pin = Pin {
        s3,
        upload: Upload { etag, ..upload },
        quoted_etag: format!("\"{etag}\""),
        copy_source: copy_source(upload.bucket, upload.key, upload.version_id),
        pinned: PinnedSource::location(frames_bucket, video_id, upload.key),
    };
    let copied = if upload.size > limits.multipart_threshold.min(MAX_SINGLE_COPY) {
        pin.copy_in_parts(limits).await
    } else {
        pin.copy_whole().await
    };
    match copied {
        Ok(()) => Ok(pin.pinned),
        // An earlier attempt may have pinned it before the upload was overwritten.
        Err(gone @ PinError::Gone { .. }) if pin.already_pinned().await? => {
            tracing::info!(error = %gone, "upload gone, but pinned by an earlier attempt");
            Ok(pin.pinned)
        }
        Err(error) => Err(error),
    }
}

/// `x-amz-copy-source`: `bucket/key` with the key percent-encoded, and `?versionId=` when the
/// registration named a version ("CopyObject", `x-amz-copy-source`: "To copy a specific version
/// of an object, append `?versionId=<version-id>`").
fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let mut source = format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE));
    if let Some(version) = version_id.filter(|v| !v.is_empty() && *v != "null") {
        source.push_str("?versionId=");
        source.push_str(&utf8_percent_encode(version, COPY_SOURCE).to_string());
    }
    source
}

impl Pin<'_> {
    fn error<E, R>(&self, operation: &'static str, error: SdkError<E, R>) -> PinError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + HasStatus + Send + Sync + 'static,
    {
        let (code, status) = match &error {
            SdkError::ServiceError(service) => (
                service.err().code().unwrap_or_default().to_string(),
                service.raw().status_code(),
            ),
            _ => (String::new(), 0),
        };
        if code == "PreconditionFailed" || code == "NoSuchKey" || status == 412 {
            return PinError::Gone {
                bucket: self.upload.bucket.to_string(),
                key: self.upload.key.to_string(),
                etag: self.upload.etag.to_string(),
                code: if code.is_empty() {
                    format!("HTTP {status}")
                } else {
                    code
                },
            };
        }
        PinError::S3 {
            bucket: self.upload.bucket.to_string(),
            key: self.upload.key.to_string(),
            pinned_bucket: self.pinned.bucket.clone(),
            pinned_key: self.pinned.key.clone(),
            operation,
            message: describe(&error),
            retryable: is_transient(&error),
            source: Some(Box::new(error)),
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([(
            SOURCE_ETAG_METADATA.to_string(),
            self.upload.etag.to_string(),
        )])
    }

    async fn copy_whole(&self) -> Result<(), PinError> {
        self.s3
            .copy_object()
            .bucket(&self.pinned.bucket)
            .key(&self.pinned.key)
            .copy_source(&self.copy_source)
            .copy_source_if_match(&self.quoted_etag)
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(self.metadata()))
            // The default, COPY, copies the upload's tags, which S3 authorises as
            // s3:GetObjectTagging on the source and s3:PutObjectTagging on the copy: a tagged
            // upload would be refused to a role without them. The copy needs no tags, so it
            // gets none, and the role needs no tagging permission (least privilege).
            // UploadPartCopy carries no tagging directive: a multipart copy's tags are the
            // ones CreateMultipartUpload sets, here none.
            .tagging_directive(TaggingDirective::Replace)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("CopyObject", e))
    }

    async fn copy_in_parts(&self, limits: &PinLimits) -> Result<(), PinError> {
        let created = self
            .s3
            .create_multipart_upload()
            .bucket(&self.pinned.bucket)
            .key(&self.pinned.key)
            .set_metadata(Some(self.metadata()))
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = self
            .copy_parts(&upload_id, limits)
            .await
            .map(|parts| CompletedMultipartUpload::builder().set_parts(Some(parts)));
        let completed = match result {
            Ok(parts) => self
                .s3
                .complete_multipart_upload()
                .bucket(&self.pinned.bucket)
                .key(&self.pinned.key)
                .upload_id(&upload_id)
                .multipart_upload(parts.build())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.error("CompleteMultipartUpload", e)),
            Err(error) => Err(error),
        };
        if completed.is_err() {
            // Best effort: the bucket's AbortIncompleteMultipartUpload rule catches a miss.
            if let Err(abort) = self
                .s3
                .abort_multipart_upload()
                .bucket(&self.pinned.bucket)
                .key(&self.pinned.key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(upload_id, error = %describe(&abort), "cannot abort the multipart copy");
            }
        }
        completed
    }

    async fn copy_parts(
        &self,
        upload_id: &str,
        limits: &PinLimits,
    ) -> Result<Vec<CompletedPart>, PinError> {
        let ranges = limits.parts(self.upload.size);
        let mut parts: Vec<CompletedPart> = futures::stream::iter(ranges.into_iter().enumerate())
            .map(|(index, (first, last))| async move {
                let number = index as i32 + 1;
                let out = self
                    .s3
                    .upload_part_copy()
                    .bucket(&self.pinned.bucket)
                    .key(&self.pinned.key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .copy_source(&self.copy_source)
                    .copy_source_range(format!("bytes={first}-{last}"))
                    .copy_source_if_match(&self.quoted_etag)
                    .send()
                    .await
                    .map_err(|e| self.error("UploadPartCopy", e))?;
                // Each part copied is progress: a long copy keeps its loop healthy.
                framefleet_core::health::progress();
                let etag = out
                    .copy_part_result()
                    .and_then(|r| r.e_tag())
                    .unwrap_or_default();
                Ok::<_, PinError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .e_tag(etag)
                        .build(),
                )
            })
            .buffer_unordered(PART_CONCURRENCY)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }

    /// True when the job's key already holds a copy of the registered eTag.
    async fn already_pinned(&self) -> Result<bool, PinError> {
        match self
            .s3
            .head_object()
            .bucket(&self.pinned.bucket)
            .key(&self.pinned.key)
            .send()
            .await
        {
            Ok(head) => Ok(head
                .metadata()
                .and_then(|m| m.get(SOURCE_ETAG_METADATA))
                .is_some_and(|etag| etag == self.upload.etag)),
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(false)
            }
            Err(error) => Err(self.error("HeadObject", error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_key_keeps_the_basename() {
        let id = VideoId::from_raw("clip-0123456789ab");
        let pinned = PinnedSource::location("frames", &id, "a dir/my clip+ü (1).mp4");
        assert_eq!(pinned.key, "sources/clip-0123456789ab/my clip+ü (1).mp4");
        assert_eq!(
            pinned.url(),
            "s3://frames/sources/clip-0123456789ab/my clip+ü (1).mp4"
        );
        let top = PinnedSource::location("frames", &id, "clip.mov");
        assert_eq!(top.key, "sources/clip-0123456789ab/clip.mov");
    }

    #[test]
    fn parts_cover_the_object_within_s3_limits() {
        let limits = PinLimits {
            multipart_threshold: 0,
            part_size: MIN_PART,
        };
        let size = 2 * MIN_PART + 17;
        assert_eq!(
            limits.parts(size),
            [
                (0, MIN_PART - 1),
                (MIN_PART, 2 * MIN_PART - 1),
                (2 * MIN_PART, size - 1)
            ]
        );
        // A part size below S3's minimum is raised to it.
        let tiny = PinLimits {
            multipart_threshold: 0,
            part_size: 1,
        };
        assert_eq!(tiny.parts(MIN_PART + 1).len(), 2);
        // 5 TiB in at most 10,000 parts.
        let huge = 5 * 1024 * 1024 * 1024 * 1024;
        let parts = PinLimits::default().parts(huge);
        assert!(parts.len() as u64 <= MAX_PARTS);
        assert_eq!(parts.last().unwrap().1, huge - 1);
        assert!(PinLimits::default().parts(0).is_empty());
    }

    #[test]
    fn copy_source_encodes_the_key() {
        let encoded = utf8_percent_encode("a dir/ü+%#?.mp4", COPY_SOURCE).to_string();
        assert_eq!(encoded, "a%20dir/%C3%BC%2B%25%23%3F.mp4");
        assert_eq!(
            copy_source("in", "a dir/ü+%#?.mp4", None),
            "in/a%20dir/%C3%BC%2B%25%23%3F.mp4"
        );
    }

    #[test]
    fn copy_source_names_the_registered_version() {
        assert_eq!(
            copy_source("in", "clip.mp4", Some("3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")),
            "in/clip.mp4?versionId=3/L4kqtJlcpXroDTDmJ%2BrmSpXd3dIbrHY"
        );
        // `null` is the version of an object written while versioning was off: no version.
        assert_eq!(copy_source("in", "clip.mp4", Some("null")), "in/clip.mp4");
        assert_eq!(copy_source("in", "clip.mp4", None), "in/clip.mp4");
    }
}
