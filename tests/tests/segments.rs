//! Segmented capture end to end (issue 21): a video cut into N MediaConvert jobs by the real
//! dispatcher, captured by the stand-in running real ffmpeg with `InputClippings`, fanned out
//! segment by segment and counted by real workers, checked against the same clip captured by one
//! job. Segments are forced on short clips with `segment_secs = 1`,
//! `segment_min_duration_secs = 2` and `max_segments = 3`; the stand-in's fault hooks
//! (`userMetadata.segment = "0001"`) break one segment at a time.
//!
//! The cancel test runs the user's `framefleet` command: build it first
//! (`cargo build --workspace --bins`; `scripts/test` does).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_mediaconvert::types::JobStatus as McStatus;
use framefleet_core::frames::frame_index;
use framefleet_core::jobs::{JobRecord, JobStatus, SegmentState};
use framefleet_core::video::VideoId;
use framefleet_dispatcher::settings::DispatcherConfig;
use framefleet_e2e::media::video_bytes_frames;
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};
use mediaconvert_standin::{Fault, FaultRule, StandinConfig};

/// Segments every clip below is cut into.
const SEGMENTS: u32 = 3;
/// How long one job may take on a busy 2-core machine (not a measured threshold: a bound on
/// waiting, after which the test reports what it saw).
const JOB_DEADLINE: Duration = Duration::from_secs(300);

/// Dispatcher settings that cut any clip of 3 s or more into `max_segments` segments; 1 turns
/// segmented capture off.
fn dispatcher_config(max_segments: u32) -> DispatcherConfig {
    DispatcherConfig {
        batch_size: 4,
        segment_secs: 1,
        segment_min_duration_secs: 2,
        max_segments,
        ..DispatcherConfig::default()
    }
}

/// A stack with two workers and a stand-in running `standin`, no dispatcher yet (each run starts
/// its own with [`run`]).
async fn stack_with(standin: StandinConfig) -> Stack {
    let stack = spawn_stack_with(StackOptions {
        dispatcher: false,
        dispatcher_config: dispatcher_config(SEGMENTS),
        standin_config: standin,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack.version_processed_bucket().await.unwrap();
    stack
}

/// A stand-in that runs every segment of a video at once, with `faults`.
fn standin(faults: Vec<FaultRule>) -> StandinConfig {
    StandinConfig {
        max_concurrent_jobs: 4,
        faults,
        ..StandinConfig::default()
    }
}

/// A fault on segment 1's jobs (the first `times`; 0: every one).
fn on_segment_1(fault: Fault, times: u32) -> FaultRule {
    FaultRule {
        metadata_key: "segment".into(),
        metadata_value: "0001".into(),
        fault,
        times,
    }
}

/// Uploads each clip under its key to a dispatcher configured with `config`, waits for every
/// job to end, stops the dispatcher; returns the final records in upload order.
async fn run(
    stack: &Stack,
    config: DispatcherConfig,
    clips: &[(String, Vec<u8>)],
) -> Vec<(VideoId, JobRecord)> {
    let mut settings = stack.dispatcher_settings.clone();
    settings.dispatcher = config;
    let dispatcher = stack.start_dispatcher_with(settings).await.unwrap();
    let mut ids = Vec::new();
    for (key, bytes) in clips {
        ids.push(stack.upload(key, bytes.clone()).await.unwrap());
    }
    let mut done = Vec::new();
    for id in ids {
        let record = stack
            .wait_for(&id, &[JobStatus::Complete, JobStatus::Failed], JOB_DEADLINE)
            .await
            .unwrap();
        done.push((id, record));
    }
    dispatcher.stop().await.unwrap();
    done
}

/// The job's edge maps by name without the video id (`<stem>.NNNNNNN.jpg`), with their bytes.
async fn edge_maps(stack: &Stack, id: &VideoId) -> BTreeMap<String, Vec<u8>> {
    let prefix = format!("{id}/");
    let mut maps = BTreeMap::new();
    for key in stack
        .list(&stack.resources.processed_bucket, &prefix)
        .await
        .unwrap()
    {
        if frame_index(&key).is_none() {
            continue;
        }
        let bytes = stack
            .get(&stack.resources.processed_bucket, &key)
            .await
            .unwrap();
        maps.insert(key[prefix.len()..].to_string(), bytes);
    }
    maps
}

/// The edge maps of two runs are the same names `<stem>.{g:07}.jpg` for g in `0..frames`, and
/// byte-equal per index.
fn assert_same_edge_maps(
    segmented: &BTreeMap<String, Vec<u8>>,
    single: &BTreeMap<String, Vec<u8>>,
    stem: &str,
    frames: u64,
    what: &str,
) {
    let expected: Vec<String> = (0..frames).map(|g| format!("{stem}.{g:07}.jpg")).collect();
    let names: Vec<&String> = single.keys().collect();
    assert_eq!(
        names,
        expected.iter().collect::<Vec<_>>(),
        "{what}: the single job's edge maps"
    );
    let names: Vec<&String> = segmented.keys().collect();
    assert_eq!(
        names,
        expected.iter().collect::<Vec<_>>(),
        "{what}: the segmented job's edge maps are named by global index"
    );
    for (name, bytes) in single {
        assert!(
            segmented[name] == *bytes,
            "{what}: {name} differs between the segmented and the single capture"
        );
    }
}

/// Writes of the job's manifest (versions in the versioned processed bucket).
async fn manifest_writes(stack: &Stack, id: &VideoId) -> usize {
    stack
        .processed_versions(&format!("{id}/manifest.json"))
        .await
        .unwrap()
        .len()
}

/// A COMPLETE job with exactly `frames` frames counted once: every planned batch has one marker,
/// one manifest written once with those counts.
async fn assert_counted_once(stack: &Stack, id: &VideoId, record: &JobRecord, frames: u64) {
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.total_frames, Some(frames), "{record:#?}");
    assert_eq!(record.processed_frames, frames, "{record:#?}");
    assert_eq!(record.failed_frames, 0, "{record:#?}");
    assert!(record.fanned_out, "{record:#?}");
    let counted = stack.jobs.counted_batches(id).await.unwrap();
    let batches = record.batches.unwrap();
    assert_eq!(
        counted.len() as u64,
        batches,
        "one marker per planned batch"
    );
    assert_eq!(
        counted.iter().copied().collect::<Vec<_>>(),
        (0..u32::try_from(batches).unwrap()).collect::<Vec<_>>(),
        "markers are batch#0..batches"
    );
    assert_eq!(
        manifest_writes(stack, id).await,
        1,
        "one manifest, written once"
    );
    let manifest = stack.manifest(id.as_str()).await.unwrap();
    assert_eq!(manifest["counts"]["total"], frames, "{manifest:#}");
    assert_eq!(manifest["counts"]["processed"], frames, "{manifest:#}");
    assert_eq!(manifest["counts"]["failed"], 0, "{manifest:#}");
}

/// The stand-in's jobs of `id` (by the `video_id` user metadata every capture carries):
/// (job id, part metadata, status).
async fn standin_jobs(stack: &Stack, id: &VideoId) -> Vec<(String, String, McStatus)> {
    let mut jobs = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = stack
            .clients
            .mediaconvert
            .list_jobs()
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        for job in page.jobs() {
            let metadata = job.user_metadata();
            if metadata.and_then(|m| m.get("video_id")).map(String::as_str) != Some(id.as_str()) {
                continue;
            }
            jobs.push((
                job.id().unwrap_or_default().to_string(),
                metadata
                    .and_then(|m| m.get("segment"))
                    .cloned()
                    .unwrap_or_default(),
                job.status().cloned().unwrap_or(McStatus::Submitted),
            ));
        }
        token = page.next_token().map(ToString::to_string);
        if token.is_none() {
            return jobs;
        }
    }
}

/// Waits (bounded) until every stand-in job of `id` has ended, and returns them.
async fn standin_jobs_ended(stack: &Stack, id: &VideoId) -> Vec<(String, String, McStatus)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let jobs = standin_jobs(stack, id).await;
        if jobs
            .iter()
            .all(|(_, _, s)| matches!(s, McStatus::Complete | McStatus::Canceled | McStatus::Error))
        {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "stand-in jobs still running: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (bounded) until the job-events queue is empty: the dispatcher has handled every
/// MediaConvert event sent so far.
async fn events_handled(stack: &Stack) {
    stack
        .wait_until_empty(&stack.provisioned.job_events_queue_url)
        .await
        .unwrap();
}

/// Three clips of N·k−1, N·k and N·k+1 frames at `rate`, each run through a segmented dispatcher
/// and again (same key, so the same frame names) through one with segmentation off: the jobs
/// count the same, the processed buckets are equal edge map for edge map, and the segmented
/// manifest lists N preview parts that exist.
async fn equivalence(rate: &str, k: u64) {
    let stack = stack_with(standin(Vec::new())).await;
    let n = u64::from(SEGMENTS);
    let tag = rate.replace('/', "-");
    let mut clips = Vec::new();
    let mut frames = Vec::new();
    for f in [n * k - 1, n * k, n * k + 1] {
        let key = format!("in/clip-{tag}-{f}.mp4");
        let (bytes, decoded) = video_bytes_frames("clip.mp4", 96, 64, rate, f)
            .await
            .unwrap();
        assert_eq!(decoded, f, "{key}: ffmpeg made {decoded} frames");
        clips.push((key, bytes));
        frames.push(f);
    }
    let segmented = run(&stack, dispatcher_config(SEGMENTS), &clips).await;
    let single = run(&stack, dispatcher_config(1), &clips).await;
    for (((key, _), f), ((seg_id, seg), (one_id, one))) in
        clips.iter().zip(&frames).zip(segmented.iter().zip(&single))
    {
        let what = format!("{rate} fps, {f} frames");
        let stem = key
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".mp4")
            .to_string();
        assert_counted_once(&stack, seg_id, seg, *f).await;
        assert_counted_once(&stack, one_id, one, *f).await;
        // The segmented job: N segments, each counted as planned, every frame once.
        assert_eq!(seg.segments_total, Some(SEGMENTS), "{what}: {seg:#?}");
        assert_eq!(seg.segments_complete, n, "{what}: {seg:#?}");
        assert_eq!(seg.captured_frames, *f, "{what}: {seg:#?}");
        assert_eq!(seg.planned_frames, Some(*f), "{what}: {seg:#?}");
        assert_eq!(seg.fallback, None, "{what}: {seg:#?}");
        let note = seg.capture_note.clone().unwrap_or_default();
        assert!(
            note.starts_with(&format!("segmented into {SEGMENTS} MediaConvert jobs")),
            "{what}: {note}"
        );
        let segments = stack.jobs.segments(seg_id).await.unwrap();
        assert_eq!(segments.len() as u64, n, "{what}: {segments:#?}");
        let mut next = 0;
        for segment in &segments {
            assert_eq!(segment.first, next, "{what}: contiguous: {segments:#?}");
            assert_eq!(
                segment.state,
                SegmentState::FannedOut,
                "{what}: {segment:#?}"
            );
            assert_eq!(
                segment.captured,
                Some(segment.frames),
                "{what}: {segment:#?}"
            );
            assert_eq!(segment.attempt, 0, "{what}: {segment:#?}");
            next += segment.frames;
        }
        assert_eq!(next, *f, "{what}: the segments cover every frame");
        // The single job says why it is one.
        assert_eq!(one.segments_total, None, "{what}: {one:#?}");
        let note = one.capture_note.clone().unwrap_or_default();
        assert!(note.contains("max_segments = 1"), "{what}: {note}");
        // The same edge maps, byte for byte, under the same names.
        assert_same_edge_maps(
            &edge_maps(&stack, seg_id).await,
            &edge_maps(&stack, one_id).await,
            &stem,
            *f,
            &what,
        );
        // The segmented manifest lists the preview's parts, which exist; the single job's
        // names the whole preview.
        let manifest = stack.manifest(seg_id.as_str()).await.unwrap();
        let parts: Vec<&str> = manifest["preview"]["parts"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no preview parts: {manifest:#}"))
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..SEGMENTS)
            .map(|i| format!("{seg_id}/preview-s{i:04}.mp4"))
            .collect();
        assert_eq!(parts, expected, "{what}: {manifest:#}");
        assert!(
            manifest["preview"].get("key").is_none(),
            "{what}: {manifest:#}"
        );
        for part in parts {
            let bytes = stack
                .get(&stack.resources.processed_bucket, part)
                .await
                .unwrap_or_else(|e| panic!("{what}: {part} is missing: {e:#}"));
            assert!(!bytes.is_empty(), "{what}: {part} is empty");
        }
        let manifest = stack.manifest(one_id.as_str()).await.unwrap();
        assert_eq!(
            manifest["preview"]["key"],
            format!("{one_id}/preview.mp4"),
            "{what}: {manifest:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segmented_capture_equals_one_job_at_25_fps() {
    equivalence("25", 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segmented_capture_equals_one_job_at_30_fps() {
    equivalence("30", 35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segmented_capture_equals_one_job_at_29_97_fps() {
    equivalence("30000/1001", 35).await;
}

/// One clip of 3·30+1 frames at 25 fps (3.64 s: three segments).
async fn clip() -> (String, Vec<u8>, u64) {
    let frames = 91;
    let (bytes, decoded) = video_bytes_frames("clip.mp4", 96, 64, "25", frames)
        .await
        .unwrap();
    assert_eq!(decoded, frames);
    ("in/guarded.mp4".to_string(), bytes, frames)
}

/// Segment 1 captures one frame more than planned (its end timecode read one frame late): the
/// dispatcher falls back to one capture of the whole video, says so naming the segment, and the
/// job still ends with exactly F frames counted once, the same edge maps as a single job's and
/// one manifest naming the whole preview.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_segment_count_mismatch_falls_back_to_one_capture() {
    let stack = stack_with(standin(vec![on_segment_1(
        Fault::ShiftEnd { frames: 1 },
        0,
    )]))
    .await;
    let (key, bytes, frames) = clip().await;
    let clips = [(key.clone(), bytes)];
    let single = run(&stack, dispatcher_config(1), &clips).await;
    let segmented = run(&stack, dispatcher_config(SEGMENTS), &clips).await;
    let (id, record) = &segmented[0];
    assert_counted_once(&stack, id, record, frames).await;
    let fallback = record.fallback.clone().unwrap_or_default();
    assert!(
        fallback.contains("segment 1 ") && fallback.contains("captured"),
        "the fallback names segment 1: {record:#?}"
    );
    assert_eq!(record.segments_total, Some(SEGMENTS), "{record:#?}");
    assert_same_edge_maps(
        &edge_maps(&stack, id).await,
        &edge_maps(&stack, &single[0].0).await,
        "guarded",
        frames,
        "fallback",
    );
    let manifest = stack.manifest(id.as_str()).await.unwrap();
    assert_eq!(
        manifest["preview"]["key"],
        format!("{id}/preview.mp4"),
        "{manifest:#}"
    );
    assert!(
        manifest["preview"]
            .get("parts")
            .is_none_or(|p| p.as_array().is_some_and(Vec::is_empty)),
        "{manifest:#}"
    );
    // The fallback's capture is the one the job records, and it completed.
    let jobs = standin_jobs_ended(&stack, id).await;
    let full: Vec<_> = jobs.iter().filter(|(_, part, _)| part == "full").collect();
    assert_eq!(full.len(), 1, "{jobs:?}");
    assert_eq!(full[0].2, McStatus::Complete, "{jobs:?}");
    assert_eq!(
        record.mediaconvert_job_id.as_deref(),
        Some(full[0].0.as_str())
    );
}

/// Segment 1's first job ends in MediaConvert's transient error 1999: the segment is created
/// again (attempt 1) and the job completes exactly, without falling back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_segment_error_creates_the_segment_again() {
    let stack = stack_with(standin(vec![on_segment_1(Fault::Error { code: 1999 }, 1)])).await;
    let (key, bytes, frames) = clip().await;
    let done = run(&stack, dispatcher_config(SEGMENTS), &[(key, bytes)]).await;
    let (id, record) = &done[0];
    assert_counted_once(&stack, id, record, frames).await;
    assert_eq!(record.fallback, None, "{record:#?}");
    let segments = stack.jobs.segments(id).await.unwrap();
    let attempts: Vec<u32> = segments.iter().map(|s| s.attempt).collect();
    assert_eq!(attempts, [0, 1, 0], "{segments:#?}");
    assert!(segments.iter().all(|s| s.state == SegmentState::FannedOut));
    let jobs = standin_jobs_ended(&stack, id).await;
    let of_1: Vec<&McStatus> = jobs
        .iter()
        .filter(|(_, part, _)| part == "0001")
        .map(|(_, _, s)| s)
        .collect();
    assert_eq!(of_1.len(), 2, "{jobs:?}");
    assert!(of_1.contains(&&McStatus::Error), "{jobs:?}");
    assert!(of_1.contains(&&McStatus::Complete), "{jobs:?}");
    assert_eq!(
        segments[1].mediaconvert_job_id.as_deref(),
        jobs.iter()
            .find(|(_, part, s)| part == "0001" && *s == McStatus::Complete)
            .map(|(id, _, _)| id.as_str()),
        "the segment records its second job"
    );
}

/// Segment 1 ends in a permanent error (1010): the job FAILS naming the segment, the other
/// segments' jobs end COMPLETE or CANCELED (none left running), and no manifest is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_permanent_segment_error_fails_the_job() {
    let stack = stack_with(standin(vec![on_segment_1(Fault::Error { code: 1010 }, 0)])).await;
    let (key, bytes, _) = clip().await;
    let mut settings = stack.dispatcher_settings.clone();
    settings.dispatcher = dispatcher_config(SEGMENTS);
    let dispatcher = stack.start_dispatcher_with(settings).await.unwrap();
    let id = stack.upload(&key, bytes).await.unwrap();
    let record = stack
        .wait_for(&id, &[JobStatus::Complete, JobStatus::Failed], JOB_DEADLINE)
        .await
        .unwrap();
    assert_eq!(record.status, JobStatus::Failed, "{record:#?}");
    let reason = record.last_error.clone().unwrap_or_default();
    assert!(
        reason.contains("1010") && reason.contains("segment 1"),
        "the reason names the error and the segment: {reason}"
    );
    let jobs = standin_jobs_ended(&stack, &id).await;
    for (job, part, status) in &jobs {
        match part.as_str() {
            "0001" => assert_eq!(*status, McStatus::Error, "{job}: {jobs:?}"),
            _ => assert!(
                matches!(status, McStatus::Complete | McStatus::Canceled),
                "{job} of segment {part}: {status:?}"
            ),
        }
    }
    events_handled(&stack).await;
    dispatcher.stop().await.unwrap();
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Failed, "{record:#?}");
    assert_eq!(record.manifest_key, None);
    assert!(
        stack.manifest(id.as_str()).await.is_err(),
        "a FAILED job has no manifest"
    );
    let segments = stack.jobs.segments(&id).await.unwrap();
    assert_eq!(segments[1].state, SegmentState::Failed, "{segments:#?}");
}

/// `framefleet cancel` while the segments wait for the stand-in's one slot: every stand-in job
/// of the video ends CANCELED, none is created after the cancel, and no batch is counted after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_during_segmented_capture_stops_every_segment() {
    let stack = stack_with(StandinConfig {
        max_concurrent_jobs: 1,
        // One video second per second: each segment of the 6 s clip takes 2 s, the others queue.
        speed: 1,
        ..StandinConfig::default()
    })
    .await;
    let frames = 150;
    let (bytes, _) = video_bytes_frames("clip.mp4", 96, 64, "25", frames)
        .await
        .unwrap();
    let mut settings = stack.dispatcher_settings.clone();
    settings.dispatcher = dispatcher_config(SEGMENTS);
    let dispatcher = stack.start_dispatcher_with(settings).await.unwrap();
    let id = stack.upload("in/canceled.mp4", bytes).await.unwrap();
    // Every segment created (the dispatcher submits them all; the stand-in runs one at a time).
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let segments = stack.jobs.segments(&id).await.unwrap();
        if segments.len() == SEGMENTS as usize
            && segments.iter().all(|s| s.mediaconvert_job_id.is_some())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "segments never submitted: {segments:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Capturing, "{record:#?}");
    let cancel = stack
        .framefleet(&["cancel", id.as_str(), "--json"])
        .await
        .unwrap();
    assert_eq!(
        cancel.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    let counted_at_cancel = stack.jobs.get(&id).await.unwrap().unwrap().processed_frames;
    let created_at_cancel = standin_jobs(&stack, &id).await.len();
    let jobs = standin_jobs_ended(&stack, &id).await;
    events_handled(&stack).await;
    // Whatever the dispatcher did with the CANCELED events, it has done: stop it and look.
    dispatcher.stop().await.unwrap();
    let segments = stack.jobs.segments(&id).await.unwrap();
    let jobs_after = standin_jobs(&stack, &id).await;
    assert_eq!(
        jobs_after.len(),
        created_at_cancel,
        "no CreateJob after the cancel: {jobs_after:?}"
    );
    assert_eq!(jobs.len(), jobs_after.len());
    for (job, part, status) in &jobs_after {
        let segment = segments
            .iter()
            .find(|s| format!("{:04}", s.index) == *part)
            .unwrap_or_else(|| panic!("{job} names no segment: {part}"));
        // A segment whose capture finished just before the cancel was counted as planned; every
        // other job was canceled.
        match status {
            McStatus::Canceled => {}
            McStatus::Complete => assert!(
                matches!(
                    segment.state,
                    SegmentState::Complete | SegmentState::FannedOut
                ),
                "{job}: {segment:#?}"
            ),
            other => panic!("{job} of segment {part} ended {other:?}"),
        }
    }
    assert!(
        jobs_after
            .iter()
            .filter(|(_, _, s)| *s == McStatus::Canceled)
            .count()
            >= 2,
        "the queued segments were canceled: {jobs_after:?}"
    );
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Canceled, "{record:#?}");
    assert_eq!(
        record.processed_frames, counted_at_cancel,
        "no batch counted after the cancel: {record:#?}"
    );
    assert!(stack.manifest(id.as_str()).await.is_err(), "no manifest");
}

/// Segment 0's first job fails transiently after a start-up delay, so its second attempt
/// finishes after segments 1 and 2: their batches are counted while the job is still
/// CAPTURING (before the total exists), and the job still ends with every batch counted once
/// and one manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segments_finish_out_of_order_and_count_early() {
    let stack = stack_with(StandinConfig {
        max_concurrent_jobs: 4,
        startup_delay_ms: 3000,
        faults: vec![FaultRule {
            metadata_key: "segment".into(),
            metadata_value: "0000".into(),
            fault: Fault::Error { code: 1999 },
            times: 1,
        }],
        ..StandinConfig::default()
    })
    .await;
    let (key, bytes, frames) = clip().await;
    let mut settings = stack.dispatcher_settings.clone();
    settings.dispatcher = dispatcher_config(SEGMENTS);
    let dispatcher = stack.start_dispatcher_with(settings).await.unwrap();
    let id = stack.upload(&key, bytes).await.unwrap();
    // Watch the job and its segments: the order segments are first seen counted, and whether
    // frames were counted while the job was still CAPTURING.
    let mut order: Vec<u32> = Vec::new();
    let mut counted_while_capturing = 0;
    let deadline = Instant::now() + JOB_DEADLINE;
    let record = loop {
        let record = stack.jobs.get(&id).await.unwrap();
        for segment in stack.jobs.segments(&id).await.unwrap() {
            if matches!(
                segment.state,
                SegmentState::Complete | SegmentState::FannedOut
            ) && !order.contains(&segment.index)
            {
                order.push(segment.index);
            }
        }
        if let Some(record) = record {
            if record.status == JobStatus::Capturing {
                counted_while_capturing = counted_while_capturing.max(record.processed_frames);
            }
            if record.status.is_final() {
                break record;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the job did not end; seen {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    dispatcher.stop().await.unwrap();
    assert_eq!(
        order.last(),
        Some(&0),
        "segment 0 is counted last (segments seen counted in order {order:?})"
    );
    assert!(
        counted_while_capturing > 0,
        "frames were counted while the job was CAPTURING: {record:#?}"
    );
    assert_counted_once(&stack, &id, &record, frames).await;
    let segments = stack.jobs.segments(&id).await.unwrap();
    assert_eq!(segments[0].attempt, 1, "{segments:#?}");
}
