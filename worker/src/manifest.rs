//! `manifest.json`, written once per job by the worker that completes it: what went in, with
//! which parameters, what came out, which frames failed and why, and how long each phase took.

use framefleet_core::jobs::{FailedFrame, JobRecord};
use framefleet_edge::EdgeParams;
use serde::Serialize;

/// The manifest document.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The job.
    pub video_id: String,
    /// Final status (COMPLETE).
    pub status: String,
    /// The upload.
    pub source: Source,
    /// MediaConvert job id.
    pub mediaconvert_job_id: Option<String>,
    /// Capture rate as `numerator/denominator`.
    pub capture_rate: Option<String>,
    /// Kernel parameters every frame was processed with.
    pub parameters: EdgeParams,
    /// Frame counts.
    pub counts: Counts,
    /// Where the edge maps are.
    pub output: Output,
    /// The MP4 preview MediaConvert wrote beside them.
    pub preview: Preview,
    /// Frames that failed, with reasons.
    pub failed_frames: Vec<FailedFrame>,
    /// Phase timestamps and durations.
    pub timings: Timings,
}

/// The upload.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// eTag.
    pub etag: String,
    /// Bytes.
    pub size: u64,
}

/// Frame counts.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Frames captured.
    pub total: u64,
    /// Edge maps written.
    pub processed: u64,
    /// Frames failed.
    pub failed: u64,
}

/// Output location.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    /// Bucket.
    pub bucket: String,
    /// Prefix of the edge maps, `<video id>/`.
    pub prefix: String,
}

/// File name of the preview under `<video id>/` in the processed bucket: the dispatcher's
/// MediaConvert job writes to `s3://<processed>/<video id>/preview`, and MediaConvert adds the
/// container's extension to that base name. The job cannot complete without it (MediaConvert
/// refuses frame-capture-only jobs), so a completed job has one.
pub const PREVIEW_NAME: &str = "preview.mp4";

/// Where the preview is: an H.264 MP4 of the whole video, shrunk to the dispatcher's
/// `preview_max_width` × `preview_max_height`, with the source's sound if it had any.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The processed bucket.
    pub bucket: String,
    /// `<video id>/preview.mp4`.
    pub key: String,
}

/// Timestamps (RFC 3339) and phase durations (seconds).
#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    /// Registration.
    pub created_at: String,
    /// MediaConvert job created.
    pub capture_started_at: Option<String>,
    /// Frames fanned out.
    pub processing_started_at: Option<String>,
    /// COMPLETE.
    pub finished_at: Option<String>,
    /// Capture phase.
    pub capture_s: Option<f64>,
    /// Processing phase.
    pub processing_s: Option<f64>,
    /// Registration to COMPLETE.
    pub total_s: Option<f64>,
}

fn seconds_between(from: Option<&str>, to: Option<&str>) -> Option<f64> {
    let parse = |text: &str| {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
    };
    let (from, to) = (parse(from?)?, parse(to?)?);
    Some(((to - from).as_seconds_f64() * 1000.0).round() / 1000.0)
}

/// Builds the manifest of a completed job.
pub fn build(
    record: &JobRecord,
    params: &EdgeParams,
    processed_bucket: &str,
    failed_frames: Vec<FailedFrame>,
) -> Manifest {
    let finished = record
        .finished_at
        .clone()
        .unwrap_or_else(framefleet_core::jobs::now_rfc3339);
    Manifest {
        video_id: record.video_id.to_string(),
        status: "COMPLETE".into(),
        source: Source {
            bucket: record.source_bucket.clone(),
            key: record.source_key.clone(),
            etag: record.source_etag.clone(),
            size: record.source_size,
        },
        mediaconvert_job_id: record.mediaconvert_job_id.clone(),
        capture_rate: record.capture_rate.clone(),
        parameters: params.clone(),
        counts: Counts {
            total: record.total_frames.unwrap_or_default(),
            processed: record.processed_frames,
            failed: record.failed_frames,
        },
        output: Output {
            bucket: processed_bucket.to_string(),
            prefix: format!("{}/", record.video_id),
        },
        preview: Preview {
            bucket: processed_bucket.to_string(),
            key: format!("{}/{PREVIEW_NAME}", record.video_id),
        },
        failed_frames,
        timings: Timings {
            capture_s: seconds_between(
                record.capture_started_at.as_deref(),
                record.processing_started_at.as_deref(),
            ),
            processing_s: seconds_between(record.processing_started_at.as_deref(), Some(&finished)),
            total_s: seconds_between(Some(&record.created_at), Some(&finished)),
            created_at: record.created_at.clone(),
            capture_started_at: record.capture_started_at.clone(),
            processing_started_at: record.processing_started_at.clone(),
            finished_at: Some(finished),
        },
    }
}

#[cfg(test)]
mod tests {
    use framefleet_core::video::VideoId;

    use super::*;

    #[test]
    fn durations_come_from_the_record() {
        let mut record = JobRecord::new(VideoId::from_raw("v-1"), "in", "a.mp4", "e", 10);
        record.created_at = "2026-01-01T00:00:00Z".into();
        record.capture_started_at = Some("2026-01-01T00:00:01Z".into());
        record.processing_started_at = Some("2026-01-01T00:00:04.5Z".into());
        record.finished_at = Some("2026-01-01T00:00:10Z".into());
        record.total_frames = Some(3);
        record.processed_frames = 2;
        record.failed_frames = 1;
        let manifest = build(
            &record,
            &EdgeParams::default(),
            "out",
            vec![FailedFrame {
                key: "v-1/a.0000001.jpg".into(),
                reason: "corrupt".into(),
            }],
        );
        assert_eq!(manifest.timings.capture_s, Some(3.5));
        assert_eq!(manifest.timings.processing_s, Some(5.5));
        assert_eq!(manifest.timings.total_s, Some(10.0));
        assert_eq!(manifest.counts.failed, 1);
        assert_eq!(manifest.output.prefix, "v-1/");
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["preview"]["bucket"], "out");
        assert_eq!(json["preview"]["key"], "v-1/preview.mp4");
    }
}
