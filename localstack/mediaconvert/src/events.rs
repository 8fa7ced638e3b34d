//! "MediaConvert Job State Change" events, shaped as EventBridge delivers them to an SQS target:
//! the message body is the whole event envelope. On AWS a rule on `source = aws.mediaconvert`
//! forwards them to the job-events queue; here the stand-in sends them there itself.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tracing::instrument;

use crate::capture::VideoProbe;
use crate::job::{GroupResult, JobFailure, Phase};

/// The `detail-type` of every MediaConvert job event.
pub const DETAIL_TYPE: &str = "MediaConvert Job State Change";
/// The `source` of every MediaConvert job event.
pub const SOURCE: &str = "aws.mediaconvert";

/// Who an event is about: the fields every event of one job repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobContext {
    /// Account id.
    pub account: String,
    /// Region.
    pub region: String,
    /// Queue ARN the job ran on.
    pub queue_arn: String,
    /// Job id.
    pub job_id: String,
    /// Job ARN (the event's only resource).
    pub job_arn: String,
    /// The job's user metadata, echoed in every event.
    pub user_metadata: BTreeMap<String, String>,
}

/// One state change.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The job left the queue and started.
    Progressing,
    /// The input was probed.
    InputInformation {
        /// The input URL.
        uri: String,
        /// What ffprobe found.
        probe: VideoProbe,
    },
    /// Periodic progress, every `statusUpdateInterval`.
    StatusUpdate {
        /// Input frames decoded so far, when known.
        frames_decoded: Option<u64>,
        /// Percent complete.
        percent: u8,
        /// Current phase.
        phase: Phase,
    },
    /// All outputs written; names only the last capture of each output.
    Complete(Vec<GroupResult>),
    /// The job failed.
    Error(JobFailure),
    /// The job was cancelled.
    Canceled,
}

impl JobEvent {
    /// The `detail.status` value.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Progressing => "PROGRESSING",
            Self::InputInformation { .. } => "INPUT_INFORMATION",
            Self::StatusUpdate { .. } => "STATUS_UPDATE",
            Self::Complete(_) => "COMPLETE",
            Self::Error(_) => "ERROR",
            Self::Canceled => "CANCELED",
        }
    }

    /// The whole EventBridge event for `job`, stamped `now` with event id `id`.
    pub fn envelope(&self, job: &JobContext, now: OffsetDateTime, id: uuid::Uuid) -> Value {
        let mut detail = Map::new();
        detail.insert(
            "timestamp".into(),
            json!((now.unix_timestamp_nanos() / 1_000_000) as i64),
        );
        detail.insert("accountId".into(), json!(job.account));
        detail.insert("queue".into(), json!(job.queue_arn));
        detail.insert("jobId".into(), json!(job.job_id));
        detail.insert("status".into(), json!(self.status()));
        detail.insert("userMetadata".into(), json!(job.user_metadata));
        match self {
            Self::Progressing | Self::Canceled => {}
            Self::InputInformation { uri, probe } => {
                let mut video = Map::new();
                video.insert("streamId".into(), json!(1));
                video.insert("codec".into(), json!(codec_name(&probe.codec)));
                video.insert("width".into(), json!(probe.width));
                video.insert("height".into(), json!(probe.height));
                if let Some(rate) = probe.frame_rate() {
                    video.insert("frameRate".into(), json!(rate));
                }
                detail.insert(
                    "inputDetails".into(),
                    json!([{"id": 1, "uri": uri, "video": [video]}]),
                );
            }
            Self::StatusUpdate {
                frames_decoded,
                percent,
                phase,
            } => {
                if let Some(frames) = frames_decoded {
                    detail.insert("framesDecoded".into(), json!(frames));
                }
                let phase_status = |p: Phase| {
                    if (p as u8) < (*phase as u8) {
                        json!({"status": "COMPLETE", "percentComplete": 100})
                    } else if p == *phase {
                        json!({"status": "PROGRESSING", "percentComplete": percent})
                    } else {
                        json!({"status": "PENDING", "percentComplete": 0})
                    }
                };
                detail.insert(
                    "jobProgress".into(),
                    json!({
                        "phaseProgress": {
                            "PROBING": phase_status(Phase::Probing),
                            "TRANSCODING": phase_status(Phase::Transcoding),
                            "UPLOADING": phase_status(Phase::Uploading),
                        },
                        "jobPercentComplete": percent,
                        "currentPhase": phase.as_str(),
                        "retryCount": 0,
                    }),
                );
            }
            Self::Complete(groups) => {
                let groups: Vec<Value> = groups
                    .iter()
                    .map(|group| {
                        let outputs: Vec<Value> = group
                            .outputs
                            .iter()
                            .map(|o| {
                                json!({
                                    "outputFilePaths": [o.path],
                                    "durationInMs": o.duration_ms,
                                    "videoDetails": {"widthInPx": o.width, "heightInPx": o.height},
                                })
                            })
                            .collect();
                        json!({"outputDetails": outputs, "type": "FILE_GROUP"})
                    })
                    .collect();
                detail.insert("outputGroupDetails".into(), Value::Array(groups));
            }
            Self::Error(failure) => {
                detail.insert("errorCode".into(), json!(failure.code));
                detail.insert("errorMessage".into(), json!(failure.message));
            }
        }
        json!({
            "version": "0",
            "id": id.to_string(),
            "detail-type": DETAIL_TYPE,
            "source": SOURCE,
            "account": job.account,
            "time": rfc3339_seconds(now),
            "region": job.region,
            "resources": [job.job_arn],
            "detail": Value::Object(detail),
        })
    }
}

/// EventBridge's `time`: RFC 3339 in UTC, whole seconds (`2018-01-07T23:35:20Z`).
pub fn rfc3339_seconds(now: OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// MediaConvert's codec names for the common ffprobe ones (`h264` → `H_264`).
fn codec_name(ffprobe: &str) -> String {
    match ffprobe {
        "h264" => "H_264".into(),
        "hevc" => "H_265".into(),
        "mpeg2video" => "MPEG2".into(),
        "prores" => "PRORES".into(),
        "vp8" => "VP8".into(),
        "vp9" => "VP9".into(),
        "av1" => "AV1".into(),
        "mjpeg" => "MJPG".into(),
        other => other.to_ascii_uppercase(),
    }
}

/// Sends events to the job-events queue.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    /// The job-events rule's pattern; `None` forwards everything.
    pattern: Option<framefleet_core::event_pattern::EventPattern>,
}

/// An event could not be delivered.
#[derive(Debug, thiserror::Error)]
#[error("cannot send {status} event for job {job_id} to {queue_url}: {message}")]
pub struct PublishError {
    /// The event status.
    pub status: &'static str,
    /// The job.
    pub job_id: String,
    /// The queue.
    pub queue_url: String,
    /// The SDK's description.
    pub message: String,
    /// The SDK error.
    #[source]
    pub source: aws_sdk_sqs::error::SdkError<
        aws_sdk_sqs::operation::send_message::SendMessageError,
        aws_smithy_runtime_api::http::Response,
    >,
}

impl EventPublisher {
    /// Publishes to `queue_url`.
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self {
            sqs,
            queue_url,
            pattern: None,
        }
    }

    /// Sends only the events `pattern` matches, as the EventBridge rule forwards only those.
    pub fn with_pattern(
        mut self,
        pattern: Option<framefleet_core::event_pattern::EventPattern>,
    ) -> Self {
        self.pattern = pattern;
        self
    }

    /// The queue events go to.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends `event`, retrying transient failures a few times as EventBridge does.
    #[instrument(skip_all, fields(job_id = %job.job_id, status = event.status()), err)]
    pub async fn publish(&self, job: &JobContext, event: &JobEvent) -> Result<(), PublishError> {
        let envelope = event.envelope(job, OffsetDateTime::now_utc(), uuid::Uuid::new_v4());
        if self.pattern.as_ref().is_some_and(|p| !p.matches(&envelope)) {
            tracing::debug!("the job-events rule's pattern does not match: not sent");
            return Ok(());
        }
        let body = envelope.to_string();
        let mut attempt = 0u32;
        loop {
            let result = self
                .sqs
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(&body)
                .send()
                .await;
            match result {
                Ok(_) => {
                    tracing::debug!("event sent");
                    return Ok(());
                }
                Err(source) if attempt < 4 && framefleet_core::aws::is_transient(&source) => {
                    attempt += 1;
                    tracing::warn!(
                        error = %framefleet_core::aws::describe(&source),
                        attempt,
                        "event delivery failed; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(source) => {
                    return Err(PublishError {
                        status: event.status(),
                        job_id: job.job_id.clone(),
                        queue_url: self.queue_url.clone(),
                        message: framefleet_core::aws::describe(&source),
                        source,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::OutputResult;

    fn job() -> JobContext {
        JobContext {
            account: "000000000000".into(),
            region: "us-east-1".into(),
            queue_arn: "arn:aws:mediaconvert:us-east-1:000000000000:queues/Default".into(),
            job_id: "1515368087458-qnoxtd".into(),
            job_arn: "arn:aws:mediaconvert:us-east-1:000000000000:jobs/1515368087458-qnoxtd".into(),
            user_metadata: BTreeMap::from([("videoId".into(), "vid-1".into())]),
        }
    }

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_515_368_120_764_000_000).unwrap()
    }

    #[test]
    fn envelope_matches_eventbridge() {
        let id = uuid::Uuid::nil();
        let event = JobEvent::Progressing.envelope(&job(), at(), id);
        assert_eq!(
            event,
            json!({
                "version": "0",
                "id": "00000000-0000-0000-0000-000000000000",
                "detail-type": "MediaConvert Job State Change",
                "source": "aws.mediaconvert",
                "account": "000000000000",
                "time": "2018-01-07T23:35:20Z",
                "region": "us-east-1",
                "resources": ["arn:aws:mediaconvert:us-east-1:000000000000:jobs/1515368087458-qnoxtd"],
                "detail": {
                    "timestamp": 1_515_368_120_764_i64,
                    "accountId": "000000000000",
                    "queue": "arn:aws:mediaconvert:us-east-1:000000000000:queues/Default",
                    "jobId": "1515368087458-qnoxtd",
                    "status": "PROGRESSING",
                    "userMetadata": {"videoId": "vid-1"}
                }
            })
        );
    }

    #[test]
    fn complete_names_only_the_last_capture() {
        let event = JobEvent::Complete(vec![GroupResult {
            outputs: vec![OutputResult {
                path: "s3://frames/vid-1/my clip.0000949.jpg".into(),
                captures: 950,
                duration_ms: 31_698,
                width: 1920,
                height: 1080,
            }],
        }])
        .envelope(&job(), at(), uuid::Uuid::nil());
        assert_eq!(
            event["detail"]["outputGroupDetails"],
            json!([{
                "outputDetails": [{
                    "outputFilePaths": ["s3://frames/vid-1/my clip.0000949.jpg"],
                    "durationInMs": 31_698,
                    "videoDetails": {"widthInPx": 1920, "heightInPx": 1080}
                }],
                "type": "FILE_GROUP"
            }])
        );
        assert_eq!(event["detail"]["status"], "COMPLETE");
    }

    #[test]
    fn error_carries_code_and_message() {
        let event = JobEvent::Error(JobFailure {
            code: 1010,
            message: "Unable to open input file".into(),
        })
        .envelope(&job(), at(), uuid::Uuid::nil());
        assert_eq!(event["detail"]["status"], "ERROR");
        assert_eq!(event["detail"]["errorCode"], 1010);
        assert_eq!(event["detail"]["errorMessage"], "Unable to open input file");
    }

    #[test]
    fn status_update_reports_phase_progress() {
        let event = JobEvent::StatusUpdate {
            frames_decoded: Some(353),
            percent: 40,
            phase: Phase::Transcoding,
        }
        .envelope(&job(), at(), uuid::Uuid::nil());
        let detail = &event["detail"];
        assert_eq!(detail["framesDecoded"], 353);
        assert_eq!(detail["jobProgress"]["currentPhase"], "TRANSCODING");
        assert_eq!(detail["jobProgress"]["jobPercentComplete"], 40);
        assert_eq!(
            detail["jobProgress"]["phaseProgress"]["PROBING"]["status"],
            "COMPLETE"
        );
        assert_eq!(
            detail["jobProgress"]["phaseProgress"]["UPLOADING"]["status"],
            "PENDING"
        );
        let event = JobEvent::StatusUpdate {
            frames_decoded: None,
            percent: 0,
            phase: Phase::Probing,
        }
        .envelope(&job(), at(), uuid::Uuid::nil());
        assert!(event["detail"].get("framesDecoded").is_none());
    }

    #[test]
    fn input_information_describes_the_video() {
        let probe = VideoProbe {
            format: "mov,mp4,m4a,3gp,3g2,mj2".into(),
            codec: "h264".into(),
            width: 160,
            height: 120,
            rate: Some((30000, 1001)),
            duration_ms: Some(3003),
            has_audio: false,
            timecode: None,
        };
        let event = JobEvent::InputInformation {
            uri: "s3://in/a.mp4".into(),
            probe,
        }
        .envelope(&job(), at(), uuid::Uuid::nil());
        let video = &event["detail"]["inputDetails"][0]["video"][0];
        assert_eq!(event["detail"]["inputDetails"][0]["uri"], "s3://in/a.mp4");
        assert_eq!(video["codec"], "H_264");
        assert_eq!(video["width"], 160);
        assert!((video["frameRate"].as_f64().unwrap() - 29.97).abs() < 0.01);
    }
}
