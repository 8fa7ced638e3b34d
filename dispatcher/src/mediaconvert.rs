//! The MediaConvert job for one video: FRAME_CAPTURE to JPEG in a RAW container, written to
//! `s3://<frames>/<video id>/`, plus an H.264 MP4 preview written to
//! `s3://<processed>/<video id>/preview.mp4`, tagged with the video id so its events find the
//! job.
//!
//! The preview is not optional: MediaConvert refuses a job whose only output is a frame
//! capture ("You can create frame capture outputs only in jobs that also have a regular audio
//! and video output. MediaConvert doesn't support jobs that consist only of a frame capture
//! output." — MediaConvert User Guide, "File group with a frame capture output",
//! <https://docs.aws.amazon.com/mediaconvert/latest/ug/file-group-with-frame-capture-output.html>).

use aws_sdk_mediaconvert::types::{
    AacCodingMode, AacSettings, AudioCodec, AudioCodecSettings, AudioDefaultSelection,
    AudioDescription, AudioSelector, ContainerSettings, ContainerType, FileGroupSettings,
    FrameCaptureSettings, H264QvbrSettings, H264RateControlMode, H264SceneChangeDetect,
    H264Settings, Input, InputClipping, InputTimecodeSource, JobSettings, Mp4MoovPlacement,
    Mp4Settings, Output, OutputGroup, OutputGroupSettings, OutputGroupType, ScalingBehavior,
    StatusUpdateInterval, VideoCodec, VideoCodecSettings, VideoDescription,
};
use framefleet_core::aws::{describe, is_transient};
use framefleet_core::video::{capture_token, VideoId};
use tracing::Instrument;

use crate::rate::CaptureRate;
use crate::settings::DispatcherConfig;

/// Base name of the preview: with a destination that does not end in `/`, MediaConvert uses
/// its last path segment as the file name base ("Use Destination to specify the S3 output
/// location and the output filename base. [...] If you do not specify the base filename in the
/// URI, the service will use the filename of the input file." — MediaConvert API Reference,
/// "Jobs", FileGroupSettings,
/// <https://docs.aws.amazon.com/mediaconvert/latest/apireference/jobs.html>), and adds the
/// container's extension: `s3://<processed>/<video id>/preview` gives
/// `<video id>/preview.mp4`. The worker's manifest names the same key.
pub const PREVIEW_BASE_NAME: &str = "preview";

/// The audio selector the preview's audio description reads; MediaConvert resolves an
/// `AudioSourceName` against the input's `AudioSelectors`, so it is declared there too.
pub const AUDIO_SELECTOR: &str = "Audio Selector 1";

/// Peak bitrate of the preview's QVBR video, in bits per second (MediaConvert: 1000..=1152000000).
pub const PREVIEW_MAX_BITRATE: i32 = 1_500_000;

/// QVBR quality level of the preview (MediaConvert: 1..=10; 7 is AWS's suggestion for screens
/// up to 720p).
pub const PREVIEW_QVBR_QUALITY: i32 = 7;

/// AAC bitrate of the preview's stereo audio, in bits per second.
pub const PREVIEW_AUDIO_BITRATE: i32 = 96_000;

/// AAC sample rate of the preview's audio, in Hz.
pub const PREVIEW_AUDIO_SAMPLE_RATE: i32 = 48_000;

/// CreateJob failed, or the job could not be expressed in MediaConvert's integer ranges.
#[derive(Debug, thiserror::Error)]
#[error("MediaConvert CreateJob for `{video_id}`: {message}")]
pub struct CreateJobError {
    /// The video.
    pub video_id: String,
    /// Code and message from the service, or why the request was not sent.
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
    /// `s3://<processed>/<video id>/preview` (see [`PREVIEW_BASE_NAME`]).
    pub preview_destination: String,
    /// Frames per second to capture.
    pub rate: CaptureRate,
    /// 0 for the video's capture job; n for the n-th one the reconciler creates after
    /// MediaConvert lost the previous, so the request token (idempotent for about a minute)
    /// does not hand back the lost job.
    pub attempt: u64,
    /// The upload has a sound track, so the preview can carry it. False unless the header
    /// showed one: the preview only asks MediaConvert for sound that is known to be there.
    pub source_has_audio: bool,
    /// The video's trace (W3C traceparent), carried in `UserMetadata` so the job's state change
    /// events join it; `None` when the job is not traced.
    pub traceparent: Option<String>,
    /// Which part of a segmented capture this job is: `None` for a video's single job.
    pub part: Option<CapturePart>,
}

/// The part of a segmented capture one MediaConvert job captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapturePart {
    /// Segment `index`, clipped to its frames.
    Segment {
        /// 0-based segment index.
        index: u32,
        /// Frames the clip holds: its `MaxCaptures` is one more, so an over-capture shows as
        /// a count above the plan instead of being cut to it.
        frames: u64,
        /// `InputClipping.StartTimecode` (`None`: from the input's first frame).
        start_timecode: Option<String>,
        /// `InputClipping.EndTimecode` (`None`: to the input's end).
        end_timecode: Option<String>,
    },
    /// The whole video again, after a segment's count did not match its plan.
    Fallback,
}

impl CapturePart {
    /// The `segment` value in the job's `UserMetadata`, echoed by its events: `NNNN` for a
    /// segment, `full` for the fallback.
    pub fn metadata(&self) -> String {
        match self {
            Self::Segment { index, .. } => format!("{index:04}"),
            Self::Fallback => FALLBACK_PART.to_string(),
        }
    }
}

/// The `segment` user metadata of a segmented job's fallback capture.
pub const FALLBACK_PART: &str = "full";

/// The segment number in the fallback capture's request token, past the 99 segments a video
/// may have, so its tokens never equal a segment's.
pub const FALLBACK_TOKEN_SEGMENT: u32 = 9999;

/// The `UserMetadata` key that names a job's part of a segmented capture.
pub const PART_METADATA: &str = "segment";

/// The job's settings in the API's own integer types. Values go through unchecked, so the
/// stand-in's validation can be tested with the dispatcher's own builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureJob<'a> {
    /// `s3://bucket/key` of the upload.
    pub input_url: &'a str,
    /// Destination of the frame-capture group.
    pub frames_destination: &'a str,
    /// `(FramerateNumerator, FramerateDenominator)`.
    pub framerate: (i32, i32),
    /// `MaxCaptures`.
    pub max_captures: i32,
    /// JPEG `Quality`.
    pub quality: i32,
    /// The MP4 preview; `None` leaves the frame capture alone, which MediaConvert refuses.
    pub preview: Option<PreviewJob<'a>>,
    /// A clip of the input (a segment): `(StartTimecode, EndTimecode)`, read on a ZEROBASED
    /// timeline; `None` captures the whole input.
    pub clip: Option<(Option<&'a str>, Option<&'a str>)>,
}

/// The preview output of [`CaptureJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewJob<'a> {
    /// Destination of the preview group, without a trailing `/`.
    pub destination: &'a str,
    /// Box the picture is shrunk to fit inside (`FIT_NO_UPSCALE`): width.
    pub max_width: i32,
    /// Box the picture is shrunk to fit inside: height.
    pub max_height: i32,
    /// QVBR peak bitrate.
    pub max_bitrate: i32,
    /// QVBR quality level.
    pub qvbr_quality: i32,
    /// Add AAC audio from [`AUDIO_SELECTOR`].
    pub audio: bool,
}

impl<'a> CaptureJob<'a> {
    /// The job for `request` under `config`, or why its numbers do not fit MediaConvert's
    /// integers (a rate built by hand, or settings not validated at start-up).
    pub fn new(request: &'a CaptureRequest<'_>, config: &DispatcherConfig) -> Result<Self, String> {
        let framerate = request.rate.framerate().ok_or_else(|| {
            format!(
                "capture rate {} does not fit MediaConvert's framerate integers (1..={})",
                request.rate,
                i32::MAX
            )
        })?;
        let int = |key: &str, value: u32| {
            i32::try_from(value)
                .map_err(|_| format!("dispatcher.{key} {value} exceeds {}", i32::MAX))
        };
        let mut max_captures = int("max_captures", config.max_captures)?;
        if let Some(CapturePart::Segment { frames, .. }) = &request.part {
            let guard = i32::try_from(frames.saturating_add(1)).unwrap_or(i32::MAX);
            max_captures = max_captures.min(guard);
        }
        Ok(Self {
            input_url: &request.input_url,
            frames_destination: &request.destination,
            framerate,
            max_captures,
            quality: i32::from(config.jpeg_quality),
            preview: Some(PreviewJob {
                destination: &request.preview_destination,
                max_width: int("preview_max_width", config.preview_max_width)?,
                max_height: int("preview_max_height", config.preview_max_height)?,
                max_bitrate: PREVIEW_MAX_BITRATE,
                qvbr_quality: PREVIEW_QVBR_QUALITY,
                audio: request.source_has_audio,
            }),
            clip: match &request.part {
                Some(CapturePart::Segment {
                    start_timecode,
                    end_timecode,
                    ..
                }) => Some((start_timecode.as_deref(), end_timecode.as_deref())),
                _ => None,
            },
        })
    }
}

/// Creates the capture job and returns its id. The request token is derived from the video id
/// and the attempt ([`capture_token`], at most 64 characters for every id), so a retried call
/// within MediaConvert's idempotency window (one minute) returns the same job. A retry later
/// than that creates a second job: only the job recorded on the video's record counts (its
/// events are the only ones applied), and [`cancel_stray_job`] stops the other.
pub async fn create_capture_job(
    client: &aws_sdk_mediaconvert::Client,
    config: &DispatcherConfig,
    request: &CaptureRequest<'_>,
) -> Result<String, CreateJobError> {
    let job = CaptureJob::new(request, config).map_err(|message| CreateJobError {
        video_id: request.video_id.to_string(),
        message,
        retryable: false,
    })?;
    let mut call = client
        .create_job()
        .role(&config.mediaconvert_role_arn)
        .settings(capture_job_settings(&job))
        .user_metadata("application", "framefleet")
        .user_metadata("video_id", request.video_id.as_str())
        .client_request_token(capture_token(
            request.video_id,
            match &request.part {
                Some(CapturePart::Segment { index, .. }) => Some(*index),
                // The fallback's tokens must differ from the first single job's and every
                // segment's: it is numbered past every segment MediaConvert allows us.
                Some(CapturePart::Fallback) => Some(FALLBACK_TOKEN_SEGMENT),
                None => None,
            },
            u32::try_from(request.attempt).unwrap_or(u32::MAX),
        ))
        .status_update_interval(StatusUpdateInterval::Seconds10);
    if !config.mediaconvert_queue.is_empty() {
        call = call.queue(&config.mediaconvert_queue);
    }
    if let Some(part) = &request.part {
        call = call.user_metadata(PART_METADATA, part.metadata());
    }
    // The job's state change events echo `userMetadata`, so they rejoin the video's trace
    // ("EventBridge with AWS Elemental MediaConvert": events carry the job's user metadata,
    // <https://docs.aws.amazon.com/mediaconvert/latest/ug/cloudwatch_events.html>).
    if let Some(traceparent) = &request.traceparent {
        call = call.user_metadata(
            framefleet_core::telemetry::propagation::TRACEPARENT,
            traceparent,
        );
    }
    // On a task of its own: the response's deserializer walks the whole JobSettings tree, and
    // in a debug build its frames on top of a handler's chain of futures (a segment created
    // from a registration, an event or the reconciler) overflow a worker thread's 2 MiB stack.
    // A spawned task is polled from the top of a worker's stack. CreateJob is idempotent by its
    // request token, so a handler stopped meanwhile loses nothing.
    let sent = tokio::spawn(call.send().instrument(tracing::Span::current()))
        .await
        .map_err(|error| CreateJobError {
            video_id: request.video_id.to_string(),
            message: format!("the CreateJob task ended: {error}"),
            retryable: true,
        })?;
    match sent {
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

/// Cancels a MediaConvert job that is not (or no longer) the one the video's record names: a
/// second job for the same capture, created by a retry after the one-minute token window or by
/// a registration that lost the race to a cancel. Its events are ignored anyway (only the
/// recorded job speaks for a video); canceling it stops the minutes it bills and the frames it
/// would write over the recorded job's.
///
/// `CancelJob` (`DELETE /2017-08-29/jobs/{id}`, "Jobs id", MediaConvert API Reference,
/// <https://docs.aws.amazon.com/mediaconvert/latest/apireference/jobs-id.html>) refuses a job
/// that has already finished, which is the outcome wanted, so that answer is not an error;
/// a transient failure is returned for the caller's redelivery.
pub async fn cancel_stray_job(
    client: &aws_sdk_mediaconvert::Client,
    video_id: &VideoId,
    job_id: &str,
) -> Result<(), CreateJobError> {
    match client.cancel_job().id(job_id).send().await {
        Ok(_) => {
            tracing::warn!(video_id = %video_id, mediaconvert_job_id = job_id, "canceled a second MediaConvert job for the video");
            Ok(())
        }
        Err(error) if is_transient(&error) => Err(CreateJobError {
            video_id: video_id.to_string(),
            message: format!("CancelJob {job_id}: {}", describe(&error)),
            retryable: true,
        }),
        Err(error) => {
            tracing::info!(video_id = %video_id, mediaconvert_job_id = job_id, error = %describe(&error), "second MediaConvert job not canceled (finished already)");
            Ok(())
        }
    }
}

/// The job settings: one S3 input; a file group writing FRAME_CAPTURE JPEGs in a RAW container
/// to the frames destination; and, when `job.preview` is set, a second file group writing the
/// H.264/AAC MP4 preview.
pub fn capture_job_settings(job: &CaptureJob<'_>) -> JobSettings {
    let (numerator, denominator) = job.framerate;
    let capture = FrameCaptureSettings::builder()
        .framerate_numerator(numerator)
        .framerate_denominator(denominator)
        .max_captures(job.max_captures)
        .quality(job.quality)
        .build();
    let frames = Output::builder()
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
    let mut settings =
        JobSettings::builder().output_groups(file_group("frames", job.frames_destination, frames));
    let mut input = Input::builder().file_input(job.input_url);
    if let Some((start, end)) = job.clip {
        // Clip timecodes are read on the input's timeline, which ZEROBASED starts at
        // 00:00:00:00 whatever timecode the file carries (User Guide, "Adjusting the input
        // timeline with the input timecode source",
        // <https://docs.aws.amazon.com/mediaconvert/latest/ug/timecode-input.html>); both ends
        // are inclusive (API Reference, `InputClipping`). The clip applies to every output,
        // so the preview of a segment is that segment's part of the preview.
        input = input
            .timecode_source(InputTimecodeSource::Zerobased)
            .input_clippings(
                InputClipping::builder()
                    .set_start_timecode(start.map(str::to_string))
                    .set_end_timecode(end.map(str::to_string))
                    .build(),
            );
    }
    if let Some(preview) = &job.preview {
        settings = settings.output_groups(file_group(
            "preview",
            preview.destination,
            preview_output(preview),
        ));
        if preview.audio {
            input = input.audio_selectors(
                AUDIO_SELECTOR,
                AudioSelector::builder()
                    .default_selection(AudioDefaultSelection::Default)
                    .build(),
            );
        }
    }
    settings.inputs(input.build()).build()
}

fn file_group(name: &str, destination: &str, output: Output) -> OutputGroup {
    OutputGroup::builder()
        .name(name)
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
        .build()
}

/// The MP4 preview: H.264 with QVBR (which needs `MaxBitrate`), shrunk to fit the box without
/// enlarging ("Fit without upscaling": MediaConvert User Guide, "Configuring fit without
/// upscaling scaling",
/// <https://docs.aws.amazon.com/mediaconvert/latest/ug/video-scaling-fit-without-upscaling.html>),
/// the index first so it plays while downloading, and stereo AAC when asked.
fn preview_output(preview: &PreviewJob<'_>) -> Output {
    let h264 = H264Settings::builder()
        .rate_control_mode(H264RateControlMode::Qvbr)
        .max_bitrate(preview.max_bitrate)
        .qvbr_settings(
            H264QvbrSettings::builder()
                .qvbr_quality_level(preview.qvbr_quality)
                .build(),
        )
        .scene_change_detect(H264SceneChangeDetect::TransitionDetection)
        .build();
    let mut output = Output::builder()
        .container_settings(
            ContainerSettings::builder()
                .container(ContainerType::Mp4)
                .mp4_settings(
                    Mp4Settings::builder()
                        .moov_placement(Mp4MoovPlacement::ProgressiveDownload)
                        .build(),
                )
                .build(),
        )
        .video_description(
            VideoDescription::builder()
                .width(preview.max_width)
                .height(preview.max_height)
                .scaling_behavior(ScalingBehavior::FitNoUpscale)
                .codec_settings(
                    VideoCodecSettings::builder()
                        .codec(VideoCodec::H264)
                        .h264_settings(h264)
                        .build(),
                )
                .build(),
        )
        .extension("mp4");
    if preview.audio {
        output = output.audio_descriptions(
            AudioDescription::builder()
                .audio_source_name(AUDIO_SELECTOR)
                .codec_settings(
                    AudioCodecSettings::builder()
                        .codec(AudioCodec::Aac)
                        .aac_settings(
                            AacSettings::builder()
                                .bitrate(PREVIEW_AUDIO_BITRATE)
                                .coding_mode(AacCodingMode::CodingMode20)
                                .sample_rate(PREVIEW_AUDIO_SAMPLE_RATE)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        );
    }
    output.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture_request(video_id: &VideoId, rate: CaptureRate, audio: bool) -> CaptureRequest<'_> {
        CaptureRequest {
            video_id,
            input_url: "s3://in/a.mp4".into(),
            destination: "s3://frames/v-1/".into(),
            preview_destination: "s3://out/v-1/preview".into(),
            rate,
            attempt: 0,
            source_has_audio: audio,
            traceparent: None,
            part: None,
        }
    }

    #[test]
    fn every_job_has_a_preview_beside_the_frames() {
        let id = VideoId::from_raw("v-1");
        let rate = CaptureRate::parse("30000/1001").unwrap();
        let config = DispatcherConfig::default();
        let request = capture_request(&id, rate, false);
        let settings = capture_job_settings(&CaptureJob::new(&request, &config).unwrap());
        let groups = settings.output_groups();
        assert_eq!(groups.len(), 2);
        let preview = &groups[1];
        assert_eq!(
            preview
                .output_group_settings()
                .and_then(|s| s.file_group_settings())
                .and_then(|f| f.destination()),
            Some("s3://out/v-1/preview")
        );
        let output = &preview.outputs()[0];
        let video = output.video_description().unwrap();
        assert_eq!((video.width(), video.height()), (Some(640), Some(360)));
        let h264 = video.codec_settings().unwrap().h264_settings().unwrap();
        assert_eq!(h264.rate_control_mode(), Some(&H264RateControlMode::Qvbr));
        assert!(h264.max_bitrate().is_some());
        assert!(output.audio_descriptions().is_empty());
        assert!(settings.inputs()[0].audio_selectors().is_none());

        let request = capture_request(&id, rate, true);
        let settings = capture_job_settings(&CaptureJob::new(&request, &config).unwrap());
        let output = &settings.output_groups()[1].outputs()[0];
        assert_eq!(
            output.audio_descriptions()[0].audio_source_name(),
            Some(AUDIO_SELECTOR)
        );
        assert!(settings.inputs()[0]
            .audio_selectors()
            .is_some_and(|s| s.contains_key(AUDIO_SELECTOR)));
    }

    #[test]
    fn a_segment_is_clipped_on_a_zero_based_timeline_and_the_whole_video_is_not() {
        let id = VideoId::from_raw("v-1");
        let config = DispatcherConfig::default();
        let rate = CaptureRate::parse("25").unwrap();
        let whole = capture_request(&id, rate, false);
        let settings = capture_job_settings(&CaptureJob::new(&whole, &config).unwrap());
        assert!(settings.inputs()[0].input_clippings().is_empty());
        assert_eq!(settings.inputs()[0].timecode_source(), None);
        for (start, end) in [
            (None, Some("00:00:01:24")),
            (Some("00:00:02:00"), Some("00:00:03:24")),
            (Some("00:00:04:00"), None),
        ] {
            let mut request = capture_request(&id, rate, false);
            request.part = Some(CapturePart::Segment {
                index: 1,
                frames: 50,
                start_timecode: start.map(String::from),
                end_timecode: end.map(String::from),
            });
            let settings = capture_job_settings(&CaptureJob::new(&request, &config).unwrap());
            let input = &settings.inputs()[0];
            assert_eq!(
                input.timecode_source(),
                Some(&InputTimecodeSource::Zerobased)
            );
            let clips = input.input_clippings();
            assert_eq!(clips.len(), 1);
            assert_eq!(clips[0].start_timecode(), start);
            assert_eq!(clips[0].end_timecode(), end);
            // The preview is still there: MediaConvert refuses frame capture alone.
            assert_eq!(settings.output_groups().len(), 2);
            let capture = settings.output_groups()[0].outputs()[0]
                .video_description()
                .and_then(|v| v.codec_settings())
                .and_then(|c| c.frame_capture_settings())
                .unwrap();
            assert_eq!(capture.max_captures(), Some(51));
        }
        let mut fallback = capture_request(&id, rate, false);
        fallback.part = Some(CapturePart::Fallback);
        let settings = capture_job_settings(&CaptureJob::new(&fallback, &config).unwrap());
        assert!(settings.inputs()[0].input_clippings().is_empty());
    }

    #[test]
    fn parts_name_themselves_in_user_metadata() {
        let segment = CapturePart::Segment {
            index: 7,
            frames: 1,
            start_timecode: None,
            end_timecode: None,
        };
        assert_eq!(segment.metadata(), "0007");
        assert_eq!(CapturePart::Fallback.metadata(), FALLBACK_PART);
    }

    #[test]
    fn numbers_outside_mediaconvert_integers_are_refused_not_wrapped() {
        let id = VideoId::from_raw("v-1");
        let config = DispatcherConfig::default();
        let by_hand = CaptureRate {
            numerator: 2_147_483_648,
            denominator: 1,
        };
        let request = capture_request(&id, by_hand, false);
        let error = CaptureJob::new(&request, &config).unwrap_err();
        assert!(error.contains("2147483648/1"), "{error}");
        let config = DispatcherConfig {
            max_captures: u32::MAX,
            ..DispatcherConfig::default()
        };
        let request = capture_request(&id, CaptureRate::parse("5").unwrap(), false);
        let error = CaptureJob::new(&request, &config).unwrap_err();
        assert!(error.contains("dispatcher.max_captures"), "{error}");
    }
}
