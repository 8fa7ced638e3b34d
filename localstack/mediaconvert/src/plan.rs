//! `CreateJob` validation: turns a request into the [`JobPlan`] the runner executes, or into the
//! `BadRequestException` message MediaConvert would answer with. Messages follow the service's
//! `<json path>: <problem>` style; where MediaConvert would accept a setting the stand-in cannot
//! honour, the message says so instead of silently producing different output.

use std::time::Duration;

use serde_json::Value;

use crate::naming::OutputNaming;
use crate::request::{
    AudioDescription, CreateJobRequest, JobSettings, Output, VideoCodecSettings, VideoDescription,
};
use crate::timecode::{Timecode, TimecodeSource, CLIP_PATTERN, START_PATTERN};

/// Most captures MediaConvert allows per output.
pub const MAX_CAPTURES: i64 = 10_000_000;
/// Quality MediaConvert uses when `quality` is absent.
pub const DEFAULT_QUALITY: u8 = 80;
/// Status update interval when the request names none.
pub const DEFAULT_STATUS_UPDATE: Duration = Duration::from_secs(60);
const STATUS_UPDATE_SECONDS: [u64; 15] = [
    10, 12, 15, 20, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600,
];

/// A request MediaConvert would refuse with 400 `BadRequestException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn bad(path: &str, problem: impl std::fmt::Display) -> BadRequest {
    BadRequest(format!("{path}: {problem}"))
}

/// What a valid job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlan {
    /// The one input.
    pub input: InputPlan,
    /// File output groups, each with its frame-capture and MP4 outputs.
    pub groups: Vec<GroupPlan>,
    /// How often STATUS_UPDATE events are sent while the job runs.
    pub status_update_interval: Duration,
}

/// The source video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPlan {
    /// `s3://bucket/key` as given.
    pub url: String,
    /// Its bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// Apply rotation metadata (`videoSelector.rotate = AUTO`); MediaConvert ignores it by
    /// default.
    pub auto_rotate: bool,
    /// Declared audio selectors, and whether each is the `DEFAULT` fallback.
    pub audio_selectors: std::collections::BTreeMap<String, bool>,
    /// The one input clip, applied to every output; `None` transcodes the whole input.
    pub clip: Option<ClipPlan>,
    /// How the input's frames are labelled, which the clip's timecodes are read against.
    pub timecode_source: TimecodeSource,
}

/// An input clip: frames `start..=end` on the input's timeline; a missing side runs to the
/// input's first or last frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipPlan {
    /// First frame included.
    pub start: Option<Timecode>,
    /// Last frame included.
    pub end: Option<Timecode>,
}

/// One file output group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// Its outputs, in request order.
    pub outputs: Vec<OutputPlan>,
}

/// One output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    /// Where it is written.
    pub naming: OutputNaming,
    /// What is written.
    pub kind: OutputKind,
}

/// What an output writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// Numbered JPEGs (RAW container, FRAME_CAPTURE codec).
    FrameCapture(CaptureSpec),
    /// One MP4 file (MP4 container, H_264 codec, optional AAC).
    Video(VideoSpec),
}

impl OutputPlan {
    /// The frame-capture settings, when this is a frame-capture output.
    pub fn capture(&self) -> Option<&CaptureSpec> {
        match &self.kind {
            OutputKind::FrameCapture(spec) => Some(spec),
            OutputKind::Video(_) => None,
        }
    }
}

/// An MP4 output, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSpec {
    /// Output width; the input's when absent.
    pub width: Option<u32>,
    /// Output height; the input's when absent.
    pub height: Option<u32>,
    /// How the input is fitted to `width` × `height`.
    pub scaling: Scaling,
    /// H.264 rate control.
    pub rate_control: RateControl,
    /// The audio track, if the output has one.
    pub audio: Option<AudioSpec>,
}

/// `ScalingBehavior` values the stand-in implements (MediaConvert User Guide, "Video scaling
/// behavior and aspect ratios", <https://docs.aws.amazon.com/mediaconvert/latest/ug/video-scaling.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// `DEFAULT`: fit inside, then pad to the output size.
    FitWithPadding,
    /// `STRETCH_TO_OUTPUT`: exactly the output size, aspect ignored.
    Stretch,
    /// `FIT`: scale up or down to fit inside, no padding; the output takes the fitted size.
    Fit,
    /// `FIT_NO_UPSCALE`: like `FIT`, but never enlarged.
    FitNoUpscale,
}

/// H.264 rate control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateControl {
    /// Quality-defined VBR: a quality level 1..=10 under a peak bitrate.
    Qvbr {
        /// Peak bits per second.
        max_bitrate: u32,
        /// 1..=10.
        quality: u8,
    },
    /// Average bitrate, with an optional peak (VBR) or constant (CBR).
    Bitrate {
        /// Average bits per second.
        bitrate: u32,
        /// Peak bits per second.
        max_bitrate: Option<u32>,
    },
}

/// An AAC track of a video output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpec {
    /// Bits per second.
    pub bitrate: u32,
    /// Hz.
    pub sample_rate: u32,
    /// Channels; the input's when `None` (`CODING_MODE_AUTO`).
    pub channels: Option<u8>,
    /// Where the sound comes from.
    pub source: AudioSource,
}

/// Where an output's audio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioSource {
    /// An audio selector of the input: its first audio track, if it has one.
    Input,
    /// No selector of that name and none marked DEFAULT: MediaConvert inserts silence.
    Silence,
}

/// QVBR quality when the request leaves it to MediaConvert (`AUTO`).
pub const AUTO_QVBR_QUALITY: u8 = 7;
/// The selector an audio description reads when it names none.
pub const DEFAULT_AUDIO_SOURCE: &str = "Audio Selector 1";
/// MediaConvert's H.264 `Bitrate` and `MaxBitrate` range.
const H264_BITRATE: (i64, i64) = (1000, 1_152_000_000);

/// `FrameCaptureSettings` plus the output size, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureSpec {
    /// Captures per `denominator` seconds.
    pub numerator: u32,
    /// Seconds per `numerator` captures.
    pub denominator: u32,
    /// Most captures written.
    pub max_captures: u32,
    /// JPEG quality 1..=100.
    pub quality: u8,
    /// Output width; the input's when absent.
    pub width: Option<u32>,
    /// Output height; the input's when absent.
    pub height: Option<u32>,
}

/// Validates `request` the way MediaConvert does, for the frame-capture and MP4 subset the
/// stand-in runs.
pub fn plan_job(request: &CreateJobRequest) -> Result<JobPlan, BadRequest> {
    match request.role.as_deref() {
        None => return Err(bad("/role", "Required property is missing")),
        Some(role) if role.trim().is_empty() => {
            return Err(bad("/role", "Should not be empty"));
        }
        Some(_) => {}
    }
    if let Some(priority) = request.priority {
        if !(-50..=50).contains(&priority) {
            return Err(bad("/priority", "Should be between -50 and 50"));
        }
    }
    if request.job_template.is_some() {
        return Err(unsupported(
            "/jobTemplate",
            "job templates; send the full settings",
        ));
    }
    if request
        .hop_destinations
        .as_ref()
        .is_some_and(|h| !h.is_empty())
    {
        return Err(unsupported("/hopDestinations", "queue hopping"));
    }
    let status_update_interval = match request.status_update_interval.as_deref() {
        None => DEFAULT_STATUS_UPDATE,
        Some(text) => parse_status_update_interval(text).ok_or_else(|| {
            bad(
                "/statusUpdateInterval",
                format!("`{text}` should be one of SECONDS_10, SECONDS_12, … SECONDS_600"),
            )
        })?,
    };
    let settings = request
        .settings
        .as_ref()
        .ok_or_else(|| bad("/settings", "Required property is missing"))?;
    let settings = parse_settings(settings)?;
    let input = plan_input(&settings)?;
    let groups = plan_groups(&settings, &input)?;
    // "You can create frame capture outputs only in jobs that also have a regular audio and
    // video output. MediaConvert doesn't support jobs that consist only of a frame capture
    // output." (MediaConvert User Guide, "File group with a frame capture output",
    // https://docs.aws.amazon.com/mediaconvert/latest/ug/file-group-with-frame-capture-output.html)
    let has_video = groups
        .iter()
        .flat_map(|g| &g.outputs)
        .any(|o| matches!(o.kind, OutputKind::Video(_)));
    if !has_video {
        return Err(bad(
            "/settings/outputGroups",
            "Frame capture outputs can only be created in jobs that also have a regular video output; MediaConvert doesn't support jobs that consist only of frame capture outputs",
        ));
    }
    Ok(JobPlan {
        input,
        groups,
        status_update_interval,
    })
}

/// `SECONDS_60` → 60 s, for the intervals MediaConvert offers.
pub fn parse_status_update_interval(text: &str) -> Option<Duration> {
    let seconds: u64 = text.strip_prefix("SECONDS_")?.parse().ok()?;
    STATUS_UPDATE_SECONDS
        .contains(&seconds)
        .then(|| Duration::from_secs(seconds))
}

fn unsupported(path: &str, what: &str) -> BadRequest {
    bad(
        path,
        format!("the MediaConvert stand-in does not support {what}"),
    )
}

fn parse_settings(settings: &Value) -> Result<JobSettings, BadRequest> {
    if !settings.is_object() {
        return Err(bad("/settings", "Should be an object"));
    }
    serde_json::from_value(settings.clone()).map_err(|e| bad("/settings", e))
}

fn plan_input(settings: &JobSettings) -> Result<InputPlan, BadRequest> {
    let inputs = settings.inputs.as_deref().unwrap_or_default();
    let input = match inputs {
        [] => return Err(bad("/settings/inputs", "Should have at least 1 items")),
        [input] => input,
        _ => {
            return Err(unsupported(
                "/settings/inputs",
                "more than one input (stitching)",
            ))
        }
    };
    let url = input.file_input.as_deref().ok_or_else(|| {
        bad(
            "/settings/inputs/0/fileInput",
            "Required property is missing",
        )
    })?;
    // FileInput is a string of at most 2048 characters (API model `__stringMax2048PatternS3Https`).
    if url.chars().count() > 2048 {
        return Err(bad(
            "/settings/inputs/0/fileInput",
            "Should be at most 2048 characters long",
        ));
    }
    let (bucket, key) = framefleet_core::frames::parse_s3_url(url)
        .filter(|(_, key)| !key.is_empty() && !key.ends_with('/'))
        .ok_or_else(|| {
            bad(
                "/settings/inputs/0/fileInput",
                format!(
                    "`{url}` should be an s3://bucket/key URL (the stand-in reads S3 inputs only)"
                ),
            )
        })?;
    let clip = plan_clip(input.input_clippings.as_deref().unwrap_or_default())?;
    let timecode_source = plan_timecode_source(input)?;
    let rotate = input
        .video_selector
        .as_ref()
        .and_then(|s| s.rotate.as_deref())
        .unwrap_or("DEGREE_0");
    let auto_rotate = match rotate {
        "DEGREE_0" => false,
        "AUTO" => true,
        "DEGREES_90" | "DEGREES_180" | "DEGREES_270" => {
            return Err(unsupported(
                "/settings/inputs/0/videoSelector/rotate",
                "fixed rotation; use DEGREE_0 or AUTO",
            ))
        }
        other => {
            return Err(bad(
                "/settings/inputs/0/videoSelector/rotate",
                format!(
                "`{other}` should be one of DEGREE_0, DEGREES_90, DEGREES_180, DEGREES_270, AUTO"
            ),
            ))
        }
    };
    Ok(InputPlan {
        url: url.to_string(),
        bucket: bucket.to_string(),
        key: key.to_string(),
        auto_rotate,
        audio_selectors: input
            .audio_selectors
            .iter()
            .flatten()
            .map(|(name, selector)| {
                (
                    name.clone(),
                    selector.default_selection.as_deref() == Some("DEFAULT"),
                )
            })
            .collect(),
        clip,
        timecode_source,
    })
}
/// The input clip, checked as far as CreateJob can without the input: each timecode against
/// the API model's pattern, not both blank ("Start timecode or End timecode may be left blank,
/// but not both", API Reference, `InputClipping`), and the end not before the start. Whether
/// MediaConvert answers the last two with a 400 or a job error is **unverified**; a 400 is
/// the stricter choice.
fn plan_clip(clips: &[crate::request::InputClipping]) -> Result<Option<ClipPlan>, BadRequest> {
    let clip = match clips {
        [] => return Ok(None),
        [clip] => clip,
        _ => {
            return Err(unsupported(
                "/settings/inputs/0/inputClippings",
                "more than one input clip",
            ))
        }
    };
    let path = "/settings/inputs/0/inputClippings/0";
    let parse = |field: &str, text: &Option<String>| -> Result<Option<Timecode>, BadRequest> {
        text.as_deref()
            .map(|text| {
                Timecode::parse_clip(text).ok_or_else(|| {
                    bad(
                        &format!("{path}/{field}"),
                        format!("`{text}` should match the pattern {CLIP_PATTERN}"),
                    )
                })
            })
            .transpose()
    };
    let start = parse("startTimecode", &clip.start_timecode)?;
    let end = parse("endTimecode", &clip.end_timecode)?;
    match (start, end) {
        (None, None) => Err(bad(
            path,
            "Start timecode or End timecode may be left blank, but not both",
        )),
        (Some(start), Some(end)) if end.sort_key() < start.sort_key() => Err(bad(
            path,
            format!("the end timecode {end} is before the start timecode {start}"),
        )),
        _ => Ok(Some(ClipPlan { start, end })),
    }
}

/// `timecodeSource` (EMBEDDED when absent) and, for SPECIFIEDSTART, `timecodeStart`.
fn plan_timecode_source(input: &crate::request::Input) -> Result<TimecodeSource, BadRequest> {
    let start = input
        .timecode_start
        .as_deref()
        .map(|text| {
            Timecode::parse_start(text).ok_or_else(|| {
                bad(
                    "/settings/inputs/0/timecodeStart",
                    format!("`{text}` should match the pattern {START_PATTERN}"),
                )
            })
        })
        .transpose()?;
    match input.timecode_source.as_deref().unwrap_or("EMBEDDED") {
        "EMBEDDED" => Ok(TimecodeSource::Embedded),
        "ZEROBASED" => Ok(TimecodeSource::ZeroBased),
        // Without timecodeStart MediaConvert's behaviour is **unverified**; refusing it is the
        // strict reading of "the timecode that you specify".
        "SPECIFIEDSTART" => start.map(TimecodeSource::Specified).ok_or_else(|| {
            bad(
                "/settings/inputs/0/timecodeStart",
                "Required when timecodeSource is SPECIFIEDSTART",
            )
        }),
        other => Err(bad(
            "/settings/inputs/0/timecodeSource",
            format!("`{other}` should be one of EMBEDDED, ZEROBASED, SPECIFIEDSTART"),
        )),
    }
}

fn plan_groups(settings: &JobSettings, input: &InputPlan) -> Result<Vec<GroupPlan>, BadRequest> {
    let groups = settings.output_groups.as_deref().unwrap_or_default();
    if groups.is_empty() {
        return Err(bad(
            "/settings/outputGroups",
            "Should have at least 1 items",
        ));
    }
    let mut planned = Vec::with_capacity(groups.len());
    let mut seen_keys = std::collections::HashSet::new();
    for (g, group) in groups.iter().enumerate() {
        let path = format!("/settings/outputGroups/{g}");
        let group_settings = group.output_group_settings.as_ref().ok_or_else(|| {
            bad(
                &format!("{path}/outputGroupSettings"),
                "Required property is missing",
            )
        })?;
        match group_settings.group_type.as_deref() {
            Some("FILE_GROUP_SETTINGS") => {}
            None => {
                return Err(bad(
                    &format!("{path}/outputGroupSettings/type"),
                    "Required property is missing",
                ))
            }
            Some(
                other @ ("HLS_GROUP_SETTINGS"
                | "DASH_ISO_GROUP_SETTINGS"
                | "CMAF_GROUP_SETTINGS"
                | "MS_SMOOTH_GROUP_SETTINGS"),
            ) => {
                return Err(unsupported(
                    &format!("{path}/outputGroupSettings/type"),
                    &format!("{other}; it runs FILE_GROUP_SETTINGS only"),
                ))
            }
            Some(other) => {
                return Err(bad(
                    &format!("{path}/outputGroupSettings/type"),
                    format!("`{other}` should be one of HLS_GROUP_SETTINGS, DASH_ISO_GROUP_SETTINGS, FILE_GROUP_SETTINGS, MS_SMOOTH_GROUP_SETTINGS, CMAF_GROUP_SETTINGS"),
                ))
            }
        }
        let destination_path = format!("{path}/outputGroupSettings/fileGroupSettings/destination");
        let destination = group_settings
            .file_group_settings
            .as_ref()
            .and_then(|f| f.destination.as_deref())
            .ok_or_else(|| bad(&destination_path, "Required property is missing"))?;
        if destination.contains('$') {
            return Err(unsupported(&destination_path, "format identifiers ($…$)"));
        }
        let outputs = group.outputs.as_deref().unwrap_or_default();
        if outputs.is_empty() {
            return Err(bad(
                &format!("{path}/outputs"),
                "Should have at least 1 items",
            ));
        }
        let mut planned_outputs = Vec::with_capacity(outputs.len());
        for (o, output) in outputs.iter().enumerate() {
            let path = format!("{path}/outputs/{o}");
            // NameModifier is a string of 1..=256 characters, and "When you create multiple
            // outputs in the same output group, Name modifier is required." (MediaConvert API
            // Reference, "Jobs", Output, https://docs.aws.amazon.com/mediaconvert/latest/apireference/jobs.html)
            match output.name_modifier.as_deref() {
                Some("") => {
                    return Err(bad(
                        &format!("{path}/nameModifier"),
                        "Should be at least 1 characters long",
                    ))
                }
                Some(name) if name.chars().count() > 256 => {
                    return Err(bad(
                        &format!("{path}/nameModifier"),
                        "Should be at most 256 characters long",
                    ))
                }
                None if outputs.len() > 1 => {
                    return Err(bad(
                        &format!("{path}/nameModifier"),
                        "Name modifier is required when an output group has more than one output",
                    ))
                }
                _ => {}
            }
            let (kind, default_extension) = plan_output(output, &path, input)?;
            let naming = OutputNaming::new(
                destination,
                &input.url,
                output.name_modifier.as_deref(),
                Some(output.extension.as_deref().unwrap_or(default_extension)),
            )
            .filter(|n| !n.bucket.is_empty())
            .ok_or_else(|| {
                bad(
                    &destination_path,
                    format!("`{destination}` should be an s3://bucket/prefix/ URL"),
                )
            })?;
            let (key, url) = match kind {
                OutputKind::FrameCapture(_) => (naming.key(0), naming.url(0)),
                OutputKind::Video(_) => (naming.file_key(), naming.file_url()),
            };
            if !seen_keys.insert(key) {
                return Err(bad(
                    &path,
                    format!(
                        "writes the same files as another output (`{url}`); give each output its own name modifier"
                    ),
                ));
            }
            planned_outputs.push(OutputPlan { naming, kind });
        }
        planned.push(GroupPlan {
            outputs: planned_outputs,
        });
    }
    Ok(planned)
}

/// Validates one output; returns what it writes and its default file extension.
fn plan_output(
    output: &Output,
    path: &str,
    input: &InputPlan,
) -> Result<(OutputKind, &'static str), BadRequest> {
    if output.preset.is_some() {
        return Err(unsupported(&format!("{path}/preset"), "presets"));
    }
    if let Some(name_modifier) = &output.name_modifier {
        if name_modifier.contains('$') || name_modifier.contains('/') {
            return Err(unsupported(
                &format!("{path}/nameModifier"),
                "format identifiers or `/` in name modifiers",
            ));
        }
    }
    if let Some(extension) = &output.extension {
        if extension.is_empty()
            || extension.len() > 256
            || !extension.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(bad(
                &format!("{path}/extension"),
                format!("`{extension}` should be 1 to 256 letters and digits"),
            ));
        }
    }
    let container = output
        .container_settings
        .as_ref()
        .and_then(|c| c.container.as_deref());
    let container_path = format!("{path}/containerSettings/container");
    let Some(container) = container else {
        return Err(bad(
            &container_path,
            "Required property is missing (RAW for frame capture, MP4 for video)",
        ));
    };
    let video = output.video_description.as_ref().ok_or_else(|| {
        bad(
            &format!("{path}/videoDescription"),
            "Required property is missing",
        )
    })?;
    let codec_path = format!("{path}/videoDescription/codecSettings");
    let codec = video
        .codec_settings
        .as_ref()
        .ok_or_else(|| bad(&codec_path, "Required property is missing"))?;
    let codec_name = codec.codec.as_deref().ok_or_else(|| {
        bad(
            &format!("{codec_path}/codec"),
            "Required property is missing",
        )
    })?;
    match (container, codec_name) {
        ("RAW", "FRAME_CAPTURE") => {
            plan_frame_capture(output, video, codec, path).map(|c| (OutputKind::FrameCapture(c), "jpg"))
        }
        (other, "FRAME_CAPTURE") => Err(unsupported(
            &container_path,
            &format!("container {other} with FRAME_CAPTURE; frame capture outputs need RAW"),
        )),
        ("MP4", "H_264") => plan_video(output, video, codec, path, input).map(|v| (OutputKind::Video(v), "mp4")),
        ("RAW" | "MP4", other) => Err(unsupported(
            &format!("{codec_path}/codec"),
            &format!("codec {other} in a {container} container; it implements FRAME_CAPTURE in RAW and H_264 in MP4"),
        )),
        (other, _) => Err(unsupported(
            &container_path,
            &format!("container {other}; it implements RAW (frame capture) and MP4"),
        )),
    }
}

fn plan_frame_capture(
    output: &Output,
    video: &VideoDescription,
    codec: &VideoCodecSettings,
    path: &str,
) -> Result<CaptureSpec, BadRequest> {
    let codec_path = format!("{path}/videoDescription/codecSettings");
    if output
        .audio_descriptions
        .as_ref()
        .is_some_and(|a| !a.is_empty())
    {
        return Err(bad(
            &format!("{path}/audioDescriptions"),
            "Frame capture outputs cannot contain audio",
        ));
    }
    if output
        .caption_descriptions
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err(bad(
            &format!("{path}/captionDescriptions"),
            "Frame capture outputs cannot contain captions",
        ));
    }
    let fcs_path = format!("{codec_path}/frameCaptureSettings");
    let fcs = codec
        .frame_capture_settings
        .as_ref()
        .ok_or_else(|| bad(&fcs_path, "Required when codec is FRAME_CAPTURE"))?;
    let numerator = required_in_range(
        fcs.framerate_numerator,
        &format!("{fcs_path}/framerateNumerator"),
        1,
        i64::from(i32::MAX),
    )?;
    let denominator = required_in_range(
        fcs.framerate_denominator,
        &format!("{fcs_path}/framerateDenominator"),
        1,
        i64::from(i32::MAX),
    )?;
    let max_captures = optional_in_range(
        fcs.max_captures,
        &format!("{fcs_path}/maxCaptures"),
        1,
        MAX_CAPTURES,
    )?
    .unwrap_or(MAX_CAPTURES as u32);
    let quality = optional_in_range(fcs.quality, &format!("{fcs_path}/quality"), 1, 100)?
        .map_or(DEFAULT_QUALITY, |q| q as u8);
    let (width, height) = output_size(video, path)?;
    Ok(CaptureSpec {
        numerator,
        denominator,
        max_captures,
        quality,
        width,
        height,
    })
}

/// `videoDescription.width` and `height`: 32..=8192 each.
fn output_size(
    video: &VideoDescription,
    path: &str,
) -> Result<(Option<u32>, Option<u32>), BadRequest> {
    let width = optional_in_range(
        video.width,
        &format!("{path}/videoDescription/width"),
        32,
        8192,
    )?;
    let height = optional_in_range(
        video.height,
        &format!("{path}/videoDescription/height"),
        32,
        8192,
    )?;
    Ok((width, height))
}

fn plan_video(
    output: &Output,
    video: &VideoDescription,
    codec: &VideoCodecSettings,
    path: &str,
    input: &InputPlan,
) -> Result<VideoSpec, BadRequest> {
    if output
        .caption_descriptions
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err(unsupported(
            &format!("{path}/captionDescriptions"),
            "captions",
        ));
    }
    let (width, height) = output_size(video, path)?;
    let scaling_path = format!("{path}/videoDescription/scalingBehavior");
    let scaling = match video.scaling_behavior.as_deref() {
        None | Some("DEFAULT") => Scaling::FitWithPadding,
        Some("STRETCH_TO_OUTPUT") => Scaling::Stretch,
        Some("FIT") => Scaling::Fit,
        Some("FIT_NO_UPSCALE") => Scaling::FitNoUpscale,
        Some(other @ ("FILL" | "SMART_CROP")) => {
            return Err(unsupported(&scaling_path, &format!("scaling behavior {other}")))
        }
        Some(other) => {
            return Err(bad(
                &scaling_path,
                format!("`{other}` should be one of DEFAULT, STRETCH_TO_OUTPUT, FIT, FIT_NO_UPSCALE, FILL, SMART_CROP"),
            ))
        }
    };
    let h264_path = format!("{path}/videoDescription/codecSettings/h264Settings");
    let h264 = codec
        .h264_settings
        .as_ref()
        .ok_or_else(|| bad(&h264_path, "Required when codec is H_264"))?;
    let (min, max) = H264_BITRATE;
    let max_bitrate = optional_in_range(
        h264.max_bitrate,
        &format!("{h264_path}/maxBitrate"),
        min,
        max,
    )?;
    let bitrate = optional_in_range(h264.bitrate, &format!("{h264_path}/bitrate"), min, max)?;
    let rate_control = match h264.rate_control_mode.as_deref() {
        Some("QVBR") => {
            // "MaxBitrate: [...] Required when Rate control mode is QVBR." (API Reference, Jobs)
            let max_bitrate = max_bitrate.ok_or_else(|| {
                bad(
                    &format!("{h264_path}/maxBitrate"),
                    "Required when rateControlMode is QVBR",
                )
            })?;
            let quality = optional_in_range(
                h264.qvbr_settings
                    .as_ref()
                    .and_then(|q| q.qvbr_quality_level),
                &format!("{h264_path}/qvbrSettings/qvbrQualityLevel"),
                1,
                10,
            )?
            .map_or(AUTO_QVBR_QUALITY, |q| q as u8);
            RateControl::Qvbr {
                max_bitrate,
                quality,
            }
        }
        Some("VBR" | "CBR") => RateControl::Bitrate {
            // "Bitrate: [...] Required for VBR and CBR." (API Reference, Jobs)
            bitrate: bitrate.ok_or_else(|| {
                bad(
                    &format!("{h264_path}/bitrate"),
                    "Required when rateControlMode is VBR or CBR",
                )
            })?,
            max_bitrate,
        },
        None => {
            return Err(unsupported(
                &format!("{h264_path}/rateControlMode"),
                "a default rate control; set QVBR, VBR or CBR",
            ))
        }
        Some(other) => {
            return Err(bad(
                &format!("{h264_path}/rateControlMode"),
                format!("`{other}` should be one of VBR, CBR, QVBR"),
            ))
        }
    };
    let audio = match output.audio_descriptions.as_deref().unwrap_or_default() {
        [] => None,
        [description] => Some(plan_audio(
            description,
            &format!("{path}/audioDescriptions/0"),
            input,
        )?),
        _ => {
            return Err(unsupported(
                &format!("{path}/audioDescriptions"),
                "more than one audio track per output",
            ))
        }
    };
    Ok(VideoSpec {
        width,
        height,
        scaling,
        rate_control,
        audio,
    })
}

fn plan_audio(
    description: &AudioDescription,
    path: &str,
    input: &InputPlan,
) -> Result<AudioSpec, BadRequest> {
    let codec_path = format!("{path}/codecSettings");
    let codec = description
        .codec_settings
        .as_ref()
        .ok_or_else(|| bad(&codec_path, "Required property is missing"))?;
    match codec.codec.as_deref() {
        Some("AAC") => {}
        None => {
            return Err(bad(
                &format!("{codec_path}/codec"),
                "Required property is missing",
            ))
        }
        Some(other) => {
            return Err(unsupported(
                &format!("{codec_path}/codec"),
                &format!("audio codec {other}; only AAC is implemented"),
            ))
        }
    }
    let aac_path = format!("{codec_path}/aacSettings");
    let aac = codec
        .aac_settings
        .as_ref()
        .ok_or_else(|| bad(&aac_path, "Required when codec is AAC"))?;
    let bitrate = optional_in_range(aac.bitrate, &format!("{aac_path}/bitrate"), 6000, 1_024_000)?
        .unwrap_or(96_000);
    let sample_rate = optional_in_range(
        aac.sample_rate,
        &format!("{aac_path}/sampleRate"),
        8000,
        96_000,
    )?
    .unwrap_or(48_000);
    let coding_path = format!("{aac_path}/codingMode");
    let channels = match aac.coding_mode.as_deref() {
        None | Some("CODING_MODE_2_0") => Some(2),
        Some("CODING_MODE_1_0") => Some(1),
        Some("CODING_MODE_5_1") => Some(6),
        Some("CODING_MODE_AUTO") => None,
        Some(other @ ("AD_RECEIVER_MIX" | "CODING_MODE_1_1")) => {
            return Err(unsupported(&coding_path, &format!("coding mode {other}")))
        }
        Some(other) => {
            return Err(bad(
                &coding_path,
                format!("`{other}` should be one of AD_RECEIVER_MIX, CODING_MODE_1_0, CODING_MODE_1_1, CODING_MODE_2_0, CODING_MODE_5_1, CODING_MODE_AUTO"),
            ))
        }
    };
    // "If an input does not have [the named selector], then the audio selector marked as
    // "default" in that input will be used. If there is no audio selector marked as "default",
    // silence will be inserted [...]. If no audio_source_name is specified, then "Audio
    // Selector 1" will be chosen automatically." (API Reference, Jobs, AudioDescription)
    let name = description
        .audio_source_name
        .as_deref()
        .unwrap_or(DEFAULT_AUDIO_SOURCE);
    let source = if input.audio_selectors.contains_key(name)
        || input.audio_selectors.values().any(|is_default| *is_default)
    {
        AudioSource::Input
    } else {
        AudioSource::Silence
    };
    Ok(AudioSpec {
        bitrate,
        sample_rate,
        channels,
        source,
    })
}

fn required_in_range(
    value: Option<i64>,
    path: &str,
    min: i64,
    max: i64,
) -> Result<u32, BadRequest> {
    optional_in_range(value, path, min, max)?
        .ok_or_else(|| bad(path, "Required property is missing"))
}

fn optional_in_range(
    value: Option<i64>,
    path: &str,
    min: i64,
    max: i64,
) -> Result<Option<u32>, BadRequest> {
    match value {
        None => Ok(None),
        Some(v) if v < min => Err(bad(
            path,
            format!("Should be greater than or equal to {min}"),
        )),
        Some(v) if v > max => Err(bad(path, format!("Should be less than or equal to {max}"))),
        Some(v) => Ok(Some(v as u32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The request the dispatcher sends, as `aws-sdk-mediaconvert` serialises it.
    fn frame_capture_request() -> Value {
        json!({
            "role": "arn:aws:iam::000000000000:role/framefleet-mediaconvert",
            "clientRequestToken": "tok-1",
            "userMetadata": {"videoId": "vid-1"},
            "settings": {
                "inputs": [{"fileInput": "s3://in/dir/my clip.mp4", "timecodeSource": "ZEROBASED"}],
                "outputGroups": [{
                    "name": "File Group",
                    "outputGroupSettings": {
                        "type": "FILE_GROUP_SETTINGS",
                        "fileGroupSettings": {"destination": "s3://frames/vid-1/"}
                    },
                    "outputs": [{
                        "containerSettings": {"container": "RAW"},
                        "videoDescription": {"codecSettings": {
                            "codec": "FRAME_CAPTURE",
                            "frameCaptureSettings": {
                                "framerateNumerator": 30000,
                                "framerateDenominator": 1001,
                                "maxCaptures": 10000000,
                                "quality": 90
                            }
                        }}
                    }]
                }, {
                    "name": "preview",
                    "outputGroupSettings": {
                        "type": "FILE_GROUP_SETTINGS",
                        "fileGroupSettings": {"destination": "s3://processed/vid-1/preview"}
                    },
                    "outputs": [{
                        "containerSettings": {"container": "MP4"},
                        "extension": "mp4",
                        "videoDescription": {
                            "width": 640,
                            "height": 360,
                            "scalingBehavior": "FIT_NO_UPSCALE",
                            "codecSettings": {
                                "codec": "H_264",
                                "h264Settings": {
                                    "rateControlMode": "QVBR",
                                    "maxBitrate": 1500000,
                                    "qvbrSettings": {"qvbrQualityLevel": 7}
                                }
                            }
                        },
                        "audioDescriptions": [{
                            "audioSourceName": "Audio Selector 1",
                            "codecSettings": {"codec": "AAC", "aacSettings": {
                                "bitrate": 96000, "codingMode": "CODING_MODE_2_0", "sampleRate": 48000
                            }}
                        }]
                    }]
                }]
            }
        })
    }

    const PREVIEW: &str = "/settings/outputGroups/1/outputs/0";

    fn preview(request: &mut Value) -> &mut Value {
        &mut request["settings"]["outputGroups"][1]["outputs"][0]
    }

    fn h264(request: &mut Value) -> &mut Value {
        &mut preview(request)["videoDescription"]["codecSettings"]["h264Settings"]
    }

    fn video_spec(plan: &JobPlan) -> &VideoSpec {
        match &plan.groups[1].outputs[0].kind {
            OutputKind::Video(spec) => spec,
            other => panic!("not a video output: {other:?}"),
        }
    }

    fn plan(value: &Value) -> Result<JobPlan, BadRequest> {
        let request: CreateJobRequest = serde_json::from_value(value.clone()).unwrap();
        plan_job(&request)
    }

    fn message_after(edit: impl FnOnce(&mut Value)) -> String {
        let mut request = frame_capture_request();
        edit(&mut request);
        plan(&request).unwrap_err().0
    }

    const FCS: &str =
        "/settings/outputGroups/0/outputs/0/videoDescription/codecSettings/frameCaptureSettings";

    fn fcs(request: &mut Value) -> &mut Value {
        &mut request["settings"]["outputGroups"][0]["outputs"][0]["videoDescription"]
            ["codecSettings"]["frameCaptureSettings"]
    }

    #[test]
    fn frame_capture_request_plans() {
        let plan = plan(&frame_capture_request()).unwrap();
        assert_eq!(plan.input.bucket, "in");
        assert_eq!(plan.input.key, "dir/my clip.mp4");
        assert!(!plan.input.auto_rotate);
        assert_eq!(plan.status_update_interval, Duration::from_secs(60));
        let output = &plan.groups[0].outputs[0];
        assert_eq!(
            output.naming.url(0),
            "s3://frames/vid-1/my clip.0000000.jpg"
        );
        assert_eq!(
            plan.groups[1].outputs[0].naming.file_url(),
            "s3://processed/vid-1/preview.mp4"
        );
        assert_eq!(
            video_spec(&plan),
            &VideoSpec {
                width: Some(640),
                height: Some(360),
                scaling: Scaling::FitNoUpscale,
                rate_control: RateControl::Qvbr {
                    max_bitrate: 1_500_000,
                    quality: 7
                },
                audio: Some(AudioSpec {
                    bitrate: 96_000,
                    sample_rate: 48_000,
                    channels: Some(2),
                    source: AudioSource::Silence,
                }),
            }
        );
        assert_eq!(
            *output.capture().unwrap(),
            CaptureSpec {
                numerator: 30000,
                denominator: 1001,
                max_captures: 10_000_000,
                quality: 90,
                width: None,
                height: None,
            }
        );
    }

    #[test]
    fn quality_and_max_captures_default() {
        let mut request = frame_capture_request();
        let settings = fcs(&mut request).as_object_mut().unwrap();
        settings.remove("quality");
        settings.remove("maxCaptures");
        let capture = *plan(&request).unwrap().groups[0].outputs[0]
            .capture()
            .unwrap();
        assert_eq!(capture.quality, DEFAULT_QUALITY);
        assert_eq!(capture.max_captures, 10_000_000);
    }

    #[test]
    fn role_is_required() {
        let message = message_after(|r| {
            r.as_object_mut().unwrap().remove("role");
        });
        assert!(message.starts_with("/role: "), "{message}");
    }

    #[test]
    fn ranges_are_checked() {
        let cases: [(&str, Value, &str); 6] = [
            ("quality", json!(0), "greater than or equal to 1"),
            ("quality", json!(101), "less than or equal to 100"),
            ("maxCaptures", json!(0), "greater than or equal to 1"),
            (
                "maxCaptures",
                json!(10_000_001),
                "less than or equal to 10000000",
            ),
            ("framerateNumerator", json!(0), "greater than or equal to 1"),
            (
                "framerateDenominator",
                json!(-1),
                "greater than or equal to 1",
            ),
        ];
        for (field, value, expected) in cases {
            let message = message_after(|r| fcs(r)[field] = value);
            assert_eq!(message, format!("{FCS}/{field}: Should be {expected}"));
        }
        let message = message_after(|r| {
            fcs(r).as_object_mut().unwrap().remove("framerateNumerator");
        });
        assert_eq!(
            message,
            format!("{FCS}/framerateNumerator: Required property is missing")
        );
    }

    #[test]
    fn unsupported_codecs_and_containers_are_refused() {
        let message = message_after(|r| {
            r["settings"]["outputGroups"][0]["outputs"][0]["videoDescription"]["codecSettings"]
                ["codec"] = json!("H_264");
        });
        assert!(message.contains("codec H_264"), "{message}");
        let message = message_after(|r| {
            r["settings"]["outputGroups"][0]["outputs"][0]["containerSettings"]["container"] =
                json!("MP4");
        });
        assert!(message.contains("container MP4"), "{message}");
        let message = message_after(|r| {
            r["settings"]["outputGroups"][0]["outputGroupSettings"]["type"] =
                json!("HLS_GROUP_SETTINGS");
        });
        assert!(message.contains("HLS_GROUP_SETTINGS"), "{message}");
    }

    #[test]
    fn inputs_and_destinations_must_be_s3() {
        let message = message_after(|r| {
            r["settings"]["inputs"][0]["fileInput"] = json!("https://example.invalid/a.mp4");
        });
        assert!(
            message.starts_with("/settings/inputs/0/fileInput: "),
            "{message}"
        );
        let message = message_after(|r| {
            r["settings"]["inputs"] = json!([]);
        });
        assert_eq!(message, "/settings/inputs: Should have at least 1 items");
        let message = message_after(|r| {
            r["settings"]["inputs"][0]["fileInput"] =
                json!(format!("s3://in/{}", "k".repeat(2041)));
        });
        assert_eq!(
            message,
            "/settings/inputs/0/fileInput: Should be at most 2048 characters long"
        );
        let request = {
            let mut r = frame_capture_request();
            r["settings"]["inputs"][0]["fileInput"] =
                json!(format!("s3://in/{}", "k".repeat(2040)));
            r
        };
        assert!(plan(&request).is_ok());
        let message = message_after(|r| {
            let input = r["settings"]["inputs"][0].clone();
            r["settings"]["inputs"] = json!([input.clone(), input]);
        });
        assert!(message.contains("more than one input"), "{message}");
        let message = message_after(|r| {
            r["settings"]["outputGroups"][0]["outputGroupSettings"]["fileGroupSettings"]
                ["destination"] = json!("/tmp/frames/");
        });
        assert!(message.contains("destination"), "{message}");
    }

    #[test]
    fn wrong_types_are_bad_requests() {
        let message = message_after(|r| fcs(r)["quality"] = json!("high"));
        assert!(message.starts_with("/settings: "), "{message}");
    }

    #[test]
    fn several_outputs_need_distinct_name_modifiers() {
        let message = message_after(|r| {
            let output = r["settings"]["outputGroups"][0]["outputs"][0].clone();
            r["settings"]["outputGroups"][0]["outputs"] = json!([output.clone(), output]);
        });
        assert!(message.contains("nameModifier"), "{message}");
        let mut request = frame_capture_request();
        let output = request["settings"]["outputGroups"][0]["outputs"][0].clone();
        let mut small = output.clone();
        small["nameModifier"] = json!("_small");
        small["videoDescription"]["width"] = json!(64);
        small["videoDescription"]["height"] = json!(48);
        let mut large = output;
        large["nameModifier"] = json!("_large");
        request["settings"]["outputGroups"][0]["outputs"] = json!([small, large]);
        let plan = plan(&request).unwrap();
        let outputs = &plan.groups[0].outputs;
        assert_eq!(outputs[0].naming.key(1), "vid-1/my clip_small.0000001.jpg");
        assert_eq!(outputs[0].capture().unwrap().width, Some(64));
        assert_eq!(outputs[1].naming.key(1), "vid-1/my clip_large.0000001.jpg");
    }

    #[test]
    fn frame_capture_alone_is_refused() {
        let message = message_after(|r| {
            r["settings"]["outputGroups"].as_array_mut().unwrap().pop();
        });
        assert!(
            message.starts_with("/settings/outputGroups: Frame capture outputs can only be created in jobs that also have a regular video output"),
            "{message}"
        );
        // Two frame-capture groups are still frame capture only.
        let message = message_after(|r| {
            let frames = r["settings"]["outputGroups"][0].clone();
            r["settings"]["outputGroups"][1] = frames;
            r["settings"]["outputGroups"][1]["outputGroupSettings"]["fileGroupSettings"]
                ["destination"] = json!("s3://frames/other/");
        });
        assert!(message.contains("regular video output"), "{message}");
    }

    #[test]
    fn name_modifiers_are_one_character_or_more() {
        let message = message_after(|r| fcs_output(r)["nameModifier"] = json!(""));
        assert_eq!(
            message,
            "/settings/outputGroups/0/outputs/0/nameModifier: Should be at least 1 characters long"
        );
        let message = message_after(|r| preview(r)["nameModifier"] = json!("x".repeat(257)));
        assert!(message.contains("at most 256"), "{message}");
        let with_modifier = {
            let mut request = frame_capture_request();
            fcs_output(&mut request)["nameModifier"] = json!("_f");
            plan(&request).unwrap()
        };
        assert_eq!(
            with_modifier.groups[0].outputs[0].naming.key(0),
            "vid-1/my clip_f.0000000.jpg"
        );
    }

    fn fcs_output(request: &mut Value) -> &mut Value {
        &mut request["settings"]["outputGroups"][0]["outputs"][0]
    }

    #[test]
    fn h264_rate_control_follows_the_model() {
        let message = message_after(|r| {
            h264(r).as_object_mut().unwrap().remove("maxBitrate");
        });
        assert_eq!(
            message,
            format!("{PREVIEW}/videoDescription/codecSettings/h264Settings/maxBitrate: Required when rateControlMode is QVBR")
        );
        for (level, expected) in [
            (0, "greater than or equal to 1"),
            (11, "less than or equal to 10"),
        ] {
            let message =
                message_after(|r| h264(r)["qvbrSettings"]["qvbrQualityLevel"] = json!(level));
            assert!(
                message.ends_with(&format!("qvbrQualityLevel: Should be {expected}")),
                "{message}"
            );
        }
        let message = message_after(|r| h264(r)["maxBitrate"] = json!(999));
        assert!(
            message.ends_with("maxBitrate: Should be greater than or equal to 1000"),
            "{message}"
        );
        let message = message_after(|r| h264(r)["rateControlMode"] = json!("CBR"));
        assert!(
            message.ends_with("bitrate: Required when rateControlMode is VBR or CBR"),
            "{message}"
        );
        let message = message_after(|r| {
            preview(r)["videoDescription"]["codecSettings"]
                .as_object_mut()
                .unwrap()
                .remove("h264Settings");
        });
        assert!(
            message.ends_with("h264Settings: Required when codec is H_264"),
            "{message}"
        );
        let message = message_after(|r| preview(r)["videoDescription"]["width"] = json!(8194));
        assert!(
            message.ends_with("width: Should be less than or equal to 8192"),
            "{message}"
        );
        let mut request = frame_capture_request();
        h264(&mut request)["qvbrSettings"] = json!({});
        let plan = plan(&request).unwrap();
        assert_eq!(
            video_spec(&plan).rate_control,
            RateControl::Qvbr {
                max_bitrate: 1_500_000,
                quality: AUTO_QVBR_QUALITY
            }
        );
    }

    #[test]
    fn audio_comes_from_a_declared_selector_or_is_silence() {
        let mut request = frame_capture_request();
        request["settings"]["inputs"][0]["audioSelectors"] =
            json!({"Audio Selector 1": {"defaultSelection": "DEFAULT"}});
        let source = |request: &Value| video_spec(&plan(request).unwrap()).audio.unwrap().source;
        assert_eq!(source(&request), AudioSource::Input);
        preview(&mut request)["audioDescriptions"][0]["audioSourceName"] =
            json!("Audio Selector 2");
        assert_eq!(
            source(&request),
            AudioSource::Input,
            "falls back to the DEFAULT selector"
        );
        request["settings"]["inputs"][0]["audioSelectors"] =
            json!({"Audio Selector 1": {"defaultSelection": "NOT_DEFAULT"}});
        assert_eq!(source(&request), AudioSource::Silence);
        let message = message_after(|r| {
            preview(r)["audioDescriptions"][0]["codecSettings"]["aacSettings"]["bitrate"] =
                json!(5999)
        });
        assert!(
            message.ends_with("aacSettings/bitrate: Should be greater than or equal to 6000"),
            "{message}"
        );
        let message = message_after(|r| {
            fcs_output(r)["audioDescriptions"] = preview(r)["audioDescriptions"].clone();
        });
        assert!(
            message.contains("Frame capture outputs cannot contain audio"),
            "{message}"
        );
    }

    fn with_clip(clip: Value) -> impl FnOnce(&mut Value) {
        move |request: &mut Value| {
            request["settings"]["inputs"][0]["inputClippings"] = json!([clip]);
        }
    }

    #[test]
    fn input_clips_are_planned_with_inclusive_ends() {
        let mut request = frame_capture_request();
        with_clip(json!({"startTimecode": "00:00:01:00", "endTimecode": "00:00:02;05"}))(
            &mut request,
        );
        let input = plan(&request).unwrap().input;
        let clip = input.clip.unwrap();
        assert_eq!(clip.start.unwrap().to_string(), "00:00:01:00");
        assert_eq!(clip.end.unwrap().to_string(), "00:00:02;05");
        assert_eq!(input.timecode_source, TimecodeSource::ZeroBased);
        // Either side may be blank.
        let mut request = frame_capture_request();
        with_clip(json!({"endTimecode": "00:00:02:00"}))(&mut request);
        assert_eq!(plan(&request).unwrap().input.clip.unwrap().start, None);
        // None at all, or an empty list: the whole input.
        let mut request = frame_capture_request();
        request["settings"]["inputs"][0]["inputClippings"] = json!([]);
        assert_eq!(plan(&request).unwrap().input.clip, None);
    }

    #[test]
    fn bad_clips_are_refused_with_the_field() {
        let path = "/settings/inputs/0/inputClippings/0";
        for bad in [
            "0:00:01:00",
            "25:00:00:00",
            "00:60:00:00",
            "00:00:00.00",
            "",
        ] {
            let message = message_after(with_clip(json!({"startTimecode": bad})));
            assert!(
                message.starts_with(&format!("{path}/startTimecode: ")),
                "{message}"
            );
            assert!(message.contains(CLIP_PATTERN), "{message}");
            let message = message_after(with_clip(json!({"endTimecode": bad})));
            assert!(
                message.starts_with(&format!("{path}/endTimecode: ")),
                "{message}"
            );
        }
        let message = message_after(with_clip(json!({})));
        assert!(message.contains("but not both"), "{message}");
        let message = message_after(with_clip(
            json!({"startTimecode": "00:00:02:00", "endTimecode": "00:00:01:29"}),
        ));
        assert!(message.contains("before the start"), "{message}");
        let message = message_after(|request: &mut Value| {
            request["settings"]["inputs"][0]["inputClippings"] = json!([
                {"startTimecode": "00:00:01:00"},
                {"startTimecode": "00:00:03:00"}
            ]);
        });
        assert!(message.contains("more than one input clip"), "{message}");
    }

    #[test]
    fn timecode_sources() {
        let source = |edit: &dyn Fn(&mut Value)| {
            let mut request = frame_capture_request();
            edit(&mut request);
            plan(&request).map(|p| p.input.timecode_source)
        };
        fn input(request: &mut Value) -> &mut Value {
            &mut request["settings"]["inputs"][0]
        }
        assert_eq!(
            source(&|r| {
                input(r).as_object_mut().unwrap().remove("timecodeSource");
            }),
            Ok(TimecodeSource::Embedded)
        );
        assert_eq!(
            source(&|r| {
                input(r)["timecodeSource"] = json!("SPECIFIEDSTART");
                input(r)["timecodeStart"] = json!("01:00:00:00");
            }),
            Ok(TimecodeSource::Specified(
                Timecode::parse_start("01:00:00:00").unwrap()
            ))
        );
        let missing = source(&|r| input(r)["timecodeSource"] = json!("SPECIFIEDSTART"));
        assert!(missing
            .unwrap_err()
            .0
            .starts_with("/settings/inputs/0/timecodeStart"));
        let bad_start = source(&|r| {
            input(r)["timecodeSource"] = json!("SPECIFIEDSTART");
            input(r)["timecodeStart"] = json!("24:00:00:00");
        });
        assert!(bad_start.unwrap_err().0.contains(START_PATTERN));
        let unknown = source(&|r| input(r)["timecodeSource"] = json!("ZERO"));
        assert!(unknown
            .unwrap_err()
            .0
            .starts_with("/settings/inputs/0/timecodeSource"));
    }

    #[test]
    fn status_update_intervals() {
        assert_eq!(
            parse_status_update_interval("SECONDS_10"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_status_update_interval("SECONDS_11"), None);
        assert_eq!(parse_status_update_interval("10"), None);
        let message = message_after(|r| r["statusUpdateInterval"] = json!("SECONDS_1"));
        assert!(message.starts_with("/statusUpdateInterval: "), "{message}");
    }
}
