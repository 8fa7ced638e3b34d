//! MediaConvert "Job State Change" events as EventBridge delivers them to the job-events queue.
//! They may arrive twice or out of order; the job table's forward-only status makes that
//! harmless.

use std::collections::HashMap;

use serde::Deserialize;

/// What a job state change means for the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Capture is running; `percent` when MediaConvert reported progress.
    Progress {
        /// Percent done.
        percent: Option<u64>,
    },
    /// Capture finished; `last_output` is the last frame's S3 URL when the event names it.
    /// The job's other outputs (the MP4 preview) are not frames and are left out.
    Complete {
        /// `s3://bucket/prefix/name.NNNNNNN.jpg` of the last captured frame.
        last_output: Option<String>,
    },
    /// MediaConvert gave up.
    Error {
        /// MediaConvert's numeric error code.
        code: String,
        /// MediaConvert's message.
        message: String,
    },
    /// Someone cancelled the job.
    Canceled,
    /// Any other status (INPUT_INFORMATION, NEW_WARNING, QUEUE_HOP …): nothing to do.
    Other(String),
}

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// MediaConvert job id.
    pub job_id: String,
    /// The video id from `userMetadata`, if the job is ours.
    pub video_id: Option<String>,
    /// The state.
    pub state: JobState,
    /// The video's trace, from `userMetadata` (absent for jobs created without tracing).
    pub traceparent: Option<String>,
    /// The job's part of a segmented capture, from `userMetadata.segment`: `NNNN` for a
    /// segment, `full` for the fallback capture; absent for a video's single job.
    pub part: Option<String>,
}

/// A job-events message that is not a MediaConvert event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not JSON or not an EventBridge envelope.
    #[error("not an EventBridge event: {0}")]
    Malformed(#[from] serde_json::Error),
    /// An event from another source or of another type.
    #[error(
        "not a MediaConvert job state change: source `{event_source}`, detail-type `{detail_type}`"
    )]
    Foreign {
        /// The event's source.
        event_source: String,
        /// The event's detail-type.
        detail_type: String,
    },
}

#[derive(Deserialize)]
struct Envelope {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: Detail,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    job_id: String,
    status: String,
    #[serde(default)]
    user_metadata: HashMap<String, String>,
    #[serde(default)]
    job_progress: Option<Progress>,
    #[serde(default)]
    output_group_details: Vec<OutputGroupDetail>,
    #[serde(default)]
    error_code: Option<serde_json::Value>,
    #[serde(default)]
    error_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    #[serde(default)]
    job_percent_complete: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputGroupDetail {
    #[serde(default)]
    output_details: Vec<OutputDetail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputDetail {
    #[serde(default)]
    output_file_paths: Vec<String>,
}

/// The frame-capture output's path among every output of the job. Every group of our job is a
/// `FILE_GROUP` and the order of groups in the event is not something to rely on, so the path
/// is recognised by its name: frame captures are the only outputs named
/// `<base>.<NNNNNNN>.jpg` ("Files will be named as filename.NNNNNNN.jpg" — MediaConvert API
/// Reference, "Jobs", FrameCaptureSettings,
/// <https://docs.aws.amazon.com/mediaconvert/latest/apireference/jobs.html>).
fn last_frame(groups: &[OutputGroupDetail]) -> Option<String> {
    groups
        .iter()
        .flat_map(|g| &g.output_details)
        .flat_map(|o| &o.output_file_paths)
        .rfind(|path| framefleet_core::frames::frame_index(path).is_some())
        .cloned()
}

/// Parses a job-events message body.
pub fn parse(body: &str) -> Result<JobEvent, EventError> {
    let envelope: Envelope = serde_json::from_str(body)?;
    if envelope.source != "aws.mediaconvert"
        || envelope.detail_type != "MediaConvert Job State Change"
    {
        return Err(EventError::Foreign {
            event_source: envelope.source,
            detail_type: envelope.detail_type,
        });
    }
    let detail = envelope.detail;
    let state = match detail.status.as_str() {
        "PROGRESSING" | "STATUS_UPDATE" => JobState::Progress {
            percent: detail.job_progress.and_then(|p| p.job_percent_complete),
        },
        "COMPLETE" => JobState::Complete {
            last_output: last_frame(&detail.output_group_details),
        },
        "ERROR" => JobState::Error {
            code: match detail.error_code {
                Some(serde_json::Value::String(code)) => code,
                Some(other) => other.to_string(),
                None => "unknown".into(),
            },
            message: detail.error_message.unwrap_or_default(),
        },
        "CANCELED" => JobState::Canceled,
        other => JobState::Other(other.to_string()),
    };
    Ok(JobEvent {
        job_id: detail.job_id,
        video_id: detail.user_metadata.get("video_id").cloned(),
        state,
        traceparent: detail
            .user_metadata
            .get(framefleet_core::telemetry::propagation::TRACEPARENT)
            .cloned(),
        part: detail.user_metadata.get("segment").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: &str, extra: &str) -> String {
        format!(
            r#"{{"version":"0","id":"e","detail-type":"MediaConvert Job State Change","source":"aws.mediaconvert","account":"1","time":"t","region":"us-east-1","resources":[],
            "detail":{{"timestamp":1,"accountId":"1","queue":"q","jobId":"j-1","status":"{status}","userMetadata":{{"application":"framefleet","video_id":"v-1"}}{extra}}}}}"#
        )
    }

    #[test]
    fn complete_names_the_last_frame() {
        let body = event(
            "COMPLETE",
            r#","outputGroupDetails":[{"outputDetails":[{"outputFilePaths":["s3://f/v-1/clip.0000949.jpg"],"durationInMs":1}],"type":"FILE_GROUP"}]"#,
        );
        let parsed = parse(&body).unwrap();
        assert_eq!(parsed.video_id.as_deref(), Some("v-1"));
        assert_eq!(
            parsed.state,
            JobState::Complete {
                last_output: Some("s3://f/v-1/clip.0000949.jpg".into())
            }
        );
        assert_eq!(
            parse(&event("COMPLETE", "")).unwrap().state,
            JobState::Complete { last_output: None }
        );
    }

    /// The COMPLETE event of a job with a frame capture group and an MP4 group, in the shape of
    /// the example in the MediaConvert User Guide, "File group with a frame capture output"
    /// (<https://docs.aws.amazon.com/mediaconvert/latest/ug/file-group-with-frame-capture-output.html>).
    fn two_group_complete(frames_first: bool) -> String {
        let frames = r#"{"outputDetails":[{"outputFilePaths":["s3://amzn-s3-demo-bucket/frameoutput/file.0000036.jpg"],"durationInMs":185000,"videoDetails":{"widthInPx":1280,"heightInPx":720}}],"type":"FILE_GROUP"}"#;
        let mp4 = r#"{"outputDetails":[{"outputFilePaths":["s3://amzn-s3-demo-bucket/file/file.mp4"],"durationInMs":180041,"blackVideoDurationInMs":0,"videoDetails":{"widthInPx":1280,"heightInPx":720,"averageQVBRScore":7.38,"minimumQVBRScore":7,"maximumQVBRScore":8,"minimumQVBRScoreLocationInMs":2168,"maximumQVBRScoreLocationInMs":25025}}],"type":"FILE_GROUP"}"#;
        let groups = if frames_first {
            format!("{frames},{mp4}")
        } else {
            format!("{mp4},{frames}")
        };
        format!(
            r#"{{"version":"0","id":"1234abcd-12ab-34cd-56ef-1234567890ab","detail-type":"MediaConvert Job State Change","source":"aws.mediaconvert","account":"111122223333","time":"2022-12-19T19:07:12Z","region":"us-west-2","resources":["arn:aws:mediaconvert:us-west-2:111122223333:jobs/1671476818694-phptj0"],
            "detail":{{"status":"COMPLETE","paddingInserted":0,"blackVideoDetected":10,"blackSegments":[{{"start":0,"end":10}}],"outputGroupDetails":[{groups}],"timestamp":1536964380391,"accountId":"111122223333","queue":"arn:aws:mediaconvert:us-west-2:111122223333:queues/Default","jobId":"1671476818694-phptj0","userMetadata":{{"video_id":"v-1"}}}}}}"#
        )
    }

    #[test]
    fn complete_with_a_preview_names_the_frame_not_the_mp4() {
        for frames_first in [true, false] {
            let parsed = parse(&two_group_complete(frames_first)).unwrap();
            assert_eq!(
                parsed.state,
                JobState::Complete {
                    last_output: Some(
                        "s3://amzn-s3-demo-bucket/frameoutput/file.0000036.jpg".into()
                    )
                },
                "frame group first: {frames_first}"
            );
        }
        let only_mp4 = event(
            "COMPLETE",
            r#","outputGroupDetails":[{"outputDetails":[{"outputFilePaths":["s3://out/v-1/preview.mp4"]}],"type":"FILE_GROUP"}]"#,
        );
        assert_eq!(
            parse(&only_mp4).unwrap().state,
            JobState::Complete { last_output: None }
        );
    }

    #[test]
    fn error_progress_and_others() {
        let body = event(
            "ERROR",
            r#","errorCode":1010,"errorMessage":"Unable to open input file""#,
        );
        assert_eq!(
            parse(&body).unwrap().state,
            JobState::Error {
                code: "1010".into(),
                message: "Unable to open input file".into()
            }
        );
        let body = event(
            "STATUS_UPDATE",
            r#","jobProgress":{"jobPercentComplete":42}"#,
        );
        assert_eq!(
            parse(&body).unwrap().state,
            JobState::Progress { percent: Some(42) }
        );
        assert_eq!(
            parse(&event("INPUT_INFORMATION", "")).unwrap().state,
            JobState::Other("INPUT_INFORMATION".into())
        );
    }

    #[test]
    fn a_segment_names_itself() {
        let body = event("COMPLETE", "").replace(
            r#""video_id":"v-1""#,
            r#""video_id":"v-1","segment":"0002""#,
        );
        assert_eq!(parse(&body).unwrap().part.as_deref(), Some("0002"));
        assert_eq!(parse(&event("COMPLETE", "")).unwrap().part, None);
    }

    #[test]
    fn foreign_and_garbage_are_errors() {
        let body = event("COMPLETE", "").replace("aws.mediaconvert", "aws.s3");
        assert!(matches!(parse(&body), Err(EventError::Foreign { .. })));
        assert!(matches!(parse("[]"), Err(EventError::Malformed(_))));
    }
}
