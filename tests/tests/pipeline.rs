//! The pipeline end to end: uploads through S3 notifications, the dispatcher, the MediaConvert
//! stand-in running real ffmpeg, the worker fleet and the job table, all against moto_server.

use std::time::Duration;

use framefleet_core::frames::frame_index;
use framefleet_core::jobs::JobStatus;
use framefleet_core::message::FrameBatch;
use framefleet_e2e::fault_proxy::{FaultPlan, Gate, Service};
use framefleet_e2e::media::{count_frames, video_bytes};
use framefleet_e2e::stack::{spawn_stack, spawn_stack_with, Stack, StackOptions};
use framefleet_edge::{Blur, EdgeParams, OutputFormat};
use framefleet_worker::output::output_key;

/// Every processed object of a job except the manifest, checked to be a JPEG of `w`×`h` equal
/// byte for byte to what [`framefleet_edge::process`] makes offline of the captured frame with
/// the parameters the manifest records.
async fn assert_edge_maps(stack: &Stack, video_id: &str, expected: u64, w: u32, h: u32) {
    let keys = stack
        .list(&stack.resources.processed_bucket, &format!("{video_id}/"))
        .await
        .unwrap();
    let maps: Vec<&String> = keys.iter().filter(|k| frame_index(k).is_some()).collect();
    assert_eq!(maps.len() as u64, expected, "edge maps: {keys:?}");
    for key in maps {
        let bytes = stack
            .get(&stack.resources.processed_bucket, key)
            .await
            .unwrap();
        let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
            .unwrap_or_else(|e| panic!("{key} is not a JPEG: {e}"));
        assert_eq!((image.width(), image.height()), (w, h), "{key}");
    }
    assert_edge_maps_are_the_offline_output(stack, video_id).await;
}

/// Each captured frame's edge map is exactly the offline kernel's output for that frame with
/// the parameters the manifest records: a blank image, or parameters the worker ignored,
/// cannot pass. Returns the parameters.
async fn assert_edge_maps_are_the_offline_output(stack: &Stack, video_id: &str) -> EdgeParams {
    let manifest = stack.manifest(video_id).await.unwrap();
    let params: EdgeParams = serde_json::from_value(manifest["parameters"].clone())
        .unwrap_or_else(|e| panic!("manifest parameters: {e}: {manifest:#}"));
    let frames = stack.captured_frames(&video_id).await.unwrap();
    assert!(!frames.is_empty());
    for frame in &frames {
        let captured = stack
            .get(&stack.resources.frames_bucket, frame)
            .await
            .unwrap();
        let offline = framefleet_edge::process(&captured, &params).unwrap();
        let key = output_key(video_id, frame, params.format.extension());
        let stored = stack
            .get(&stack.resources.processed_bucket, &key)
            .await
            .unwrap();
        assert!(
            stored == offline.bytes,
            "{key} differs from the offline edge map of {frame} with {params:?}"
        );
    }
    params
}

/// How many times the job's manifest was written: its versions in the (versioned) processed
/// bucket, from ListObjectVersions
/// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html).
async fn manifest_writes(stack: &Stack, video_id: &str) -> usize {
    stack
        .processed_versions(&format!("{video_id}/manifest.json"))
        .await
        .unwrap()
        .len()
}

/// The job's preview, checked to be an H.264 MP4 ffprobe reads, that fits 640×360 (the
/// dispatcher's default box) and is named by the manifest; returns (width, height, has audio).
async fn assert_preview(stack: &Stack, video_id: &str) -> (u64, u64, bool) {
    let key = format!("{video_id}/preview.mp4");
    let bytes = stack
        .get(&stack.resources.processed_bucket, &key)
        .await
        .unwrap_or_else(|e| panic!("no preview at {key}: {e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preview.mp4");
    std::fs::write(&path, bytes).unwrap();
    let out = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .args(["stream=codec_type,codec_name,width,height:format=format_name"])
        .args(["-of", "json"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "ffprobe cannot read {key}");
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        probe["format"]["format_name"]
            .as_str()
            .unwrap()
            .contains("mp4"),
        "{probe:#}"
    );
    let streams = probe["streams"].as_array().unwrap();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    assert_eq!(video["codec_name"], "h264");
    let (width, height) = (
        video["width"].as_u64().unwrap(),
        video["height"].as_u64().unwrap(),
    );
    assert!(width <= 640 && height <= 360, "{width}×{height}");
    let manifest = stack.manifest(video_id).await.unwrap();
    assert_eq!(
        manifest["preview"]["bucket"],
        stack.resources.processed_bucket.as_str()
    );
    assert_eq!(manifest["preview"]["key"], key.as_str());
    (
        width,
        height,
        streams.iter().any(|s| s["codec_type"] == "audio"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_becomes_edge_maps_with_exact_counts() {
    let stack = spawn_stack().await.unwrap();
    stack.version_processed_bucket().await.unwrap();
    let (video, frames) = video_bytes("clip.mp4", 160, 96, "12", 2.0).await.unwrap();
    let key = "uploads/my clip+ü (1).mp4";
    let video_id = stack.upload(key, video).await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    let captured = stack.captured_frames(&video_id).await.unwrap();
    assert_eq!(captured.len() as u64, frames, "stand-in captures");
    assert_eq!(record.total_frames, Some(frames));
    assert_eq!(record.processed_frames, frames);
    assert_eq!(record.failed_frames, 0);
    assert_eq!(record.capture_rate.as_deref(), Some("12/1"));
    assert!(
        captured[0].ends_with("/my clip+ü (1).0000000.jpg"),
        "{captured:?}"
    );
    assert_edge_maps(&stack, video_id.as_str(), frames, 160, 96).await;
    assert_eq!(
        manifest_writes(&stack, video_id.as_str()).await,
        1,
        "one winner writes the manifest, once"
    );
    let manifest = stack.manifest(video_id.as_str()).await.unwrap();
    assert_eq!(manifest["counts"]["total"], frames);
    assert_eq!(manifest["counts"]["processed"], frames);
    assert_eq!(manifest["source"]["key"], key);
    assert!(manifest["mediaconvert_job_id"].is_string(), "{manifest:#}");
    assert_eq!(manifest["capture_rate"], "12/1");
    assert_eq!(manifest["output"]["layout"], "objects");
    // Usage, per-frame layout: every frame read once and written once, send + receive +
    // delete per batch, counted once per batch in the job record the manifest reports.
    let batches = record.batches.unwrap();
    let workers = &manifest["usage"]["workers"];
    assert_eq!(workers["s3_get_requests"], frames, "{workers:#}");
    assert_eq!(workers["s3_put_requests"], frames, "{workers:#}");
    assert_eq!(workers["sqs_requests"], 3 * batches, "{workers:#}");
    assert!(workers["dynamodb_read_units"].as_u64().unwrap() >= batches);
    assert!(workers["dynamodb_write_units"].as_u64().unwrap() >= 5 * batches);
    assert!(
        workers["worker_cpu_ms"].as_u64().unwrap() > 0,
        "{workers:#}"
    );
    assert_eq!(record.usage.s3_put_requests, frames);
    // Edge maps, the manifest, the pinned upload copy, MediaConvert's frames and preview.
    assert_eq!(
        manifest["usage"]["total"]["s3_put_requests"],
        frames + 1 + 1 + frames + 1
    );
    assert!(manifest["cost"]["total_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(manifest["cost"]["prices_read_on"], "2026-11-30");
    assert_eq!(
        record.manifest_key,
        Some(format!("{video_id}/manifest.json"))
    );
    // A source smaller than the box is not enlarged; it has no sound, so neither has the preview.
    assert_eq!(
        assert_preview(&stack, video_id.as_str()).await,
        (160, 96, false)
    );
}

/// Non-default kernel parameters reach every worker through the batches: PNG, a downscale to
/// fit 80×40, and an absolute sigma. The manifest records them and every edge map is the
/// offline output for its frame with exactly them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_parameters_reach_the_workers_and_the_manifest() {
    let mut options = StackOptions::default();
    options.kernel.format = OutputFormat::Png;
    options.kernel.sigma = Some(1.3);
    options.kernel.max_width = Some(80);
    options.kernel.max_height = Some(40);
    let stack = spawn_stack_with(options).await.unwrap();
    stack.version_processed_bucket().await.unwrap();
    let (video, frames) = video_bytes("clip.mp4", 160, 96, "6", 1.0).await.unwrap();
    let video_id = stack.upload("params.mp4", video).await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames);
    let params = assert_edge_maps_are_the_offline_output(&stack, video_id.as_str()).await;
    assert_eq!(params.format, OutputFormat::Png);
    assert_eq!(params.blur, Blur::Sigma(1.3));
    assert_eq!((params.max_width, params.max_height), (Some(80), Some(40)));
    assert_eq!(manifest_writes(&stack, video_id.as_str()).await, 1);
    let keys = stack
        .list(&stack.resources.processed_bucket, &format!("{video_id}/"))
        .await
        .unwrap();
    let maps: Vec<&String> = keys.iter().filter(|k| k.ends_with(".png")).collect();
    assert_eq!(maps.len() as u64, frames, "{keys:?}");
    for key in maps {
        let bytes = stack
            .get(&stack.resources.processed_bucket, key)
            .await
            .unwrap();
        let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .unwrap_or_else(|e| panic!("{key} is not a PNG: {e}"));
        // 160×96 shrunk to fit 80×40, aspect kept: the height binds.
        assert_eq!(image.height(), 40, "{key}");
        assert!(image.width().abs_diff(160 * 40 / 96) <= 1, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preview_of_a_large_video_with_sound_fits_the_box_and_keeps_the_sound() {
    let stack = spawn_stack().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.mp4");
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=960x400:rate=5"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", "1", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .await
        .unwrap();
    assert!(
        status.success(),
        "ffmpeg could not make the video with sound"
    );
    let frames = count_frames(&path).await.unwrap();
    let video_id = stack
        .upload("tone.mp4", std::fs::read(&path).unwrap())
        .await
        .unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames);
    let (width, height, audio) = assert_preview(&stack, video_id.as_str()).await;
    assert_eq!(width, 640);
    assert!(height.abs_diff(640 * 400 / 960) <= 2, "{height}");
    assert!(audio, "the source has sound, so the preview has too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ntsc_video_is_captured_at_30000_over_1001() {
    let stack = spawn_stack().await.unwrap();
    let (video, frames) = video_bytes("clip.mp4", 96, 64, "30000/1001", 1.5)
        .await
        .unwrap();
    let video_id = stack.upload("ntsc.mp4", video).await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.capture_rate.as_deref(), Some("30000/1001"));
    assert_eq!(
        record.total_frames,
        Some(frames),
        "every frame exactly once"
    );
    assert_eq!(record.processed_frames, frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matroska_and_webm_are_captured_at_their_own_rate() {
    let stack = spawn_stack().await.unwrap();
    let (mkv, mkv_frames) = video_bytes("ntsc.mkv", 96, 64, "30000/1001", 1.0)
        .await
        .unwrap();
    let (webm, webm_frames) = video_bytes("pal.webm", 96, 64, "25", 1.0).await.unwrap();
    let mkv_id = stack.upload("ntsc.mkv", mkv).await.unwrap();
    let webm_id = stack.upload("pal.webm", webm).await.unwrap();
    for (id, frames, rate) in [
        (mkv_id, mkv_frames, "30000/1001"),
        (webm_id, webm_frames, "25/1"),
    ] {
        let record = stack.wait_final(&id).await.unwrap();
        assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
        assert_eq!(record.capture_rate.as_deref(), Some(rate));
        assert_eq!(
            record.total_frames,
            Some(frames),
            "every frame exactly once"
        );
        assert_eq!(record.processed_frames, frames);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_notification_makes_one_job() {
    let stack = spawn_stack_with(StackOptions {
        workers: 1,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (video, _) = video_bytes("clip.mp4", 64, 48, "5", 1.0).await.unwrap();
    let key = "dup.mp4";
    let video_id = stack.upload(key, video).await.unwrap();
    let head = stack
        .clients
        .s3
        .head_object()
        .bucket(&stack.resources.ingress_bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let duplicate = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": stack.resources.ingress_bucket},
               "object": {"key": key, "size": head.content_length().unwrap_or(0),
                          "eTag": head.e_tag().unwrap_or_default()}}}]});
    for _ in 0..2 {
        stack
            .clients
            .sqs
            .send_message()
            .queue_url(&stack.provisioned.ingress_queue_url)
            .message_body(duplicate.to_string())
            .send()
            .await
            .unwrap();
    }
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    // Give the duplicates time to be consumed, then check nothing new appeared.
    stack
        .wait_until_empty(&stack.provisioned.ingress_queue_url)
        .await
        .unwrap();
    let jobs = stack.clients.mediaconvert.list_jobs().send().await.unwrap();
    assert_eq!(jobs.jobs().len(), 1, "one MediaConvert job");
    let items = stack
        .clients
        .dynamodb
        .scan()
        .table_name(&stack.resources.jobs_table)
        .filter_expression("sk = :job")
        .expression_attribute_values(
            ":job",
            aws_sdk_dynamodb::types::AttributeValue::S("job".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(items.count(), 1, "one job record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_batches_are_not_counted_twice() {
    let mut stack = spawn_stack_with(StackOptions::without_workers())
        .await
        .unwrap();
    let (video, frames) = video_bytes("clip.mp4", 64, 48, "10", 1.0).await.unwrap();
    let video_id = stack.upload("redeliver.mp4", video).await.unwrap();
    let record = stack.wait_processing(&video_id).await.unwrap();
    assert_eq!(record.total_frames, Some(frames));
    let batches = record.batches.unwrap();
    // Copy every batch twice more: the queue now holds each batch three times.
    let messages = stack
        .clients
        .sqs
        .receive_message()
        .queue_url(&stack.provisioned.frames_queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let bodies: Vec<String> = messages
        .messages()
        .iter()
        .filter_map(|m| m.body().map(ToString::to_string))
        .collect();
    // moto hands back every message of a receive up to 10: all batches are copied.
    let mut resent: Vec<FrameBatch> = bodies
        .iter()
        .map(|b| FrameBatch::parse(b).unwrap())
        .collect();
    resent.sort_by_key(|b| b.batch_index);
    assert_eq!(
        resent
            .iter()
            .map(|b| u64::from(b.batch_index))
            .collect::<Vec<_>>(),
        (0..batches).collect::<Vec<_>>(),
        "every batch re-sent"
    );
    for body in &bodies {
        for _ in 0..2 {
            stack
                .clients
                .sqs
                .send_message()
                .queue_url(&stack.provisioned.frames_queue_url)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
    }
    stack.start_worker().await.unwrap();
    stack.start_worker().await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete);
    stack
        .wait_until_empty(&stack.provisioned.frames_queue_url)
        .await
        .unwrap();
    let record = stack.jobs.get(&video_id).await.unwrap().unwrap();
    assert_eq!(record.processed_frames, frames, "counted once");
    assert_eq!(record.failed_frames, 0);
    assert_eq!(record.batches, Some(batches));
    // Each re-sent batch has its marker, and the total is the sum of exactly one count per
    // batch: any batch counted twice (or not at all) moves it.
    for batch in &resent {
        assert!(
            stack
                .jobs
                .is_counted(&video_id, batch.batch_index)
                .await
                .unwrap(),
            "batch {} counted",
            batch.batch_index
        );
    }
    assert_eq!(
        resent
            .iter()
            .map(|b| b.frame_keys.len() as u64)
            .sum::<u64>(),
        frames
    );
    assert_edge_maps(&stack, video_id.as_str(), frames, 64, 48).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_frame_is_counted_failed_and_job_completes() {
    let mut stack = spawn_stack_with(StackOptions::without_workers())
        .await
        .unwrap();
    let (video, frames) = video_bytes("clip.mp4", 64, 48, "8", 1.0).await.unwrap();
    let video_id = stack.upload("corrupt.mp4", video).await.unwrap();
    stack.wait_processing(&video_id).await.unwrap();
    let captured = stack.captured_frames(&video_id).await.unwrap();
    let broken = captured[2].clone();
    stack.corrupt_frame(&broken).await.unwrap();
    stack.start_worker().await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.failed_frames, 1);
    assert_eq!(record.processed_frames, frames - 1);
    let manifest = stack.manifest(video_id.as_str()).await.unwrap();
    let failed = manifest["failed_frames"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["key"], broken.as_str());
    assert!(!failed[0]["reason"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_video_and_cut_off_uploads_fail_with_a_reason() {
    let stack = spawn_stack().await.unwrap();
    let text = stack
        .upload(
            "notes.mp4",
            b"these are meeting notes, not a video".to_vec(),
        )
        .await
        .unwrap();
    let (mut video, _) = video_bytes("clip.mp4", 64, 48, "10", 2.0).await.unwrap();
    video.truncate(video.len() / 2);
    let cut = stack.upload("cut.mp4", video).await.unwrap();
    let empty = stack.upload("empty.mov", Vec::new()).await.unwrap();
    let record = stack.wait_final(&text).await.unwrap();
    assert_eq!(record.status, JobStatus::Failed);
    assert!(
        record
            .last_error
            .as_deref()
            .unwrap()
            .contains("not a video"),
        "{record:#?}"
    );
    let record = stack.wait_final(&cut).await.unwrap();
    assert_eq!(record.status, JobStatus::Failed);
    assert!(
        record.last_error.as_deref().unwrap().contains("cut off"),
        "{record:#?}"
    );
    let record = stack.wait_final(&empty).await.unwrap();
    assert_eq!(record.status, JobStatus::Failed);
    assert!(
        record.last_error.as_deref().unwrap().contains("empty"),
        "{record:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mediaconvert_error_fails_the_job_with_its_code() {
    let stack = spawn_stack_with(StackOptions {
        dispatcher_config: framefleet_dispatcher::settings::DispatcherConfig {
            capture_rate: "5".into(),
            ..StackOptions::default().dispatcher_config
        },
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let video_id = stack
        .upload("fake.mp4", b"plain text with a video suffix".to_vec())
        .await
        .unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Failed);
    let error = record.last_error.unwrap();
    // MediaConvert's own code and message for the job, as GetJob reports them.
    let job_id = record.mediaconvert_job_id.expect("the job was created");
    let job = stack
        .clients
        .mediaconvert
        .get_job()
        .id(&job_id)
        .send()
        .await
        .unwrap();
    let job = job.job().unwrap();
    let code = job.error_code().expect("an error code").to_string();
    let message = job.error_message().expect("an error message");
    assert!(!message.is_empty());
    assert!(error.contains(message), "{error} lacks {message}");
    assert!(
        error.replacen(message, "", 1).contains(&code),
        "{error} lacks the code {code}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_events_odd_keys_and_garbage_are_handled() {
    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let dispatcher = stack.dispatcher().await.unwrap();
    let worker = stack.worker().await.unwrap();
    let sqs = &stack.clients.sqs;
    let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-22T00:00:00.000Z","Bucket":"b","RequestId":"r","HostId":"h"}"#;
    sqs.send_message()
        .queue_url(&stack.provisioned.ingress_queue_url)
        .message_body(test_event)
        .send()
        .await
        .unwrap();
    // Drain whatever moto sent on configuration plus our test event.
    let mut handled = 0;
    for _ in 0..5 {
        let outcome = dispatcher
            .run_once(framefleet_dispatcher::Feed::Ingress, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(outcome.rejected, 0, "{outcome:?}");
        handled += outcome.handled;
        if outcome.received == 0 {
            break;
        }
    }
    assert!(handled >= 1);
    // A non-video suffix is skipped: no job.
    let skipped = stack
        .upload("docs/readme.txt", b"hi".to_vec())
        .await
        .unwrap();
    // Odd keys decode back to the object (the video id is derived from the decoded key).
    let (video, _) = video_bytes("clip.mp4", 64, 48, "5", 0.6).await.unwrap();
    let odd = stack
        .upload("a dir/ünïcødé + plus%20/clip #1.mp4", video)
        .await
        .unwrap();
    // Until both notifications were handled (deleted): only then may "no job" be asserted.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        dispatcher
            .run_once(framefleet_dispatcher::Feed::Ingress, Duration::from_secs(1))
            .await
            .unwrap();
        if stack
            .queue_depth(&stack.provisioned.ingress_queue_url)
            .await
            .unwrap()
            == 0
            && stack.jobs.get(&odd).await.unwrap().is_some()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ingress queue never drained"
        );
    }
    assert!(stack.jobs.get(&skipped).await.unwrap().is_none());
    let record = stack
        .wait_for(
            &odd,
            &[JobStatus::Capturing, JobStatus::Processing],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(record.source_key, "a dir/ünïcødé + plus%20/clip #1.mp4");

    // Garbage on the ingress and frames queues ends in their DLQs.
    for url in [
        &stack.provisioned.ingress_queue_url,
        &stack.provisioned.job_events_queue_url,
        &stack.provisioned.frames_queue_url,
    ] {
        sqs.send_message()
            .queue_url(url)
            .message_body("{ this is not json")
            .send()
            .await
            .unwrap();
    }
    let ingress_dlq = stack.dlq_url(&stack.resources.ingress_queue).to_string();
    let frames_dlq = stack.dlq_url(&stack.resources.frames_queue).to_string();
    let events_dlq = stack.dlq_url(&stack.resources.job_events_queue).to_string();
    for _ in 0..12 {
        for feed in [
            framefleet_dispatcher::Feed::Ingress,
            framefleet_dispatcher::Feed::JobEvents,
        ] {
            dispatcher
                .run_once(feed, Duration::from_millis(200))
                .await
                .unwrap();
        }
        worker
            .run_once(10, Duration::from_millis(200))
            .await
            .unwrap();
        if stack.queue_depth(&ingress_dlq).await.unwrap() == 1
            && stack.queue_depth(&events_dlq).await.unwrap() == 1
            && stack.queue_depth(&frames_dlq).await.unwrap() == 1
        {
            return;
        }
    }
    panic!(
        "garbage did not reach the DLQs: ingress {} job events {} frames {}",
        stack.queue_depth(&ingress_dlq).await.unwrap(),
        stack.queue_depth(&events_dlq).await.unwrap(),
        stack.queue_depth(&frames_dlq).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_worker_drains_and_another_finishes_the_job() {
    // The workers' counting transactions wait at a gate in the fault proxy until the signal
    // has come: while one waits there, its batch is certainly in flight in the worker. (A
    // message merely not visible is not: it may be one a receive in flight has just taken,
    // which the worker hands back at shutdown instead of starting.)
    let counting = Gate::new();
    let stack = spawn_stack_with(StackOptions {
        faults: Some(FaultPlan::strict().hold_on(
            Service::DynamoDb,
            "TransactWriteItems",
            &counting,
        )),
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    let (video, frames) = video_bytes("clip.mp4", 640, 360, "10", 2.0).await.unwrap();
    let video_id = stack.upload("drain.mp4", video).await.unwrap();
    stack.wait_processing(&video_id).await.unwrap();
    let frames_queue = &stack.provisioned.frames_queue_url;
    // SIGTERM arrives while the first worker is counting a batch: it stops receiving,
    // finishes what it holds within the drain time, counts it itself, and returns holding
    // nothing.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let first = stack.worker().await.unwrap();
    let running = tokio::spawn(first.run(shutdown.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while counting.reached() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never counted a batch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    counting.open();
    let summary = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the worker returns after draining")
        .unwrap()
        .unwrap();
    assert!(
        summary.drained >= 1,
        "batches in flight at the signal were finished by this worker: {summary:?}"
    );
    assert_eq!(
        summary.abandoned, 0,
        "the drain finished in time: {summary:?}"
    );
    assert_eq!(
        stack.not_visible(frames_queue).await.unwrap(),
        0,
        "nothing left invisible: {summary:?}"
    );
    let second = stack.worker().await.unwrap();
    let finisher = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(second.run(finisher.clone()));
    let record = stack.wait_final(&video_id).await.unwrap();
    finisher.cancel();
    let rest = running.await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames);
    assert_eq!(record.failed_frames, 0);
    assert_eq!(
        (summary.handled + rest.handled) as u64,
        record.batches.unwrap(),
        "every batch counted by exactly one worker: {summary:?} then {rest:?}"
    );
}

/// Batches that take longer than the frames queue's 2 s visibility timeout stay with the
/// worker that holds them: its heartbeat extends the visibility (ChangeMessageVisibility,
/// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html),
/// so no batch is received by a second consumer. Slow by construction: 60 full-HD frames a
/// batch, one frame at a time, each read from and written to moto; each worker keeps a free
/// slot, so an expired batch would be received again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_longer_than_the_visibility_timeout_are_received_once() {
    let mut options = StackOptions::without_workers();
    options.queues.frames_visibility_timeout_secs = 2;
    options.dispatcher_config.batch_size = 60;
    let stack = spawn_stack_with(options).await.unwrap();
    let (video, frames) = video_bytes("clip.mp4", 1920, 1080, "30", 4.0)
        .await
        .unwrap();
    let video_id = stack.upload("slow.mp4", video).await.unwrap();
    let record = stack
        .wait_for(
            &video_id,
            &[JobStatus::Processing],
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    let batches = record.batches.unwrap();
    let mut settings = stack.worker_settings.clone();
    settings.worker.frame_concurrency = 1;
    settings.worker.batches_in_flight = 2;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut running = Vec::new();
    for _ in 0..2 {
        let worker = framefleet_worker::Worker::new(
            settings.clone(),
            stack.clients_as(&stack.identities.worker, &stack.policies.worker),
        )
        .await
        .unwrap();
        running.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    let record = stack.wait_final(&video_id).await.unwrap();
    shutdown.cancel();
    let mut handled = 0;
    for task in running {
        handled += task.await.unwrap().unwrap().handled;
    }
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames);
    assert_eq!(
        handled as u64, batches,
        "each batch handled by exactly one delivery"
    );
    stack
        .wait_until_empty(&stack.provisioned.frames_queue_url)
        .await
        .unwrap();
    assert_eq!(
        stack
            .queue_depth(stack.dlq_url(&stack.resources.frames_queue))
            .await
            .unwrap(),
        0
    );
}
