//! What can go wrong for a user, each with the thing it names and an exit code (see
//! [`crate::exit`]).

use std::path::PathBuf;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;
use framefleet_core::aws::{describe, is_transient, HasStatus};
use framefleet_core::jobs::{JobStatus, JobTableError};

use crate::exit;

/// A command failed; `Display` is the one-line message printed before exiting.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A video to submit cannot be read (missing, a directory, no permission).
    #[error("cannot read `{path}`: {source}")]
    InputFile {
        /// The file as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bucket does not exist (S3 `NoSuchBucket`): a wrong `--*-bucket` or region.
    #[error("bucket `{bucket}` does not exist (NoSuchBucket); check --{flag} or FRAMEFLEET__RESOURCES__{env}")]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
        /// The flag that names it.
        flag: &'static str,
        /// The environment key that names it.
        env: &'static str,
    },
    /// The SDK found no credentials in its chain.
    #[error("no AWS credentials: set AWS_PROFILE (or --profile) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY ({message})")]
    NoCredentials {
        /// The SDK's account of it.
        message: String,
    },
    /// The credentials were refused for this resource.
    #[error("{resource}: access denied: {message}")]
    AccessDenied {
        /// The bucket, table or job.
        resource: String,
        /// Code and message.
        message: String,
    },
    /// Another AWS call failed.
    #[error("{resource}: {message}")]
    Aws {
        /// The bucket/key, table or MediaConvert job.
        resource: String,
        /// Code and message.
        message: String,
        /// True for throttling, 5xx, timeouts: trying again later may work.
        retryable: bool,
    },
    /// The job table failed.
    #[error(transparent)]
    Jobs(#[from] JobTableError),
    /// No job has this id.
    #[error("job `{video_id}` not found in table `{table}`")]
    JobNotFound {
        /// The id as given.
        video_id: String,
        /// The table looked in.
        table: String,
    },
    /// The job is not in a state the command needs (fetching an unfinished job, canceling a
    /// finished one).
    #[error("job `{video_id}` is {status}: {message}")]
    WrongStatus {
        /// The job.
        video_id: String,
        /// Its status.
        status: JobStatus,
        /// What cannot be done.
        message: String,
    },
    /// What was downloaded disagrees with the manifest, or the manifest is unreadable.
    #[error("job `{video_id}`: {message}")]
    Mismatch {
        /// The job.
        video_id: String,
        /// What differs.
        message: String,
    },
    /// Writing a downloaded file failed.
    #[error("cannot write `{path}`: {source}")]
    Output {
        /// The local file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A flag's value is out of range.
    #[error("{flag}: {message}")]
    Usage {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::InputFile { .. } | Self::JobNotFound { .. } => exit::NO_INPUT,
            Self::NoSuchBucket { .. } => exit::UNAVAILABLE,
            Self::NoCredentials { .. } | Self::AccessDenied { .. } => exit::NO_PERMISSION,
            Self::Aws { retryable, .. } => {
                if *retryable {
                    exit::TEMPORARY
                } else {
                    exit::UNAVAILABLE
                }
            }
            Self::Jobs(error) => {
                if mentions_credentials(&error.message) {
                    exit::NO_PERMISSION
                } else if error.is_retryable() {
                    exit::TEMPORARY
                } else {
                    exit::UNAVAILABLE
                }
            }
            Self::WrongStatus { .. } | Self::Mismatch { .. } => exit::DATA,
            Self::Output { .. } => exit::IO,
            Self::Usage { .. } => exit::USAGE,
        }
    }

    /// An SDK error about `resource`, sorted into what a user can act on.
    pub fn aws<E, R>(resource: impl Into<String>, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + HasStatus,
    {
        let resource = resource.into();
        let message = describe(&error);
        let code = error
            .as_service_error()
            .and_then(|e| e.code())
            .unwrap_or_default();
        if matches!(
            code,
            "AccessDenied"
                | "AccessDeniedException"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "UnrecognizedClientException"
                | "ExpiredToken"
                | "ExpiredTokenException"
                | "InvalidClientTokenId"
        ) {
            return Self::AccessDenied { resource, message };
        }
        if error.as_service_error().is_none() && mentions_credentials(&message) {
            return Self::NoCredentials { message };
        }
        Self::Aws {
            resource,
            retryable: is_transient(&error),
            message,
        }
    }
}

/// The SDK says "no credentials" only in prose (a construction failure of the signer).
fn mentions_credentials(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("credentials") && (lower.contains("no ") || lower.contains("failed to load"))
}
