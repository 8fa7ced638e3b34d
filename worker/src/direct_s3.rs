//! The frame hot path's S3 requests (GetObject of a frame, PutObject of an edge map or pack)
//! sent straight over one pooled HTTP/1.1 client and signed with SigV4, without the SDK's
//! per-request orchestration (`worker.s3_client = "direct"`).
//!
//! Why: `scripts/bench-fleet` profiled the worker at AWS-like latency and found that, beside
//! the kernel, most of its CPU is spent around the two S3 requests of each frame, and most of
//! that in the SDK's orchestrator (configuration layers, interceptors, endpoint and auth
//! resolution, per request) rather than in HTTP or signing. Everything else (SQS, DynamoDB,
//! the manifest) stays on the SDK.
//!
//! What it keeps from the SDK: the credentials provider of the worker's configuration (the ECS
//! task role in a task), cached here until five minutes before they expire; SigV4 from the
//! SDK's own signer (`aws-sigv4`), with the settings S3 needs (single URI encoding, no path
//! normalisation, an `x-amz-content-sha256` header) and `UNSIGNED-PAYLOAD` bodies ("Signature
//! Calculations for the Authorization Header: Transferring Payload in a Single Chunk", Amazon S3
//! API Reference, <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>);
//! a CRC32 of every PUT body in `x-amz-checksum-crc32`, which S3 checks and refuses on a
//! mismatch ("Checking object integrity", Amazon S3 User Guide,
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html>); TLS
//! with the system's roots; retries of throttling, 5xx, timeouts and broken connections (three
//! attempts, exponential backoff with full jitter, as the SDK's standard mode).
//!
//! Addressing: with an endpoint override (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`) requests
//! are path-style under it; on AWS they are virtual-hosted-style,
//! `https://<bucket>.s3.<region>.amazonaws.com/<key>` (path-style for bucket names with dots,
//! which the wildcard certificate does not cover): "Virtual hosting of buckets", Amazon S3 User
//! Guide, <https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html>. FIPS and
//! dual-stack endpoints are not built here: with `AWS_USE_FIPS_ENDPOINT` or
//! `AWS_USE_DUALSTACK_ENDPOINT` set, use `s3_client = "sdk"` (start-up refuses "direct").

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Attempts per request, the first included (the SDK's standard retry mode has three).
const ATTEMPTS: u32 = 3;
/// First backoff ceiling; doubled per retry, with full jitter.
const BACKOFF: Duration = Duration::from_millis(100);
/// One attempt's limit, from sending the request to the last byte of the answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Credentials are refreshed this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Idle pooled connections are closed before S3 closes them (it drops idle sockets after about
/// 20 s: "RequestTimeout", Error responses, Amazon S3 API Reference).
const POOL_IDLE: Duration = Duration::from_secs(15);

/// Why a direct request failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectS3Error {
    /// GetObject of a key that does not exist (404 `NoSuchKey`).
    #[error("NoSuchKey: the object does not exist")]
    NoSuchKey,
    /// S3 answered with an error.
    #[error("{code} (HTTP {status}): {message}")]
    Service {
        /// HTTP status.
        status: u16,
        /// S3's error code, e.g. `AccessDenied`, `SlowDown`.
        code: String,
        /// S3's message.
        message: String,
    },
    /// No answer: connection refused or broken, or the attempt timed out.
    #[error("request failed: {0}")]
    Transport(String),
    /// The credentials provider failed.
    #[error("no credentials: {0}")]
    Credentials(String),
    /// The request could not be built or signed (a key or endpoint S3 cannot take).
    #[error("cannot build the request: {0}")]
    Request(String),
}

impl DirectS3Error {
    /// Worth another attempt: throttling, 5xx, S3's idle-socket timeout, no answer.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Service { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || code == "SlowDown"
                    || code == "RequestTimeout"
                    || code == "InternalError"
                    // Two conditional writes of one key at once: retry ("Conditional writes").
                    || code == "ConditionalRequestConflict"
            }
            Self::Transport(_) | Self::Credentials(_) => true,
            Self::NoSuchKey | Self::Request(_) => false,
        }
    }
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// An override (an emulator, a VPC endpoint URL): path-style under this base URL.
    Custom(String),
    /// AWS's regional endpoint.
    Aws {
        /// The region.
        region: String,
    },
}

impl Endpoint {
    /// The URL of `key` in `bucket`, the key URI-encoded once.
    fn url(&self, bucket: &str, key: &str) -> String {
        let key = encode_key(key);
        match self {
            Self::Custom(base) => format!("{base}/{bucket}/{key}"),
            Self::Aws { region } => {
                let domain = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                if bucket.contains('.') {
                    format!("https://s3.{region}.{domain}/{bucket}/{key}")
                } else {
                    format!("https://{bucket}.s3.{region}.{domain}/{key}")
                }
            }
        }
    }
}

/// Encodes every byte of an S3 key except the unreserved characters and `/`, as SigV4's
/// canonical URI wants it for S3 (encoded once).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for &byte in key.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The direct S3 client; cheap to clone.
#[derive(Clone)]
pub struct DirectS3 {
    inner: Arc<Inner>,
}

struct Inner {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: Endpoint,
    region: String,
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for DirectS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectS3")
            .field("endpoint", &self.inner.endpoint)
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

impl DirectS3 {
    /// A client with the region and credentials provider of `config`, sending to
    /// `endpoint_override` (path-style) when given, else to AWS.
    pub fn new(
        config: &aws_types::SdkConfig,
        endpoint_override: Option<&str>,
    ) -> Result<Self, DirectS3Error> {
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| DirectS3Error::Request("no AWS region configured".into()))?;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| DirectS3Error::Credentials("no credentials provider".into()))?;
        let endpoint = match endpoint_override {
            Some(url) => Endpoint::Custom(url.trim_end_matches('/').to_string()),
            None => {
                for flag in ["AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT"] {
                    if std::env::var(flag).is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
                        return Err(DirectS3Error::Request(format!(
                            "{flag} is set: the direct S3 client only builds standard regional \
                             endpoints; set worker.s3_client = \"sdk\""
                        )));
                    }
                }
                Endpoint::Aws {
                    region: region.clone(),
                }
            }
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(3100)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| DirectS3Error::Request(format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(https);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoint,
                region,
                provider,
                cached: Mutex::new(None),
            }),
        })
    }

    /// GetObject: the whole object.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, DirectS3Error> {
        self.with_retries(|| self.attempt(Method::GET, bucket, key, None, false))
            .await
    }

    /// PutObject of `body` as `content_type`.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), DirectS3Error> {
        self.with_retries(|| {
            self.attempt(
                Method::PUT,
                bucket,
                key,
                Some((body.clone(), content_type)),
                false,
            )
        })
        .await
        .map(|_| ())
    }

    /// PutObject only if no object has the key (`If-None-Match: *`, "Add preconditions to S3
    /// operations with conditional requests", Amazon S3 User Guide,
    /// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html>):
    /// false when one exists (412 `PreconditionFailed`), which is also what a retry of a PUT
    /// whose answer was lost gets.
    pub async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<bool, DirectS3Error> {
        let result = self
            .with_retries(|| {
                self.attempt(
                    Method::PUT,
                    bucket,
                    key,
                    Some((body.clone(), content_type)),
                    true,
                )
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(DirectS3Error::Service { status: 412, .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn with_retries<F, Fut>(&self, attempt: F) -> Result<Bytes, DirectS3Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, DirectS3Error>>,
    {
        let mut tried = 1;
        loop {
            match attempt().await {
                Err(error) if error.is_transient() && tried < ATTEMPTS => {
                    let ceiling = BACKOFF * 2u32.pow(tried - 1);
                    tokio::time::sleep(ceiling.mul_f64(fastrand::f64())).await;
                    tried += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt(
        &self,
        method: Method,
        bucket: &str,
        key: &str,
        put: Option<(Bytes, &str)>,
        if_absent: bool,
    ) -> Result<Bytes, DirectS3Error> {
        let request = self.signed(method, bucket, key, put, if_absent).await?;
        let exchange = async {
            let response = self
                .inner
                .http
                .request(request)
                .await
                .map_err(|e| DirectS3Error::Transport(format!("{e:?}")))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| DirectS3Error::Transport(e.to_string()))?
                .to_bytes();
            Ok::<_, DirectS3Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(ATTEMPT_TIMEOUT, exchange)
            .await
            .map_err(|_| DirectS3Error::Transport(format!("no answer in {ATTEMPT_TIMEOUT:?}")))??;
        if status.is_success() {
            return Ok(body);
        }
        Err(service_error(status, &body))
    }

    async fn signed(
        &self,
        method: Method,
        bucket: &str,
        key: &str,
        put: Option<(Bytes, &str)>,
        if_absent: bool,
    ) -> Result<Request<Full<Bytes>>, DirectS3Error> {
        let url = self.inner.endpoint.url(bucket, key);
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| DirectS3Error::Request(format!("{url}: {e}")))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| DirectS3Error::Request(format!("{url}: no host")))?;
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(HOST, &host);
        if if_absent {
            builder = builder.header("if-none-match", "*");
        }
        let body = match put {
            Some((body, content_type)) => {
                let crc = base64_encode(&crc32fast::hash(&body).to_be_bytes());
                builder = builder
                    .header(CONTENT_TYPE, content_type)
                    .header("x-amz-sdk-checksum-algorithm", "CRC32")
                    .header("x-amz-checksum-crc32", crc);
                body
            }
            None => Bytes::new(),
        };
        let mut request = builder
            .body(Full::new(body))
            .map_err(|e| DirectS3Error::Request(e.to_string()))?;
        let credentials = self.credentials().await?;
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.inner.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| DirectS3Error::Request(e.to_string()))?
            .into();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let signable = SignableRequest::new(
            method.as_str(),
            url.as_str(),
            headers,
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| DirectS3Error::Request(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| DirectS3Error::Request(e.to_string()))?
            .into_parts();
        let (headers, _query) = instructions.into_parts();
        for header in headers {
            let value = HeaderValue::from_str(header.value())
                .map_err(|e| DirectS3Error::Request(e.to_string()))?;
            request.headers_mut().insert(header.name(), value);
        }
        Ok(request)
    }

    /// The cached credentials, fetched again when missing or within five minutes of expiry.
    async fn credentials(&self) -> Result<Credentials, DirectS3Error> {
        let fresh = |c: &Credentials| {
            c.expiry().is_none_or(|expiry| {
                expiry
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
            })
        };
        if let Some(cached) = lock(&self.inner.cached).as_ref().filter(|c| fresh(c)) {
            return Ok(cached.clone());
        }
        let credentials = self
            .inner
            .provider
            .provide_credentials()
            .await
            .map_err(|e| DirectS3Error::Credentials(e.to_string()))?;
        *lock(&self.inner.cached) = Some(credentials.clone());
        Ok(credentials)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// S3's error document (`<Error><Code>…</Code><Message>…</Message></Error>`) as an error; a
/// 404 GET of a missing key is [`DirectS3Error::NoSuchKey`].
fn service_error(status: StatusCode, body: &[u8]) -> DirectS3Error {
    let text = String::from_utf8_lossy(body);
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_string())
    };
    let code = element("Code").unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("Unknown")
            .replace(' ', "")
    });
    if code == "NoSuchKey" {
        return DirectS3Error::NoSuchKey;
    }
    DirectS3Error::Service {
        status: status.as_u16(),
        message: element("Message").unwrap_or_default(),
        code,
    }
}

/// Standard base64 with padding (RFC 4648), for the checksum header.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_once_keeping_slashes() {
        assert_eq!(encode_key("v-1/clip.0000003.jpg"), "v-1/clip.0000003.jpg");
        assert_eq!(encode_key("v 1/a+b=c%.jpg"), "v%201/a%2Bb%3Dc%25.jpg");
        assert_eq!(encode_key("é"), "%C3%A9");
    }

    #[test]
    fn aws_addressing_is_virtual_hosted_unless_the_bucket_has_dots() {
        let aws = Endpoint::Aws {
            region: "eu-west-1".into(),
        };
        assert_eq!(
            aws.url("frames", "v/a b.jpg"),
            "https://frames.s3.eu-west-1.amazonaws.com/v/a%20b.jpg"
        );
        assert_eq!(
            aws.url("my.frames", "k"),
            "https://s3.eu-west-1.amazonaws.com/my.frames/k"
        );
        let china = Endpoint::Aws {
            region: "cn-north-1".into(),
        };
        assert_eq!(
            china.url("b", "k"),
            "https://b.s3.cn-north-1.amazonaws.com.cn/k"
        );
        let local = Endpoint::Custom("http://127.0.0.1:4566".into());
        assert_eq!(local.url("b", "v/k"), "http://127.0.0.1:4566/b/v/k");
    }

    #[test]
    fn error_documents_become_typed_errors() {
        let missing =
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>";
        assert!(matches!(
            service_error(StatusCode::NOT_FOUND, missing),
            DirectS3Error::NoSuchKey
        ));
        let slow = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        let error = service_error(StatusCode::SERVICE_UNAVAILABLE, slow);
        assert!(error.is_transient());
        assert_eq!(
            error.to_string(),
            "SlowDown (HTTP 503): Please reduce your request rate."
        );
        let denied = service_error(StatusCode::FORBIDDEN, b"");
        assert!(!denied.is_transient());
        assert!(denied.to_string().starts_with("Forbidden (HTTP 403)"));
        assert!(DirectS3Error::Transport("reset".into()).is_transient());
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected);
        }
    }
}
