//! The MediaConvert stand-in through `aws-sdk-mediaconvert`, against a real moto_server and the
//! real ffmpeg: frame names and counts, the events on the queue, the REST round-trips and the
//! errors MediaConvert would answer with.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_mediaconvert::error::ProvideErrorMetadata;
use aws_sdk_mediaconvert::types::{InputClipping, InputTimecodeSource, JobSettings};
use aws_sdk_mediaconvert::types::{JobStatus, VideoCodec, VideoCodecSettings, VideoDescription};
use aws_sdk_s3::primitives::ByteStream;
use framefleet_core::aws::describe;
use framefleet_dispatcher::mediaconvert::{
    capture_job_settings, CaptureJob, PreviewJob, PREVIEW_MAX_BITRATE, PREVIEW_QVBR_QUALITY,
};
use framefleet_dispatcher::rate::CaptureRate;
use framefleet_dispatcher::settings::DispatcherConfig;
use framefleet_dispatcher::timecode::{plan_segments, Notation, Timebase};
use framefleet_e2e::media::{count_frames, make_faststart_video, make_video};
use framefleet_e2e::moto::MotoServer;
use mediaconvert_standin::{Fault, FaultRule, Standin, StandinConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const INPUTS: &str = "inputs";
const FRAMES: &str = "frames";
const PROCESSED: &str = "processed";
const EVENTS: &str = "standin-events";
const ROLE: &str = "arn:aws:iam::000000000000:role/framefleet-mediaconvert";
const DEADLINE: Duration = Duration::from_secs(90);

/// moto_server, a stand-in bound to a free port and the clients that talk to both.
struct Env {
    _moto: MotoServer,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    mediaconvert: aws_sdk_mediaconvert::Client,
    events_url: String,
    events: Vec<Value>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    work: tempfile::TempDir,
    /// Inputs the stand-in downloaded from S3.
    downloads: Arc<AtomicU64>,
}

impl Env {
    async fn start(max_concurrent_jobs: usize) -> anyhow::Result<Self> {
        Self::start_with(StandinConfig {
            max_concurrent_jobs,
            ..StandinConfig::default()
        })
        .await
    }

    /// A stand-in with `config` (its listen address and events queue are the test's).
    async fn start_with(config: StandinConfig) -> anyhow::Result<Self> {
        let moto = MotoServer::start().await?;
        let sdk = framefleet_e2e::sdk_config(moto.endpoint());
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        for bucket in [INPUTS, FRAMES, PROCESSED] {
            s3.create_bucket()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("CreateBucket {bucket}: {}", describe(&e)))?;
        }
        let events_url = sqs
            .create_queue()
            .queue_name(EVENTS)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("CreateQueue: {}", describe(&e)))?
            .queue_url()
            .context("no queue url")?
            .to_string();
        let standin = Standin::bind(
            StandinConfig {
                listen: "127.0.0.1:0".into(),
                events_queue: EVENTS.into(),
                ..config
            },
            s3.clone(),
            sqs.clone(),
        )
        .await?;
        let downloads = standin.input_downloads();
        let endpoint = format!("http://{}", standin.local_addr());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(standin.run(shutdown.clone()));
        let mediaconvert = aws_sdk_mediaconvert::Client::from_conf(
            aws_sdk_mediaconvert::config::Builder::from(&sdk)
                .endpoint_url(endpoint)
                .build(),
        );
        Ok(Self {
            _moto: moto,
            s3,
            sqs,
            mediaconvert,
            events_url,
            events: Vec::new(),
            shutdown,
            server,
            work: tempfile::tempdir()?,
            downloads,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.server).await???;
        Ok(())
    }

    /// Makes a `testsrc2` video and uploads it to `s3://in/<key>`; returns its local path.
    async fn upload_video(
        &self,
        key: &str,
        rate: &str,
        seconds: f64,
    ) -> anyhow::Result<std::path::PathBuf> {
        let path = self.work.path().join(key.replace('/', "_"));
        make_video(&path, 160, 120, rate, seconds).await?;
        self.upload(key, ByteStream::from_path(&path).await?)
            .await?;
        Ok(path)
    }

    async fn upload(&self, key: &str, body: ByteStream) -> anyhow::Result<()> {
        self.s3
            .put_object()
            .bucket(INPUTS)
            .key(key)
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("PutObject {key}: {}", describe(&e)))?;
        Ok(())
    }

    /// Submits a frame-capture job for `s3://in/<key>` to `destination`.
    async fn submit(
        &self,
        key: &str,
        destination: &str,
        rate: (i32, i32),
        max_captures: i32,
    ) -> anyhow::Result<String> {
        let job = frame_capture(&self.mediaconvert, key, destination, rate, max_captures, 80)
            .send()
            .await?;
        job.job()
            .and_then(|j| j.id())
            .map(String::from)
            .context("CreateJob returned no job id")
    }

    /// Receives events until one for `job_id` has `status`; returns that job's events so far.
    async fn wait_for(&mut self, job_id: &str, status: &str) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let for_job: Vec<Value> = self
                .events
                .iter()
                .filter(|e| e["detail"]["jobId"] == job_id)
                .cloned()
                .collect();
            if for_job.iter().any(|e| e["detail"]["status"] == status) {
                return Ok(for_job);
            }
            if Instant::now() > deadline {
                bail!("no {status} event for {job_id} within {DEADLINE:?}; saw {for_job:#?}");
            }
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.events_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await?;
            for message in received.messages() {
                let body = message.body().context("event without a body")?;
                self.events.push(serde_json::from_str(body)?);
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.events_url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
    }

    /// Keys under `prefix` in the frames bucket, sorted.
    async fn frame_keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(FRAMES)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            keys.extend(
                page?
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn job_status(&self, id: &str) -> anyhow::Result<JobStatus> {
        let job = self.mediaconvert.get_job().id(id).send().await?;
        job.job()
            .and_then(|j| j.status())
            .cloned()
            .context("GetJob returned no status")
    }
}

/// The CreateJob call the dispatcher makes, with its own settings builder: frames to
/// `destination`, the preview to `s3://processed/<same prefix>/preview` at the dispatcher's
/// default size, without audio.
fn frame_capture(
    client: &aws_sdk_mediaconvert::Client,
    key: &str,
    destination: &str,
    rate: (i32, i32),
    max_captures: i32,
    quality: i32,
) -> aws_sdk_mediaconvert::operation::create_job::builders::CreateJobFluentBuilder {
    let input = format!("s3://{INPUTS}/{key}");
    let preview = preview_destination(destination);
    let mut job = capture_job(&input, destination, rate, max_captures, quality);
    job.preview = Some(preview_job(&preview, false));
    client
        .create_job()
        .role(ROLE)
        .user_metadata("video_id", "vid-1")
        .settings(capture_job_settings(&job))
}

/// The dispatcher's job without its preview.
fn capture_job<'a>(
    input_url: &'a str,
    destination: &'a str,
    rate: (i32, i32),
    max_captures: i32,
    quality: i32,
) -> CaptureJob<'a> {
    CaptureJob {
        input_url,
        frames_destination: destination,
        framerate: rate,
        max_captures,
        quality,
        preview: None,
        clip: None,
    }
}

/// The dispatcher's preview at its default size.
fn preview_job(destination: &str, audio: bool) -> PreviewJob<'_> {
    let config = DispatcherConfig::default();
    PreviewJob {
        destination,
        max_width: config.preview_max_width as i32,
        max_height: config.preview_max_height as i32,
        max_bitrate: PREVIEW_MAX_BITRATE,
        qvbr_quality: PREVIEW_QVBR_QUALITY,
        audio,
    }
}

/// `s3://frames/<prefix>/` → `s3://processed/<prefix>/preview`.
fn preview_destination(frames_destination: &str) -> String {
    let prefix = frames_destination
        .strip_prefix(&format!("s3://{FRAMES}/"))
        .unwrap_or_default();
    format!("s3://{PROCESSED}/{prefix}preview")
}

/// ffprobe's (width, height, has audio) of an MP4.
async fn mp4_streams(path: &Path) -> anyhow::Result<(u64, u64, bool)> {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,width,height",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "ffprobe cannot read {}",
        path.display()
    );
    let json: Value = serde_json::from_slice(&out.stdout)?;
    let streams = json["streams"].as_array().context("no streams")?;
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .context("no video stream")?;
    anyhow::ensure!(video["codec_name"] == "h264", "{video}");
    Ok((
        video["width"].as_u64().context("no width")?,
        video["height"].as_u64().context("no height")?,
        streams.iter().any(|s| s["codec_type"] == "audio"),
    ))
}

fn statuses(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| e["detail"]["status"].as_str())
        .collect()
}

fn last_capture(complete: &Value) -> Vec<&str> {
    complete["detail"]["outputGroupDetails"][0]["outputDetails"][0]["outputFilePaths"]
        .as_array()
        .map(|paths| paths.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn find<'a>(events: &'a [Value], status: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["detail"]["status"] == status)
        .unwrap_or_else(|| panic!("no {status} event in {events:#?}"))
}

/// ffmpeg's own first frame of `video`, encoded as the stand-in encodes captures.
async fn first_frame(video: &Path, out: &Path, quality: u8) -> anyhow::Result<Vec<u8>> {
    let status = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-noautorotate",
            "-i",
        ])
        .arg(video)
        .args(["-frames:v", "1", "-c:v", "mjpeg", "-q:v"])
        .arg(mediaconvert_standin::capture::qscale(quality).to_string())
        .args(["-f", "image2"])
        .arg(out)
        .status()
        .await?;
    anyhow::ensure!(status.success(), "ffmpeg could not extract the first frame");
    Ok(tokio::fs::read(out).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn captures_frames_under_mediaconvert_names() -> anyhow::Result<()> {
    let mut env = Env::start(1).await?;
    let video = env.upload_video("dir/my clip.mp4", "10", 2.0).await?;
    let id = env
        .submit("dir/my clip.mp4", "s3://frames/vid-1/", (1, 1), 10_000_000)
        .await?;
    let events = env.wait_for(&id, "COMPLETE").await?;
    assert_eq!(statuses(&events)[0], "PROGRESSING", "{events:#?}");

    // First frame, then one a second: t = 0 s and t = 1 s of a 2 s video.
    let keys = env.frame_keys("vid-1/").await?;
    assert_eq!(
        keys,
        ["vid-1/my clip.0000000.jpg", "vid-1/my clip.0000001.jpg"]
    );
    let complete = find(&events, "COMPLETE");
    assert_eq!(
        last_capture(complete),
        ["s3://frames/vid-1/my clip.0000001.jpg"]
    );
    let detail = &complete["detail"];
    assert_eq!(complete["source"], "aws.mediaconvert");
    assert_eq!(complete["detail-type"], "MediaConvert Job State Change");
    assert_eq!(complete["account"], "000000000000");
    assert_eq!(complete["region"], "us-east-1");
    assert_eq!(
        complete["resources"][0],
        format!("arn:aws:mediaconvert:us-east-1:000000000000:jobs/{id}")
    );
    assert_eq!(detail["jobId"], id.as_str());
    assert_eq!(detail["userMetadata"]["video_id"], "vid-1");
    assert_eq!(detail["outputGroupDetails"][0]["type"], "FILE_GROUP");
    let output = &detail["outputGroupDetails"][0]["outputDetails"][0];
    assert_eq!(output["videoDetails"]["widthInPx"], 160);
    assert_eq!(output["videoDetails"]["heightInPx"], 120);
    assert_eq!(output["durationInMs"], 2000);
    // The preview group, as MediaConvert reports a file group with an MP4 output.
    assert_eq!(detail["outputGroupDetails"][1]["type"], "FILE_GROUP");
    let preview = &detail["outputGroupDetails"][1]["outputDetails"][0];
    assert_eq!(
        preview["outputFilePaths"],
        serde_json::json!(["s3://processed/vid-1/preview.mp4"])
    );
    assert_eq!(preview["videoDetails"]["widthInPx"], 160, "never enlarged");
    assert_eq!(preview["videoDetails"]["heightInPx"], 120);
    let mp4 = env
        .s3
        .get_object()
        .bucket(PROCESSED)
        .key("vid-1/preview.mp4")
        .send()
        .await?;
    assert_eq!(mp4.content_type(), Some("video/mp4"));
    let mp4_path = env.work.path().join("preview.mp4");
    tokio::fs::write(&mp4_path, mp4.body.collect().await?.into_bytes()).await?;
    assert_eq!(mp4_streams(&mp4_path).await?, (160, 120, false));
    assert!(detail["timestamp"].as_i64().unwrap() > 1_600_000_000_000);

    // Capture 0 is the video's first frame, byte for byte.
    let head = env
        .s3
        .get_object()
        .bucket(FRAMES)
        .key("vid-1/my clip.0000000.jpg")
        .send()
        .await?;
    assert_eq!(head.content_type(), Some("image/jpeg"));
    let captured = head.body.collect().await?.into_bytes();
    let expected = first_frame(&video, &env.work.path().join("first.jpg"), 80).await?;
    assert!(
        captured.as_ref() == expected.as_slice(),
        "capture 0 is not the first frame"
    );

    // GetJob and ListJobs agree.
    let job = env.mediaconvert.get_job().id(&id).send().await?;
    let job = job.job().context("no job")?;
    assert_eq!(job.status(), Some(&JobStatus::Complete));
    assert_eq!(job.role(), Some(ROLE));
    assert_eq!(
        job.user_metadata()
            .and_then(|m| m.get("video_id"))
            .map(String::as_str),
        Some("vid-1")
    );
    let details = job.output_group_details();
    assert_eq!(details[0].output_details()[0].duration_in_ms(), Some(2000));
    let settings = job.settings().context("no settings")?;
    assert_eq!(
        settings.inputs()[0].file_input(),
        Some("s3://inputs/dir/my clip.mp4")
    );
    assert!(job.timing().and_then(|t| t.finish_time()).is_some());
    let listed = env.mediaconvert.list_jobs().send().await?;
    assert_eq!(listed.jobs().len(), 1);
    assert_eq!(listed.jobs()[0].id(), Some(id.as_str()));
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ntsc_rate_captures_every_frame_once() -> anyhow::Result<()> {
    let mut env = Env::start(2).await?;
    let video = env.upload_video("ntsc.mp4", "30000/1001", 3.0).await?;
    let frames = count_frames(&video).await?;
    let id = env
        .submit("ntsc.mp4", "s3://frames/ntsc/", (30000, 1001), 10_000_000)
        .await?;
    let events = env.wait_for(&id, "COMPLETE").await?;
    let keys = env.frame_keys("ntsc/").await?;
    assert_eq!(keys.len() as u64, frames, "one capture per frame");
    for (index, key) in keys.iter().enumerate() {
        assert_eq!(key, &format!("ntsc/ntsc.{index:07}.jpg"));
    }
    assert_eq!(
        last_capture(find(&events, "COMPLETE")),
        [format!("s3://frames/ntsc/ntsc.{:07}.jpg", frames - 1)]
    );
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_captures_caps_the_count() -> anyhow::Result<()> {
    let mut env = Env::start(1).await?;
    env.upload_video("clip.mp4", "10", 2.0).await?;
    let id = env
        .submit("clip.mp4", "s3://frames/capped/", (10, 1), 7)
        .await?;
    let events = env.wait_for(&id, "COMPLETE").await?;
    let keys = env.frame_keys("capped/").await?;
    assert_eq!(keys.len(), 7);
    assert_eq!(keys.last().unwrap(), "capped/clip.0000006.jpg");
    assert_eq!(
        last_capture(find(&events, "COMPLETE")),
        ["s3://frames/capped/clip.0000006.jpg"]
    );
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreadable_inputs_end_in_error_events() -> anyhow::Result<()> {
    let mut env = Env::start(1).await?;
    env.upload(
        "notes.mp4",
        ByteStream::from_static(b"this is not a video\n"),
    )
    .await?;
    let id = env
        .submit("notes.mp4", "s3://frames/notes/", (1, 1), 10)
        .await?;
    let events = env.wait_for(&id, "ERROR").await?;
    let error = find(&events, "ERROR");
    assert_eq!(error["detail"]["errorCode"], 1010);
    let message = error["detail"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("s3://inputs/notes.mp4"), "{message}");
    assert!(!message.contains("/tmp"), "local paths leak: {message}");
    let job = env.mediaconvert.get_job().id(&id).send().await?;
    let job = job.job().context("no job")?;
    assert_eq!(job.status(), Some(&JobStatus::Error));
    assert_eq!(job.error_code(), Some(1010));
    assert!(env.frame_keys("notes/").await?.is_empty());

    // A video cut off mid-stream (index first, so it opens) fails to decode.
    let whole = env.work.path().join("whole.mp4");
    make_faststart_video(&whole, 160, 120, "10", 4.0).await?;
    let mut bytes = tokio::fs::read(&whole).await?;
    bytes.truncate(bytes.len() / 2);
    env.upload("cut.mp4", ByteStream::from(bytes)).await?;
    let cut = env
        .submit("cut.mp4", "s3://frames/cut/", (10, 1), 100)
        .await?;
    let events = env.wait_for(&cut, "ERROR").await?;
    let error = find(&events, "ERROR");
    assert_eq!(error["detail"]["errorCode"], 1030, "{error:#}");
    assert!(env.frame_keys("cut/").await?.is_empty());

    let missing = env
        .submit("missing.mp4", "s3://frames/missing/", (1, 1), 10)
        .await?;
    let events = env.wait_for(&missing, "ERROR").await?;
    assert_eq!(find(&events, "ERROR")["detail"]["errorCode"], 1404);
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_settings_are_bad_request_exceptions() -> anyhow::Result<()> {
    let env = Env::start(1).await?;
    let cases = [
        (
            frame_capture(&env.mediaconvert, "a.mp4", "s3://frames/a/", (1, 1), 10, 0),
            "frameCaptureSettings/quality: Should be greater than or equal to 1",
        ),
        (
            frame_capture(
                &env.mediaconvert,
                "a.mp4",
                "s3://frames/a/",
                (1, 1),
                10_000_001,
                80,
            ),
            "maxCaptures: Should be less than or equal to 10000000",
        ),
        (
            frame_capture(&env.mediaconvert, "a.mp4", "s3://frames/a/", (0, 1), 10, 80),
            "framerateNumerator: Should be greater than or equal to 1",
        ),
        (
            frame_capture(
                &env.mediaconvert,
                "a.mp4",
                "https://elsewhere/a/",
                (1, 1),
                10,
                80,
            ),
            "destination",
        ),
        (
            frame_capture(&env.mediaconvert, "a.mp4", "s3://frames/a/", (1, 1), 10, 80)
                .set_role(None),
            "/role",
        ),
    ];
    for (call, expected) in cases {
        let error = call.send().await.unwrap_err().into_service_error();
        assert!(error.is_bad_request_exception(), "{error:?}");
        let message = error.message().unwrap_or_default();
        assert!(message.contains(expected), "{message} lacks {expected}");
    }

    // Another codec in the same request shape: refused with a message naming it.
    let mut settings = frame_capture(&env.mediaconvert, "a.mp4", "s3://frames/a/", (1, 1), 10, 80)
        .get_settings()
        .clone()
        .context("no settings")?;
    let mut groups = settings.output_groups.take().unwrap_or_default();
    let mut output = groups[0].outputs.take().unwrap_or_default().remove(0);
    output.video_description = Some(
        VideoDescription::builder()
            .codec_settings(
                VideoCodecSettings::builder()
                    .codec(VideoCodec::H264)
                    .build(),
            )
            .build(),
    );
    groups[0].outputs = Some(vec![output]);
    settings.output_groups = Some(groups);
    let error = env
        .mediaconvert
        .create_job()
        .role(ROLE)
        .settings(settings)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_bad_request_exception(), "{error:?}");
    assert!(
        error.message().unwrap_or_default().contains("H_264"),
        "{error:?}"
    );
    assert!(env.mediaconvert.list_jobs().send().await?.jobs().is_empty());
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_list_cancel_and_idempotency_round_trip() -> anyhow::Result<()> {
    // One slot: the long job runs, the second waits in SUBMITTED.
    let mut env = Env::start(1).await?;
    env.upload_video("long.mp4", "30", 60.0).await?;
    env.upload_video("short.mp4", "10", 1.0).await?;
    let long = frame_capture(
        &env.mediaconvert,
        "long.mp4",
        "s3://frames/long/",
        (30, 1),
        10_000_000,
        80,
    )
    .client_request_token("token-long")
    .send()
    .await?;
    let long_id = long
        .job()
        .and_then(|j| j.id())
        .context("no id")?
        .to_string();
    let repeat = frame_capture(
        &env.mediaconvert,
        "long.mp4",
        "s3://frames/long/",
        (30, 1),
        10_000_000,
        80,
    )
    .client_request_token("token-long")
    .send()
    .await?;
    assert_eq!(repeat.job().and_then(|j| j.id()), Some(long_id.as_str()));
    let queued = env
        .submit("short.mp4", "s3://frames/short/", (1, 1), 10)
        .await?;
    assert_eq!(env.job_status(&queued).await?, JobStatus::Submitted);

    // ListJobs: newest first, filtered by status, paged.
    let listed = env.mediaconvert.list_jobs().send().await?;
    let ids: Vec<&str> = listed.jobs().iter().filter_map(|j| j.id()).collect();
    assert_eq!(ids, [queued.as_str(), long_id.as_str()]);
    let page = env.mediaconvert.list_jobs().max_results(1).send().await?;
    assert_eq!(page.jobs().len(), 1);
    let next = page.next_token().context("no next token")?;
    let page = env
        .mediaconvert
        .list_jobs()
        .max_results(1)
        .next_token(next)
        .send()
        .await?;
    assert_eq!(page.jobs()[0].id(), Some(long_id.as_str()));
    assert!(page.next_token().is_none());
    let submitted = env
        .mediaconvert
        .list_jobs()
        .status(JobStatus::Submitted)
        .send()
        .await?;
    assert_eq!(submitted.jobs().len(), 1);

    // Cancel the waiting job, then the running one.
    env.mediaconvert.cancel_job().id(&queued).send().await?;
    assert_eq!(env.job_status(&queued).await?, JobStatus::Canceled);
    let events = env.wait_for(&queued, "CANCELED").await?;
    assert_eq!(
        statuses(&events),
        ["CANCELED"],
        "a queued job never progressed"
    );
    let again = env
        .mediaconvert
        .cancel_job()
        .id(&queued)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(again.is_conflict_exception(), "{again:?}");

    env.wait_for(&long_id, "PROGRESSING").await?;
    env.mediaconvert.cancel_job().id(&long_id).send().await?;
    let events = env.wait_for(&long_id, "CANCELED").await?;
    assert!(!statuses(&events).contains(&"COMPLETE"), "{events:#?}");
    assert_eq!(env.job_status(&long_id).await?, JobStatus::Canceled);

    let missing = env
        .mediaconvert
        .get_job()
        .id("1700000000000-nothere")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(missing.is_not_found_exception(), "{missing:?}");
    #[allow(deprecated)]
    let endpoints = env.mediaconvert.describe_endpoints().send().await?;
    let url = endpoints.endpoints()[0].url().unwrap_or_default();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frame_capture_alone_is_refused() -> anyhow::Result<()> {
    let env = Env::start(1).await?;
    let input = format!("s3://{INPUTS}/a.mp4");
    let alone = capture_job(&input, "s3://frames/a/", (1, 1), 10, 80);
    let error = env
        .mediaconvert
        .create_job()
        .role(ROLE)
        .settings(capture_job_settings(&alone))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_bad_request_exception(), "{error:?}");
    let message = error.message().unwrap_or_default();
    assert!(
        message.contains("only be created in jobs that also have a regular video output"),
        "{message}"
    );
    assert!(env.mediaconvert.list_jobs().send().await?.jobs().is_empty());
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn name_modifiers_and_preview_ranges_are_checked() -> anyhow::Result<()> {
    let env = Env::start(1).await?;
    let call = || frame_capture(&env.mediaconvert, "a.mp4", "s3://frames/a/", (1, 1), 10, 80);
    let mut settings = call().get_settings().clone().context("no settings")?;
    let groups = settings.output_groups.as_mut().context("no groups")?;
    let frames = groups[0].outputs.as_mut().context("no outputs")?;
    frames[0].name_modifier = Some(String::new());
    let empty = settings.clone();
    let frames = settings.output_groups.as_mut().unwrap()[0]
        .outputs
        .as_mut()
        .unwrap();
    frames[0].name_modifier = None;
    let second = frames[0].clone();
    frames.push(second);
    let unnamed = settings.clone();
    let frames = settings.output_groups.as_mut().unwrap()[0]
        .outputs
        .as_mut()
        .unwrap();
    frames.truncate(1);
    let preview = &mut settings.output_groups.as_mut().unwrap()[1]
        .outputs
        .as_mut()
        .unwrap()[0];
    let video = preview.video_description.as_mut().unwrap();
    let h264 = video
        .codec_settings
        .as_mut()
        .unwrap()
        .h264_settings
        .as_mut()
        .unwrap();
    h264.qvbr_settings.as_mut().unwrap().qvbr_quality_level = Some(11);
    let qvbr = settings.clone();
    let cases = [
        (
            empty,
            "/outputs/0/nameModifier: Should be at least 1 characters long",
        ),
        (
            unnamed,
            "nameModifier: Name modifier is required when an output group has more than one output",
        ),
        (qvbr, "qvbrQualityLevel: Should be less than or equal to 10"),
    ];
    for (settings, expected) in cases {
        let error = env
            .mediaconvert
            .create_job()
            .role(ROLE)
            .settings(settings)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(error.is_bad_request_exception(), "{error:?}");
        let message = error.message().unwrap_or_default();
        assert!(message.contains(expected), "{message} lacks {expected}");
    }
    assert!(env.mediaconvert.list_jobs().send().await?.jobs().is_empty());
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preview_fits_the_box_with_audio_only_from_a_source_that_has_it() -> anyhow::Result<()> {
    let mut env = Env::start(2).await?;
    // 960×400 with a 440 Hz tone, and the same picture without sound.
    let with_sound = env.work.path().join("tone.mp4");
    let status = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=960x400:rate=5")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-t",
            "1",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-c:a", "aac", "-shortest"])
        .arg(&with_sound)
        .status()
        .await?;
    anyhow::ensure!(
        status.success(),
        "ffmpeg could not make the video with sound"
    );
    env.upload("tone.mp4", ByteStream::from_path(&with_sound).await?)
        .await?;
    let silent = env.work.path().join("silent.mp4");
    framefleet_e2e::media::make_video(&silent, 960, 400, "5", 1.0).await?;
    env.upload("silent.mp4", ByteStream::from_path(&silent).await?)
        .await?;
    for (key, has_sound) in [("tone.mp4", true), ("silent.mp4", false)] {
        let input = format!("s3://{INPUTS}/{key}");
        let frames = format!("s3://frames/{key}/");
        let preview = format!("s3://processed/{key}/preview");
        let mut job = capture_job(&input, &frames, (5, 1), 100, 80);
        // The dispatcher asks for audio only when the header has sound; ask for it with both
        // sources here, so the silent one shows the stand-in encodes none it cannot find.
        job.preview = Some(preview_job(&preview, true));
        let created = env
            .mediaconvert
            .create_job()
            .role(ROLE)
            .settings(capture_job_settings(&job))
            .send()
            .await?;
        let id = created
            .job()
            .and_then(|j| j.id())
            .context("no id")?
            .to_string();
        let events = env.wait_for(&id, "COMPLETE").await?;
        let groups = &find(&events, "COMPLETE")["detail"]["outputGroupDetails"];
        assert_eq!(
            groups[1]["outputDetails"][0]["videoDetails"]["widthInPx"], 640,
            "{key}"
        );
        let bytes = env
            .s3
            .get_object()
            .bucket(PROCESSED)
            .key(format!("{key}/preview.mp4"))
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
        let local = env.work.path().join(format!("{key}.preview.mp4"));
        tokio::fs::write(&local, bytes).await?;
        let (width, height, audio) = mp4_streams(&local).await?;
        assert_eq!(width, 640, "{key}");
        assert!(
            height <= 360 && height.abs_diff(640 * 400 / 960) <= 2,
            "{key}: {height}"
        );
        assert_eq!(audio, has_sound, "{key}");
    }
    env.stop().await
}

/// How a test job reads its input: clip timecodes and the input's timecode source.
#[derive(Debug, Clone, Default)]
struct Clip {
    start: Option<String>,
    end: Option<String>,
    source: Option<InputTimecodeSource>,
    timecode_start: Option<String>,
    /// Send a clip entry even with neither timecode (`{}`).
    empty_entry: bool,
}

impl Clip {
    /// Frames `start..=end` (either side `None`: to the input's first or last frame), labelled
    /// from zero.
    fn zerobased(start: Option<&str>, end: Option<&str>) -> Self {
        Self {
            start: start.map(String::from),
            end: end.map(String::from),
            source: Some(InputTimecodeSource::Zerobased),
            timecode_start: None,
            empty_entry: false,
        }
    }
}

/// The dispatcher's job settings for `s3://inputs/<key>` with `clip` applied to its input.
fn clipped_settings(key: &str, destination: &str, rate: (i32, i32), clip: &Clip) -> JobSettings {
    let input = format!("s3://{INPUTS}/{key}");
    let preview = preview_destination(destination);
    let mut job = capture_job(&input, destination, rate, 10_000_000, 80);
    job.preview = Some(preview_job(&preview, false));
    let mut settings = capture_job_settings(&job);
    let input = &mut settings.inputs.as_mut().expect("the job has an input")[0];
    if clip.start.is_some() || clip.end.is_some() || clip.empty_entry {
        input.input_clippings = Some(vec![InputClipping::builder()
            .set_start_timecode(clip.start.clone())
            .set_end_timecode(clip.end.clone())
            .build()]);
    }
    input.timecode_source = clip.source.clone();
    input.timecode_start = clip.timecode_start.clone();
    settings
}

impl Env {
    /// Submits a clipped frame-capture job carrying `metadata`; returns its id.
    async fn submit_clip(
        &self,
        key: &str,
        destination: &str,
        rate: (i32, i32),
        clip: &Clip,
        metadata: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let mut request = self
            .mediaconvert
            .create_job()
            .role(ROLE)
            .settings(clipped_settings(key, destination, rate, clip));
        for (k, v) in metadata {
            request = request.user_metadata(*k, *v);
        }
        let job = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("CreateJob: {}", describe(&e)))?;
        job.job()
            .and_then(|j| j.id())
            .map(String::from)
            .context("CreateJob returned no job id")
    }

    /// The bytes of every capture under `prefix`, in index order.
    async fn captures(&self, prefix: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut frames = Vec::new();
        for key in self.frame_keys(prefix).await? {
            if !key.ends_with(".jpg") {
                continue;
            }
            let object = self.s3.get_object().bucket(FRAMES).key(&key).send().await?;
            frames.push(object.body.collect().await?.into_bytes().to_vec());
        }
        Ok(frames)
    }

    /// The preview MP4 of a job whose frames went to `s3://frames/<prefix>`, downloaded.
    async fn preview(&self, prefix: &str) -> anyhow::Result<std::path::PathBuf> {
        let key = format!("{prefix}preview.mp4");
        let object = self
            .s3
            .get_object()
            .bucket(PROCESSED)
            .key(&key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GetObject {key}: {}", describe(&e)))?;
        let path = self.work.path().join(key.replace('/', "_"));
        tokio::fs::write(&path, object.body.collect().await?.into_bytes()).await?;
        Ok(path)
    }

    /// Runs an unclipped capture of `key` at `rate` and returns its frames, checked to be
    /// pairwise different (so "equal bytes" below means "the same source frame").
    async fn reference(&mut self, key: &str, rate: (i32, i32)) -> anyhow::Result<Vec<Vec<u8>>> {
        let prefix = format!("{}/whole/", key.replace('.', "-"));
        let id = self
            .submit(key, &format!("s3://{FRAMES}/{prefix}"), rate, 10_000_000)
            .await?;
        self.wait_for(&id, "COMPLETE").await?;
        let frames = self.captures(&prefix).await?;
        let distinct: std::collections::HashSet<&Vec<u8>> = frames.iter().collect();
        anyhow::ensure!(
            distinct.len() == frames.len(),
            "the test video repeats frames"
        );
        Ok(frames)
    }
}

/// A clip's first capture is the frame its start timecode names and its last the frame its
/// end timecode names, both included, at 25, 30 and 29.97 fps, in either notation (labels
/// agree within the first minute at 29.97); the preview is clipped too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clipped_captures_are_exactly_the_frames_between_their_timecodes() -> anyhow::Result<()> {
    let mut env = Env::start(2).await?;
    for (rate, fps, cases) in [
        ("25", (25, 1), vec![("00:00:01:03", "00:00:02:24", 28, 74)]),
        ("30", (30, 1), vec![("00:00:00:29", "00:00:01:00", 29, 30)]),
        (
            "30000/1001",
            (30000, 1001),
            vec![
                ("00:00:01:01", "00:00:03:05", 31, 95),
                ("00:00:01;01", "00:00:03;05", 31, 95),
                ("00:00:00:00", "00:00:00:00", 0, 0),
            ],
        ),
    ] {
        let key = format!("clip-{}.mp4", rate.replace('/', "-"));
        env.upload_video(&key, rate, 4.0).await?;
        let whole = env.reference(&key, fps).await?;
        for (n, (start, end, first, last)) in cases.into_iter().enumerate() {
            let prefix = format!("{key}/clip{n}/");
            let clip = Clip::zerobased(Some(start), Some(end));
            let id = env
                .submit_clip(&key, &format!("s3://{FRAMES}/{prefix}"), fps, &clip, &[])
                .await?;
            let events = env.wait_for(&id, "COMPLETE").await?;
            let frames = env.captures(&prefix).await?;
            assert_eq!(
                frames.len(),
                last - first + 1,
                "{rate} {start}..{end}: {} captures",
                frames.len()
            );
            assert!(
                frames == whole[first..=last],
                "{rate} {start}..{end}: the captures are not source frames {first}..={last}"
            );
            // 0-based within the clip.
            let paths = last_capture(find(&events, "COMPLETE"));
            assert_eq!(
                paths,
                [format!(
                    "s3://{FRAMES}/{prefix}{}.{:07}.jpg",
                    key.trim_end_matches(".mp4"),
                    last - first
                )]
            );
            let preview = env.preview(&prefix).await?;
            assert_eq!(
                count_frames(&preview).await?,
                (last - first + 1) as u64,
                "{rate}: the preview is clipped too"
            );
        }
    }
    // One side blank: from the start, or to the end.
    let key = "clip-25.mp4";
    let whole = env.reference(key, (25, 1)).await?;
    for (n, clip, range) in [
        (0, Clip::zerobased(None, Some("00:00:00:09")), 0..=9),
        (
            1,
            Clip::zerobased(Some("00:00:03:20"), None),
            95..=whole.len() - 1,
        ),
    ] {
        let prefix = format!("open/{n}/");
        let id = env
            .submit_clip(key, &format!("s3://{FRAMES}/{prefix}"), (25, 1), &clip, &[])
            .await?;
        env.wait_for(&id, "COMPLETE").await?;
        assert!(
            env.captures(&prefix).await? == whole[range.clone()],
            "{clip:?}"
        );
    }
    env.stop().await
}

/// N segment jobs planned by the dispatcher's timecode module, run at once, concatenate to the
/// unclipped capture frame for frame; the input is downloaded once for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segments_concatenate_to_the_unclipped_capture() -> anyhow::Result<()> {
    let mut env = Env::start_with(StandinConfig {
        max_concurrent_jobs: 3,
        speed: 4,
        startup_delay_ms: 200,
        ..StandinConfig::default()
    })
    .await?;
    for (rate, fps) in [("30000/1001", (30000, 1001)), ("25", (25, 1))] {
        let key = format!("segments-{}.mp4", rate.replace('/', "-"));
        env.upload_video(&key, rate, 5.0).await?;
        let before = env.downloads.load(Ordering::Relaxed);
        let whole = env.reference(&key, fps).await?;
        let timebase = Timebase::new(CaptureRate::parse(rate)?)?;
        let bounds = plan_segments(whole.len() as u64, 4);
        let mut ids = Vec::new();
        for (k, &(first, last)) in bounds.iter().enumerate() {
            let label = |i: u64| timebase.format(i, Notation::NonDrop);
            let clip = Clip::zerobased(
                Some(label(first)?.as_str()).filter(|_| k > 0),
                Some(label(last)?.as_str()).filter(|_| k + 1 < bounds.len()),
            );
            let prefix = format!("{key}/s{k}/");
            let segment = k.to_string();
            ids.push((
                prefix.clone(),
                env.submit_clip(
                    &key,
                    &format!("s3://{FRAMES}/{prefix}"),
                    fps,
                    &clip,
                    &[("segment", &segment)],
                )
                .await?,
            ));
        }
        let mut joined = Vec::new();
        for (prefix, id) in &ids {
            env.wait_for(id, "COMPLETE").await?;
            joined.extend(env.captures(prefix).await?);
        }
        assert_eq!(joined.len(), whole.len(), "{rate}");
        assert!(
            joined == whole,
            "{rate}: segments differ from the whole capture"
        );
        assert_eq!(
            env.downloads.load(Ordering::Relaxed) - before,
            1,
            "{rate}: one download for the whole capture and {} segments",
            ids.len()
        );
    }
    env.stop().await
}

/// With a speed, a job lasts as long as its clip at that speed: a long job started first
/// completes after a short one started second, as MediaConvert's concurrent jobs do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_jobs_complete_in_order_of_their_video_length() -> anyhow::Result<()> {
    let mut env = Env::start_with(StandinConfig {
        max_concurrent_jobs: 2,
        speed: 2,
        ..StandinConfig::default()
    })
    .await?;
    env.upload_video("paced.mp4", "25", 10.0).await?;
    let long = env
        .submit_clip(
            "paced.mp4",
            "s3://frames/long/",
            (25, 1),
            &Clip::zerobased(None, Some("00:00:09:24")),
            &[],
        )
        .await?;
    env.wait_for(&long, "PROGRESSING").await?;
    let short = env
        .submit_clip(
            "paced.mp4",
            "s3://frames/short/",
            (25, 1),
            &Clip::zerobased(None, Some("00:00:00:04")),
            &[],
        )
        .await?;
    env.wait_for(&long, "COMPLETE").await?;
    let completions: Vec<&Value> = env
        .events
        .iter()
        .filter(|e| e["detail"]["status"] == "COMPLETE")
        .collect();
    let order: Vec<&str> = completions
        .iter()
        .filter_map(|e| e["detail"]["jobId"].as_str())
        .collect();
    assert_eq!(order, [short.as_str(), long.as_str()]);
    env.stop().await
}

/// EMBEDDED reads the input's own start timecode (a QuickTime `tmcd` track), or starts at
/// zero without one; SPECIFIEDSTART takes `timecodeStart`; ZEROBASED ignores the track.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timecode_sources_move_the_clip() -> anyhow::Result<()> {
    let mut env = Env::start(2).await?;
    // A 4-second 25 fps MOV whose timecode track starts at 00:00:01:00 (frame 25).
    let mov = env.work.path().join("tc.mov");
    let status = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=96x64:rate=25:duration=4")
        .args([
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-timecode",
            "00:00:01:00",
        ])
        .arg(&mov)
        .status()
        .await?;
    anyhow::ensure!(status.success(), "ffmpeg could not make the MOV");
    env.upload("tc.mov", ByteStream::from_path(&mov).await?)
        .await?;
    env.upload_video("plain.mp4", "25", 4.0).await?;
    let whole = env.reference("tc.mov", (25, 1)).await?;
    let plain = env.reference("plain.mp4", (25, 1)).await?;
    let at = |start: &str, source: InputTimecodeSource, timecode_start: Option<&str>| Clip {
        start: Some(start.into()),
        end: None,
        source: Some(source),
        timecode_start: timecode_start.map(String::from),
        empty_entry: false,
    };
    for (n, key, clip, first, reference) in [
        (
            0,
            "tc.mov",
            at("00:00:02:00", InputTimecodeSource::Embedded, None),
            25,
            &whole,
        ),
        (
            1,
            "tc.mov",
            at("00:00:02:00", InputTimecodeSource::Zerobased, None),
            50,
            &whole,
        ),
        (
            2,
            "tc.mov",
            at(
                "00:00:02:00",
                InputTimecodeSource::Specifiedstart,
                Some("00:00:01:10"),
            ),
            15,
            &whole,
        ),
        (
            3,
            "plain.mp4",
            at("00:00:02:00", InputTimecodeSource::Embedded, None),
            50,
            &plain,
        ),
    ] {
        let prefix = format!("sources/{n}/");
        let id = env
            .submit_clip(key, &format!("s3://{FRAMES}/{prefix}"), (25, 1), &clip, &[])
            .await?;
        env.wait_for(&id, "COMPLETE").await?;
        assert!(
            env.captures(&prefix).await? == reference[first..],
            "{n}: {clip:?} should start at frame {first}"
        );
    }
    // Before the embedded start there is no frame.
    let id = env
        .submit_clip(
            "tc.mov",
            "s3://frames/sources/early/",
            (25, 1),
            &at("00:00:00:10", InputTimecodeSource::Embedded, None),
            &[],
        )
        .await?;
    let events = env.wait_for(&id, "ERROR").await?;
    let error = find(&events, "ERROR");
    assert_eq!(
        error["detail"]["errorCode"],
        mediaconvert_standin::ERROR_INVALID_CLIP
    );
    let message = error["detail"]["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("before the input's first frame"),
        "{message}"
    );
    env.stop().await
}

/// What MediaConvert refuses: timecodes off the API model's pattern, a clip with neither end,
/// an end before its start (400s, named by path); a frame number the input's rate does not
/// have, drop-frame at 25 fps, a clip past the input's end (job errors, since only the input
/// tells the rate); and idempotency tokens that are not 1 to 64 ASCII characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_clips_and_tokens_are_refused() -> anyhow::Result<()> {
    let mut env = Env::start(2).await?;
    env.upload_video("bad.mp4", "25", 2.0).await?;
    let refused = |clip: Clip| {
        let request = env
            .mediaconvert
            .create_job()
            .role(ROLE)
            .settings(clipped_settings(
                "bad.mp4",
                "s3://frames/bad/",
                (25, 1),
                &clip,
            ));
        async move {
            let error = request.send().await.unwrap_err().into_service_error();
            assert!(error.is_bad_request_exception(), "{clip:?}: {error:?}");
            error.message().unwrap_or_default().to_string()
        }
    };
    for bad in [
        "0:00:01:00",
        "25:00:00:00",
        "00:00:60:00",
        "00:00:01.00",
        "00:00:01:0",
    ] {
        let message = refused(Clip::zerobased(Some(bad), None)).await;
        assert!(
            message.starts_with("/settings/inputs/0/inputClippings/0/startTimecode"),
            "{message}"
        );
        let message = refused(Clip::zerobased(None, Some(bad))).await;
        assert!(
            message.starts_with("/settings/inputs/0/inputClippings/0/endTimecode"),
            "{message}"
        );
    }
    let message = refused(Clip {
        empty_entry: true,
        ..Clip::zerobased(None, None)
    })
    .await;
    assert!(message.contains("but not both"), "{message}");
    let message = refused(Clip::zerobased(Some("00:00:01:05"), Some("00:00:01:04"))).await;
    assert!(message.contains("before the start"), "{message}");

    for (n, clip, says) in [
        (0, Clip::zerobased(Some("00:00:00:25"), None), "frame 25"),
        (1, Clip::zerobased(Some("00:00:00;05"), None), "drop-frame"),
        (
            2,
            Clip::zerobased(Some("00:00:05:00"), None),
            "after the end of the input",
        ),
    ] {
        let id = env
            .submit_clip(
                "bad.mp4",
                &format!("s3://frames/bad{n}/"),
                (25, 1),
                &clip,
                &[],
            )
            .await?;
        let events = env.wait_for(&id, "ERROR").await?;
        let error = find(&events, "ERROR");
        assert_eq!(
            error["detail"]["errorCode"],
            mediaconvert_standin::ERROR_INVALID_CLIP
        );
        let message = error["detail"]["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{n}: {message}");
    }

    // ClientRequestToken: 1 to 64 ASCII characters (API model, CreateJob).
    for (token, ok) in [
        ("a".repeat(64), true),
        ("a".repeat(65), false),
        ("tökén".to_string(), false),
    ] {
        let sent = frame_capture(
            &env.mediaconvert,
            "bad.mp4",
            "s3://frames/tok/",
            (25, 1),
            1,
            80,
        )
        .client_request_token(&token)
        .send()
        .await;
        match (sent, ok) {
            (Ok(_), true) => {}
            (Err(e), false) => {
                let e = e.into_service_error();
                assert!(e.is_bad_request_exception(), "{token}: {e:?}");
                assert!(e
                    .message()
                    .unwrap_or_default()
                    .contains("/clientRequestToken"));
            }
            (sent, _) => panic!("{token}: {sent:?}"),
        }
    }
    env.stop().await
}

/// Fault hooks: the job of one segment errors with a chosen code; another's first frame moves
/// by one, so it captures one frame fewer and starts one later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_hooks_error_a_job_or_shift_its_boundary() -> anyhow::Result<()> {
    let mut env = Env::start_with(StandinConfig {
        max_concurrent_jobs: 2,
        faults: vec![
            FaultRule {
                metadata_key: "segment".into(),
                metadata_value: "2".into(),
                fault: Fault::Error { code: 1999 },
                times: 1,
            },
            FaultRule {
                metadata_key: "segment".into(),
                metadata_value: "1".into(),
                fault: Fault::ShiftStart { frames: 1 },
                times: 0,
            },
        ],
        ..StandinConfig::default()
    })
    .await?;
    env.upload_video("faults.mp4", "25", 2.0).await?;
    let whole = env.reference("faults.mp4", (25, 1)).await?;
    let clip = Clip::zerobased(Some("00:00:00:10"), Some("00:00:00:19"));
    let failed = env
        .submit_clip(
            "faults.mp4",
            "s3://frames/f2a/",
            (25, 1),
            &clip,
            &[("segment", "2")],
        )
        .await?;
    let events = env.wait_for(&failed, "ERROR").await?;
    assert_eq!(find(&events, "ERROR")["detail"]["errorCode"], 1999);
    // `times: 1`: the retry goes through.
    let retried = env
        .submit_clip(
            "faults.mp4",
            "s3://frames/f2b/",
            (25, 1),
            &clip,
            &[("segment", "2")],
        )
        .await?;
    env.wait_for(&retried, "COMPLETE").await?;
    assert!(env.captures("f2b/").await? == whole[10..=19]);
    let shifted = env
        .submit_clip(
            "faults.mp4",
            "s3://frames/f1/",
            (25, 1),
            &clip,
            &[("segment", "1")],
        )
        .await?;
    env.wait_for(&shifted, "COMPLETE").await?;
    assert!(env.captures("f1/").await? == whole[11..=19]);
    env.stop().await
}
