//! Uploads: register the job, choose the capture rate, start MediaConvert.

use framefleet_core::jobs::{JobRecord, JobStatus, Registration, Transition};
use framefleet_core::telemetry::propagation;
use framefleet_core::video::VideoId;
use tracing::Instrument;

use crate::context::Inner;
use crate::error::DispatchError;
use crate::mediaconvert::{create_capture_job, CaptureRequest, PREVIEW_BASE_NAME};
use crate::metrics;
use crate::notification::{self, Notification, ObjectCreated};
use crate::pin::{pin_upload, PinError, PinLimits, PinnedSource, Upload};
use crate::rate::{probe_video, CaptureRate, HeaderProbe, ProbeError, VideoHeader};
use crate::source::S3Object;

/// Handles one ingress message: every record in it, in order.
pub(crate) async fn handle(inner: &Inner, body: &str) -> Result<(), DispatchError> {
    match notification::parse(body)? {
        Notification::Test => {
            tracing::info!("S3 test event; deleting it");
            Ok(())
        }
        Notification::Created(objects) => {
            for object in objects {
                let span = tracing::info_span!("register", bucket = %object.bucket, key = %object.key, video_id = tracing::field::Empty, trace_id = tracing::field::Empty);
                // One video, one trace: registration starts it.
                propagation::start_trace(&span);
                let result = register_upload(inner, &object)
                    .instrument(span.clone())
                    .await;
                propagation::record_error(&span, result)?;
            }
            Ok(())
        }
    }
}

fn is_video(key: &str, suffixes: &[String]) -> bool {
    let lower = key.to_lowercase();
    suffixes.iter().any(|suffix| {
        let suffix = suffix.trim().trim_start_matches('.').to_lowercase();
        !suffix.is_empty() && lower.ends_with(&format!(".{suffix}"))
    })
}

pub(crate) async fn register_upload(
    inner: &Inner,
    object: &ObjectCreated,
) -> Result<(), DispatchError> {
    if object.key.ends_with('/') {
        tracing::info!("folder marker; skipping");
        return Ok(());
    }
    if !is_video(&object.key, &inner.settings.dispatcher.video_suffixes) {
        tracing::info!("not a video by its suffix (dispatcher.video_suffixes); skipping");
        return Ok(());
    }
    let (etag, size) = if object.etag.is_empty() {
        head(inner, object).await?
    } else {
        (object.etag.clone(), object.size)
    };
    // The same rule `framefleet submit` applies to what PutObject answered.
    let video_id = VideoId::of_upload(
        &object.bucket,
        &object.key,
        &etag,
        object.version_id.as_deref(),
    );
    tracing::Span::current().record("video_id", video_id.as_str());
    let mut record = JobRecord::new(video_id.clone(), &object.bucket, &object.key, &etag, size);
    record.source_version_id = object.version_id.clone();
    record.traceparent = propagation::traceparent(&tracing::Span::current());
    let mut traceparent = record.traceparent.clone();
    match inner.jobs.register(&record).await? {
        Registration::Created => {
            metrics::jobs_registered();
            tracing::info!(size, "job registered")
        }
        Registration::Existing => {
            let existing = inner.jobs.get(&video_id).await?;
            let status = existing.as_ref().map(|r| r.status);
            if status != Some(JobStatus::Registered) {
                tracing::info!(?status, "duplicate notification; job already under way");
                return Ok(());
            }
            // The capture joins the trace the job was registered in.
            traceparent = existing.and_then(|r| r.traceparent).or(traceparent);
            tracing::info!("job registered earlier but not started; starting it");
        }
    }
    if size == 0 {
        fail(inner, &video_id, "the upload is empty (0 bytes)").await?;
        return Ok(());
    }
    // Every read from here on (the rate probe, MediaConvert) reads the job's own copy of the
    // registered bytes, never the key another upload may overwrite meanwhile (see `pin`).
    let pinned = match pin(inner, object, &etag, size, &video_id).await? {
        Some(pinned) => pinned,
        None => return Ok(()),
    };
    let Probed { probe, header } = match choose_rate(inner, &pinned, size).await {
        Ok(probed) => probed,
        Err(RateChoice::Unusable(reason)) => {
            fail(inner, &video_id, &reason).await?;
            return Ok(());
        }
        Err(RateChoice::Retry(error)) => return Err(error),
    };
    let HeaderProbe {
        rate,
        has_audio: source_has_audio,
    } = probe;
    // What the scaler reads to start workers before the first batch exists; written with the
    // capture's own transition, never as a write of its own before CreateJob.
    let expected = header.as_ref().and_then(|h| expected_frames(h, rate));
    let note = match crate::segments::choose(inner, header.as_ref(), rate) {
        Ok(plan) => {
            // Boxed: the segmented flow's futures inlined into the registration's overflow a debug
            // build's worker-thread stack.
            return Box::pin(crate::segments::start(
                inner,
                &video_id,
                &plan,
                source_has_audio,
            ))
            .await;
        }
        Err(why) => format!("one MediaConvert job: {why}"),
    };
    let mut request = capture_request(inner, &video_id, &pinned, rate, source_has_audio, 0);
    request.traceparent = traceparent;
    let capture_span = tracing::info_span!("capture", video_id = %video_id, capture_rate = %rate);
    let job_id = match create_capture_job(
        &inner.clients.mediaconvert,
        &inner.settings.dispatcher,
        &request,
    )
    .instrument(capture_span)
    .await
    {
        Ok(job_id) => job_id,
        Err(error) if error.retryable => return Err(error.into()),
        Err(error) => {
            fail(
                inner,
                &video_id,
                &format!("MediaConvert refused the job: {}", error.message),
            )
            .await?;
            return Ok(());
        }
    };
    let started = inner
        .jobs
        .start_capture_noting(&video_id, &job_id, &rate.to_string(), Some(&note), expected)
        .await?;
    if started == Transition::NotApplicable {
        // The job left REGISTERED while CreateJob ran: canceled by the user (`framefleet
        // cancel` found no capture to cancel yet), failed, or started by another dispatcher.
        // Unless the record names the job just created (the same token within its window),
        // that job is nobody's: cancel it.
        let now = inner.jobs.get(&video_id).await?;
        let recorded = now.as_ref().and_then(|r| r.mediaconvert_job_id.as_deref());
        if recorded != Some(job_id.as_str()) {
            tracing::warn!(status = ?now.as_ref().map(|r| r.status), recorded_job_id = ?recorded, mediaconvert_job_id = %job_id, "job moved on during CreateJob; canceling the capture just created");
            crate::mediaconvert::cancel_stray_job(&inner.clients.mediaconvert, &video_id, &job_id)
                .await?;
            return Ok(());
        }
    }
    tracing::info!(mediaconvert_job_id = %job_id, capture_rate = %rate, "frame capture started");
    Ok(())
}

/// Pins the registered content; `None` when it is gone and the job is recorded FAILED.
async fn pin(
    inner: &Inner,
    object: &ObjectCreated,
    etag: &str,
    size: u64,
    video_id: &VideoId,
) -> Result<Option<PinnedSource>, DispatchError> {
    let upload = Upload {
        bucket: &object.bucket,
        key: &object.key,
        etag,
        version_id: object.version_id.as_deref(),
        size,
    };
    let frames_bucket = &inner.settings.resources.frames_bucket;
    match pin_upload(
        &inner.clients.s3,
        upload,
        frames_bucket,
        video_id,
        &PinLimits::default(),
    )
    .await
    {
        Ok(pinned) => {
            tracing::info!(pinned = %pinned.url(), "content pinned");
            Ok(Some(pinned))
        }
        Err(gone @ PinError::Gone { .. }) => {
            fail(inner, video_id, &gone.to_string()).await?;
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// Creates the capture job of a CAPTURING job again, with the request the first one had, when
/// MediaConvert no longer knows the recorded job. Returns the new MediaConvert job id.
pub(crate) async fn recapture(inner: &Inner, record: &JobRecord) -> Result<String, DispatchError> {
    let (rate, pinned) = crate::segments::recorded_capture(inner, record)?;
    // The recorded rate stands; the header is read again only for the preview's sound.
    let has_audio = crate::segments::source_has_audio(inner, &pinned, record.source_size).await;
    let mut request = capture_request(
        inner,
        &record.video_id,
        &pinned,
        rate,
        has_audio,
        record.reconcile_attempts + 1,
    );
    request.traceparent = record.traceparent.clone();
    Ok(create_capture_job(
        &inner.clients.mediaconvert,
        &inner.settings.dispatcher,
        &request,
    )
    .await?)
}

/// The CreateJob request of a video: its pinned copy in, frames and the preview out.
fn capture_request<'a>(
    inner: &Inner,
    video_id: &'a VideoId,
    pinned: &PinnedSource,
    rate: CaptureRate,
    source_has_audio: bool,
    attempt: u64,
) -> CaptureRequest<'a> {
    let r = &inner.settings.resources;
    CaptureRequest {
        video_id,
        input_url: pinned.url(),
        destination: format!("s3://{}/{}/", r.frames_bucket, video_id),
        preview_destination: format!(
            "s3://{}/{}/{}",
            r.processed_bucket, video_id, PREVIEW_BASE_NAME
        ),
        rate,
        attempt,
        source_has_audio,
        traceparent: None,
        part: None,
    }
}

async fn fail(inner: &Inner, video_id: &VideoId, reason: &str) -> Result<(), DispatchError> {
    tracing::warn!(reason, "job failed");
    if inner.jobs.fail(video_id, reason).await? == Transition::Applied {
        metrics::job_failed("register");
    }
    Ok(())
}

async fn head(inner: &Inner, object: &ObjectCreated) -> Result<(String, u64), DispatchError> {
    let out = inner
        .clients
        .s3
        .head_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone())
        .send()
        .await
        .map_err(|e| DispatchError::s3(&object.bucket, &object.key, &e))?;
    Ok((
        out.e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string(),
        out.content_length().unwrap_or_default().max(0) as u64,
    ))
}

enum RateChoice {
    Unusable(String),
    Retry(DispatchError),
}

/// What the header said: the capture rate and sound, and, where the header was read, all of
/// it (frame count, timing, edit list, duration) for the segment plan and the scaler.
struct Probed {
    probe: HeaderProbe,
    header: Option<VideoHeader>,
}

/// Frames the capture will yield, from the header: its sample count when capturing every
/// frame, else its duration at the capture rate.
fn expected_frames(header: &VideoHeader, rate: CaptureRate) -> Option<u64> {
    if rate == header.rate {
        if let Some(frames) = header.frames {
            return Some(frames);
        }
    }
    let ms = header.duration_ms?;
    Some(
        u64::try_from(
            u128::from(ms) * u128::from(rate.numerator)
                / (1000 * u128::from(rate.denominator).max(1)),
        )
        .unwrap_or(u64::MAX),
    )
}

/// The capture rate and whether the upload has sound. A container whose header is not read
/// (AVI, MPEG-TS, …) gets `dispatcher.fallback_rate` and a silent preview: the preview only
/// asks MediaConvert for sound the header showed.
async fn choose_rate(
    inner: &Inner,
    pinned: &PinnedSource,
    size: u64,
) -> Result<Probed, RateChoice> {
    let config = &inner.settings.dispatcher;
    let fallback = || {
        CaptureRate::parse(&config.fallback_rate).map_err(|e| RateChoice::Unusable(e.to_string()))
    };
    let reader = S3Object {
        client: &inner.clients.s3,
        bucket: &pinned.bucket,
        key: &pinned.key,
    };
    if config.capture_rate != "source" {
        let rate = CaptureRate::parse(&config.capture_rate)
            .map_err(|e| RateChoice::Unusable(e.to_string()))?;
        // The header only decides the preview's audio (and the expected frames) here;
        // MediaConvert judges the video.
        let header = probe_video(&reader, size).await.ok();
        let has_audio = header.as_ref().is_some_and(|h| h.has_audio);
        return Ok(Probed {
            probe: HeaderProbe { rate, has_audio },
            header,
        });
    }
    match probe_video(&reader, size).await {
        Ok(header) => {
            let probe = header.header_probe();
            tracing::info!(capture_rate = %probe.rate, has_audio = probe.has_audio, frames = ?header.frames, duration_ms = ?header.duration_ms, "frame rate read from the container header");
            Ok(Probed {
                probe,
                header: Some(header),
            })
        }
        Err(ProbeError::OtherContainer(kind)) => {
            let rate = fallback()?;
            tracing::info!(container = kind, capture_rate = %rate, "using dispatcher.fallback_rate");
            Ok(Probed {
                probe: HeaderProbe {
                    rate,
                    has_audio: false,
                },
                header: None,
            })
        }
        Err(ProbeError::Read(error)) if error.retryable => {
            Err(RateChoice::Retry(DispatchError::S3 {
                bucket: error.bucket,
                key: error.key,
                message: error.message,
                retryable: true,
            }))
        }
        Err(error) => Err(RateChoice::Unusable(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_match_case_insensitively() {
        let suffixes = ["mp4".to_string(), ".MOV".to_string()];
        assert!(is_video("a/b.MP4", &suffixes));
        assert!(is_video("clip.mov", &suffixes));
        assert!(!is_video("notes.txt", &suffixes));
        assert!(!is_video("mp4", &suffixes));
    }
}
