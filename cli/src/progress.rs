//! Following jobs: `status` (once), `watch` and `submit --wait` (to the end).
//!
//! On a terminal each job is a live bar: capture percent while MediaConvert runs, then frames
//! counted / total with failures, frames per second and an ETA. Otherwise (not a terminal,
//! or `--json`) a line is printed whenever a job changes. The last line of each job
//! summarises its manifest (COMPLETE) or says why it ended.

use std::collections::HashMap;
use std::time::Duration;

use framefleet_core::jobs::{JobRecord, JobStatus};
use framefleet_core::video::VideoId;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::context::WorkerCounts;
use crate::{exit, CliError, Context, Output};

/// What is shown of a job at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    /// The job.
    pub video_id: String,
    /// Its status, or `WAITING` before the dispatcher registered it.
    pub status: String,
    /// MediaConvert's progress, percent (for a segmented capture, the share of segments
    /// captured).
    pub capture_percent: Option<u64>,
    /// A segmented capture: `(segments captured, segments)`; `None` for one MediaConvert job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<(u64, u32)>,
    /// Frames captured (known once processing starts).
    pub total_frames: Option<u64>,
    /// Edge maps written.
    pub processed_frames: u64,
    /// Frames that could not be processed.
    pub failed_frames: u64,
    /// Frames counted per second since processing started.
    pub frames_per_second: Option<f64>,
    /// Seconds left at that rate.
    pub eta_seconds: Option<u64>,
    /// Why it FAILED or was CANCELED.
    pub last_error: Option<String>,
    /// The worker service's desired and running tasks, when the CLI names the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkerCounts>,
}

fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

impl JobView {
    /// The view of `record`: the rate is measured from the start of processing to the
    /// record's last change, so it is the same whoever reads it.
    pub fn of(record: &JobRecord) -> Self {
        let done = record.processed_frames + record.failed_frames;
        let elapsed = record
            .processing_started_at
            .as_deref()
            .and_then(parse_time)
            .zip(parse_time(&record.updated_at))
            .map(|(start, end)| (end - start).as_seconds_f64())
            .filter(|seconds| *seconds > 0.0);
        let frames_per_second = elapsed
            .filter(|_| done > 0)
            .map(|seconds| (done as f64 / seconds * 10.0).round() / 10.0);
        let eta_seconds = match (record.total_frames, frames_per_second) {
            (Some(total), Some(rate)) if rate > 0.0 && !record.status.is_final() => {
                Some((total.saturating_sub(done) as f64 / rate).ceil() as u64)
            }
            _ => None,
        };
        Self {
            video_id: record.video_id.to_string(),
            status: record.status.to_string(),
            capture_percent: record.capture_progress,
            segments: record
                .segments_total
                .filter(|_| record.fallback.is_none())
                .map(|total| (record.segments_complete, total)),
            total_frames: record.total_frames,
            processed_frames: record.processed_frames,
            failed_frames: record.failed_frames,
            frames_per_second,
            eta_seconds,
            last_error: record.last_error.clone(),
            workers: None,
        }
    }

    fn waiting(video_id: &VideoId) -> Self {
        Self {
            video_id: video_id.to_string(),
            status: "WAITING".into(),
            capture_percent: None,
            segments: None,
            total_frames: None,
            processed_frames: 0,
            failed_frames: 0,
            frames_per_second: None,
            eta_seconds: None,
            last_error: None,
            workers: None,
        }
    }

    /// One plain line.
    pub fn line(&self) -> String {
        let mut line = format!("{} {}", self.video_id, self.status);
        match (self.status.as_str(), self.total_frames) {
            ("WAITING", _) => line.push_str(" (not registered yet)"),
            ("REGISTERED" | "CAPTURING", None) => match self.segments {
                // Early segments are counted while the rest still capture.
                Some((captured, total)) => line.push_str(&format!(
                    " segments {captured}/{total} captured, frames {} counted failed {}",
                    self.processed_frames + self.failed_frames,
                    self.failed_frames
                )),
                None => line.push_str(&format!(
                    " capture {}%",
                    self.capture_percent.unwrap_or_default()
                )),
            },
            (_, total) => {
                line.push_str(&format!(
                    " frames {}/{} failed {}",
                    self.processed_frames + self.failed_frames,
                    total.map_or("?".into(), |t| t.to_string()),
                    self.failed_frames
                ));
                if let Some(rate) = self.frames_per_second {
                    line.push_str(&format!(" {rate} fps"));
                }
                if let Some(eta) = self.eta_seconds {
                    line.push_str(&format!(" ETA {eta}s"));
                }
            }
        }
        if let Some(workers) = self.workers {
            line.push_str(&format!(" workers {}/{}", workers.running, workers.desired));
        }
        line
    }
}

/// The parts of `manifest.json` the summary shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestSummary {
    /// Frame counts.
    pub counts: ManifestCounts,
    /// Where the outputs are.
    pub output: ManifestOutput,
    /// Phase durations.
    #[serde(default)]
    pub timings: ManifestTimings,
}

/// `counts` of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestCounts {
    /// Frames captured.
    pub total: u64,
    /// Edge maps written.
    pub processed: u64,
    /// Frames failed.
    pub failed: u64,
}

/// `output` of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestOutput {
    /// Bucket of the edge maps.
    pub bucket: String,
    /// `<video id>/`.
    pub prefix: String,
    /// `objects` or `packed`; absent in manifests before packs existed (objects). Read by
    /// `fetch`, not shown by `status`.
    #[serde(default, skip_serializing)]
    pub layout: framefleet_core::message::OutputLayout,
    /// The packs and their index (packed layout).
    #[serde(default, skip_serializing)]
    pub packs: Vec<framefleet_core::pack::Pack>,
}

/// `timings` of the manifest (seconds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ManifestTimings {
    /// Capture phase.
    pub capture_s: Option<f64>,
    /// Processing phase.
    pub processing_s: Option<f64>,
    /// Registration to COMPLETE.
    pub total_s: Option<f64>,
}

/// Reads and parses a COMPLETE job's manifest.
pub async fn read_manifest(
    context: &Context,
    record: &JobRecord,
) -> Result<(String, ManifestSummary), CliError> {
    let key = record
        .manifest_key
        .clone()
        .unwrap_or_else(|| format!("{}/manifest.json", record.video_id));
    let bucket = &context.resources.processed_bucket;
    let out = context
        .clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                CliError::Mismatch {
                    video_id: record.video_id.to_string(),
                    message: format!("the manifest s3://{bucket}/{key} does not exist"),
                }
            } else if e
                .as_service_error()
                .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                .is_some_and(|c| c == "NoSuchBucket")
            {
                CliError::NoSuchBucket {
                    bucket: bucket.clone(),
                    flag: "processed-bucket",
                    env: "PROCESSED_BUCKET",
                }
            } else {
                CliError::aws(format!("s3://{bucket}/{key}"), e)
            }
        })?;
    let bytes = out.body.collect().await.map_err(|e| CliError::Aws {
        resource: format!("s3://{bucket}/{key}"),
        message: e.to_string(),
        retryable: true,
    })?;
    let manifest = serde_json::from_slice(&bytes.into_bytes()).map_err(|e| CliError::Mismatch {
        video_id: record.video_id.to_string(),
        message: format!("s3://{bucket}/{key} is not a manifest: {e}"),
    })?;
    Ok((format!("s3://{bucket}/{key}"), manifest))
}

/// The last line of a finished job.
async fn summary(context: &Context, record: &JobRecord) -> Result<String, CliError> {
    let id = &record.video_id;
    match record.status {
        JobStatus::Complete => {
            let (location, manifest) = read_manifest(context, record).await?;
            if context.output == Output::Json {
                return Ok(serde_json::json!({
                    "video_id": id.as_str(),
                    "status": "COMPLETE",
                    "manifest": location,
                    "counts": manifest.counts,
                    "timings": manifest.timings,
                })
                .to_string());
            }
            let seconds = |s: Option<f64>| s.map_or("?".to_string(), |s| format!("{s:.1} s"));
            Ok(format!(
                "{id} COMPLETE: {}/{} frames processed, {} failed; capture {}, processing {}, total {}; manifest {location}",
                manifest.counts.processed,
                manifest.counts.total,
                manifest.counts.failed,
                seconds(manifest.timings.capture_s),
                seconds(manifest.timings.processing_s),
                seconds(manifest.timings.total_s),
            ))
        }
        status => {
            let reason = record.last_error.clone().unwrap_or_default();
            if context.output == Output::Json {
                return Ok(serde_json::json!({
                    "video_id": id.as_str(),
                    "status": status.as_str(),
                    "processed_frames": record.processed_frames,
                    "failed_frames": record.failed_frames,
                    "total_frames": record.total_frames,
                    "reason": reason,
                })
                .to_string());
            }
            Ok(format!(
                "{id} {status}: {} processed, {} failed of {}; {reason}",
                record.processed_frames,
                record.failed_frames,
                record.total_frames.map_or("?".into(), |t| t.to_string())
            ))
        }
    }
}

fn print_view(context: &Context, view: &JobView) {
    match context.output {
        Output::Json => crate::out!("{}", serde_json::to_string(view).unwrap_or_default()),
        _ => crate::out!("{}", view.line()),
    }
}

/// `framefleet status`: one look; the exit code follows the status (4 while unfinished).
pub async fn status(context: &Context, video_id: &VideoId) -> Result<u8, CliError> {
    let record = context
        .jobs
        .get(video_id)
        .await?
        .ok_or_else(|| CliError::JobNotFound {
            video_id: video_id.to_string(),
            table: context.resources.jobs_table.clone(),
        })?;
    let mut view = JobView::of(&record);
    if let Some(fleet) = &context.fleet {
        view.workers = fleet.counts().await;
    }
    print_view(context, &view);
    if record.status.is_final() {
        crate::out!("{}", summary(context, &record).await?);
    }
    Ok(exit::for_status(record.status))
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn draw(bar: &ProgressBar, view: &JobView) {
    match view.total_frames {
        None => {
            bar.set_style(bar_style("{prefix:.bold} {msg:10} [{bar:30}] {pos:>3}%"));
            bar.set_length(100);
            bar.set_position(view.capture_percent.unwrap_or_default());
            let mut message = view.status.clone();
            if let Some(w) = view.workers {
                message.push_str(&format!(" workers {}/{}", w.running, w.desired));
            }
            bar.set_message(message);
        }
        Some(total) => {
            bar.set_style(bar_style(
                "{prefix:.bold} {msg} [{bar:30}] {pos}/{len} frames",
            ));
            bar.set_length(total);
            bar.set_position(view.processed_frames + view.failed_frames);
            let mut message = format!("{} failed {}", view.status, view.failed_frames);
            if let Some(rate) = view.frames_per_second {
                message.push_str(&format!(" {rate} fps"));
            }
            if let Some(eta) = view.eta_seconds {
                message.push_str(&format!(" ETA {eta}s"));
            }
            if let Some(w) = view.workers {
                message.push_str(&format!(" workers {}/{}", w.running, w.desired));
            }
            bar.set_message(message);
        }
    }
}

/// Follows `ids` until every job is final (a job not registered yet is waited for); the exit
/// code is the worst of their statuses.
pub async fn follow(
    context: &Context,
    ids: &[VideoId],
    interval: Duration,
) -> Result<u8, CliError> {
    let bars = MultiProgress::with_draw_target(context.draw_target());
    let mut shown: HashMap<VideoId, (ProgressBar, Option<JobView>)> = ids
        .iter()
        .map(|id| {
            let bar = bars.add(ProgressBar::new(100));
            bar.set_prefix(id.to_string());
            bar.enable_steady_tick(Duration::from_millis(250));
            (id.clone(), (bar, None))
        })
        .collect();
    let mut codes = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    while codes.len() < ids.len() {
        ticker.tick().await;
        let workers = match &context.fleet {
            Some(fleet) => fleet.counts().await,
            None => None,
        };
        for id in ids {
            if codes.contains_key(id) {
                continue;
            }
            let record = context.jobs.get(id).await?;
            let mut view = record
                .as_ref()
                .map_or_else(|| JobView::waiting(id), JobView::of);
            view.workers = workers;
            let Some((bar, last)) = shown.get_mut(id) else {
                continue;
            };
            if last.as_ref() != Some(&view) {
                if context.output == Output::Terminal {
                    draw(bar, &view);
                } else {
                    print_view(context, &view);
                }
                *last = Some(view);
            }
            if let Some(record) = record.filter(|r| r.status.is_final()) {
                let line = summary(context, &record).await?;
                bar.finish_and_clear();
                if context.output == Output::Terminal {
                    bars.println(line).unwrap_or_default();
                } else {
                    crate::out!("{line}");
                }
                codes.insert(id.clone(), exit::for_status(record.status));
            }
        }
    }
    Ok(exit::worst(codes.into_values()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_come_from_the_record() {
        let mut record = JobRecord::new(VideoId::from_raw("v-1"), "in", "a.mp4", "e", 1);
        record.status = JobStatus::Processing;
        record.processing_started_at = Some("2026-01-01T00:00:00Z".into());
        record.updated_at = "2026-01-01T00:00:10Z".into();
        record.total_frames = Some(200);
        record.processed_frames = 90;
        record.failed_frames = 10;
        let view = JobView::of(&record);
        assert_eq!(view.frames_per_second, Some(10.0));
        assert_eq!(view.eta_seconds, Some(10));
        assert_eq!(
            view.line(),
            "v-1 PROCESSING frames 100/200 failed 10 10 fps ETA 10s"
        );
        let view = JobView {
            workers: Some(WorkerCounts {
                desired: 3,
                running: 2,
            }),
            ..view
        };
        assert_eq!(
            view.line(),
            "v-1 PROCESSING frames 100/200 failed 10 10 fps ETA 10s workers 2/3"
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(
            json["workers"],
            serde_json::json!({"desired": 3, "running": 2})
        );

        // A segmented capture counts early segments while the rest still capture.
        let mut segmented = JobRecord::new(VideoId::from_raw("v-2"), "in", "a.mp4", "e", 1);
        segmented.status = JobStatus::Capturing;
        segmented.segments_total = Some(8);
        segmented.segments_complete = 3;
        segmented.processed_frames = 120;
        let view = JobView::of(&segmented);
        assert_eq!(view.segments, Some((3, 8)));
        assert_eq!(
            view.line(),
            "v-2 CAPTURING segments 3/8 captured, frames 120 counted failed 0"
        );
        segmented.fallback = Some("segment 1 captured 51 frames, planned 50".into());
        assert_eq!(JobView::of(&segmented).segments, None);
    }
}
