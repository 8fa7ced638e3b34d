//! `CreateJob` validation: turns a request into the [`JobPlan`] the runner executes, or into the
//! `BadRequestException` message MediaConvert would answer with. Messages follow the service's
//! `<json path>: <problem>` style; where MediaConvert would accept a setting the stand-in cannot
//! honour, the message says so instead of silently producing different output.

use std::time::Duration;

use serde_json::Value;

use crate::naming::OutputNaming;
use crate::request::{CreateJobRequest, JobSettings, Output};

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
    /// File output groups, each with its frame-capture outputs.
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
}

/// One file output group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// Its frame-capture outputs.
    pub outputs: Vec<OutputPlan>,
}

/// One frame-capture output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    /// Where its captures go.
    pub naming: OutputNaming,
    /// How they are captured.
    pub capture: CaptureSpec,
}

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

/// Validates `request` the way MediaConvert does for the frame-capture subset the stand-in runs.
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
    if input
        .input_clippings
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err(unsupported(
            "/settings/inputs/0/inputClippings",
            "input clipping",
        ));
    }
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
    })
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
                    &format!("{other}; frame capture needs FILE_GROUP_SETTINGS"),
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
            if outputs.len() > 1 && output.name_modifier.as_deref().unwrap_or("").is_empty() {
                return Err(bad(
                    &format!("{path}/nameModifier"),
                    "Name modifier is required when an output group has more than one output",
                ));
            }
            let capture = plan_capture(output, &path)?;
            let naming = OutputNaming::new(
                destination,
                &input.url,
                output.name_modifier.as_deref(),
                output.extension.as_deref(),
            )
            .filter(|n| !n.bucket.is_empty())
            .ok_or_else(|| {
                bad(
                    &destination_path,
                    format!("`{destination}` should be an s3://bucket/prefix/ URL"),
                )
            })?;
            if !seen_keys.insert(naming.key(0)) {
                return Err(bad(
                    &path,
                    format!(
                        "writes the same files as another output (`{}`); give each output its own name modifier",
                        naming.url(0)
                    ),
                ));
            }
            planned_outputs.push(OutputPlan { naming, capture });
        }
        planned.push(GroupPlan {
            outputs: planned_outputs,
        });
    }
    Ok(planned)
}

fn plan_capture(output: &Output, path: &str) -> Result<CaptureSpec, BadRequest> {
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
        if extension.is_empty() || !extension.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad(
                &format!("{path}/extension"),
                format!("`{extension}` should be letters and digits"),
            ));
        }
    }
    let container = output
        .container_settings
        .as_ref()
        .and_then(|c| c.container.as_deref());
    match container {
        Some("RAW") => {}
        None => {
            return Err(bad(
                &format!("{path}/containerSettings/container"),
                "Required property is missing (frame capture needs RAW)",
            ))
        }
        Some(other) => {
            return Err(unsupported(
                &format!("{path}/containerSettings/container"),
                &format!("container {other}; frame capture outputs need RAW"),
            ))
        }
    }
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
    match codec.codec.as_deref() {
        Some("FRAME_CAPTURE") => {}
        None => {
            return Err(bad(
                &format!("{codec_path}/codec"),
                "Required property is missing",
            ))
        }
        Some(other) => {
            return Err(unsupported(
                &format!("{codec_path}/codec"),
                &format!("codec {other}; only FRAME_CAPTURE is implemented"),
            ))
        }
    }
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
    Ok(CaptureSpec {
        numerator,
        denominator,
        max_captures,
        quality,
        width,
        height,
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
                }]
            }
        })
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
            output.capture,
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
        let capture = plan(&request).unwrap().groups[0].outputs[0].capture;
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
        assert_eq!(outputs[0].capture.width, Some(64));
        assert_eq!(outputs[1].naming.key(1), "vid-1/my clip_large.0000001.jpg");
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
