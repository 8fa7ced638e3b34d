//! The part of the `CreateJob` request the stand-in reads, with the JSON member names
//! `aws-sdk-mediaconvert` serialises (lowerCamelCase). Every member is optional and unknown
//! members are ignored, as the service's schema allows; the rules live in [`crate::plan`].
//! `settings` is kept verbatim too, because `GetJob` must hand back exactly what was sent.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The body of `POST /2017-08-29/jobs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateJobRequest {
    /// IAM role ARN MediaConvert would assume; required, never assumed here.
    pub role: Option<String>,
    /// The job settings, verbatim.
    pub settings: Option<Value>,
    /// Key/value pairs echoed in every event.
    pub user_metadata: Option<BTreeMap<String, String>>,
    /// Idempotency token: a repeat within the window returns the first job.
    pub client_request_token: Option<String>,
    /// `SECONDS_10` … `SECONDS_600`: how often STATUS_UPDATE events are sent.
    pub status_update_interval: Option<String>,
    /// Queue name or ARN; the default queue when absent.
    pub queue: Option<String>,
    /// -50..=50.
    pub priority: Option<i64>,
    /// Job templates are not supported by the stand-in.
    pub job_template: Option<String>,
    /// Queue hopping is not supported by the stand-in.
    pub hop_destinations: Option<Vec<Value>>,
    /// Accepted and ignored.
    pub tags: Option<BTreeMap<String, String>>,
}

/// `settings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSettings {
    /// The inputs; the stand-in handles exactly one.
    pub inputs: Option<Vec<Input>>,
    /// The output groups.
    pub output_groups: Option<Vec<OutputGroup>>,
}

/// `settings.inputs[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// `s3://bucket/key` of the source video.
    pub file_input: Option<String>,
    /// The parts of the input to transcode, in every output: `startTimecode`/`endTimecode`,
    /// both frames included.
    pub input_clippings: Option<Vec<InputClipping>>,
    /// `EMBEDDED` (the default), `ZEROBASED` or `SPECIFIEDSTART`: how the input's frames are
    /// labelled, which is what clip timecodes are read against.
    pub timecode_source: Option<String>,
    /// The first frame's timecode under `SPECIFIEDSTART`.
    pub timecode_start: Option<String>,
    /// Only `rotate` is read.
    pub video_selector: Option<VideoSelector>,
    /// Named audio selectors; an output's `audioSourceName` picks one.
    pub audio_selectors: Option<BTreeMap<String, AudioSelector>>,
}

/// `settings.inputs[].inputClippings[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputClipping {
    /// First frame of the clip (included), `HH:MM:SS:FF` or `HH:MM:SS;FF`.
    pub start_timecode: Option<String>,
    /// Last frame of the clip (included).
    pub end_timecode: Option<String>,
}

/// `settings.inputs[].audioSelectors.<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioSelector {
    /// `DEFAULT`: used by outputs whose selector is missing; `NOT_DEFAULT` (the default).
    pub default_selection: Option<String>,
}

/// `settings.inputs[].videoSelector`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoSelector {
    /// `DEGREE_0` (default: ignore rotation metadata) or `AUTO` (apply it).
    pub rotate: Option<String>,
}

/// `settings.outputGroups[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputGroup {
    /// Free-form name.
    pub name: Option<String>,
    /// Type and destination.
    pub output_group_settings: Option<OutputGroupSettings>,
    /// The outputs.
    pub outputs: Option<Vec<Output>>,
}

/// `settings.outputGroups[].outputGroupSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputGroupSettings {
    /// `FILE_GROUP_SETTINGS` is the only type the stand-in runs.
    #[serde(rename = "type")]
    pub group_type: Option<String>,
    /// Destination of a file group.
    pub file_group_settings: Option<FileGroupSettings>,
}

/// `…outputGroupSettings.fileGroupSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileGroupSettings {
    /// `s3://bucket/prefix/` or `s3://bucket/prefix/base`.
    pub destination: Option<String>,
}

/// `settings.outputGroups[].outputs[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Appended to the base name.
    pub name_modifier: Option<String>,
    /// File extension; `jpg` for frame capture and `mp4` for MP4 when absent.
    pub extension: Option<String>,
    /// `RAW` for frame capture, `MP4` for video.
    pub container_settings: Option<ContainerSettings>,
    /// Codec and size.
    pub video_description: Option<VideoDescription>,
    /// Audio tracks of a video output; frame capture outputs carry none.
    pub audio_descriptions: Option<Vec<AudioDescription>>,
    /// Frame capture outputs carry no captions.
    pub caption_descriptions: Option<Vec<Value>>,
    /// Presets are not supported by the stand-in.
    pub preset: Option<String>,
}

/// `…outputs[].containerSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSettings {
    /// `RAW` for frame capture, `MP4` for video.
    pub container: Option<String>,
}

/// `…outputs[].audioDescriptions[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioDescription {
    /// The input audio selector to encode; `Audio Selector 1` when absent.
    pub audio_source_name: Option<String>,
    /// The codec.
    pub codec_settings: Option<AudioCodecSettings>,
}

/// `…audioDescriptions[].codecSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioCodecSettings {
    /// `AAC` is the only codec the stand-in encodes.
    pub codec: Option<String>,
    /// Required with `AAC`.
    pub aac_settings: Option<AacSettings>,
}

/// `…codecSettings.aacSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AacSettings {
    /// Bits per second (6000..=1024000).
    pub bitrate: Option<i64>,
    /// `CODING_MODE_1_0`, `CODING_MODE_2_0`, …: the channel layout.
    pub coding_mode: Option<String>,
    /// Hz (8000..=96000).
    pub sample_rate: Option<i64>,
}

/// `…outputs[].videoDescription`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoDescription {
    /// Output width in pixels (32..=8192); the input's when absent.
    pub width: Option<i64>,
    /// Output height in pixels (32..=8192); the input's when absent.
    pub height: Option<i64>,
    /// How the input is fitted to `width` × `height`; `DEFAULT` (fit with padding) when absent.
    pub scaling_behavior: Option<String>,
    /// The codec.
    pub codec_settings: Option<VideoCodecSettings>,
}

/// `…videoDescription.codecSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoCodecSettings {
    /// `FRAME_CAPTURE` (in RAW) or `H_264` (in MP4).
    pub codec: Option<String>,
    /// Required with `FRAME_CAPTURE`.
    pub frame_capture_settings: Option<FrameCaptureSettings>,
    /// Required with `H_264`.
    pub h264_settings: Option<H264Settings>,
}

/// `…codecSettings.h264Settings`: the rate control the stand-in reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct H264Settings {
    /// `QVBR`, `VBR` or `CBR`.
    pub rate_control_mode: Option<String>,
    /// Peak bits per second (1000..=1152000000); required with QVBR.
    pub max_bitrate: Option<i64>,
    /// Average bits per second (1000..=1152000000); required with VBR and CBR.
    pub bitrate: Option<i64>,
    /// QVBR quality.
    pub qvbr_settings: Option<H264QvbrSettings>,
}

/// `…h264Settings.qvbrSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct H264QvbrSettings {
    /// 1..=10; MediaConvert picks one when absent.
    pub qvbr_quality_level: Option<i64>,
}

/// `…codecSettings.frameCaptureSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameCaptureSettings {
    /// Captures per `framerateDenominator` seconds.
    pub framerate_numerator: Option<i64>,
    /// Seconds per `framerateNumerator` captures.
    pub framerate_denominator: Option<i64>,
    /// Most captures written (1..=10,000,000).
    pub max_captures: Option<i64>,
    /// JPEG quality (1..=100).
    pub quality: Option<i64>,
}
