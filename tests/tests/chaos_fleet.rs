//! The chaos suite: the real `dispatcher`, `worker` and `mediaconvert-standin` processes against
//! moto_server and ffmpeg, killed and stopped with real signals at the worst moments, with a
//! short visibility timeout and small batches so that it fits CI. Every scenario ends in the
//! same checked invariants ([`assert_ended_well`]): COMPLETE, processed + failed = total =
//! frames captured, one edge map per frame and one manifest, batch markers = batches planned,
//! DLQs empty, frames queue drained, and no job left in the open-jobs index.
//!
//! Build the binaries first: `cargo build --workspace --bins` (`scripts/test` does).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use framefleet_core::frames::frame_index;
use framefleet_core::jobs::{JobRecord, JobStatus, SegmentState};
use framefleet_core::video::VideoId;
use framefleet_e2e::media::video_bytes;
use framefleet_e2e::processes::{Fleet, Service, Signal};
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};
use framefleet_provision::QueueSettings;

/// Frames queue visibility: a killed worker's batch comes back this soon.
const FRAMES_VISIBILITY_SECS: u32 = 8;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A stack with no services of its own and a fleet of processes to run on it; the reconciler
/// acts after `processing_after` seconds of silence in PROCESSING (other states: a few seconds).
async fn chaos_stack(processing_after: u64) -> (Stack, Fleet) {
    chaos_stack_with(processing_after, &[], &[]).await
}

/// [`chaos_stack`] with more settings for the dispatcher and the stand-in (`FRAMEFLEET__…`).
async fn chaos_stack_with(
    processing_after: u64,
    dispatcher: &[(&str, &str)],
    standin: &[(&str, &str)],
) -> (Stack, Fleet) {
    let stack = spawn_stack_with(StackOptions {
        queues: QueueSettings {
            max_receive_count: 5,
            frames_visibility_timeout_secs: FRAMES_VISIBILITY_SECS,
            control_visibility_timeout_secs: 8,
        },
        ..StackOptions::fleet()
    })
    .await
    .unwrap();
    let processing_after = processing_after.to_string();
    let mut dispatcher_env = env(&[
        ("FRAMEFLEET__DISPATCHER__BATCH_SIZE", "4"),
        ("FRAMEFLEET__DISPATCHER__POLL_WAIT_SECS", "2"),
        ("FRAMEFLEET__DISPATCHER__DRAIN_TIMEOUT_SECS", "10"),
        ("FRAMEFLEET__RECONCILE__INTERVAL_SECS", "2"),
        ("FRAMEFLEET__RECONCILE__REGISTERED_AFTER_SECS", "6"),
        ("FRAMEFLEET__RECONCILE__CAPTURING_AFTER_SECS", "6"),
        (
            "FRAMEFLEET__RECONCILE__PROCESSING_AFTER_SECS",
            processing_after.as_str(),
        ),
        ("FRAMEFLEET__RECONCILE__FINALIZING_AFTER_SECS", "6"),
    ]);
    dispatcher_env.extend(env(dispatcher));
    let extra = HashMap::from([
        (Service::Dispatcher, dispatcher_env),
        (Service::Standin, env(standin)),
        (
            Service::Worker,
            env(&[("FRAMEFLEET__WORKER__DRAIN_TIMEOUT_SECS", "10")]),
        ),
    ]);
    let fleet = Fleet::new(&stack, extra).unwrap();
    (stack, fleet)
}

async fn record(stack: &Stack, id: &VideoId) -> Option<JobRecord> {
    stack.jobs.get(id).await.unwrap()
}

/// Waits until `done` holds for the job record, failing after `timeout`.
async fn wait_until(
    stack: &Stack,
    id: &VideoId,
    timeout: Duration,
    what: &str,
    done: impl Fn(&JobRecord) -> bool,
) -> JobRecord {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(record) = record(stack, id).await {
            if done(&record) {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; last: {record:#?}"
            );
        } else {
            assert!(Instant::now() < deadline, "{what}: no job {id}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_final(stack: &Stack, fleet: &Fleet, id: &VideoId) -> JobRecord {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(record) = record(stack, id).await {
            if record.status.is_final() {
                return record;
            }
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not end; logs in {}",
            fleet.log_dir().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The invariants every scenario ends in.
async fn assert_ended_well(stack: &Stack, fleet: &Fleet, id: &VideoId, frames: u64) {
    let done = wait_final(stack, fleet, id).await;
    let logs = fleet.log_dir().display().to_string();
    assert_eq!(done.status, JobStatus::Complete, "{done:#?} (logs: {logs})");
    assert_eq!(done.total_frames, Some(frames), "{done:#?}");
    assert_eq!(
        done.processed_frames + done.failed_frames,
        frames,
        "{done:#?}"
    );
    assert_eq!(done.failed_frames, 0, "{done:#?}");
    assert!(done.fanned_out, "{done:#?}");
    let prefix = format!("{id}/");
    let captured = stack
        .list(&stack.resources.frames_bucket, &prefix)
        .await
        .unwrap()
        .into_iter()
        .filter(|k| frame_index(k).is_some())
        .count() as u64;
    assert_eq!(captured, frames, "frames captured");
    let outputs = stack
        .list(&stack.resources.processed_bucket, &prefix)
        .await
        .unwrap();
    let maps = outputs.iter().filter(|k| frame_index(k).is_some()).count() as u64;
    assert_eq!(maps, frames, "one edge map per frame: {outputs:?}");
    let manifest = stack.manifest(id.as_str()).await.unwrap();
    assert_eq!(manifest["counts"]["total"], frames, "{manifest}");
    assert_eq!(manifest["counts"]["processed"], frames, "{manifest}");
    let counted = stack.jobs.counted_batches(id).await.unwrap();
    assert_eq!(
        counted.len() as u64,
        done.batches.unwrap(),
        "batch markers = batches planned"
    );
    assert_quiet(stack).await;
}

/// DLQs empty, no batch left anywhere, and no job left open once the running ones end.
async fn assert_quiet(stack: &Stack) {
    for queue in [
        &stack.resources.ingress_queue,
        &stack.resources.job_events_queue,
        &stack.resources.frames_queue,
    ] {
        assert_eq!(
            stack.queue_depth(stack.dlq_url(queue)).await.unwrap(),
            0,
            "DLQ of {queue}"
        );
    }
    // Batches redelivered after the job completed are recognised as counted and deleted.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack
        .queue_depth(&stack.provisioned.frames_queue_url)
        .await
        .unwrap()
        > 0
    {
        assert!(Instant::now() < deadline, "frames queue never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every job ends: a scenario with several uploads checks one job while another may still be
    // running, so wait (bounded) rather than sample once.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let open = stack.jobs.stale_jobs("9999-12-31T00:00:00Z").await.unwrap();
        if open.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "jobs left open: {open:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_all(fleet: &mut Fleet, workers: usize) {
    fleet.start("standin", Service::Standin).await.unwrap();
    fleet
        .start("dispatcher", Service::Dispatcher)
        .await
        .unwrap();
    for i in 0..workers {
        fleet
            .start(&format!("worker-{i}"), Service::Worker)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_batch() {
    let (stack, mut fleet) = chaos_stack(60).await;
    start_all(&mut fleet, 2).await;
    let (video, frames) = video_bytes("clip.mp4", 320, 240, "10", 6.0).await.unwrap();
    let id = stack.upload("killed-worker.mp4", video).await.unwrap();
    wait_until(&stack, &id, Duration::from_secs(120), "first batch", |r| {
        r.processed_frames > 0
    })
    .await;
    fleet.stop("worker-0", Signal::Kill).await.unwrap();
    fleet.start("worker-2", Service::Worker).await.unwrap();
    assert_ended_well(&stack, &fleet, &id, frames).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_worker_killed_again_and_again() {
    let (stack, mut fleet) = chaos_stack(60).await;
    start_all(&mut fleet, 2).await;
    let (video, frames) = video_bytes("clip.mp4", 320, 240, "10", 6.0).await.unwrap();
    let id = stack.upload("massacre.mp4", video).await.unwrap();
    let mut generation = 0;
    for _ in 0..3 {
        let seen = record(&stack, &id).await.map_or(0, |r| r.processed_frames);
        let now = wait_until(&stack, &id, Duration::from_secs(120), "progress", |r| {
            r.processed_frames > seen || r.status.is_final()
        })
        .await;
        if now.status.is_final() {
            break;
        }
        for name in fleet.running(Service::Worker) {
            fleet.stop(&name, Signal::Kill).await.unwrap();
        }
        generation += 1;
        for i in 0..2 {
            fleet
                .start(&format!("worker-{generation}-{i}"), Service::Worker)
                .await
                .unwrap();
        }
    }
    assert!(generation > 0, "the job finished before any kill");
    assert_ended_well(&stack, &fleet, &id, frames).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_in_under_load() {
    let (stack, mut fleet) = chaos_stack(60).await;
    start_all(&mut fleet, 3).await;
    let (video, frames) = video_bytes("clip.mp4", 320, 240, "10", 6.0).await.unwrap();
    let id = stack.upload("scale-in.mp4", video).await.unwrap();
    wait_until(&stack, &id, Duration::from_secs(120), "first batch", |r| {
        r.processed_frames > 0
    })
    .await;
    for name in ["worker-0", "worker-1"] {
        let took = fleet.stop(name, Signal::Term).await.unwrap();
        eprintln!("{name} stopped {took:?} after SIGTERM");
        let log = fleet.log(name);
        assert!(
            log.contains("worker stopped"),
            "{name} did not drain: {log}"
        );
    }
    assert_ended_well(&stack, &fleet, &id, frames).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dispatcher_killed_at_each_step() {
    let (stack, mut fleet) = chaos_stack(60).await;
    start_all(&mut fleet, 2).await;
    type Step = fn(&JobRecord) -> bool;
    let steps: [(&str, Step); 3] = [
        ("registering", |r| r.status == JobStatus::Registered),
        ("capturing", |r| r.status == JobStatus::Capturing),
        ("fanning out", |r| {
            r.status == JobStatus::Processing && !r.fanned_out
        }),
    ];
    for (n, (step, at)) in steps.into_iter().enumerate() {
        let (video, frames) = video_bytes("clip.mp4", 160, 120, "25", 4.0).await.unwrap();
        let id = stack
            .upload(&format!("dispatcher-{n}.mp4"), video)
            .await
            .unwrap();
        // Kill as soon as the job is seen at this step, or when it has gone past it.
        let seen = wait_until(&stack, &id, Duration::from_secs(120), step, |r| {
            at(r)
                || r.status.is_final()
                || (n < 2 && matches!(r.status, JobStatus::Processing | JobStatus::Finalizing))
        })
        .await;
        fleet.stop("dispatcher", Signal::Kill).await.unwrap();
        eprintln!("killed while {step}: job was {:?}", seen.status);
        fleet
            .start("dispatcher", Service::Dispatcher)
            .await
            .unwrap();
        assert_ended_well(&stack, &fleet, &id, frames).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mediaconvert_stand_in_killed_mid_capture() {
    let (stack, mut fleet) = chaos_stack(60).await;
    start_all(&mut fleet, 2).await;
    let (video, frames) = video_bytes("clip.mp4", 640, 360, "25", 8.0).await.unwrap();
    let id = stack.upload("standin-killed.mp4", video).await.unwrap();
    let seen = wait_until(&stack, &id, Duration::from_secs(120), "capturing", |r| {
        r.status != JobStatus::Registered
    })
    .await;
    fleet.stop("standin", Signal::Kill).await.unwrap();
    eprintln!("stand-in killed; job was {:?}", seen.status);
    fleet.start("standin", Service::Standin).await.unwrap();
    // The restarted stand-in has forgotten the job: the reconciler asks, and starts it again.
    assert_ended_well(&stack, &fleet, &id, frames).await;
}

/// Segmented capture on (a 12 s clip in 4 segments of 3 s, two captured at once at one video
/// second per second): the dispatcher is killed once the segments are registered, the stand-in
/// (which forgets its jobs) while a segment captures, and a worker once frames are counted; the
/// job still ends well, captured as segments without falling back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_segmented_capture_survives_the_dispatcher_the_stand_in_and_a_worker_killed() {
    let (stack, mut fleet) = chaos_stack_with(
        60,
        &[
            ("FRAMEFLEET__DISPATCHER__SEGMENT_SECS", "3"),
            ("FRAMEFLEET__DISPATCHER__SEGMENT_MIN_DURATION_SECS", "6"),
            ("FRAMEFLEET__DISPATCHER__MAX_SEGMENTS", "4"),
            ("FRAMEFLEET__DISPATCHER__SEGMENTS_IN_FLIGHT", "4"),
        ],
        &[
            ("FRAMEFLEET__STANDIN__MAX_CONCURRENT_JOBS", "2"),
            ("FRAMEFLEET__STANDIN__SPEED", "1"),
        ],
    )
    .await;
    start_all(&mut fleet, 2).await;
    let (video, frames) = video_bytes("clip.mp4", 320, 240, "10", 12.0).await.unwrap();
    let id = stack.upload("segmented.mp4", video).await.unwrap();
    let registered = wait_until(
        &stack,
        &id,
        Duration::from_secs(120),
        "segments registered",
        |r| r.segments_total.is_some() || r.status.is_final(),
    )
    .await;
    assert_eq!(registered.segments_total, Some(4), "{registered:#?}");
    fleet.stop("dispatcher", Signal::Kill).await.unwrap();
    eprintln!("dispatcher killed; job was {:?}", registered.status);
    fleet
        .start("dispatcher", Service::Dispatcher)
        .await
        .unwrap();
    // Kill the stand-in while a segment's MediaConvert job runs (it forgets every job).
    let deadline = Instant::now() + Duration::from_secs(120);
    let seen = loop {
        let now = record(&stack, &id).await.unwrap();
        let segments = stack.jobs.segments(&id).await.unwrap();
        let running = segments
            .iter()
            .any(|s| s.state == SegmentState::Submitted && s.mediaconvert_job_id.is_some());
        if running || now.status != JobStatus::Capturing {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "no segment ever ran: {segments:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    fleet.stop("standin", Signal::Kill).await.unwrap();
    eprintln!(
        "stand-in killed; job was {:?} with {} of 4 segments counted",
        seen.status, seen.segments_complete
    );
    fleet.start("standin", Service::Standin).await.unwrap();
    let seen = wait_until(&stack, &id, Duration::from_secs(180), "first batch", |r| {
        r.processed_frames > 0 || r.status.is_final()
    })
    .await;
    fleet.stop("worker-0", Signal::Kill).await.unwrap();
    eprintln!("worker killed; job was {:?}", seen.status);
    fleet.start("worker-2", Service::Worker).await.unwrap();
    assert_ended_well(&stack, &fleet, &id, frames).await;
    let done = record(&stack, &id).await.unwrap();
    assert_eq!(done.segments_total, Some(4), "{done:#?}");
    assert_eq!(done.segments_complete, 4, "{done:#?}");
    assert_eq!(done.fallback, None, "{done:#?}");
    let segments = stack.jobs.segments(&id).await.unwrap();
    assert_eq!(segments.iter().map(|s| s.frames).sum::<u64>(), frames);
    assert!(
        segments.iter().all(|s| s.state == SegmentState::FannedOut),
        "{segments:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_in_the_dlq_is_redriven_and_counted_once() {
    // The reconciler would re-send the batch itself; here it waits, so the redrive does it.
    let (stack, mut fleet) = chaos_stack(3600).await;
    fleet.start("standin", Service::Standin).await.unwrap();
    fleet
        .start("dispatcher", Service::Dispatcher)
        .await
        .unwrap();
    let (video, frames) = video_bytes("clip.mp4", 160, 120, "10", 2.0).await.unwrap();
    let id = stack.upload("redriven.mp4", video).await.unwrap();
    wait_until(&stack, &id, Duration::from_secs(120), "fanned out", |r| {
        r.fanned_out
    })
    .await;
    // One batch dead-letters (as after five failed receives), before any worker saw it.
    let sqs = &stack.clients.sqs;
    let frames_url = stack.provisioned.frames_queue_url.clone();
    let dlq = stack.dlq_url(&stack.resources.frames_queue).to_string();
    let out = sqs
        .receive_message()
        .queue_url(&frames_url)
        .max_number_of_messages(1)
        .send()
        .await
        .unwrap();
    let message = &out.messages()[0];
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(message.body().unwrap())
        .send()
        .await
        .unwrap();
    sqs.delete_message()
        .queue_url(&frames_url)
        .receipt_handle(message.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    for i in 0..2 {
        fleet
            .start(&format!("worker-{i}"), Service::Worker)
            .await
            .unwrap();
    }
    let batches = record(&stack, &id).await.unwrap().batches.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (stack.jobs.counted_batches(&id).await.unwrap().len() as u64) < batches - 1 {
        assert!(
            Instant::now() < deadline,
            "the other batches were not counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        record(&stack, &id).await.unwrap().status,
        JobStatus::Processing
    );
    // Redriven twice over (once for real, once by an operator repeating it): counted once.
    let redrive = |max: Option<usize>| {
        let mut command = tokio::process::Command::new(
            std::env::current_exe()
                .unwrap()
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("dispatcher"),
        );
        command.arg("redrive").arg("frames");
        if let Some(max) = max {
            command.args(["--max", &max.to_string()]);
        }
        command
    };
    let body = message.body().unwrap().to_string();
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let out = redrive(None)
        .envs(fleet_env(&stack))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    assert_ended_well(&stack, &fleet, &id, frames).await;
}

/// What `dispatcher redrive` needs to find the stack.
fn fleet_env(stack: &Stack) -> Vec<(String, String)> {
    let r = &stack.resources;
    env(&[
        ("AWS_ENDPOINT_URL", stack.moto.endpoint()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required"),
        // An operator's command: the admin identity, not a task role.
        ("AWS_ACCESS_KEY_ID", &stack.identities.admin.access_key_id),
        (
            "AWS_SECRET_ACCESS_KEY",
            &stack.identities.admin.secret_access_key,
        ),
        ("FRAMEFLEET__RESOURCES__INGRESS_QUEUE", &r.ingress_queue),
        (
            "FRAMEFLEET__RESOURCES__JOB_EVENTS_QUEUE",
            &r.job_events_queue,
        ),
        ("FRAMEFLEET__RESOURCES__FRAMES_QUEUE", &r.frames_queue),
        ("FRAMEFLEET__RESOURCES__JOBS_TABLE", &r.jobs_table),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_and_out_of_order_events_change_nothing() {
    let (stack, mut fleet) = chaos_stack(60).await;
    start_all(&mut fleet, 2).await;
    let (video, frames) = video_bytes("clip.mp4", 160, 120, "10", 2.0).await.unwrap();
    let id = stack.upload("events.mp4", video).await.unwrap();
    let done = wait_final(&stack, &fleet, &id).await;
    assert_ended_well(&stack, &fleet, &id, frames).await;
    let job_id = done.mediaconvert_job_id.clone().unwrap();
    let event = |status: &str, extra: &str| {
        format!(
            r#"{{"version":"0","id":"e","detail-type":"MediaConvert Job State Change","source":"aws.mediaconvert","account":"123456789012","time":"2026-11-30T00:00:00Z","region":"us-east-1","resources":[],"detail":{{"timestamp":1,"accountId":"123456789012","queue":"q","jobId":"{job_id}","status":"{status}","userMetadata":{{"application":"framefleet","video_id":"{id}"}}{extra}}}}}"#
        )
    };
    // A duplicate COMPLETE, then events from before it arriving late, then an ERROR.
    for body in [
        event("COMPLETE", ""),
        event(
            "STATUS_UPDATE",
            r#","jobProgress":{"jobPercentComplete":40}"#,
        ),
        event("PROGRESSING", ""),
        event("ERROR", r#","errorCode":1999,"errorMessage":"late""#),
    ] {
        stack
            .clients
            .sqs
            .send_message()
            .queue_url(&stack.provisioned.job_events_queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack
        .queue_depth(&stack.provisioned.job_events_queue_url)
        .await
        .unwrap()
        > 0
    {
        assert!(Instant::now() < deadline, "events not handled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = record(&stack, &id).await.unwrap();
    assert_eq!(after.status, JobStatus::Complete, "{after:#?}");
    assert_eq!(after.processed_frames, done.processed_frames);
    assert_eq!(after.batches, done.batches);
    assert_ended_well(&stack, &fleet, &id, frames).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_upload_twice_then_new_content_under_the_key() {
    let (stack, mut fleet) = chaos_stack(60).await;
    start_all(&mut fleet, 2).await;
    let (first, first_frames) = video_bytes("clip.mp4", 160, 120, "10", 2.0).await.unwrap();
    let (second, second_frames) = video_bytes("clip.mp4", 160, 120, "10", 3.0).await.unwrap();
    let a = stack.upload("same-key.mp4", first.clone()).await.unwrap();
    let again = stack.upload("same-key.mp4", first).await.unwrap();
    // The template versions the ingress bucket: uploading the same bytes again makes a new
    // version, and a version is a job (S3's duplicate notifications of one version stay one
    // job: pipeline.rs, duplicate_notification_makes_one_job).
    assert_ne!(a, again, "a new version of the same bytes is a new job");
    assert_ended_well(&stack, &fleet, &a, first_frames).await;
    assert_ended_well(&stack, &fleet, &again, first_frames).await;
    let b = stack.upload("same-key.mp4", second).await.unwrap();
    assert_ne!(a, b, "new content under the key is a new job");
    assert_ended_well(&stack, &fleet, &b, second_frames).await;
    assert_ended_well(&stack, &fleet, &a, first_frames).await;
}
