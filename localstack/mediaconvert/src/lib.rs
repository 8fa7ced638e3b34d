//! A local stand-in for AWS Elemental MediaConvert's frame capture, and the H.264 MP4 output
//! MediaConvert requires beside it, which exists in no AWS emulator. It serves the REST calls
//! `aws-sdk-mediaconvert` makes (CreateJob, GetJob, ListJobs, CancelJob, DescribeEndpoints),
//! refuses what MediaConvert would refuse (a job of frame captures alone, values outside the
//! API's ranges) or what the stand-in cannot honour with `BadRequestException`, captures frames
//! and encodes MP4s with the real ffmpeg, writes them through the S3 API under MediaConvert's
//! names and sends the EventBridge "MediaConvert Job State Change" events to an SQS queue, as
//! the EventBridge rule does on AWS.
//!
//! - [`config`]: [`StandinSettings`] and [`StandinConfig`].
//! - [`request`]: the `CreateJob` body as the SDK serialises it.
//! - [`plan`]: validation of a request into a [`plan::JobPlan`], or the 400 message.
//! - [`naming`]: `<base><NameModifier>.<NNNNNNN>.jpg` and `<base><NameModifier>.mp4` under the
//!   destination.
//! - [`job`]: job records, ids, ARNs, forward-only status, idempotency, the `Job` JSON.
//! - [`capture`]: ffprobe, and ffmpeg for captures and MP4s.
//! - [`transfer`]: S3 download of the input and upload of the captures.
//! - `inputs`: downloaded inputs cached per (bucket, key, ETag), so N segment jobs of one
//!   video download it once.
//! - [`timecode`]: clip timecodes and the input's `TimecodeSource`.
//! - [`events`]: the EventBridge envelope and its delivery to SQS.
//! - `runner`: a job's life from SUBMITTED to COMPLETE, ERROR or CANCELED, a bounded number at
//!   once.
//! - [`api`]: the HTTP routes and the error shape.
//!
//! [`Standin`] wires them together; the binary and the end-to-end tests both drive it.

pub mod api;
pub mod capture;
pub mod config;
pub mod events;
mod inputs;
pub mod job;
pub mod naming;
pub mod plan;
pub mod request;
mod runner;
pub mod timecode;
pub mod transfer;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Fault, FaultRule, StandinConfig, StandinSettings};
pub use runner::{
    ERROR_INPUT_ACCESS, ERROR_INPUT_NOT_FOUND, ERROR_INPUT_UNDECODABLE, ERROR_INPUT_UNREADABLE,
    ERROR_INTERNAL, ERROR_INVALID_CLIP, ERROR_OUTPUT_WRITE,
};

use crate::events::EventPublisher;
use crate::inputs::InputCache;
use crate::job::JobStore;
use crate::runner::Service;

/// A bound, not yet serving, stand-in.
pub struct Standin {
    listener: TcpListener,
    local_addr: SocketAddr,
    service: Arc<Service>,
}

impl std::fmt::Debug for Standin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standin")
            .field("local_addr", &self.local_addr)
            .field("events_queue", &self.service.events.queue_url())
            .finish_non_exhaustive()
    }
}

impl Standin {
    /// Validates `config`, resolves the events queue and binds the listen address, so a
    /// misconfiguration fails here rather than on the first job.
    pub async fn bind(
        config: StandinConfig,
        s3: aws_sdk_s3::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> anyhow::Result<Standin> {
        config.validate()?;
        let queue_url = framefleet_core::aws::queue_url(&sqs, &config.events_queue).await?;
        let pattern = config
            .event_pattern
            .as_deref()
            .map(framefleet_core::event_pattern::EventPattern::from_json_text)
            .transpose()?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        tracing::info!(%local_addr, events_queue = %queue_url, "MediaConvert stand-in bound");
        let service = Arc::new(Service {
            slots: Arc::new(Semaphore::new(config.max_concurrent_jobs)),
            s3,
            events: EventPublisher::new(sqs, queue_url).with_pattern(pattern),
            store: Mutex::new(JobStore::default()),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            inputs: InputCache::new(config.input_cache_entries)
                .context("cannot create the input cache directory")?,
            fault_hits: Mutex::new(vec![0; config.faults.len()]),
            config,
        });
        Ok(Standin {
            listener,
            local_addr,
            service,
        })
    }

    /// How many inputs the stand-in has downloaded from S3 so far (jobs reading a cached
    /// (bucket, key, ETag) do not count); the counter stays live while the stand-in runs.
    pub fn input_downloads(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.service.inputs.downloads()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then abandons running and queued jobs: their
    /// ffmpeg is killed and work directories removed, and no further event is sent for them
    /// (the job table lives in memory, so a restarted stand-in would not know them anyway).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Standin {
            listener, service, ..
        } = self;
        let router = api::router(Arc::clone(&service));
        let stop = shutdown.clone();
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context("serving the MediaConvert API");
        service.shutdown.cancel();
        service.tracker.close();
        service.tracker.wait().await;
        tracing::info!("MediaConvert stand-in stopped");
        served
    }
}

/// The health URL behind `listen`; an unspecified address (`0.0.0.0`, `::`) is reached through
/// loopback.
pub fn health_url(listen: &str) -> anyhow::Result<String> {
    let mut addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("`{listen}` is not an `ip:port` address"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(format!("http://{addr}/health"))
}

/// Succeeds when the stand-in listening on `listen` answers its health route with 200.
pub async fn healthcheck(listen: &str) -> anyhow::Result<()> {
    let url = health_url(listen)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET {url} answered {}",
        response.status()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_url_reaches_unspecified_through_loopback() {
        assert_eq!(
            health_url("0.0.0.0:4590").unwrap(),
            "http://127.0.0.1:4590/health"
        );
        assert_eq!(health_url("[::]:80").unwrap(), "http://[::1]:80/health");
        assert_eq!(
            health_url("10.1.2.3:4590").unwrap(),
            "http://10.1.2.3:4590/health"
        );
        assert!(health_url("localhost:4590").is_err());
    }
}
