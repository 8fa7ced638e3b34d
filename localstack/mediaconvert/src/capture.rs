//! Frame capture and MP4 encoding with the real ffmpeg: ffprobe reads the input (what
//! MediaConvert calls the PROBING phase), then `fps=Num/Den:round=up` picks the first frame and
//! the frame on screen every Den/Num seconds after it, `-frames:v` caps the count at
//! `MaxCaptures`, and the image2 muxer writes 0-based, 7-digit numbered JPEGs. MP4 outputs are
//! H.264 (libx264) with AAC, scaled by MediaConvert's scaling behaviours.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tracing::instrument;

use crate::job::JobProgress;
use crate::plan::{AudioSource, CaptureSpec, RateControl, Scaling, VideoSpec};

/// File name pattern of captures in the work directory.
const PATTERN: &str = "capture.%07d.jpg";
/// Seconds a frame's timestamp may lie after a sampling time and still count as on screen.
const TIMESTAMP_TOLERANCE: &str = "0.002";
/// Stderr kept for error messages.
const STDERR_TAIL: usize = 4096;

/// What ffprobe found in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoProbe {
    /// Container, as ffprobe names it (`mov,mp4,m4a,3gp,3g2,mj2`).
    pub format: String,
    /// Video codec, as ffprobe names it (`h264`).
    pub codec: String,
    /// Coded width.
    pub width: u32,
    /// Coded height.
    pub height: u32,
    /// Frame rate as a fraction, when the stream declares one.
    pub rate: Option<(u32, u32)>,
    /// Duration in milliseconds, when known.
    pub duration_ms: Option<u64>,
    /// True when the input has an audio stream.
    pub has_audio: bool,
    /// The input's embedded start timecode (a QuickTime `tmcd` track or a `timecode` tag, as
    /// ffprobe reports it), when it has one.
    pub timecode: Option<String>,
}

impl VideoProbe {
    /// The frame rate in frames per second.
    pub fn frame_rate(&self) -> Option<f64> {
        self.rate.map(|(n, d)| f64::from(n) / f64::from(d))
    }
}

/// Why a capture failed. The runner maps these to MediaConvert error codes.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// ffmpeg or ffprobe could not be started.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The input is not a video ffprobe can open (MediaConvert's 1010).
    #[error("{reason}")]
    Unreadable {
        /// ffprobe's reason.
        reason: String,
    },
    /// The video opened but could not be decoded to the end, or gave no frame (1030).
    #[error("{reason}")]
    Undecodable {
        /// ffmpeg's reason.
        reason: String,
    },
    /// The input clip starts after the input's last frame.
    #[error("the input clip starts at frame {first}, after the end of the input")]
    ClipOutsideInput {
        /// The clip's first frame.
        first: u64,
    },
    /// Reading the work directory failed.
    #[error("cannot read captures in {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    r_frame_rate: Option<String>,
    avg_frame_rate: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    format_name: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
}

/// Runs ffprobe on `input`; `shown_as` replaces the local path in messages (the S3 URL).
#[instrument(skip_all, fields(input = shown_as), err)]
pub async fn probe(
    ffprobe: &str,
    input: &Path,
    shown_as: &str,
) -> Result<VideoProbe, CaptureError> {
    let output = Command::new(ffprobe)
        .args(["-v", "error", "-show_entries"])
        .arg("stream=codec_type,codec_name,width,height,r_frame_rate,avg_frame_rate,duration:stream_tags=timecode:format=format_name,duration:format_tags=timecode")
        .args(["-of", "json"])
        .arg(input)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| CaptureError::Spawn {
            program: ffprobe.to_string(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(CaptureError::Unreadable {
            reason: last_line(&stderr, input, shown_as)
                .unwrap_or_else(|| format!("ffprobe exited with {}", output.status)),
        });
    }
    parse_probe(&output.stdout).map_err(|reason| CaptureError::Unreadable { reason })
}

/// Parses ffprobe's JSON; the error is the reason the input is not a video.
fn parse_probe(json: &[u8]) -> Result<VideoProbe, String> {
    let parsed: ProbeOutput =
        serde_json::from_slice(json).map_err(|e| format!("unexpected ffprobe output: {e}"))?;
    let format = parsed.format.as_ref();
    let format_name = format
        .and_then(|f| f.format_name.clone())
        .unwrap_or_default();
    // A still image opens as a one-frame "video"; MediaConvert does not take images as inputs.
    if format_name == "image2" || format_name.ends_with("_pipe") {
        return Err(format!(
            "Can't find a parser for the container (`{format_name}` is an image, not a video)"
        ));
    }
    let stream = parsed
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video"))
        .ok_or_else(|| "No video stream found in the input".to_string())?;
    let (Some(width), Some(height)) = (stream.width, stream.height) else {
        return Err("The video stream has no frame size".into());
    };
    if width == 0 || height == 0 {
        return Err("The video stream has no frame size".into());
    }
    let rate = [&stream.avg_frame_rate, &stream.r_frame_rate]
        .into_iter()
        .flatten()
        .find_map(|text| parse_rate(text));
    let duration_ms = [
        stream.duration.as_deref(),
        format.and_then(|f| f.duration.as_deref()),
    ]
    .into_iter()
    .flatten()
    .find_map(|text| text.parse::<f64>().ok())
    .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
    .map(|seconds| (seconds * 1000.0).round() as u64);
    Ok(VideoProbe {
        format: format_name,
        codec: stream.codec_name.clone().unwrap_or_default(),
        width,
        height,
        rate,
        duration_ms,
        has_audio: parsed
            .streams
            .iter()
            .any(|s| s.codec_type.as_deref() == Some("audio")),
        // The video stream's tag first (QuickTime `tmcd`, as ffmpeg's demuxer attaches it),
        // then any stream's (the `tmcd` data stream), then the container's.
        timecode: std::iter::once(&stream.tags)
            .chain(parsed.streams.iter().map(|s| &s.tags))
            .chain(format.map(|f| &f.tags))
            .find_map(|tags| tags.get("timecode").cloned()),
    })
}

fn parse_rate(text: &str) -> Option<(u32, u32)> {
    let (n, d) = text.split_once('/')?;
    let (n, d) = (n.parse().ok()?, d.parse().ok()?);
    (n > 0 && d > 0).then_some((n, d))
}

/// ffmpeg's MJPEG `-q:v` (2 best … 31 worst) for a MediaConvert quality (1 … 100 best).
pub fn qscale(quality: u8) -> u8 {
    let quality = quality.clamp(1, 100);
    2 + ((u32::from(100 - quality) * 29 + 49) / 99) as u8
}

/// The ffmpeg arguments every job's run starts with: quiet, overwriting, and reading `input`
/// as MediaConvert reads it.
fn input_args(input: &Path, auto_rotate: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "error",
        "-y",
        // MediaConvert fails a job whose input cannot be read to the end ("Is file
        // truncated?") rather than using what decodes; `-xerror` makes ffmpeg stop on the
        // first error too.
        "-xerror",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    if !auto_rotate {
        // MediaConvert's default (`rotate = DEGREE_0`) ignores rotation metadata.
        args.push("-noautorotate".into());
    }
    args.push("-i".into());
    args.push(input.into());
    args
}

/// The ffmpeg arguments that capture `spec` from `input` into `dir`.
pub fn ffmpeg_args(
    input: &Path,
    dir: &Path,
    spec: &CaptureSpec,
    auto_rotate: bool,
    clip: Option<FrameRange>,
) -> Vec<OsString> {
    let mut args = input_args(input, auto_rotate);
    // MediaConvert samples the frame on screen at t = 0, D/N, 2·D/N, …: the last frame whose
    // timestamp is not after the sampling time, which is the fps filter with `round=up`
    // (its default, `near`, would pick the frame nearest to the *end* of each interval). The
    // 2 ms shift forgives timestamps stored slightly late (millisecond time bases). A clip
    // keeps its frames first and starts their clock at 0, so the first capture is the clip's
    // first frame and captures are numbered from 0 within the clip ("filename.NNNNNNN.jpg
    // where N is the 0-based frame sequence number", API Reference, FrameCaptureSettings).
    let start = match clip {
        Some(clip) => format!("{},setpts=PTS-STARTPTS-", clip.trim_filter()),
        None => "setpts=PTS-".into(),
    };
    let mut filter = format!(
        "{start}{TIMESTAMP_TOLERANCE}/TB,fps={}/{}:round=up",
        spec.numerator, spec.denominator
    );
    match (spec.width, spec.height) {
        (Some(w), Some(h)) => filter.push_str(&format!(",scale={w}:{h}")),
        (Some(w), None) => filter.push_str(&format!(",scale={w}:-2")),
        (None, Some(h)) => filter.push_str(&format!(",scale=-2:{h}")),
        (None, None) => {}
    }
    for arg in [
        "-map".to_string(),
        "0:v:0".into(),
        "-an".into(),
        "-sn".into(),
        "-dn".into(),
        "-vf".into(),
        filter,
        "-frames:v".into(),
        spec.max_captures.to_string(),
        "-c:v".into(),
        "mjpeg".into(),
        "-q:v".into(),
        qscale(spec.quality).to_string(),
        "-f".into(),
        "image2".into(),
        "-start_number".into(),
        "0".into(),
        "-progress".into(),
        "pipe:1".into(),
    ] {
        args.push(arg.into());
    }
    args.push(dir.join(PATTERN).into());
    args
}

/// Source frames `first..=last` (`last` `None`: to the end) of an input clip, counted in
/// decoding order of presentation (the frames ffmpeg's decoder hands over), at `rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRange {
    /// First frame kept.
    pub first: u64,
    /// Last frame kept, inclusive.
    pub last: Option<u64>,
    /// The input's frame rate (numerator, denominator), for the audio's matching times.
    pub rate: (u32, u32),
}

impl FrameRange {
    /// The video filter that keeps these frames (ffmpeg's `end_frame` is exclusive).
    fn trim_filter(&self) -> String {
        match self.last {
            Some(last) => format!("trim=start_frame={}:end_frame={}", self.first, last + 1),
            None => format!("trim=start_frame={}", self.first),
        }
    }

    /// The audio filter that keeps the same span of time.
    fn atrim_filter(&self) -> String {
        let (num, den) = self.rate;
        let at = |frame: u64| format!("{:.6}", frame as f64 * f64::from(den) / f64::from(num));
        match self.last {
            Some(last) => format!(
                "atrim=start={}:end={},asetpts=PTS-STARTPTS",
                at(self.first),
                at(last + 1)
            ),
            None => format!("atrim=start={},asetpts=PTS-STARTPTS", at(self.first)),
        }
    }
}

/// ffmpeg's libx264 CRF for a QVBR quality level (1 … 10 nearly lossless): 43 … 16.
pub fn crf(quality: u8) -> u8 {
    46 - 3 * quality.clamp(1, 10)
}

/// The scale (and pad) filter that fits the input to `spec`'s size the way its scaling
/// behaviour does; sizes are kept even, as 4:2:0 H.264 needs.
pub fn scale_filter(spec: &VideoSpec) -> String {
    match (spec.width, spec.height) {
        (None, None) => "scale=trunc(iw/2)*2:trunc(ih/2)*2".into(),
        (Some(w), None) => format!("scale={w}:-2"),
        (None, Some(h)) => format!("scale=-2:{h}"),
        (Some(w), Some(h)) => match spec.scaling {
            Scaling::Stretch => format!("scale={w}:{h}"),
            Scaling::Fit => {
                format!("scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2")
            }
            Scaling::FitNoUpscale => format!(
                "scale=w='min({w},iw)':h='min({h},ih)':force_original_aspect_ratio=decrease:force_divisible_by=2"
            ),
            Scaling::FitWithPadding => format!(
                "scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2,pad={w}:{h}:-1:-1"
            ),
        },
    }
}

/// The ffmpeg arguments that encode `spec` from `input` into the MP4 `out`; `input_has_audio`
/// says whether the input's audio selector finds a track.
pub fn mp4_args(
    input: &Path,
    out: &Path,
    spec: &VideoSpec,
    auto_rotate: bool,
    input_has_audio: bool,
    clip: Option<FrameRange>,
) -> Vec<OsString> {
    let mut args = input_args(input, auto_rotate);
    let mut rest: Vec<String> = Vec::new();
    let audio = spec.audio.filter(|audio| match audio.source {
        AudioSource::Input => input_has_audio,
        AudioSource::Silence => true,
    });
    if let Some(audio) = audio {
        if audio.source == AudioSource::Silence {
            let layout = match audio.channels {
                Some(1) => "mono",
                Some(6) => "5.1",
                _ => "stereo",
            };
            rest.extend([
                "-f".into(),
                "lavfi".into(),
                "-i".into(),
                format!("anullsrc=r={}:cl={layout}", audio.sample_rate),
            ]);
        }
    }
    rest.extend(["-map".into(), "0:v:0".into()]);
    match audio {
        Some(audio) => {
            let stream = match audio.source {
                AudioSource::Input => "0:a:0",
                AudioSource::Silence => "1:a:0",
            };
            rest.extend([
                "-map".into(),
                stream.into(),
                "-c:a".into(),
                "aac".into(),
                "-b:a".into(),
                audio.bitrate.to_string(),
                "-ar".into(),
                audio.sample_rate.to_string(),
            ]);
            if let Some(channels) = audio.channels {
                rest.extend(["-ac".into(), channels.to_string()]);
            }
            if let (Some(clip), AudioSource::Input) = (clip, audio.source) {
                rest.extend(["-af".into(), clip.atrim_filter()]);
            }
            if audio.source == AudioSource::Silence {
                rest.push("-shortest".into());
            }
        }
        None => rest.push("-an".into()),
    }
    rest.extend([
        "-sn".into(),
        "-dn".into(),
        "-vf".into(),
        match clip {
            Some(clip) => format!(
                "{},setpts=PTS-STARTPTS,{}",
                clip.trim_filter(),
                scale_filter(spec)
            ),
            None => scale_filter(spec),
        },
        "-c:v".into(),
        "libx264".into(),
        "-preset".into(),
        "veryfast".into(),
        "-pix_fmt".into(),
        "yuv420p".into(),
    ]);
    match spec.rate_control {
        RateControl::Qvbr {
            max_bitrate,
            quality,
        } => rest.extend([
            "-crf".into(),
            crf(quality).to_string(),
            "-maxrate".into(),
            max_bitrate.to_string(),
            "-bufsize".into(),
            (u64::from(max_bitrate) * 2).to_string(),
        ]),
        RateControl::Bitrate {
            bitrate,
            max_bitrate,
        } => {
            rest.extend(["-b:v".into(), bitrate.to_string()]);
            if let Some(max) = max_bitrate {
                rest.extend([
                    "-maxrate".into(),
                    max.to_string(),
                    "-bufsize".into(),
                    (u64::from(max) * 2).to_string(),
                ]);
            }
        }
    }
    rest.extend([
        "-movflags".into(),
        "+faststart".into(),
        "-f".into(),
        "mp4".into(),
        "-progress".into(),
        "pipe:1".into(),
    ]);
    args.extend(rest.into_iter().map(OsString::from));
    args.push(out.into());
    args
}

/// Encodes the MP4 output `spec` from `input` to `out`, reporting the position in `progress`.
/// Dropping the future kills ffmpeg.
#[instrument(skip_all, fields(input = shown_as), err)]
#[allow(clippy::too_many_arguments)]
pub async fn encode_mp4(
    ffmpeg: &str,
    input: &Path,
    shown_as: &str,
    out: &Path,
    spec: &VideoSpec,
    auto_rotate: bool,
    input_has_audio: bool,
    clip: Option<FrameRange>,
    progress: &JobProgress,
) -> Result<(), CaptureError> {
    let args = mp4_args(input, out, spec, auto_rotate, input_has_audio, clip);
    run_ffmpeg(ffmpeg, args, input, shown_as, progress).await
}

/// Captures `spec` from `input` into `dir`, reporting the position in `progress`. Returns the
/// captures in index order. Dropping the future kills ffmpeg.
#[instrument(skip_all, fields(input = shown_as), err)]
#[allow(clippy::too_many_arguments)]
pub async fn capture(
    ffmpeg: &str,
    input: &Path,
    shown_as: &str,
    dir: &Path,
    spec: &CaptureSpec,
    auto_rotate: bool,
    clip: Option<FrameRange>,
    progress: &JobProgress,
) -> Result<Vec<PathBuf>, CaptureError> {
    let args = ffmpeg_args(input, dir, spec, auto_rotate, clip);
    run_ffmpeg(ffmpeg, args, input, shown_as, progress).await?;
    let frames = list_captures(dir).await?;
    if frames.is_empty() {
        return Err(match clip {
            Some(clip) => CaptureError::ClipOutsideInput { first: clip.first },
            None => CaptureError::Undecodable {
                reason: "No video frame could be decoded".into(),
            },
        });
    }
    Ok(frames)
}

/// Runs ffmpeg with `args`, following its `-progress` output; a failure is the input's
/// [`CaptureError::Undecodable`] with ffmpeg's last error line.
async fn run_ffmpeg(
    ffmpeg: &str,
    args: Vec<OsString>,
    input: &Path,
    shown_as: &str,
    progress: &JobProgress,
) -> Result<(), CaptureError> {
    let mut child = Command::new(ffmpeg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CaptureError::Spawn {
            program: ffmpeg.to_string(),
            source,
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let read_progress = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(us) = line.strip_prefix("out_time_us=") {
                if let Ok(us) = us.trim().parse::<u64>() {
                    progress.position_us.store(us, Ordering::Relaxed);
                }
            }
        }
    };
    let read_errors = async {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        let start = text.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&text[start..]).into_owned()
    };
    let ((), errors, status) = tokio::join!(read_progress, read_errors, child.wait());
    let status = status.map_err(|source| CaptureError::Spawn {
        program: ffmpeg.to_string(),
        source,
    })?;
    if !status.success() {
        return Err(CaptureError::Undecodable {
            reason: last_line(&errors, input, shown_as)
                .unwrap_or_else(|| format!("ffmpeg exited with {status}")),
        });
    }
    Ok(())
}

/// The captures in `dir`, in index order; they are numbered 0… without gaps.
async fn list_captures(dir: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    let io = |source| CaptureError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io)?;
    let mut frames = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(io)? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("capture.") && name.ends_with(".jpg") {
            frames.push(entry.path());
        }
    }
    frames.sort();
    Ok(frames)
}

/// The last non-empty line of a tool's stderr, with the local path shown as the S3 URL.
fn last_line(stderr: &str, input: &Path, shown_as: &str) -> Option<String> {
    let local = input.to_string_lossy();
    stderr
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .map(|line| line.replace(local.as_ref(), shown_as))
}

/// Width and height from a JPEG's start-of-frame marker.
pub fn jpeg_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        if marker == 0xFF {
            at += 1;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let height = u16::from_be_bytes([*bytes.get(at + 5)?, *bytes.get(at + 6)?]);
            let width = u16::from_be_bytes([*bytes.get(at + 7)?, *bytes.get(at + 8)?]);
            return Some((u32::from(width), u32::from(height)));
        }
        at += 2 + length;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_maps_onto_qscale() {
        assert_eq!(qscale(100), 2);
        assert_eq!(qscale(1), 31);
        assert_eq!(qscale(0), 31);
        assert!(qscale(90) < qscale(80));
        assert!((2..=31).contains(&qscale(50)));
    }

    #[test]
    fn ffmpeg_args_capture_from_zero() {
        let spec = CaptureSpec {
            numerator: 30000,
            denominator: 1001,
            max_captures: 100,
            quality: 100,
            width: Some(320),
            height: None,
        };
        let args: Vec<String> = ffmpeg_args(
            Path::new("/w/in.mp4"),
            Path::new("/w/out"),
            &spec,
            false,
            None,
        )
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
        let joined = args.join(" ");
        assert!(
            joined.contains("-xerror -noautorotate -i /w/in.mp4"),
            "{joined}"
        );
        assert!(
            joined.contains("-vf setpts=PTS-0.002/TB,fps=30000/1001:round=up,scale=320:-2"),
            "{joined}"
        );
        assert!(joined.contains("-frames:v 100"), "{joined}");
        assert!(joined.contains("-q:v 2"), "{joined}");
        assert!(joined.contains("-start_number 0"), "{joined}");
        assert_eq!(args.last().unwrap(), "/w/out/capture.%07d.jpg");
        let auto = ffmpeg_args(Path::new("a"), Path::new("b"), &spec, true, None);
        assert!(!auto.iter().any(|a| a == "-noautorotate"));
    }

    fn preview_spec(audio: Option<crate::plan::AudioSpec>) -> VideoSpec {
        VideoSpec {
            width: Some(640),
            height: Some(360),
            scaling: Scaling::FitNoUpscale,
            rate_control: RateControl::Qvbr {
                max_bitrate: 1_500_000,
                quality: 7,
            },
            audio,
        }
    }

    fn joined(args: Vec<OsString>) -> String {
        args.into_iter()
            .map(|a| a.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn mp4_args_scale_and_take_audio_only_when_there_is_some() {
        let audio = crate::plan::AudioSpec {
            bitrate: 96_000,
            sample_rate: 48_000,
            channels: Some(2),
            source: AudioSource::Input,
        };
        let spec = preview_spec(Some(audio));
        let args = joined(mp4_args(
            Path::new("in.mp4"),
            Path::new("out.mp4"),
            &spec,
            false,
            true,
            None,
        ));
        assert!(
            args.contains("-map 0:v:0 -map 0:a:0 -c:a aac -b:a 96000 -ar 48000 -ac 2"),
            "{args}"
        );
        assert!(
            args.contains("-vf scale=w='min(640,iw)':h='min(360,ih)':force_original_aspect_ratio=decrease:force_divisible_by=2"),
            "{args}"
        );
        assert!(
            args.contains("-crf 25 -maxrate 1500000 -bufsize 3000000"),
            "{args}"
        );
        assert!(args.ends_with("-f mp4 -progress pipe:1 out.mp4"), "{args}");
        // The selector finds no track in a silent input: no audio stream.
        let args = joined(mp4_args(
            Path::new("in.mp4"),
            Path::new("out.mp4"),
            &spec,
            false,
            false,
            None,
        ));
        assert!(args.contains("-map 0:v:0 -an"), "{args}");
        // No selector at all: MediaConvert inserts silence.
        let silence = preview_spec(Some(crate::plan::AudioSpec {
            source: AudioSource::Silence,
            ..audio
        }));
        let args = joined(mp4_args(
            Path::new("in.mp4"),
            Path::new("out.mp4"),
            &silence,
            false,
            false,
            None,
        ));
        assert!(
            args.contains("-f lavfi -i anullsrc=r=48000:cl=stereo -map 0:v:0 -map 1:a:0"),
            "{args}"
        );
        assert!(args.contains("-shortest"), "{args}");
        assert_eq!(crf(10), 16);
        assert_eq!(crf(1), 43);
    }

    #[test]
    fn probe_reads_video_streams() {
        let json = br#"{"programs":[],"streams":[
            {"codec_type":"audio","codec_name":"aac"},
            {"codec_type":"video","codec_name":"h264","width":160,"height":120,
             "r_frame_rate":"30000/1001","avg_frame_rate":"30000/1001","duration":"3.003000"}],
            "format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"3.003000"}}"#;
        let probe = parse_probe(json).unwrap();
        assert_eq!(probe.codec, "h264");
        assert_eq!((probe.width, probe.height), (160, 120));
        assert_eq!(probe.rate, Some((30000, 1001)));
        assert_eq!(probe.duration_ms, Some(3003));
        assert!(probe.has_audio);
    }

    #[test]
    fn probe_refuses_images_and_audio() {
        let image =
            br#"{"streams":[{"codec_type":"video","codec_name":"png","width":8,"height":8}],
            "format":{"format_name":"png_pipe"}}"#;
        assert!(parse_probe(image).unwrap_err().contains("image"));
        let audio = br#"{"streams":[{"codec_type":"audio","codec_name":"mp3"}],
            "format":{"format_name":"mp3","duration":"1.0"}}"#;
        assert!(parse_probe(audio).unwrap_err().contains("No video stream"));
        assert_eq!(parse_rate("0/0"), None);
    }

    #[test]
    fn stderr_reason_names_the_s3_url() {
        let reason = last_line(
            "\n/tmp/x/input.mp4: Invalid data found when processing input\n\n",
            Path::new("/tmp/x/input.mp4"),
            "s3://in/a.mp4",
        );
        assert_eq!(
            reason.as_deref(),
            Some("s3://in/a.mp4: Invalid data found when processing input")
        );
    }

    #[test]
    fn jpeg_dimensions_from_sof() {
        // SOI, APP0 (length 16), SOF0 with height 120 and width 160.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jpeg.extend_from_slice(&[0; 14]);
        jpeg.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x78, 0x00, 0xA0, 0x03]);
        assert_eq!(jpeg_dimensions(&jpeg), Some((160, 120)));
        assert_eq!(jpeg_dimensions(b"not a jpeg"), None);
    }
}
