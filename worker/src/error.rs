//! What makes a batch fail and come back: the one error type of the batch and of its output,
//! each variant a reason to leave the message for redelivery rather than count the batch.

use framefleet_core::jobs::JobTableError;
use framefleet_core::manifest::ManifestError;

/// A batch that must be retried later (the message is left for redelivery).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Reading a frame or writing an output failed transiently (or for a reason a retry may
    /// fix, such as permissions being fixed).
    #[error("s3://{bucket}/{key}: {message}")]
    Storage {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Code and message.
        message: String,
    },
    /// The job table failed.
    #[error(transparent)]
    Jobs(#[from] JobTableError),
    /// The kernel task itself died (a bug, never bad input).
    #[error("kernel task failed: {0}")]
    Kernel(String),
    /// Writing the manifest of the job this batch completed failed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}
