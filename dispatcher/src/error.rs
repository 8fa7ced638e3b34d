//! What can go wrong while handling one message, and what that means for the message.

use framefleet_core::jobs::JobTableError;
use framefleet_core::queue::QueueError;

use crate::events::EventError;
use crate::mediaconvert::CreateJobError;
use crate::notification::NotificationError;
use crate::pin::PinError;

/// Handling one message failed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The ingress message is not an S3 notification.
    #[error(transparent)]
    Notification(#[from] NotificationError),
    /// The job-events message is not a MediaConvert event.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The job table refused or failed.
    #[error(transparent)]
    Jobs(#[from] JobTableError),
    /// Sending batches failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// MediaConvert failed in a way worth retrying.
    #[error(transparent)]
    MediaConvert(#[from] CreateJobError),
    /// Copying the upload to the job's own key failed (other than the upload being gone,
    /// which fails the job instead). Boxed: its context (two locations, the operation) would
    /// make every result large.
    #[error(transparent)]
    Pin(Box<PinError>),
    /// The reconciler cannot act on a job as it is recorded.
    #[error("reconciling `{video_id}`: {message}")]
    Reconcile {
        /// The job.
        video_id: String,
        /// What is missing.
        message: String,
    },
    /// Reading from S3 failed.
    #[error("s3://{bucket}/{key}: {message}")]
    S3 {
        /// The ingress bucket (a HEAD of the upload) or the frames bucket (a listing).
        bucket: String,
        /// The upload's key, or the frames prefix that was listed.
        key: String,
        /// Code and message.
        message: String,
        /// True for throttling, 5xx, timeouts.
        retryable: bool,
    },
}

impl From<PinError> for DispatchError {
    fn from(error: PinError) -> Self {
        Self::Pin(Box::new(error))
    }
}

impl DispatchError {
    /// An S3 call on `bucket`/`key` failed.
    pub fn s3<E, R>(
        bucket: &str,
        key: &str,
        error: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Self
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + framefleet_core::aws::HasStatus,
    {
        Self::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
            message: framefleet_core::aws::describe(error),
            retryable: framefleet_core::aws::is_transient(error),
        }
    }

    /// True when the message should be left for redelivery; false when it can never succeed
    /// and should go to the DLQ.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Notification(_) | Self::Event(_) | Self::Reconcile { .. } => false,
            Self::Jobs(e) => e.is_retryable(),
            Self::Queue(e) => e.is_retryable(),
            Self::MediaConvert(e) => e.retryable,
            Self::Pin(e) => e.is_retryable(),
            Self::S3 { retryable, .. } => *retryable,
        }
    }
}
