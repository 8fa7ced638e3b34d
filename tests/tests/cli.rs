//! `framefleet`, the user's command, as a real process against a whole stack (moto_server,
//! the MediaConvert stand-in running ffmpeg, the dispatcher and workers in-process): submit
//! (multipart, the id the dispatcher derives) → wait → fetch (checked, resumable), cancel
//! (while processing and while capturing), list, and the one-line errors with their exit codes.
//!
//! The binary is built by `cargo build --workspace --bins` and found beside the test binary.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use aws_sdk_mediaconvert::types::JobStatus as MediaConvertStatus;
use framefleet_core::jobs::JobStatus;
use framefleet_core::video::VideoId;
use framefleet_e2e::media::{count_frames, make_video};
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};

/// Runs `framefleet args…` against `stack` with only the environment a user would set.
async fn framefleet(stack: &Stack, args: &[&str]) -> Output {
    stack.framefleet(args).await.unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// A generated video file and its frame count.
async fn video(dir: &Path, name: &str, rate: &str, seconds: f64) -> (PathBuf, u64) {
    let path = dir.join(name);
    make_video(&path, 96, 64, rate, seconds).await.unwrap();
    let frames = count_frames(&path).await.unwrap();
    (path, frames)
}

/// Polls `condition` every 50 ms for up to two minutes.
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_wait_then_fetch_checks_counts_and_resumes() {
    let stack = spawn_stack_with(StackOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, frames) = video(dir.path(), "my clip.mp4", "12", 2.0).await;
    // A one-part multipart upload: its eTag is `<md5 of md5s>-1`, not the content's MD5.
    let out = framefleet(
        &stack,
        &[
            "submit",
            path.to_str().unwrap(),
            "--wait",
            "--json",
            "--multipart-threshold",
            "1",
            "--key-prefix",
            "uploads/",
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let lines = json_lines(&out);
    let submitted = &lines[0];
    let etag = submitted["etag"].as_str().unwrap();
    assert!(etag.ends_with("-1"), "multipart eTag: {etag}");
    let head = stack
        .clients
        .s3
        .head_object()
        .bucket(&stack.resources.ingress_bucket)
        .key("uploads/my clip.mp4")
        .send()
        .await
        .unwrap();
    // The template versions the ingress bucket: the id comes from the version the upload
    // made, as the dispatcher derives it from the notification.
    assert!(
        head.version_id().is_some(),
        "the ingress bucket is versioned"
    );
    let id = VideoId::of_upload(
        &stack.resources.ingress_bucket,
        "uploads/my clip.mp4",
        head.e_tag().unwrap(),
        head.version_id(),
    );
    assert_eq!(submitted["video_id"], id.as_str());
    // The dispatcher registered the job under the id the command printed.
    let record = stack.jobs.get(&id).await.unwrap().expect("job registered");
    assert_eq!(record.status, JobStatus::Complete);
    let last = lines.last().unwrap();
    assert_eq!(last["status"], "COMPLETE", "{lines:#?}");
    assert_eq!(last["counts"]["processed"], frames);
    assert!(
        lines[1..lines.len() - 1]
            .iter()
            .any(|l| l["status"].is_string() && l["status"] != "COMPLETE"),
        "progress lines before the end: {lines:#?}"
    );

    let status = framefleet(&stack, &["status", id.as_str()]).await;
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    assert!(
        stdout(&status).contains(&format!("{frames}/{frames} frames processed, 0 failed")),
        "{}",
        stdout(&status)
    );

    let out_dir = dir.path().join("out");
    let out_str = out_dir.to_str().unwrap();
    let fetch = framefleet(&stack, &["fetch", id.as_str(), "--out", out_str, "--json"]).await;
    assert_eq!(fetch.status.code(), Some(0), "{}", stderr(&fetch));
    let report = &json_lines(&fetch)[0];
    assert_eq!(
        report["downloaded"],
        frames + 2,
        "edge maps, the manifest and the MP4 preview: {report}"
    );
    assert_eq!(report["skipped"], 0);
    assert_eq!(report["edge_maps"], frames);
    let names = files_in(&out_dir);
    let maps = names.iter().filter(|n| n.ends_with(".jpg")).count() as u64;
    assert_eq!(maps, frames, "{names:?}");
    assert!(names.contains(&"manifest.json".to_string()), "{names:?}");
    assert!(names.contains(&"preview.mp4".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".part")), "{names:?}");
    let first_map = names.iter().find(|n| n.ends_with(".jpg")).unwrap();
    let remote = stack
        .get(
            &stack.resources.processed_bucket,
            &format!("{id}/{first_map}"),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(out_dir.join(first_map)).unwrap(), remote);

    let again = framefleet(&stack, &["fetch", id.as_str(), "--out", out_str, "--json"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let report = &json_lines(&again)[0];
    assert_eq!(report["downloaded"], 0, "{report}");
    assert_eq!(report["skipped"], frames + 2);

    // A truncated file is downloaded again; the others are not.
    std::fs::write(out_dir.join(first_map), b"cut").unwrap();
    let resumed = framefleet(&stack, &["fetch", id.as_str(), "--out", out_str, "--json"]).await;
    let report = &json_lines(&resumed)[0];
    assert_eq!(report["downloaded"], 1, "{report}");
    assert_eq!(std::fs::read(out_dir.join(first_map)).unwrap(), remote);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_refuses_outputs_that_disagree_with_the_manifest() {
    let stack = spawn_stack_with(StackOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = video(dir.path(), "short.mp4", "10", 1.0).await;
    let out = framefleet(
        &stack,
        &["submit", path.to_str().unwrap(), "--wait", "--json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = json_lines(&out)[0]["video_id"]
        .as_str()
        .unwrap()
        .to_string();
    let maps = stack
        .list(&stack.resources.processed_bucket, &format!("{id}/"))
        .await
        .unwrap();
    let map = maps.iter().find(|k| k.ends_with(".jpg")).unwrap();
    stack
        .clients
        .s3
        .delete_object()
        .bucket(&stack.resources.processed_bucket)
        .key(map)
        .send()
        .await
        .unwrap();
    let out_dir = dir.path().join("out");
    let fetch = framefleet(&stack, &["fetch", &id, "--out", out_dir.to_str().unwrap()]).await;
    assert_eq!(fetch.status.code(), Some(65), "{}", stderr(&fetch));
    assert!(
        stderr(&fetch).contains("edge maps but the manifest counts"),
        "{}",
        stderr(&fetch)
    );
    assert_eq!(
        stderr(&fetch).lines().count(),
        1,
        "one line: {}",
        stderr(&fetch)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_while_processing_skips_the_remaining_batches_and_list_shows_both() {
    // No workers yet: every batch waits on the frames queue while the job is canceled.
    let mut stack = spawn_stack_with(StackOptions::without_workers())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = video(dir.path(), "a.mp4", "12", 2.0).await;
    let (b, frames_b) = video(dir.path(), "b.mp4", "10", 1.0).await;
    let out = framefleet(
        &stack,
        &["submit", a.to_str().unwrap(), b.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    let id_a = VideoId::from_raw(lines[0]["video_id"].as_str().unwrap());
    let id_b = VideoId::from_raw(lines[1]["video_id"].as_str().unwrap());
    for id in [&id_a, &id_b] {
        let record = stack
            .wait_for(id, &[JobStatus::Processing], Duration::from_secs(120))
            .await
            .unwrap();
        assert!(record.batches.unwrap() > 1, "{record:#?}");
    }
    wait_until("every batch fanned out", || async {
        stack.jobs.get(&id_a).await.unwrap().unwrap().fanned_out
            && stack.jobs.get(&id_b).await.unwrap().unwrap().fanned_out
    })
    .await;

    let cancel = framefleet(&stack, &["cancel", id_a.as_str()]).await;
    assert_eq!(cancel.status.code(), Some(0), "{}", stderr(&cancel));
    assert!(stdout(&cancel).contains("CANCELED"), "{}", stdout(&cancel));
    let list = framefleet(&stack, &["list", "--json"]).await;
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let rows = json_lines(&list);
    let status_of = |id: &VideoId| {
        rows.iter()
            .find(|r| r["video_id"] == id.as_str())
            .map(|r| r["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of(&id_a).as_deref(), Some("CANCELED"), "{rows:#?}");
    assert_eq!(status_of(&id_b).as_deref(), Some("PROCESSING"), "{rows:#?}");
    let created: Vec<&str> = rows
        .iter()
        .map(|r| r["created_at"].as_str().unwrap())
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {created:?}"
    );
    let human = framefleet(&stack, &["list"]).await;
    assert!(stdout(&human).starts_with("VIDEO ID"), "{}", stdout(&human));
    assert_eq!(stdout(&human).lines().count(), 3, "{}", stdout(&human));

    stack.start_worker().await.unwrap();
    let watch_b = framefleet(&stack, &["watch", id_b.as_str(), "--interval-ms", "200"]).await;
    assert_eq!(watch_b.status.code(), Some(0), "{}", stderr(&watch_b));
    assert!(
        stdout(&watch_b).contains(&format!("{frames_b}/{frames_b} frames processed")),
        "{}",
        stdout(&watch_b)
    );
    let frames_queue = stack.provisioned.frames_queue_url.clone();
    wait_until("the frames queue to drain", || async {
        stack.queue_depth(&frames_queue).await.unwrap() == 0
    })
    .await;
    let record = stack.jobs.get(&id_a).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Canceled, "{record:#?}");
    assert_eq!(
        (record.processed_frames, record.failed_frames),
        (0, 0),
        "{record:#?}"
    );
    assert!(stack.jobs.counted_batches(&id_a).await.unwrap().is_empty());
    // No edge map and no manifest; the MP4 preview MediaConvert wrote before the cancel stays.
    let outputs = stack
        .list(&stack.resources.processed_bucket, &format!("{id_a}/"))
        .await
        .unwrap();
    assert!(
        outputs.iter().all(|k| k.ends_with("/preview.mp4")),
        "{outputs:?}"
    );
    let status_a = framefleet(&stack, &["status", id_a.as_str()]).await;
    assert_eq!(
        status_a.status.code(),
        Some(3),
        "CANCELED: {}",
        stdout(&status_a)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_while_capturing_stays_canceled_after_mediaconvert_says_canceled() {
    let stack = spawn_stack_with(StackOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Hold the stand-in's one job slot with a long capture, so the job waits in SUBMITTED.
    let (long, _) = video(dir.path(), "long.mp4", "30", 60.0).await;
    let blocker = stack
        .occupy_mediaconvert(std::fs::read(&long).unwrap())
        .await
        .unwrap();
    let (clip, _) = video(dir.path(), "clip.mp4", "10", 1.0).await;
    let out = framefleet(&stack, &["submit", clip.to_str().unwrap(), "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = VideoId::from_raw(json_lines(&out)[0]["video_id"].as_str().unwrap());
    let record = stack
        .wait_for(&id, &[JobStatus::Capturing], Duration::from_secs(120))
        .await
        .unwrap();
    let job_id = record.mediaconvert_job_id.unwrap();

    let cancel = framefleet(&stack, &["cancel", id.as_str(), "--json"]).await;
    assert_eq!(cancel.status.code(), Some(0), "{}", stderr(&cancel));
    let report = &json_lines(&cancel)[0];
    assert_eq!(
        report["capture"],
        format!("MediaConvert job {job_id} canceled"),
        "{report}"
    );
    let job_status = || async {
        stack
            .clients
            .mediaconvert
            .get_job()
            .id(&job_id)
            .send()
            .await
            .unwrap()
            .job()
            .and_then(|j| j.status())
            .cloned()
    };
    assert_eq!(job_status().await, Some(MediaConvertStatus::Canceled));
    // The dispatcher consumes MediaConvert's CANCELED event: the job stays CANCELED.
    let events = stack.provisioned.job_events_queue_url.clone();
    wait_until("the CANCELED event to be consumed", || async {
        stack.queue_depth(&events).await.unwrap() == 0
    })
    .await;
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Canceled, "{record:#?}");
    let watch = framefleet(&stack, &["watch", id.as_str()]).await;
    assert_eq!(watch.status.code(), Some(3), "{}", stdout(&watch));
    let _ = stack
        .clients
        .mediaconvert
        .cancel_job()
        .id(&blocker)
        .send()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_are_one_line_with_their_exit_code() {
    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.mp4");
    let out = framefleet(&stack, &["submit", missing.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(stderr(&out).contains("nowhere.mp4"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));

    let (clip, _) = video(dir.path(), "clip.mp4", "10", 0.5).await;
    for threshold in ["1", "100000000"] {
        let out = framefleet(
            &stack,
            &[
                "submit",
                clip.to_str().unwrap(),
                "--ingress-bucket",
                "no-such-bucket-here",
                "--multipart-threshold",
                threshold,
            ],
        )
        .await;
        assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
        let text = stderr(&out);
        assert!(
            text.contains("no-such-bucket-here") && text.contains("NoSuchBucket"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    let out = framefleet(&stack, &["status", "nothing-000000000000"]).await;
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing-000000000000"),
        "{}",
        stderr(&out)
    );
}
