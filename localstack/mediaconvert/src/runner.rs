//! The life of a job after `CreateJob` returned: wait for a slot (SUBMITTED), then PROGRESSING
//! through probing, capture and MP4 encoding, and upload, and a COMPLETE or ERROR event at the end, with
//! STATUS_UPDATE events on the job's interval meanwhile. `CancelJob` and shutdown cancel the
//! job's token, which drops the work (killing ffmpeg and deleting the work directory).

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{instrument, Instrument};

use crate::capture::{self, CaptureError, FrameRange, VideoProbe};
use crate::config::{Fault, StandinConfig};
use crate::events::{EventPublisher, JobContext, JobEvent};
use crate::inputs::InputCache;
use crate::job::{
    GroupResult, JobFailure, JobProgress, JobRecord, JobStore, Outcome, OutputResult, Phase,
};
use crate::plan::{ClipPlan, JobPlan, OutputKind};
use crate::timecode::{Timecode, TimecodeSource};
use crate::transfer::{self, TransferError};

/// MediaConvert error code: the input could not be opened or is not a video.
pub const ERROR_INPUT_UNREADABLE: i32 = 1010;
/// MediaConvert error code used for an input that opened but could not be decoded.
pub const ERROR_INPUT_UNDECODABLE: i32 = 1030;
/// MediaConvert error code: access to the S3 input was refused.
pub const ERROR_INPUT_ACCESS: i32 = 1401;
/// MediaConvert error code: the S3 input does not exist.
pub const ERROR_INPUT_NOT_FOUND: i32 = 1404;
/// MediaConvert error code used for a failed write to the S3 destination.
pub const ERROR_OUTPUT_WRITE: i32 = 1433;
/// MediaConvert's catch-all error code.
pub const ERROR_INTERNAL: i32 = 1999;
/// Code used for an input clip that does not fit the input (a frame number at or past its
/// rate, drop-frame at a rate without it, a start before the first frame or after the last).
/// MediaConvert's code for these is **unverified**; the stand-in uses its catch-all.
pub const ERROR_INVALID_CLIP: i32 = ERROR_INTERNAL;

/// Everything the HTTP handlers and the job tasks share.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) config: StandinConfig,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) events: EventPublisher,
    pub(crate) store: Mutex<JobStore>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) tracker: TaskTracker,
    /// Cancelled when the stand-in stops; every job token is a child of it.
    pub(crate) shutdown: CancellationToken,
    /// Downloaded inputs, per (bucket, key, ETag).
    pub(crate) inputs: InputCache,
    /// Jobs each of `config.faults` has hit so far.
    pub(crate) fault_hits: Mutex<Vec<u32>>,
}

/// The faults one job gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Faults {
    /// End in ERROR with this code.
    error: Option<i32>,
    /// Frames added to the clip's first frame.
    shift_start: i64,
    /// Frames added to the clip's last frame.
    shift_end: i64,
}

impl Service {
    /// The job table (a poisoned lock only means a handler panicked mid-update; the table is
    /// still usable).
    pub(crate) fn store(&self) -> MutexGuard<'_, JobStore> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fields every event of `job` repeats.
    pub(crate) fn context(&self, job: &JobRecord) -> JobContext {
        JobContext {
            account: self.config.account_id.clone(),
            region: self.config.region.clone(),
            queue_arn: job.queue_arn.clone(),
            job_id: job.id.clone(),
            job_arn: job.arn.clone(),
            user_metadata: job.user_metadata.clone(),
        }
    }

    /// Sends `event`; a lost event is logged, as EventBridge would drop it after its retries.
    pub(crate) async fn publish(&self, job: &JobContext, event: &JobEvent) {
        let _ = self.events.publish(job, event).await;
    }

    /// The faults of `config.faults` that hit a job with `metadata`, counting the hits.
    fn faults_for(&self, metadata: &std::collections::BTreeMap<String, String>) -> Faults {
        let mut hits = self.fault_hits.lock().unwrap_or_else(|e| e.into_inner());
        let mut faults = Faults::default();
        for (rule, hit) in self.config.faults.iter().zip(hits.iter_mut()) {
            if metadata.get(&rule.metadata_key) != Some(&rule.metadata_value)
                || (rule.times > 0 && *hit >= rule.times)
            {
                continue;
            }
            *hit += 1;
            match rule.fault {
                Fault::Error { code } => faults.error = Some(code),
                Fault::ShiftStart { frames } => faults.shift_start += frames,
                Fault::ShiftEnd { frames } => faults.shift_end += frames,
            }
        }
        faults
    }

    /// Starts job `id` in the background.
    pub(crate) fn spawn_job(self: &Arc<Self>, id: String) {
        let span = tracing::info_span!("job", job_id = %id);
        self.tracker
            .spawn(run_job(Arc::clone(self), id).instrument(span));
    }
}

/// Runs job `id` from SUBMITTED to its end.
async fn run_job(service: Arc<Service>, id: String) {
    let Some((plan, progress, cancel, job)) = service.store().get(&id).map(|record| {
        (
            Arc::clone(&record.plan),
            Arc::clone(&record.progress),
            record.cancel.clone(),
            service.context(record),
        )
    }) else {
        return;
    };
    let acquire = Arc::clone(&service.slots).acquire_owned();
    let Some(Ok(_slot)) = cancel.run_until_cancelled(acquire).await else {
        return;
    };
    if !service.store().start(&id, OffsetDateTime::now_utc()) {
        return;
    }
    tracing::info!(input = %plan.input.url, "job progressing");
    service.publish(&job, &JobEvent::Progressing).await;
    let faults = service.faults_for(&job.user_metadata);
    let result = cancel
        .run_until_cancelled(execute_reporting(&service, &job, &plan, &progress, faults))
        .await;
    let now = OffsetDateTime::now_utc();
    match result {
        None if service.shutdown.is_cancelled() => {
            tracing::warn!("stand-in stopping; job abandoned");
        }
        None => tracing::info!("job canceled"),
        Some(Ok(groups)) => {
            let captures: u64 = groups
                .iter()
                .flat_map(|g| &g.outputs)
                .map(|o| o.captures)
                .sum();
            if service
                .store()
                .finish(&id, Outcome::Complete(groups.clone()), now)
            {
                tracing::info!(captures, "job complete");
                service.publish(&job, &JobEvent::Complete(groups)).await;
            }
        }
        Some(Err(failure)) => {
            if service
                .store()
                .finish(&id, Outcome::Error(failure.clone()), now)
            {
                tracing::warn!(code = failure.code, message = %failure.message, "job failed");
                service.publish(&job, &JobEvent::Error(failure)).await;
            }
        }
    }
}

/// [`execute`] with STATUS_UPDATE events while it runs.
async fn execute_reporting(
    service: &Service,
    job: &JobContext,
    plan: &JobPlan,
    progress: &JobProgress,
    faults: Faults,
) -> Result<Vec<GroupResult>, JobFailure> {
    tokio::select! {
        result = execute(service, job, plan, progress, faults) => result,
        never = status_updates(service, job, plan, progress) => match never {},
    }
}

/// Sends a STATUS_UPDATE every interval until dropped.
async fn status_updates(
    service: &Service,
    job: &JobContext,
    plan: &JobPlan,
    progress: &JobProgress,
) -> Infallible {
    let period = plan.status_update_interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let event = JobEvent::StatusUpdate {
            frames_decoded: progress.frames_decoded(),
            percent: progress.percent(),
            phase: progress.phase(),
        };
        service.publish(job, &event).await;
    }
}

/// Probes, captures and uploads; the error is the job's ERROR.
#[instrument(skip_all, fields(input = %plan.input.url))]
async fn execute(
    service: &Service,
    job: &JobContext,
    plan: &JobPlan,
    progress: &JobProgress,
    faults: Faults,
) -> Result<Vec<GroupResult>, JobFailure> {
    let config = &service.config;
    let url = plan.input.url.as_str();
    // MediaConvert's job start-up, then the clock the speed model runs on.
    if config.startup_delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(config.startup_delay_ms)).await;
    }
    let started = tokio::time::Instant::now();
    if let Some(code) = faults.error {
        return Err(JobFailure {
            code,
            message: format!("Injected fault: error {code} (stand-in fault hook)"),
        });
    }
    let work = tempfile::Builder::new()
        .prefix("mediaconvert-standin-")
        .tempdir()
        .map_err(|e| internal(format!("cannot create a work directory: {e}")))?;
    progress.set_phase(Phase::Probing);
    let cached = service
        .inputs
        .fetch(
            &service.s3,
            &plan.input.bucket,
            &plan.input.key,
            &extension_of(&plan.input.key),
        )
        .await
        .map_err(|e| input_failure(url, &e))?;
    let input = cached.path().to_path_buf();
    let probe = capture::probe(&config.ffprobe, &input, url)
        .await
        .map_err(|e| capture_failure(url, e))?;
    let clip = match plan.input.clip {
        Some(clip) => Some(
            clip_frames(&clip, plan.input.timecode_source, &probe, faults).map_err(|message| {
                JobFailure {
                    code: ERROR_INVALID_CLIP,
                    message,
                }
            })?,
        ),
        None => None,
    };
    let mut duration_ms = probe.duration_ms.unwrap_or_default();
    if let Some(clip) = clip {
        let (num, den) = clip.rate;
        let frame_ms = |frames: u64| frames * 1000 * u64::from(den) / u64::from(num);
        let end_ms = clip.last.map_or(duration_ms, |last| frame_ms(last + 1));
        duration_ms = end_ms.min(duration_ms).saturating_sub(frame_ms(clip.first));
    }
    progress
        .duration_us
        .store(duration_ms * 1000, Ordering::Relaxed);
    if let Some(fps) = probe.frame_rate() {
        progress
            .input_fps_milli
            .store((fps * 1000.0).round() as u64, Ordering::Relaxed);
    }
    service
        .publish(
            job,
            &JobEvent::InputInformation {
                uri: url.to_string(),
                probe: probe.clone(),
            },
        )
        .await;

    progress.set_phase(Phase::Transcoding);
    let outputs = plan.groups.iter().flat_map(|g| &g.outputs);
    progress
        .outputs_total
        .store(outputs.clone().count() as u64, Ordering::Relaxed);
    let mut produced = Vec::new();
    for (n, output) in outputs.enumerate() {
        let dir = work.path().join(format!("output-{n}"));
        tokio::fs::create_dir(&dir)
            .await
            .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        progress.position_us.store(0, Ordering::Relaxed);
        let files = match &output.kind {
            OutputKind::FrameCapture(spec) => {
                let frames = capture::capture(
                    &config.ffmpeg,
                    &input,
                    url,
                    &dir,
                    spec,
                    plan.input.auto_rotate,
                    clip,
                    progress,
                )
                .await
                .map_err(|e| capture_failure(url, e))?;
                let last = frames.last().expect("capture returns at least one frame");
                let (width, height) = read_dimensions(last).await?;
                Produced {
                    files: Files::Frames(frames),
                    width,
                    height,
                    duration_ms,
                }
            }
            OutputKind::Video(spec) => {
                let file = dir.join("output.mp4");
                capture::encode_mp4(
                    &config.ffmpeg,
                    &input,
                    url,
                    &file,
                    spec,
                    plan.input.auto_rotate,
                    probe.has_audio,
                    clip,
                    progress,
                )
                .await
                .map_err(|e| capture_failure(url, e))?;
                let written = capture::probe(&config.ffprobe, &file, "the encoded MP4")
                    .await
                    .map_err(|e| internal(format!("the encoded MP4 is unreadable: {e}")))?;
                Produced {
                    files: Files::Single(file),
                    width: written.width,
                    height: written.height,
                    duration_ms: written.duration_ms.unwrap_or(duration_ms),
                }
            }
        };
        progress.outputs_done.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            files = produced.len(),
            width = files.width,
            height = files.height,
            "output written locally"
        );
        produced.push((output, files));
    }

    // The speed model: no sooner than the clip's duration at `speed` video seconds a second.
    if config.speed > 0 {
        let paced = std::time::Duration::from_millis(duration_ms / u64::from(config.speed));
        tokio::time::sleep_until(started + paced).await;
    }
    drop(cached);

    progress.set_phase(Phase::Uploading);
    let total: usize = produced.iter().map(|(_, p)| p.files.count()).sum();
    progress.to_upload.store(total as u64, Ordering::Relaxed);
    for (output, produced) in &produced {
        match &produced.files {
            Files::Frames(frames) => {
                transfer::upload_captures(&service.s3, &output.naming, frames, &progress.uploaded)
                    .await
            }
            Files::Single(file) => {
                let done =
                    transfer::upload_file(&service.s3, &output.naming, file, "video/mp4").await;
                progress.uploaded.fetch_add(1, Ordering::Relaxed);
                done
            }
        }
        .map_err(|e| output_failure(&e))?;
    }

    let mut produced = produced.into_iter();
    let groups = plan
        .groups
        .iter()
        .map(|group| GroupResult {
            outputs: produced
                .by_ref()
                .take(group.outputs.len())
                .map(|(output, produced)| {
                    let (path, captures) = match &produced.files {
                        Files::Frames(frames) => {
                            let captures = frames.len() as u64;
                            (output.naming.url(captures - 1), captures)
                        }
                        Files::Single(_) => (output.naming.file_url(), 0),
                    };
                    OutputResult {
                        path,
                        captures,
                        duration_ms: produced.duration_ms,
                        width: produced.width,
                        height: produced.height,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(groups)
}

/// An output written to the work directory, not yet uploaded.
struct Produced {
    files: Files,
    width: u32,
    height: u32,
    duration_ms: u64,
}

enum Files {
    /// Captures 0, 1, … in order.
    Frames(Vec<std::path::PathBuf>),
    /// One MP4.
    Single(std::path::PathBuf),
}

impl Files {
    fn count(&self) -> usize {
        match self {
            Self::Frames(frames) => frames.len(),
            Self::Single(_) => 1,
        }
    }
}

/// The input file's extension (with its dot) when it is short and plain, so ffprobe sees the
/// name a user would; the content decides either way.
fn extension_of(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    match name.rsplit_once('.') {
        Some((_, ext))
            if !ext.is_empty()
                && ext.len() <= 8
                && ext.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            format!(".{ext}")
        }
        _ => String::new(),
    }
}

async fn read_dimensions(frame: &Path) -> Result<(u32, u32), JobFailure> {
    let bytes = tokio::fs::read(frame)
        .await
        .map_err(|e| internal(format!("cannot read {}: {e}", frame.display())))?;
    capture::jpeg_dimensions(&bytes)
        .ok_or_else(|| internal(format!("{} is not a JPEG", frame.display())))
}

/// The frames `clip` selects: its timecodes read on the input's timeline (`source`) at the
/// input's rate, then moved by any injected boundary fault.
fn clip_frames(
    clip: &ClipPlan,
    source: TimecodeSource,
    probe: &VideoProbe,
    faults: Faults,
) -> Result<FrameRange, String> {
    let (num, den) = probe
        .rate
        .ok_or("the input has no frame rate, so its timecodes cannot be read")?;
    let origin = match source {
        TimecodeSource::ZeroBased => None,
        TimecodeSource::Specified(start) => Some(start),
        // No embedded timecode: count from zero (as the job-level TimecodeConfig documents
        // for its own EMBEDDED; **unverified** for the input's).
        TimecodeSource::Embedded => probe.timecode.as_deref().and_then(Timecode::parse_clip),
    };
    let origin = origin.map_or(Ok(0), |tc| tc.frame_number(num, den))?;
    let frame = |tc: Timecode| -> Result<u64, String> {
        tc.frame_number(num, den)?
            .checked_sub(origin)
            .ok_or_else(|| {
                format!("the input clip timecode {tc} is before the input's first frame")
            })
    };
    let shift = |frame: u64, by: i64| frame.saturating_add_signed(by);
    let first = clip.start.map(frame).transpose()?.unwrap_or(0);
    let last = clip.end.map(frame).transpose()?;
    Ok(FrameRange {
        first: shift(first, faults.shift_start),
        last: last.map(|last| shift(last, faults.shift_end)),
        rate: (num, den),
    })
}

fn internal(message: String) -> JobFailure {
    JobFailure {
        code: ERROR_INTERNAL,
        message,
    }
}

/// MediaConvert's wording for an input it cannot read.
fn input_failure(url: &str, error: &TransferError) -> JobFailure {
    let (code, reason) = match error {
        TransferError::Download { message, .. } if error.is_not_found() => {
            (ERROR_INPUT_NOT_FOUND, message.clone())
        }
        TransferError::Download { message, .. } => (ERROR_INPUT_ACCESS, message.clone()),
        other => (ERROR_INTERNAL, other.to_string()),
    };
    JobFailure {
        code,
        message: format!(
            "Unable to open input file [{url}]: [Failed probe/open: [Failed to read data: {reason}]]"
        ),
    }
}

fn capture_failure(url: &str, error: CaptureError) -> JobFailure {
    match error {
        CaptureError::Unreadable { reason } => JobFailure {
            code: ERROR_INPUT_UNREADABLE,
            message: format!("Unable to open input file [{url}]: [Failed probe/open: [{reason}]]"),
        },
        CaptureError::Undecodable { reason } => JobFailure {
            code: ERROR_INPUT_UNDECODABLE,
            message: format!("Unable to decode input file [{url}]: [{reason}]"),
        },
        CaptureError::ClipOutsideInput { first } => JobFailure {
            code: ERROR_INVALID_CLIP,
            message: format!(
                "Invalid input clip for [{url}]: [the clip starts at frame {first}, after the end of the input]"
            ),
        },
        other => internal(other.to_string()),
    }
}

fn output_failure(error: &TransferError) -> JobFailure {
    match error {
        TransferError::Upload {
            bucket,
            key,
            message,
            ..
        } => JobFailure {
            code: ERROR_OUTPUT_WRITE,
            message: format!(
                "Unable to write to output file [s3://{bucket}/{key}]: [Failed to write data: {message}]"
            ),
        },
        other => internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_extensions_are_kept_when_plain() {
        assert_eq!(extension_of("dir/my clip.mp4"), ".mp4");
        assert_eq!(extension_of("dir/noext"), "");
        assert_eq!(extension_of("dir/x.we!rd"), "");
    }

    #[test]
    fn capture_errors_map_to_mediaconvert_codes() {
        let unreadable = capture_failure(
            "s3://in/a.txt",
            CaptureError::Unreadable {
                reason: "s3://in/a.txt: Invalid data found when processing input".into(),
            },
        );
        assert_eq!(unreadable.code, 1010);
        assert!(unreadable
            .message
            .starts_with("Unable to open input file [s3://in/a.txt]"));
        let undecodable = capture_failure(
            "s3://in/a.mp4",
            CaptureError::Undecodable {
                reason: "No video frame could be decoded".into(),
            },
        );
        assert_eq!(undecodable.code, 1030);
    }
}
