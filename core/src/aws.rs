//! AWS SDK clients built from the standard AWS environment (`AWS_REGION`, credentials,
//! `AWS_ENDPOINT_URL[_SERVICE]`). Nothing here knows about emulators except one fact: S3 needs
//! path-style addressing when its endpoint is overridden.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::error::ProvideErrorMetadata;

/// The clients every service uses, cheap to clone.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// S3, path-style when the endpoint is overridden.
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// MediaConvert (the regional endpoint, or `AWS_ENDPOINT_URL_MEDIACONVERT`).
    pub mediaconvert: aws_sdk_mediaconvert::Client,
    /// S3's endpoint override (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`), if any, for
    /// clients built outside the SDK (the worker's direct S3 requests).
    pub s3_endpoint: Option<String>,
    /// The configuration the clients were built from (region, credentials provider), for
    /// clients built outside the SDK.
    pub config: SdkConfig,
}

impl AwsClients {
    /// Loads the standard AWS configuration chain from the environment.
    pub async fn from_env() -> Self {
        let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
        let s3_endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| sdk.endpoint_url().map(str::to_string));
        Self {
            s3_endpoint: s3_endpoint.clone(),
            ..Self::from_config(&sdk, s3_endpoint.is_some(), None)
        }
    }

    /// Builds clients from an explicit configuration; `mediaconvert_endpoint` overrides the
    /// MediaConvert endpoint alone (the local stand-in listens apart from the AWS emulator).
    pub fn from_config(
        sdk: &SdkConfig,
        s3_path_style: bool,
        mediaconvert_endpoint: Option<&str>,
    ) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(s3_path_style)
            .build();
        let mut mediaconvert = aws_sdk_mediaconvert::config::Builder::from(sdk);
        if let Some(endpoint) = mediaconvert_endpoint {
            mediaconvert = mediaconvert.endpoint_url(endpoint);
        }
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            mediaconvert: aws_sdk_mediaconvert::Client::from_conf(mediaconvert.build()),
            s3_endpoint: sdk.endpoint_url().map(str::to_string),
            config: sdk.clone(),
        }
    }
}

/// A queue could not be resolved to a URL.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve queue `{queue}`: {message}")]
pub struct QueueResolveError {
    /// The queue name as configured.
    pub queue: String,
    /// The service's message.
    pub message: String,
    /// The SDK error.
    #[source]
    pub source: aws_sdk_sqs::error::SdkError<
        aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError,
        aws_smithy_runtime_api::http::Response,
    >,
}

/// Turns a configured queue (a name or a URL) into a URL.
pub async fn queue_url(
    sqs: &aws_sdk_sqs::Client,
    name_or_url: &str,
) -> Result<String, QueueResolveError> {
    if name_or_url.starts_with("http://") || name_or_url.starts_with("https://") {
        return Ok(name_or_url.to_string());
    }
    match sqs.get_queue_url().queue_name(name_or_url).send().await {
        Ok(out) => Ok(out.queue_url().unwrap_or_default().to_string()),
        Err(source) => Err(QueueResolveError {
            queue: name_or_url.to_string(),
            message: source
                .as_service_error()
                .and_then(|e| e.message())
                .unwrap_or("request failed")
                .to_string(),
            source,
        }),
    }
}

/// True for SDK errors worth leaving for redelivery: throttling, 5xx, timeouts, I/O.
pub fn is_transient<E, R>(error: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status_code();
            let code = service.err().code().unwrap_or_default();
            status >= 500
                || status == 429
                || code.contains("Throttl")
                || code == "RequestLimitExceeded"
                || code == "ProvisionedThroughputExceededException"
                || code == TRANSACTION_CONFLICT
                || code == "SlowDown"
                // S3's idle-socket timeout: "Error responses", Amazon S3 API Reference,
                // https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
                || code == "RequestTimeout"
                || code == "InternalError"
                || code == "ServiceUnavailable"
        }
        _ => false,
    }
}

/// DynamoDB's code for a write that met a running transaction on the same item. The write was
/// rejected, so sending it again is safe: "Transaction conflict handling in DynamoDB",
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling>.
pub const TRANSACTION_CONFLICT: &str = "TransactionConflictException";

/// True when DynamoDB refused a single-item write because a transaction held the item. The SDK
/// does not retry it (it is neither throttling nor a 5xx), so callers retry it with
/// [`ConflictBackoff`].
pub fn is_transaction_conflict<E, R>(
    error: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> bool
where
    E: ProvideErrorMetadata,
{
    error
        .as_service_error()
        .is_some_and(|e| e.code() == Some(TRANSACTION_CONFLICT))
}

/// Jittered exponential backoff for retrying DynamoDB transaction conflicts in process, bounded
/// so a batch gives up (and is redelivered) long before its visibility timeout matters.
///
/// Full jitter: each wait is uniform in `[0, min(cap, base · 2^attempt))`, as "Error retries
/// and exponential backoff in AWS",
/// <https://docs.aws.amazon.com/general/latest/gr/api-retries.html>, recommends; conflicting
/// writers then spread out instead of meeting again. With the defaults a call is tried at most
/// [`ConflictBackoff::MAX_ATTEMPTS`] times and sleeps at most 25+50+…+800+1000 ms ≈ 2.6 s.
#[derive(Debug, Clone)]
pub struct ConflictBackoff {
    attempt: u32,
}

impl ConflictBackoff {
    /// Attempts of one call, the first included.
    pub const MAX_ATTEMPTS: u32 = 8;
    const BASE: std::time::Duration = std::time::Duration::from_millis(25);
    const CAP: std::time::Duration = std::time::Duration::from_secs(1);

    /// A fresh backoff for one call.
    pub fn new() -> Self {
        Self { attempt: 1 }
    }

    /// The longest the next wait may be, or `None` once the attempts are spent.
    pub fn next_ceiling(&self) -> Option<std::time::Duration> {
        (self.attempt < Self::MAX_ATTEMPTS).then(|| {
            Self::BASE
                .saturating_mul(1 << (self.attempt - 1).min(16))
                .min(Self::CAP)
        })
    }

    /// Sleeps before the next attempt and returns true, or returns false when the attempts are
    /// spent (the caller then reports the conflict as retryable, for redelivery).
    pub async fn wait(&mut self) -> bool {
        let Some(ceiling) = self.next_ceiling() else {
            return false;
        };
        self.attempt += 1;
        tokio::time::sleep(ceiling.mul_f64(unit_random())).await;
        true
    }
}

impl Default for ConflictBackoff {
    fn default() -> Self {
        Self::new()
    }
}

/// A number in `[0, 1)` from the standard library's randomly keyed hasher: jitter needs no
/// quality, only that two workers do not pick the same waits.
fn unit_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The HTTP status of a raw response, so [`is_transient`] works for every client.
pub trait HasStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// The error code and message of an SDK error, for logs and job records.
pub fn describe<E, R>(error: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => err.to_string(),
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_backoff_is_bounded_and_doubles_to_its_cap() {
        let mut backoff = ConflictBackoff::new();
        let mut ceilings = Vec::new();
        while let Some(ceiling) = backoff.next_ceiling() {
            ceilings.push(ceiling.as_millis());
            backoff.attempt += 1;
        }
        assert_eq!(ceilings, [25, 50, 100, 200, 400, 800, 1000]);
        assert_eq!(ceilings.len() as u32 + 1, ConflictBackoff::MAX_ATTEMPTS);
        for _ in 0..1000 {
            let r = unit_random();
            assert!((0.0..1.0).contains(&r), "{r}");
        }
    }
}
