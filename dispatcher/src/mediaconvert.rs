//! The MediaConvert frame-capture job for one video: FRAME_CAPTURE to JPEG in a RAW container,
//! written to `s3://<frames>/<video id>/`, tagged with the video id so its events find the job.

use aws_sdk_mediaconvert::types::{
    ContainerSettings, ContainerType, FileGroupSettings, FrameCaptureSettings, Input, JobSettings,
    Output, OutputGroup, OutputGroupSettings, OutputGroupType, StatusUpdateInterval, VideoCodec,
    VideoCodecSettings, VideoDescription,
};
use framefleet_core::aws::{describe, is_transient};
use framefleet_core::video::VideoId;

use crate::rate::CaptureRate;
use crate::settings::DispatcherConfig;

/// CreateJob failed.
#[derive(Debug, thiserror::Error)]
#[error("MediaConvert CreateJob for `{video_id}`: {message}")]
pub struct CreateJobError {
    /// The video.
    pub video_id: String,
    /// Code and message from the service.
    pub message: String,
    /// True when a retry may succeed (throttling, 5xx, timeouts).
    pub retryable: bool,
}

/// What the capture job needs to know.
#[derive(Debug, Clone)]
pub struct CaptureRequest<'a> {
    /// The job.
    pub video_id: &'a VideoId,
    /// `s3://bucket/key` of the upload.
    pub input_url: String,
    /// `s3://frames/<video id>/`.
    pub destination: String,
    /// Frames per second to capture.
    pub rate: CaptureRate,
    /// 0 for the video's capture job; n for the n-th one the reconciler creates after
    /// MediaConvert lost the previous, so the request token (idempotent for about a minute)
    /// does not hand back the lost job.
    pub attempt: u64,
}

/// Creates the capture job and returns its id. The request token is derived from the video id,
/// so a retried call within MediaConvert's idempotency window returns the same job.
pub async fn create_capture_job(
    client: &aws_sdk_mediaconvert::Client,
    config: &DispatcherConfig,
    request: &CaptureRequest<'_>,
) -> Result<String, CreateJobError> {
    let settings = capture_job_settings(
        &request.input_url,
        &request.destination,
        (
            request.rate.numerator as i32,
            request.rate.denominator as i32,
        ),
        config.max_captures as i32,
        i32::from(config.jpeg_quality),
    );
    let mut call = client
        .create_job()
        .role(&config.mediaconvert_role_arn)
        .settings(settings)
        .user_metadata("application", "framefleet")
        .user_metadata("video_id", request.video_id.as_str())
        .client_request_token(match request.attempt {
            0 => format!("framefleet-{}", request.video_id),
            n => format!("framefleet-{}-r{n}", request.video_id),
        })
        .status_update_interval(StatusUpdateInterval::Seconds10);
    if !config.mediaconvert_queue.is_empty() {
        call = call.queue(&config.mediaconvert_queue);
    }
    match call.send().await {
        Ok(out) => out
            .job()
            .and_then(|job| job.id())
            .map(ToString::to_string)
            .ok_or_else(|| CreateJobError {
                video_id: request.video_id.to_string(),
                message: "the response names no job id".into(),
                retryable: true,
            }),
        Err(error) => Err(CreateJobError {
            video_id: request.video_id.to_string(),
            message: describe(&error),
            retryable: is_transient(&error),
        }),
    }
}

/// The job settings of a frame capture: one S3 input, one file group writing to `destination`,
/// one RAW container with FRAME_CAPTURE JPEGs at `numerator/denominator` frames per second.
/// Values go through unchecked, so the stand-in's validation can be tested with this too.
pub fn capture_job_settings(
    input_url: &str,
    destination: &str,
    (numerator, denominator): (i32, i32),
    max_captures: i32,
    quality: i32,
) -> JobSettings {
    let capture = FrameCaptureSettings::builder()
        .framerate_numerator(numerator)
        .framerate_denominator(denominator)
        .max_captures(max_captures)
        .quality(quality)
        .build();
    let output = Output::builder()
        .container_settings(
            ContainerSettings::builder()
                .container(ContainerType::Raw)
                .build(),
        )
        .video_description(
            VideoDescription::builder()
                .codec_settings(
                    VideoCodecSettings::builder()
                        .codec(VideoCodec::FrameCapture)
                        .frame_capture_settings(capture)
                        .build(),
                )
                .build(),
        )
        .extension("jpg")
        .build();
    let group = OutputGroup::builder()
        .name("frames")
        .output_group_settings(
            OutputGroupSettings::builder()
                .r#type(OutputGroupType::FileGroupSettings)
                .file_group_settings(
                    FileGroupSettings::builder()
                        .destination(destination)
                        .build(),
                )
                .build(),
        )
        .outputs(output)
        .build();
    JobSettings::builder()
        .inputs(Input::builder().file_input(input_url).build())
        .output_groups(group)
        .build()
}
