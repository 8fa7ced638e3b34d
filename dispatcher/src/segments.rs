//! Segmented capture: a long video captured as N MediaConvert jobs at once, each clipped to
//! its frames, each fanned out as soon as it lands (issue 21).
//!
//! # The flow
//!
//! 1. **Plan** ([`choose`]): [`plan_capture`] cuts an eligible video (frame count in the
//!    header, constant frame rate, no shifting edit list, every frame captured, a timecode
//!    rule for its rate, long enough) into segments `[first_k, first_k + frames_k)`,
//!    contiguous and disjoint. Anything else is one job, and the job records why
//!    (`capture_note`).
//! 2. **Register** ([`start`]): one transaction moves the job to CAPTURING with the plan
//!    (batch plan, frames per batch, total batches, F) and writes one item per segment
//!    (`segment#NNNN`): per-segment state lives outside the job item that every batch's
//!    counting transaction updates. Segment k's batches are numbered from
//!    `batch_base_k = Σ_{i<k} ⌈frames_i / batch_frames⌉`, so every batch index is known now.
//! 3. **Submit** ([`submit_window`]): up to `dispatcher.segments_in_flight` segments run at
//!    once. Each is claimed (PENDING → SUBMITTED, conditional on the job still CAPTURING:
//!    nothing is submitted after a cancel), created with `InputClippings` on a ZEROBASED
//!    timeline (`mediaconvert`), its frames written to `<vid>/sNNNN/<stem>.NNNNNNN.jpg` and its
//!    part of the preview to `<vid>/preview-sNNNN.mp4`, and its job id recorded.
//! 4. **A segment completes** ([`on_event`]): its captured count must equal its plan before
//!    anything of it is fanned out (`MaxCaptures` is its plan + 1, so an over-capture shows
//!    as a count above the plan instead of being cut to it). It is counted once
//!    (COMPLETE with the recorded job id, ADD to `segments_complete`/`captured_frames` in one
//!    transaction). When it is the last, the job moves to PROCESSING with `total_frames = F`
//!    before its batches are sent, so the batch counted last can win `try_finalize`; after any
//!    segment's fan-out, a sweep finalizes a job whose batches were all counted before the
//!    total existed. Its batches carry `first_index`, so workers name edge maps by the global
//!    frame index: the processed bucket is the same as an unsegmented run's.
//! 5. **A count that does not match** ([`fall_back`]): the segments still running are
//!    canceled and the whole video is captured again by one job (`<vid>/full/`), recorded in
//!    the job (`fallback`). Segments already fanned out stay counted; the fallback fan-out
//!    sends the batches of every other segment, cut exactly as planned (same indices, same
//!    frames) from the full capture's frames, so nothing is counted twice. A full capture with
//!    more frames than the header counted adds batches after the last planned one; one with
//!    fewer leaves the missing frames to be counted as failed by the workers.
//! 6. **Failures**: a segment whose MediaConvert job ends in a transient error (code 1999) is
//!    created again, up to `reconcile.max_attempts` times; any other error, a cancel from
//!    outside, or a refused CreateJob fails the job and cancels its other segments. The
//!    reconciler applies the same steps to a stale job (`reconcile`).
//!
//! Idempotency: a segment's request token is `capture_token(video, Some(k), attempt)`, at most
//! 64 characters; a retry after the token's one-minute window creates a second MediaConvert job,
//! which `record_segment_job` refuses, so it is canceled and its events are ignored (only the
//! recorded job id speaks for a segment).

use framefleet_core::frames::FrameSeries;
use framefleet_core::jobs::{
    BatchPlan, JobRecord, JobStatus, SegmentRecord, SegmentState, SegmentedCapture, Transition,
};
use framefleet_core::message::{frames_per_batch, BatchSeries};
use framefleet_core::video::VideoId;

use crate::context::Inner;
use crate::error::DispatchError;
use crate::events::{JobEvent, JobState};
use crate::mediaconvert::{
    cancel_stray_job, create_capture_job, CapturePart, CaptureRequest, FALLBACK_PART,
    PREVIEW_BASE_NAME,
};
use crate::pin::PinnedSource;
use crate::rate::{probe_video, CaptureRate, VideoHeader};
use crate::send::{list_frames, send_batches, Checkpoint, Sent};
use crate::source::S3Object;
use crate::timecode::{plan_capture, NotSegmented, SegmentPlan};

/// MediaConvert error codes after which a segment's job is created again rather than the
/// video failed: 1999 is MediaConvert's "unknown error" class, which its troubleshooting
/// guide says to retry ("Error codes", MediaConvert User Guide,
/// <https://docs.aws.amazon.com/mediaconvert/latest/ug/mediaconvert_error_codes.html>). Every
/// other code describes the input or the settings, which a retry does not change.
const TRANSIENT_ERRORS: &[&str] = &["1999"];

/// Frames prefix of segment `k`: `<vid>/sNNNN/`.
pub fn segment_prefix(video_id: &VideoId, k: u32) -> String {
    format!("{video_id}/s{k:04}/")
}

/// Frames prefix of a segmented job's fallback capture: `<vid>/full/`.
pub fn fallback_prefix(video_id: &VideoId) -> String {
    format!("{video_id}/full/")
}

/// The name MediaConvert gives frames when the destination names no file: the input's file
/// name without its last extension. Segments name it explicitly, so their frames are named as
/// an unsegmented capture's would be.
pub fn capture_stem(source_key: &str) -> String {
    let name = source_key.rsplit('/').next().unwrap_or(source_key);
    match name.rfind('.') {
        Some(dot) if dot > 0 => name[..dot].to_string(),
        _ => name.to_string(),
    }
}

/// Whether the pinned upload has a sound track, for the preview of a capture created after
/// registration (a recapture, a segment, the fallback); false when the header cannot say.
pub(crate) async fn source_has_audio(inner: &Inner, pinned: &PinnedSource, size: u64) -> bool {
    let reader = S3Object {
        client: &inner.clients.s3,
        bucket: &pinned.bucket,
        key: &pinned.key,
    };
    probe_video(&reader, size)
        .await
        .is_ok_and(|header| header.has_audio)
}

/// The segment plan of a probed video, or why it is one job.
pub(crate) fn choose(
    inner: &Inner,
    header: Option<&VideoHeader>,
    rate: CaptureRate,
) -> Result<SegmentPlan, String> {
    let config = &inner.settings.dispatcher;
    if config.max_segments < 2 {
        return Err("segmented capture is off (dispatcher.max_segments = 1)".into());
    }
    let Some(header) = header else {
        return Err(NotSegmented::NoFrameCount.to_string());
    };
    plan_capture(header, rate, &config.segment_policy()).map_err(|why| why.to_string())
}

/// Registers `plan` for the job (CAPTURING, segment items) and submits its first segments.
pub(crate) async fn start(
    inner: &Inner,
    video_id: &VideoId,
    plan: &SegmentPlan,
    has_audio: bool,
) -> Result<(), DispatchError> {
    let Some(record) = inner.jobs.get(video_id).await? else {
        return Ok(());
    };
    let config = &inner.settings.dispatcher;
    let frames_bucket = &inner.settings.resources.frames_bucket;
    let stem = capture_stem(&record.source_key);
    let batch_plan = BatchPlan {
        batch_size: config.batch_size,
        params: inner.params.clone(),
        last_frame: None,
        layout: config.output_layout,
    };
    // The longest key any of the job's batches will carry (a segment's prefix is longer than
    // the fallback's), so every body fits SQS's limit whichever capture its frames come from.
    let longest = FrameSeries {
        prefix: segment_prefix(video_id, 0),
        base: stem,
        first_name: 0,
        count: plan.frames,
    };
    let per = frames_per_batch(
        video_id,
        frames_bucket,
        &longest,
        batch_plan.batch_size,
        &batch_plan.params,
        batch_plan.layout,
    );
    let mut base = 0u64;
    let segments: Vec<SegmentRecord> = plan
        .segments
        .iter()
        .map(|segment| {
            let batches = segment.frames().div_ceil(per);
            let record = SegmentRecord {
                index: segment.index,
                first: segment.first,
                frames: segment.frames(),
                start_timecode: segment.start_timecode.clone(),
                end_timecode: segment.end_timecode.clone(),
                state: SegmentState::Pending,
                attempt: 0,
                mediaconvert_job_id: None,
                captured: None,
                batch_base: u32::try_from(base).unwrap_or(u32::MAX),
                batches,
                fanout_next: None,
                last_error: None,
                updated_at: String::new(),
            };
            base += batches;
            record
        })
        .collect();
    let seconds_each = u128::from(plan.frames) * u128::from(plan.rate.denominator)
        / (u128::from(plan.rate.numerator) * segments.len() as u128).max(1);
    let note = format!(
        "segmented into {} MediaConvert jobs of about {seconds_each} s each ({} frames at {} fps, boundaries in {})",
        segments.len(),
        plan.frames,
        plan.rate,
        plan.notation
    );
    let rate = plan.rate.to_string();
    let capture = SegmentedCapture {
        capture_rate: &rate,
        planned_frames: plan.frames,
        plan: &batch_plan,
        batch_frames: per,
        batches: base,
        note: &note,
        segments: &segments,
    };
    match inner
        .jobs
        .start_segmented_capture(video_id, &capture)
        .await?
    {
        Transition::Applied => {
            tracing::info!(
                segments = segments.len(),
                frames = plan.frames,
                batches = base,
                "{note}"
            );
        }
        Transition::NotApplicable => {
            let now = inner.jobs.get(video_id).await?;
            let segmented = now
                .as_ref()
                .is_some_and(|r| r.status == JobStatus::Capturing && r.segments_total.is_some());
            if !segmented {
                tracing::info!(status = ?now.map(|r| r.status), "the job moved on before its segments were registered");
                return Ok(());
            }
            tracing::info!("segments registered before (a redelivery); submitting what is due");
        }
    }
    Box::pin(submit_window(inner, video_id, Some(has_audio))).await
}

/// Everything needed to create one part's MediaConvert job.
struct Source {
    pinned: PinnedSource,
    rate: CaptureRate,
    stem: String,
    has_audio: bool,
    traceparent: Option<String>,
}

/// What a capture created after registration (a recapture, a segment, the fallback) reads
/// from the job: the rate it recorded and its pinned copy of the upload.
pub(crate) fn recorded_capture(
    inner: &Inner,
    record: &JobRecord,
) -> Result<(CaptureRate, PinnedSource), DispatchError> {
    let rate = record
        .capture_rate
        .as_deref()
        .and_then(|rate| CaptureRate::parse(rate).ok())
        .ok_or_else(|| DispatchError::Reconcile {
            video_id: record.video_id.to_string(),
            message: "the job records no usable capture rate".into(),
        })?;
    let pinned = PinnedSource::location(
        &inner.settings.resources.frames_bucket,
        &record.video_id,
        &record.source_key,
    );
    Ok((rate, pinned))
}

impl Source {
    async fn of(
        inner: &Inner,
        record: &JobRecord,
        has_audio: Option<bool>,
    ) -> Result<Self, DispatchError> {
        let (rate, pinned) = recorded_capture(inner, record)?;
        let has_audio = match has_audio {
            Some(known) => known,
            None => source_has_audio(inner, &pinned, record.source_size).await,
        };
        Ok(Self {
            pinned,
            rate,
            stem: capture_stem(&record.source_key),
            has_audio,
            traceparent: record.traceparent.clone(),
        })
    }

    fn request<'a>(
        &self,
        inner: &Inner,
        video_id: &'a VideoId,
        part: CapturePart,
        attempt: u64,
    ) -> CaptureRequest<'a> {
        let r = &inner.settings.resources;
        let (prefix, preview) = match &part {
            CapturePart::Segment { index, .. } => (
                segment_prefix(video_id, *index),
                framefleet_core::manifest::preview_part_base(*index),
            ),
            CapturePart::Fallback => (fallback_prefix(video_id), PREVIEW_BASE_NAME.to_string()),
        };
        CaptureRequest {
            video_id,
            input_url: self.pinned.url(),
            // A file name at the end of the destination is the frames' base name (API
            // Reference, "Jobs", FileGroupSettings.Destination).
            destination: format!("s3://{}/{prefix}{}", r.frames_bucket, self.stem),
            preview_destination: format!("s3://{}/{video_id}/{preview}", r.processed_bucket),
            rate: self.rate,
            attempt,
            source_has_audio: self.has_audio,
            traceparent: self.traceparent.clone(),
            part: Some(part),
        }
    }
}

/// Submits the segments that are due: any claimed but never recorded (a handler cut off
/// between the claim and CreateJob), then PENDING ones in order while fewer than
/// `segments_in_flight` run. Nothing once the job has left CAPTURING or fallen back.
pub(crate) async fn submit_window(
    inner: &Inner,
    video_id: &VideoId,
    has_audio: Option<bool>,
) -> Result<(), DispatchError> {
    let Some(record) = inner.jobs.get(video_id).await? else {
        return Ok(());
    };
    if record.status != JobStatus::Capturing || record.fallback.is_some() {
        return Ok(());
    }
    let segments = inner.jobs.segments(video_id).await?;
    let unrecorded: Vec<&SegmentRecord> = segments
        .iter()
        .filter(|s| s.state == SegmentState::Submitted && s.mediaconvert_job_id.is_none())
        .collect();
    let running = segments
        .iter()
        .filter(|s| s.state == SegmentState::Submitted)
        .count();
    let room = (inner.settings.dispatcher.segments_in_flight as usize).saturating_sub(running);
    let pending: Vec<&SegmentRecord> = segments
        .iter()
        .filter(|s| s.state == SegmentState::Pending)
        .take(room)
        .collect();
    if unrecorded.is_empty() && pending.is_empty() {
        return Ok(());
    }
    let source = Source::of(inner, &record, has_audio).await?;
    for segment in unrecorded {
        Box::pin(create(inner, &record, &source, segment, segment.attempt)).await?;
    }
    for segment in pending {
        if inner
            .jobs
            .submit_segment(video_id, segment.index, 0)
            .await?
            == Transition::Applied
        {
            Box::pin(create(inner, &record, &source, segment, 0)).await?;
        }
    }
    Ok(())
}

/// Creates segment `segment`'s MediaConvert job for `attempt` and records its id; a job the
/// segment does not end up recording, or one created after the video ended, is canceled.
async fn create(
    inner: &Inner,
    record: &JobRecord,
    source: &Source,
    segment: &SegmentRecord,
    attempt: u32,
) -> Result<(), DispatchError> {
    let video_id = &record.video_id;
    let part = CapturePart::Segment {
        index: segment.index,
        frames: segment.frames,
        start_timecode: segment.start_timecode.clone(),
        end_timecode: segment.end_timecode.clone(),
    };
    let request = source.request(inner, video_id, part, u64::from(attempt));
    let refused = format!(
        "MediaConvert refused segment {} (frames {}..={})",
        segment.index,
        segment.first,
        segment.first + segment.frames - 1
    );
    let Some(job_id) = create_part(inner, &request, &refused).await? else {
        return Ok(());
    };
    if inner
        .jobs
        .record_segment_job(video_id, segment.index, attempt, &job_id)
        .await?
        == Transition::NotApplicable
    {
        tracing::warn!(segment = segment.index, mediaconvert_job_id = %job_id, "the segment records another job; canceling this one");
        cancel_stray_job(&inner.clients.mediaconvert, video_id, &job_id).await?;
        return Ok(());
    }
    let now = inner.jobs.get(video_id).await?;
    if now
        .as_ref()
        .is_none_or(|r| r.status.is_final() || r.fallback.is_some())
    {
        // Canceled, failed or fallen back while CreateJob ran: nobody will read this job.
        tracing::warn!(segment = segment.index, mediaconvert_job_id = %job_id, "the job moved on during CreateJob; canceling the segment's capture");
        cancel_stray_job(&inner.clients.mediaconvert, video_id, &job_id).await?;
        return Ok(());
    }
    tracing::info!(segment = segment.index, attempt, mediaconvert_job_id = %job_id, first = segment.first, frames = segment.frames, "segment capture started");
    Ok(())
}

/// Creates one part's MediaConvert job: its id, or `None` when MediaConvert refused the
/// request for good and the job was failed (`refused` starts the reason) with its other
/// segments canceled. A transient failure is returned for the handler's redelivery.
async fn create_part(
    inner: &Inner,
    request: &CaptureRequest<'_>,
    refused: &str,
) -> Result<Option<String>, DispatchError> {
    match create_capture_job(
        &inner.clients.mediaconvert,
        &inner.settings.dispatcher,
        request,
    )
    .await
    {
        Ok(job_id) => Ok(Some(job_id)),
        Err(error) if error.retryable => Err(error.into()),
        Err(error) => {
            let reason = format!("{refused}: {}", error.message);
            Box::pin(fail_all(inner, request.video_id, &reason)).await?;
            Ok(None)
        }
    }
}

/// Fails the job and cancels every segment capture still running.
async fn fail_all(inner: &Inner, video_id: &VideoId, reason: &str) -> Result<(), DispatchError> {
    if inner.jobs.fail(video_id, reason).await? == Transition::Applied {
        crate::metrics::job_failed("capture");
        tracing::warn!(reason, "segmented capture failed; job FAILED");
    }
    Box::pin(cancel_running(inner, video_id)).await
}

/// Cancels every SUBMITTED segment's recorded MediaConvert job.
async fn cancel_running(inner: &Inner, video_id: &VideoId) -> Result<(), DispatchError> {
    for segment in inner.jobs.segments(video_id).await? {
        if segment.state != SegmentState::Submitted {
            continue;
        }
        if let Some(job_id) = &segment.mediaconvert_job_id {
            cancel_stray_job(&inner.clients.mediaconvert, video_id, job_id).await?;
        }
    }
    Ok(())
}

/// An event of one part of a segmented job (`event.part` is set).
pub(crate) async fn on_event(
    inner: &Inner,
    record: JobRecord,
    event: &JobEvent,
    part: &str,
) -> Result<(), DispatchError> {
    let video_id = record.video_id.clone();
    if record.segments_total.is_none() {
        tracing::warn!(
            part,
            "event of a segment for a job that is not segmented; ignoring"
        );
        return stop_if_running(inner, &video_id, event).await;
    }
    if part == FALLBACK_PART {
        return Box::pin(on_fallback_event(inner, record, event)).await;
    }
    let Some(index) = part.parse::<u32>().ok() else {
        tracing::warn!(part, "event names no segment; ignoring");
        return Ok(());
    };
    if record.fallback.is_some() {
        // The segments were given up for one capture of the whole video: theirs are strays.
        return stop_if_running(inner, &video_id, event).await;
    }
    let segments = inner.jobs.segments(&video_id).await?;
    let Some(segment) = segments.into_iter().find(|s| s.index == index) else {
        tracing::warn!(
            segment = index,
            "event of a segment the job does not have; ignoring"
        );
        return Ok(());
    };
    if let Some(own) = segment.mediaconvert_job_id.as_deref() {
        if own != event.job_id {
            tracing::warn!(
                segment = index,
                recorded_job_id = own,
                "event of a MediaConvert job the segment does not record; ignoring"
            );
            return stop_if_running(inner, &video_id, event).await;
        }
    }
    match &event.state {
        JobState::Progress { .. } | JobState::Other(_) => Ok(()),
        JobState::Complete { last_output } => {
            Box::pin(segment_complete(
                inner,
                &record,
                segment,
                &event.job_id,
                last_output.as_deref(),
            ))
            .await
        }
        JobState::Error { code, message } => {
            Box::pin(segment_error(inner, &record, &segment, code, message)).await
        }
        JobState::Canceled => {
            if record.status.is_final() {
                return Ok(());
            }
            let reason = format!(
                "MediaConvert job {} of segment {index} was canceled",
                event.job_id
            );
            Box::pin(fail_all(inner, &video_id, &reason)).await
        }
    }
}

/// Cancels the event's job unless the event is its last.
async fn stop_if_running(
    inner: &Inner,
    video_id: &VideoId,
    event: &JobEvent,
) -> Result<(), DispatchError> {
    if !matches!(
        event.state,
        JobState::Complete { .. } | JobState::Error { .. } | JobState::Canceled
    ) {
        cancel_stray_job(&inner.clients.mediaconvert, video_id, &event.job_id).await?;
    }
    Ok(())
}

/// A segment's capture ended: check its count, count it once, and fan it out.
pub(crate) async fn segment_complete(
    inner: &Inner,
    record: &JobRecord,
    segment: SegmentRecord,
    job_id: &str,
    last_output: Option<&str>,
) -> Result<(), DispatchError> {
    let video_id = &record.video_id;
    let k = segment.index;
    match segment.state {
        SegmentState::Submitted => {}
        SegmentState::Complete => {
            // Counted before, its fan-out cut short: resume it.
            tracing::info!(
                segment = k,
                "duplicate COMPLETE; resuming the segment's fan-out"
            );
            return Box::pin(fan_out_and_sweep(inner, video_id, &segment)).await;
        }
        state => {
            tracing::info!(segment = k, ?state, "duplicate COMPLETE; nothing to do");
            return Ok(());
        }
    }
    let prefix = segment_prefix(video_id, k);
    let frames_bucket = &inner.settings.resources.frames_bucket;
    let named = last_output
        .and_then(framefleet_core::frames::parse_s3_url)
        .and_then(|(_, key)| FrameSeries::through(key))
        .filter(|series| series.prefix == prefix);
    let series = match named {
        Some(series) => Some(series),
        None => list_frames(inner, frames_bucket, &prefix).await?,
    };
    let captured = series.as_ref().map_or(0, |s| s.count);
    let stem = capture_stem(&record.source_key);
    let named_as_planned = series.as_ref().is_none_or(|s| s.base == stem);
    if captured != segment.frames || !named_as_planned {
        let reason = format!(
            "segment {k} (frames {}..={}) captured {captured} frames{}, planned {}",
            segment.first,
            segment.first + segment.frames - 1,
            if named_as_planned {
                ""
            } else {
                " under another name"
            },
            segment.frames
        );
        return Box::pin(fall_back(inner, record, &reason)).await;
    }
    match inner
        .jobs
        .complete_segment(video_id, k, job_id, captured)
        .await?
    {
        Transition::Applied => {
            tracing::info!(segment = k, captured, "segment captured as planned");
            if let Some(now) = inner.jobs.get(video_id).await? {
                // What `framefleet status` shows while the rest capture.
                let total = u64::from(now.segments_total.unwrap_or(1)).max(1);
                let percent = now.segments_complete.min(total) * 100 / total;
                inner
                    .jobs
                    .record_capture_progress(video_id, percent)
                    .await?;
            }
        }
        Transition::NotApplicable => {
            let again = inner.jobs.segments(video_id).await?;
            let now = again.into_iter().find(|s| s.index == k);
            let ours = now.as_ref().is_some_and(|s| {
                s.state == SegmentState::Complete
                    && s.mediaconvert_job_id.as_deref() == Some(job_id)
            });
            if !ours {
                tracing::info!(segment = k, state = ?now.map(|s| s.state), "segment not counted (the job moved on, or another handler did it)");
                return Ok(());
            }
        }
    }
    let now = inner.jobs.get(video_id).await?;
    if let Some(now) = &now {
        if now.status == JobStatus::Capturing
            && now
                .segments_total
                .is_some_and(|n| u64::from(n) == now.segments_complete)
        {
            Box::pin(start_processing(inner, now)).await?;
        }
    }
    // The next segments first: MediaConvert captures while this one's batches are sent.
    Box::pin(submit_window(inner, video_id, None)).await?;
    let segment = SegmentRecord {
        state: SegmentState::Complete,
        captured: Some(captured),
        mediaconvert_job_id: Some(job_id.to_string()),
        ..segment
    };
    Box::pin(fan_out_and_sweep(inner, video_id, &segment)).await
}

/// CAPTURING → PROCESSING once every segment is counted: the total is known.
async fn start_processing(inner: &Inner, record: &JobRecord) -> Result<(), DispatchError> {
    let total = record.planned_frames.unwrap_or(record.captured_frames);
    if inner
        .jobs
        .start_segmented_processing(&record.video_id, total)
        .await?
        == Transition::Applied
    {
        tracing::info!(
            total_frames = total,
            "every segment captured; job PROCESSING"
        );
    }
    Ok(())
}

/// The batches of one segment (or of its frames in the fallback capture), cut as planned.
struct SegmentBatches {
    series: FrameSeries,
    plan: BatchPlan,
    per: u64,
}

impl SegmentBatches {
    fn of(record: &JobRecord, segment: &SegmentRecord, from_fallback: bool) -> Option<Self> {
        let plan = record.plan.clone()?;
        let per = record.batch_frames.filter(|n| *n > 0)?;
        let stem = capture_stem(&record.source_key);
        let series = if from_fallback {
            FrameSeries {
                prefix: fallback_prefix(&record.video_id),
                base: stem,
                first_name: segment.first,
                count: segment.frames,
            }
        } else {
            FrameSeries {
                prefix: segment_prefix(&record.video_id, segment.index),
                base: stem,
                first_name: 0,
                count: segment.frames,
            }
        };
        Some(Self { series, plan, per })
    }

    fn batches<'a>(
        &'a self,
        inner: &'a Inner,
        video_id: &'a VideoId,
        batch_base: u32,
        first_index: u64,
    ) -> BatchSeries<'a> {
        BatchSeries {
            video_id,
            frames_bucket: &inner.settings.resources.frames_bucket,
            series: &self.series,
            frames_per_batch: self.per,
            batch_base,
            params: &self.plan.params,
            layout: self.plan.layout,
            first_index: Some(first_index),
        }
    }
}

/// Sends segment `segment`'s batches from its checkpoint, records it fanned out, and
/// finalizes the job when every batch was counted before its total existed.
async fn fan_out_and_sweep(
    inner: &Inner,
    video_id: &VideoId,
    segment: &SegmentRecord,
) -> Result<(), DispatchError> {
    let Some(record) = inner.jobs.get(video_id).await? else {
        return Ok(());
    };
    if record.status.is_final() || record.fallback.is_some() {
        return Ok(());
    }
    let Some(cut) = SegmentBatches::of(&record, segment, false) else {
        return Err(DispatchError::Reconcile {
            video_id: video_id.to_string(),
            message: "the segmented job stores no batch plan".into(),
        });
    };
    let batches = cut.batches(inner, video_id, segment.batch_base, segment.first);
    let from = segment.fanout_next.unwrap_or(0).min(batches.len());
    let span = tracing::info_span!("fan_out", video_id = %video_id, segment = segment.index, batches = batches.len(), resumed_at = from);
    let traceparent = record.traceparent.clone();
    let sent = {
        use tracing::Instrument;
        send_batches(
            inner,
            video_id,
            &batches,
            from,
            traceparent.as_deref(),
            Checkpoint::Segment(segment.index),
        )
        .instrument(span)
        .await?
    };
    if sent == Sent::Stopped {
        return Ok(());
    }
    inner
        .jobs
        .mark_segment_fanned_out(video_id, segment.index)
        .await?;
    tracing::info!(
        segment = segment.index,
        batches = batches.len(),
        first_batch = segment.batch_base,
        "segment fanned out"
    );
    Box::pin(finish_fan_out(inner, video_id)).await
}

/// Once the job is PROCESSING and every segment is fanned out, records the job fanned out;
/// then, if every batch is already counted, finalizes it (the sweep).
async fn finish_fan_out(inner: &Inner, video_id: &VideoId) -> Result<(), DispatchError> {
    let Some(record) = inner.jobs.get(video_id).await? else {
        return Ok(());
    };
    if record.status != JobStatus::Processing {
        return Ok(());
    }
    if !record.fanned_out {
        let segments = inner.jobs.segments(video_id).await?;
        if segments.iter().all(|s| s.state == SegmentState::FannedOut) {
            inner.jobs.mark_fanned_out(video_id).await?;
        }
    }
    Box::pin(sweep(inner, &record)).await
}

/// Finalizes a PROCESSING job whose every frame is counted: the batches counted before the
/// total existed could not win `try_finalize` themselves.
async fn sweep(inner: &Inner, record: &JobRecord) -> Result<(), DispatchError> {
    let done = record.processed_frames + record.failed_frames;
    if record.status != JobStatus::Processing || record.total_frames != Some(done) {
        return Ok(());
    }
    if inner.jobs.try_finalize(&record.video_id).await? == Transition::Applied {
        tracing::info!("every batch was counted before the total existed; finalizing");
        crate::finish::finish(inner, record).await?;
    }
    Ok(())
}

/// A segment's MediaConvert job ended in ERROR.
async fn segment_error(
    inner: &Inner,
    record: &JobRecord,
    segment: &SegmentRecord,
    code: &str,
    message: &str,
) -> Result<(), DispatchError> {
    let video_id = &record.video_id;
    if record.status.is_final() {
        return Ok(());
    }
    let max = inner.settings.reconcile.max_attempts;
    let next = segment.attempt + 1;
    if TRANSIENT_ERRORS.contains(&code) && u64::from(next) <= max {
        if inner
            .jobs
            .submit_segment(video_id, segment.index, next)
            .await?
            == Transition::Applied
        {
            tracing::warn!(
                segment = segment.index,
                code,
                message,
                attempt = next,
                "segment capture failed transiently; creating it again"
            );
            let source = Source::of(inner, record, None).await?;
            Box::pin(create(inner, record, &source, segment, next)).await?;
        }
        return Ok(());
    }
    let reason = format!(
        "MediaConvert error {code} on segment {} (attempt {}): {message}",
        segment.index, segment.attempt
    );
    inner
        .jobs
        .fail_segment(video_id, segment.index, &reason)
        .await?;
    Box::pin(fail_all(inner, video_id, &reason)).await
}

/// Gives the segments up for one capture of the whole video (a count that did not match).
pub(crate) async fn fall_back(
    inner: &Inner,
    record: &JobRecord,
    reason: &str,
) -> Result<(), DispatchError> {
    let video_id = &record.video_id;
    match inner.jobs.fall_back(video_id, reason).await? {
        Transition::Applied => {
            tracing::warn!(
                reason,
                "segment count mismatch; falling back to one capture of the whole video"
            );
        }
        Transition::NotApplicable => {
            let now = inner.jobs.get(video_id).await?;
            let unstarted = now.as_ref().is_some_and(|r| {
                r.status == JobStatus::Capturing
                    && r.fallback.is_some()
                    && r.mediaconvert_job_id.is_none()
            });
            if !unstarted {
                return Ok(());
            }
        }
    }
    Box::pin(cancel_running(inner, video_id)).await?;
    Box::pin(create_fallback(inner, video_id, 0)).await
}

/// Creates the fallback capture (attempt `attempt`) and records it.
async fn create_fallback(
    inner: &Inner,
    video_id: &VideoId,
    attempt: u64,
) -> Result<(), DispatchError> {
    let Some(record) = inner.jobs.get(video_id).await? else {
        return Ok(());
    };
    let source = Source::of(inner, &record, None).await?;
    let request = source.request(inner, video_id, CapturePart::Fallback, attempt);
    let refused = "MediaConvert refused the fallback capture of the whole video";
    let Some(job_id) = create_part(inner, &request, refused).await? else {
        return Ok(());
    };
    let recorded = if attempt == 0 {
        inner.jobs.record_fallback_job(video_id, &job_id).await?
    } else {
        let old = record.mediaconvert_job_id.clone().unwrap_or_default();
        inner.jobs.restart_capture(video_id, &old, &job_id).await?
    };
    if recorded == Transition::NotApplicable {
        cancel_stray_job(&inner.clients.mediaconvert, video_id, &job_id).await?;
        return Ok(());
    }
    tracing::info!(mediaconvert_job_id = %job_id, "fallback capture of the whole video started");
    Ok(())
}

/// An event of the fallback capture.
async fn on_fallback_event(
    inner: &Inner,
    record: JobRecord,
    event: &JobEvent,
) -> Result<(), DispatchError> {
    let video_id = record.video_id.clone();
    match record.mediaconvert_job_id.as_deref() {
        Some(own) if own == event.job_id => {}
        None if record.fallback.is_some() => {
            // Its COMPLETE overtook CreateJob's answer.
            if inner
                .jobs
                .record_fallback_job(&video_id, &event.job_id)
                .await?
                == Transition::NotApplicable
            {
                return stop_if_running(inner, &video_id, event).await;
            }
        }
        _ => return stop_if_running(inner, &video_id, event).await,
    }
    match &event.state {
        JobState::Progress { percent } => {
            if let Some(percent) = percent {
                inner
                    .jobs
                    .record_capture_progress(&video_id, *percent)
                    .await?;
            }
            Ok(())
        }
        JobState::Other(_) => Ok(()),
        JobState::Complete { last_output } => {
            let record = inner.jobs.get(&video_id).await?.unwrap_or(record);
            Box::pin(fallback_complete(
                inner,
                &record,
                &event.job_id,
                last_output.as_deref(),
            ))
            .await
        }
        JobState::Error { code, message } => {
            let reason = format!("MediaConvert error {code} on the fallback capture: {message}");
            Box::pin(fail_all(inner, &video_id, &reason)).await
        }
        JobState::Canceled => {
            if record.status.is_final() {
                return Ok(());
            }
            let reason = format!(
                "MediaConvert job {} (the fallback capture) was canceled",
                event.job_id
            );
            Box::pin(fail_all(inner, &video_id, &reason)).await
        }
    }
}

/// The fallback capture completed: every segment not fanned out yet is sent, cut as planned,
/// from its frames; frames past the header's count get batches after the last planned one.
pub(crate) async fn fallback_complete(
    inner: &Inner,
    record: &JobRecord,
    job_id: &str,
    last_output: Option<&str>,
) -> Result<(), DispatchError> {
    let video_id = &record.video_id;
    let unsent = record.status == JobStatus::Capturing
        || (record.status == JobStatus::Processing && !record.fanned_out);
    if !unsent {
        return Ok(());
    }
    let prefix = fallback_prefix(video_id);
    let frames_bucket = &inner.settings.resources.frames_bucket;
    let named = last_output
        .and_then(framefleet_core::frames::parse_s3_url)
        .and_then(|(_, key)| FrameSeries::through(key))
        .filter(|series| series.prefix == prefix);
    let captured = match named {
        Some(series) => series.count,
        None => list_frames(inner, frames_bucket, &prefix)
            .await?
            .map_or(0, |s| s.count),
    };
    let planned = record.planned_frames.unwrap_or(0);
    let planned_batches = record.batches.unwrap_or(0);
    let per = record.batch_frames.filter(|n| *n > 0).unwrap_or(1);
    let extra = captured.saturating_sub(planned);
    let tail_batches = extra.div_ceil(per);
    let total = captured.max(planned);
    if record.status == JobStatus::Capturing {
        if captured != planned {
            tracing::warn!(
                captured,
                planned,
                "the whole-video capture counted other than the header"
            );
        }
        inner
            .jobs
            .start_fallback_processing(video_id, job_id, total, planned_batches + tail_batches)
            .await?;
    }
    let Some(now) = inner.jobs.get(video_id).await? else {
        return Ok(());
    };
    if now.status != JobStatus::Processing || now.fanned_out {
        return Ok(());
    }
    let segments = inner.jobs.segments(video_id).await?;
    let traceparent = now.traceparent.clone();
    for segment in segments
        .iter()
        .filter(|s| s.state != SegmentState::FannedOut)
    {
        let Some(cut) = SegmentBatches::of(&now, segment, true) else {
            return Err(DispatchError::Reconcile {
                video_id: video_id.to_string(),
                message: "the segmented job stores no batch plan".into(),
            });
        };
        let batches = cut.batches(inner, video_id, segment.batch_base, segment.first);
        if send_batches(
            inner,
            video_id,
            &batches,
            0,
            traceparent.as_deref(),
            Checkpoint::None,
        )
        .await?
            == Sent::Stopped
        {
            return Ok(());
        }
    }
    if extra > 0 {
        let tail = SegmentRecord {
            index: u32::MAX,
            first: planned,
            frames: extra,
            start_timecode: None,
            end_timecode: None,
            state: SegmentState::Complete,
            attempt: 0,
            mediaconvert_job_id: None,
            captured: None,
            batch_base: u32::try_from(planned_batches).unwrap_or(u32::MAX),
            batches: tail_batches,
            fanout_next: None,
            last_error: None,
            updated_at: String::new(),
        };
        if let Some(cut) = SegmentBatches::of(&now, &tail, true) {
            let batches = cut.batches(inner, video_id, tail.batch_base, tail.first);
            send_batches(
                inner,
                video_id,
                &batches,
                0,
                traceparent.as_deref(),
                Checkpoint::None,
            )
            .await?;
        }
    }
    inner.jobs.mark_fanned_out(video_id).await?;
    tracing::info!(captured, planned, "fallback capture fanned out");
    match inner.jobs.get(video_id).await? {
        Some(now) => Box::pin(sweep(inner, &now)).await,
        None => Ok(()),
    }
}

/// The body of batch `index` of a segmented job, from its plan: the segment whose range holds
/// it (or the fallback's tail), cut from the capture its frames came from. `None` for an
/// index outside the plan.
pub(crate) fn batch_body(
    inner: &Inner,
    record: &JobRecord,
    segments: &[SegmentRecord],
    index: u32,
) -> Option<String> {
    let from_fallback = record.fallback.is_some();
    let hit = segments.iter().find(|s| {
        u64::from(index) >= u64::from(s.batch_base)
            && u64::from(index) < u64::from(s.batch_base) + s.batches
    });
    let segment = match hit {
        Some(segment) => segment.clone(),
        None => {
            // The fallback's tail past the header's count.
            let planned = record.planned_frames?;
            let planned_batches: u64 = segments.iter().map(|s| s.batches).sum();
            let total = record.total_frames?;
            if !from_fallback || total <= planned || u64::from(index) < planned_batches {
                return None;
            }
            SegmentRecord {
                index: u32::MAX,
                first: planned,
                frames: total - planned,
                start_timecode: None,
                end_timecode: None,
                state: SegmentState::Complete,
                attempt: 0,
                mediaconvert_job_id: None,
                captured: None,
                batch_base: u32::try_from(planned_batches).ok()?,
                batches: (total - planned).div_ceil(record.batch_frames?.max(1)),
                fanout_next: None,
                last_error: None,
                updated_at: String::new(),
            }
        }
    };
    // A segment that completed before a fallback has its own frames, counted as planned; the
    // rest come from the fallback's.
    let own_frames = !from_fallback
        || matches!(
            segment.state,
            SegmentState::Complete | SegmentState::FannedOut
        ) && segment.index != u32::MAX;
    let cut = SegmentBatches::of(record, &segment, !own_frames)?;
    let batches = cut.batches(inner, &record.video_id, segment.batch_base, segment.first);
    let j = u64::from(index - segment.batch_base);
    (j < batches.len()).then(|| batches.body(j))
}

/// What the reconciler's pass did to a segmented job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reconciled {
    /// A capture had completed: its frames were fanned out.
    FannedOut,
    /// A capture was created again (which one).
    Recaptured(String),
    /// The job was failed with this reason.
    Failed(String),
}

/// What MediaConvert says of one recorded job, for the reconciler.
enum Asked {
    /// It no longer knows the job.
    Gone,
    /// COMPLETE.
    Complete,
    /// ERROR with code and message.
    Error(String, String),
    /// CANCELED.
    Canceled,
    /// Still queued or running.
    Running,
}

async fn ask(inner: &Inner, video_id: &VideoId, job_id: &str) -> Result<Asked, DispatchError> {
    use aws_sdk_mediaconvert::types::JobStatus as Status;
    // On a task of its own, as CreateJob (`mediaconvert::create_capture_job`): the Job's
    // deserializer needs more stack than is left under the reconciler's chain in a debug build.
    let call = inner.clients.mediaconvert.get_job().id(job_id).send();
    let asked = tokio::spawn(call)
        .await
        .map_err(|error| DispatchError::Reconcile {
            video_id: video_id.to_string(),
            message: format!("GetJob {job_id}: the task ended: {error}"),
        })?;
    let job = match asked {
        Ok(out) => out.job,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_not_found_exception()) =>
        {
            None
        }
        Err(error) => {
            return Err(DispatchError::Reconcile {
                video_id: video_id.to_string(),
                message: format!(
                    "GetJob {job_id}: {}",
                    framefleet_core::aws::describe(&error)
                ),
            })
        }
    };
    let Some(job) = job else {
        return Ok(Asked::Gone);
    };
    Ok(match job.status {
        Some(Status::Complete) => Asked::Complete,
        Some(Status::Error) => Asked::Error(
            job.error_code
                .map_or_else(|| "unknown".to_string(), |c| c.to_string()),
            job.error_message.unwrap_or_default(),
        ),
        Some(Status::Canceled) => Asked::Canceled,
        _ => Asked::Running,
    })
}

/// The reconciler's pass over a stale segmented job that is still CAPTURING: each segment's
/// recorded job is asked and its state applied (COMPLETE counted and fanned out, a transient
/// ERROR or a job MediaConvert lost created again up to `reconcile.max_attempts`, anything
/// else fails the job), a counted segment's fan-out cut short is resumed, the job moves to
/// PROCESSING when every segment is counted, and the next segments are submitted. The
/// fallback capture, when there is one, is treated as a single job is.
pub(crate) async fn reconcile_capturing(
    inner: &Inner,
    record: JobRecord,
) -> Result<Option<Reconciled>, DispatchError> {
    use Reconciled as Action;
    let video_id = record.video_id.clone();
    let max = inner.settings.reconcile.max_attempts;
    if record.fallback.is_some() {
        let Some(job_id) = record.mediaconvert_job_id.clone() else {
            Box::pin(create_fallback(inner, &video_id, 0)).await?;
            return Ok(Some(Action::Recaptured("the fallback capture".into())));
        };
        return Ok(Some(match ask(inner, &video_id, &job_id).await? {
            Asked::Complete => {
                Box::pin(fallback_complete(inner, &record, &job_id, None)).await?;
                Action::FannedOut
            }
            Asked::Error(code, message) => {
                let reason =
                    format!("MediaConvert error {code} on the fallback capture: {message}");
                Box::pin(fail_all(inner, &video_id, &reason)).await?;
                Action::Failed(reason)
            }
            Asked::Canceled => {
                let reason =
                    format!("MediaConvert job {job_id} (the fallback capture) was canceled");
                Box::pin(fail_all(inner, &video_id, &reason)).await?;
                Action::Failed(reason)
            }
            Asked::Gone => {
                let attempts = record.reconcile_attempts;
                if attempts >= max {
                    let reason = format!("MediaConvert no longer knows the fallback capture {job_id}, and {attempts} new ones did not finish either");
                    Box::pin(fail_all(inner, &video_id, &reason)).await?;
                    return Ok(Some(Action::Failed(reason)));
                }
                Box::pin(create_fallback(inner, &video_id, attempts + 1)).await?;
                let note = format!("MediaConvert no longer knew the fallback capture {job_id}; created again (attempt {} of {max})", attempts + 1);
                inner
                    .jobs
                    .note_reconcile(&video_id, JobStatus::Capturing, attempts, &note)
                    .await?;
                Action::Recaptured("the fallback capture".into())
            }
            Asked::Running => return Ok(None),
        }));
    }
    let mut action = None;
    for segment in inner.jobs.segments(&video_id).await? {
        let k = segment.index;
        match (segment.state, segment.mediaconvert_job_id.clone()) {
            (SegmentState::Submitted, Some(job_id)) => {
                match ask(inner, &video_id, &job_id).await? {
                    Asked::Complete => {
                        Box::pin(segment_complete(inner, &record, segment, &job_id, None)).await?;
                        action = Some(Action::FannedOut);
                    }
                    Asked::Error(code, message) => {
                        Box::pin(segment_error(inner, &record, &segment, &code, &message)).await?;
                        action = Some(Action::Recaptured(format!("segment {k}")));
                    }
                    Asked::Canceled => {
                        let reason =
                            format!("MediaConvert job {job_id} of segment {k} was canceled");
                        Box::pin(fail_all(inner, &video_id, &reason)).await?;
                        return Ok(Some(Action::Failed(reason)));
                    }
                    Asked::Gone => {
                        let next = segment.attempt + 1;
                        if u64::from(next) > max {
                            let reason = format!("MediaConvert no longer knows job {job_id} of segment {k}, after {} attempts", segment.attempt + 1);
                            Box::pin(fail_all(inner, &video_id, &reason)).await?;
                            return Ok(Some(Action::Failed(reason)));
                        }
                        if inner.jobs.submit_segment(&video_id, k, next).await?
                            == Transition::Applied
                        {
                            let source = Source::of(inner, &record, None).await?;
                            Box::pin(create(inner, &record, &source, &segment, next)).await?;
                            action = Some(Action::Recaptured(format!("segment {k}")));
                        }
                    }
                    Asked::Running => {}
                }
            }
            (SegmentState::Complete, _) => {
                Box::pin(fan_out_and_sweep(inner, &video_id, &segment)).await?;
                action = Some(Action::FannedOut);
            }
            _ => {}
        }
    }
    if let Some(now) = inner.jobs.get(&video_id).await? {
        if now.status == JobStatus::Capturing
            && now.fallback.is_none()
            && now
                .segments_total
                .is_some_and(|n| u64::from(n) == now.segments_complete)
        {
            Box::pin(start_processing(inner, &now)).await?;
            Box::pin(finish_fan_out(inner, &video_id)).await?;
        }
    }
    Box::pin(submit_window(inner, &video_id, None)).await?;
    Ok(action)
}

/// The reconciler's resumption of a segmented job's fan-out: every counted segment not yet
/// fanned out (or the fallback's), then the sweep.
pub(crate) async fn resume_fan_out(inner: &Inner, record: JobRecord) -> Result<(), DispatchError> {
    let video_id = record.video_id.clone();
    if record.fallback.is_some() {
        let job_id = record.mediaconvert_job_id.clone().unwrap_or_default();
        return Box::pin(fallback_complete(inner, &record, &job_id, None)).await;
    }
    for segment in inner.jobs.segments(&video_id).await? {
        if segment.state == SegmentState::Complete {
            Box::pin(fan_out_and_sweep(inner, &video_id, &segment)).await?;
        }
    }
    Box::pin(finish_fan_out(inner, &video_id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_match_mediaconvert_naming() {
        assert_eq!(capture_stem("in/dir/my clip.mp4"), "my clip");
        assert_eq!(capture_stem("a.b.mov"), "a.b");
        assert_eq!(capture_stem("noext"), "noext");
        assert_eq!(capture_stem(".hidden"), ".hidden");
    }

    #[test]
    fn prefixes() {
        let id = VideoId::from_raw("v-1");
        assert_eq!(segment_prefix(&id, 3), "v-1/s0003/");
        assert_eq!(fallback_prefix(&id), "v-1/full/");
    }
}
