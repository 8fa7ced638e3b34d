//! What can go wrong while handling one message, and what that means for the message.

use framefleet_core::jobs::JobTableError;
use framefleet_core::queue::QueueError;

use crate::events::EventError;
use crate::mediaconvert::CreateJobError;
use crate::notification::NotificationError;

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
    /// Reading from S3 failed.
    #[error("s3://{bucket}/{key}: {message}")]
    S3 {
        /// Bucket.
        bucket: String,
        /// Key or prefix.
        key: String,
        /// Code and message.
        message: String,
        /// True for throttling, 5xx, timeouts.
        retryable: bool,
    },
}

impl DispatchError {
    /// True when the message should be left for redelivery; false when it can never succeed
    /// and should go to the DLQ.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Notification(_) | Self::Event(_) => false,
            Self::Jobs(e) => e.is_retryable(),
            Self::Queue(e) => e.is_retryable(),
            Self::MediaConvert(e) => e.retryable,
            Self::S3 { retryable, .. } => *retryable,
        }
    }
}
