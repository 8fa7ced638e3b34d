//! Test videos and images, made by the real ffmpeg at test time.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Generates a video at `path` with ffmpeg's `testsrc2` source, in the container the extension
/// names (H.264, or VP8 for `.webm`; an MP4's index at the end, as ffmpeg writes it by default).
pub async fn make_video(
    path: &Path,
    width: u32,
    height: u32,
    rate: &str,
    seconds: f64,
) -> anyhow::Result<PathBuf> {
    testsrc_video(path, width, height, rate, Some(seconds), &[]).await
}

/// A generated video ([`make_video`]) as bytes to upload, with its frame count as ffprobe
/// decodes it; `name`'s extension picks the container.
pub async fn video_bytes(
    name: &str,
    width: u32,
    height: u32,
    rate: &str,
    seconds: f64,
) -> anyhow::Result<(Vec<u8>, u64)> {
    let dir = tempfile::tempdir().context("a directory for the video")?;
    let path = dir.path().join(name);
    make_video(&path, width, height, rate, seconds).await?;
    let frames = count_frames(&path).await?;
    let bytes = tokio::fs::read(&path)
        .await
        .with_context(|| format!("read {}", path.display()))?;
    Ok((bytes, frames))
}

/// A generated constant-frame-rate MP4 (or other container `name`'s extension picks) of exactly
/// `frames` frames at `rate` (ffmpeg's `-frames:v`, so the count does not depend on how a
/// duration rounds at rates like 30000/1001), as bytes, with the frame count ffprobe decodes.
pub async fn video_bytes_frames(
    name: &str,
    width: u32,
    height: u32,
    rate: &str,
    frames: u64,
) -> anyhow::Result<(Vec<u8>, u64)> {
    let dir = tempfile::tempdir().context("a directory for the video")?;
    let path = dir.path().join(name);
    let count = frames.to_string();
    testsrc_video(&path, width, height, rate, None, &["-frames:v", &count]).await?;
    let decoded = count_frames(&path).await?;
    let bytes = tokio::fs::read(&path)
        .await
        .with_context(|| format!("read {}", path.display()))?;
    Ok((bytes, decoded))
}

/// Like [`make_video`], with the index first (`+faststart`), so a cut-off copy still opens.
pub async fn make_faststart_video(
    path: &Path,
    width: u32,
    height: u32,
    rate: &str,
    seconds: f64,
) -> anyhow::Result<PathBuf> {
    testsrc_video(
        path,
        width,
        height,
        rate,
        Some(seconds),
        &["-movflags", "+faststart"],
    )
    .await
}

async fn testsrc_video(
    path: &Path,
    width: u32,
    height: u32,
    rate: &str,
    seconds: Option<f64>,
    extra: &[&str],
) -> anyhow::Result<PathBuf> {
    let source = format!("testsrc2=size={width}x{height}:rate={rate}");
    let mut command = tokio::process::Command::new("ffmpeg");
    command
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(&source);
    if let Some(seconds) = seconds {
        command.args(["-t", &seconds.to_string()]);
    }
    let status = command
        .args(["-pix_fmt", "yuv420p", "-c:v"])
        // WebM takes VP8/VP9 only; everything else gets H.264.
        .args(if path.extension().is_some_and(|e| e == "webm") {
            ["libvpx", "-deadline", "realtime"]
        } else {
            ["libx264", "-preset", "ultrafast"]
        })
        .args(extra)
        .arg(path)
        .status()
        .await
        .context("cannot run ffmpeg: install it")?;
    if !status.success() {
        bail!("ffmpeg failed to make {}", path.display());
    }
    Ok(path.to_path_buf())
}

/// The number of video frames in `path`, counted by ffprobe decoding the stream.
pub async fn count_frames(path: &Path) -> anyhow::Result<u64> {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .await
        .context("cannot run ffprobe")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_end_matches(',')
        .parse()
        .with_context(|| format!("ffprobe printed {text:?}"))
}
