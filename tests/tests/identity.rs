//! One content identity for an upload, and one MediaConvert job for its capture, against
//! moto_server, the MediaConvert stand-in and the real services:
//!
//! - on a versioned ingress bucket (as the template makes it) `framefleet submit --wait`
//!   follows the job the dispatcher registered, by the version id S3 returned, and the same
//!   bytes uploaded again are a new version and a new job;
//! - the reconciler registers a stuck REGISTERED job again under its own id (the version it
//!   recorded), not a twin under the eTag's;
//! - a re-created capture of a video whose id is as long as ids get still fits MediaConvert's
//!   64-character request token;
//! - a second MediaConvert job for a video (a CreateJob retried after the token window, or
//!   created while the job was being canceled) is canceled, and its events never count;
//! - the reconciler's attempt counter counts a lost-answer write once;
//! - a tagged upload is pinned under the dispatcher's template policy.

use std::time::{Duration, Instant};

use aws_sdk_mediaconvert::types::JobStatus as MediaConvertStatus;
use aws_sdk_s3::primitives::ByteStream;
use framefleet_core::jobs::{JobRecord, JobStatus, JobTable};
use framefleet_core::video::{VideoId, MAX_VIDEO_ID_LEN};
use framefleet_dispatcher::mediaconvert::{create_capture_job, CaptureRequest};
use framefleet_dispatcher::rate::CaptureRate;
use framefleet_dispatcher::reconcile::Action;
use framefleet_dispatcher::settings::ReconcileConfig;
use framefleet_dispatcher::{Dispatcher, Feed};
use framefleet_e2e::fault_proxy::{Fault, FaultPlan, FaultRule, Gate, Service, Trigger};
use framefleet_e2e::media::{count_frames, make_video};
use framefleet_e2e::reconciling::reconcile_until_acted;
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};

/// A generated clip: its bytes and frame count.
async fn clip(name: &str, rate: &str, seconds: f64) -> (Vec<u8>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    make_video(&path, 96, 64, rate, seconds).await.unwrap();
    let frames = count_frames(&path).await.unwrap();
    (std::fs::read(&path).unwrap(), frames)
}

/// A dispatcher on `stack` whose reconciler acts on one second of silence, at most `attempts`
/// times per job.
async fn eager_dispatcher(stack: &Stack, attempts: u64) -> Dispatcher {
    let mut settings = stack.dispatcher_settings.clone();
    settings.reconcile = ReconcileConfig {
        enabled: true,
        interval_secs: 1,
        registered_after_secs: 1,
        capturing_after_secs: 1,
        processing_after_secs: 1,
        finalizing_after_secs: 1,
        max_attempts: attempts,
    };
    let clients = stack.clients_as(&stack.identities.dispatcher, &stack.policies.dispatcher);
    Dispatcher::new(settings, clients).await.unwrap()
}

/// Polls `condition` every 100 ms for up to two minutes.
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Handles job events with `dispatcher` until the job is final.
async fn events_until_final(stack: &Stack, dispatcher: &Dispatcher, id: &VideoId) -> JobRecord {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let record = stack.jobs.get(id).await.unwrap().unwrap();
        if record.status.is_final() {
            return record;
        }
        assert!(Instant::now() < deadline, "never finished: {record:#?}");
        dispatcher
            .run_once(Feed::JobEvents, Duration::from_secs(1))
            .await
            .unwrap();
    }
}

async fn mediaconvert_status(stack: &Stack, job_id: &str) -> Option<MediaConvertStatus> {
    let out = stack
        .clients
        .mediaconvert
        .get_job()
        .id(job_id)
        .send()
        .await
        .unwrap();
    out.job().and_then(|job| job.status()).cloned()
}

/// The ids of the stand-in's jobs created for `video_id` (their `userMetadata.video_id`).
async fn mediaconvert_jobs_of(stack: &Stack, video_id: &VideoId) -> Vec<String> {
    let out = stack
        .clients
        .mediaconvert
        .list_jobs()
        .max_results(20)
        .send()
        .await
        .unwrap();
    out.jobs()
        .iter()
        .filter(|job| {
            job.user_metadata()
                .and_then(|m| m.get("video_id"))
                .is_some_and(|v| v == video_id.as_str())
        })
        .filter_map(|job| job.id().map(ToString::to_string))
        .collect()
}

fn assert_exact(record: &JobRecord, frames: u64) {
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.total_frames, Some(frames), "{record:#?}");
    assert_eq!(record.processed_frames, frames, "{record:#?}");
    assert_eq!(record.failed_frames, 0, "{record:#?}");
}

/// The versions of `key` in the ingress bucket, newest first.
async fn ingress_versions(stack: &Stack, key: &str) -> Vec<String> {
    let out = stack
        .clients
        .s3
        .list_object_versions()
        .bucket(&stack.resources.ingress_bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    out.versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .filter_map(|v| v.version_id().map(ToString::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_wait_on_a_versioned_ingress_bucket_follows_its_job_to_complete() {
    let stack = spawn_stack_with(StackOptions::default()).await.unwrap();
    stack.version_ingress_bucket().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("versioned clip.mp4");
    make_video(&path, 96, 64, "10", 1.0).await.unwrap();
    let frames = count_frames(&path).await.unwrap();
    let path = path.to_str().unwrap();
    // The same bytes twice: once by PutObject, once by a multipart upload. On a versioned
    // bucket each is a new version, so a new job; each `--wait` must see its own to the end.
    // Without the version id the command waits for an id nobody registers: the deadline turns
    // that hang into a failure.
    let mut ids = Vec::new();
    for extra in [&[][..], &["--multipart-threshold", "1"][..]] {
        let mut args = vec!["submit", path, "--wait", "--json"];
        args.extend_from_slice(extra);
        let out = tokio::time::timeout(Duration::from_secs(240), stack.framefleet(&args))
            .await
            .expect("`framefleet submit --wait` never saw its job end")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines[0]["version_id"].is_string(), "{lines:#?}");
        assert_eq!(lines.last().unwrap()["status"], "COMPLETE", "{lines:#?}");
        ids.push((
            VideoId::from_raw(lines[0]["video_id"].as_str().unwrap()),
            lines[0]["version_id"].as_str().unwrap().to_string(),
        ));
    }
    assert_ne!(ids[0].0, ids[1].0, "same bytes, new version: a new job");
    let versions = ingress_versions(&stack, "versioned clip.mp4").await;
    assert_eq!(versions.len(), 2, "{versions:?}");
    for (id, version) in &ids {
        assert!(versions.contains(version), "{version} not in {versions:?}");
        assert_eq!(
            *id,
            VideoId::derive(
                &stack.resources.ingress_bucket,
                "versioned clip.mp4",
                version
            )
        );
        let record = stack.jobs.get(id).await.unwrap().expect("registered");
        assert_exact(&record, frames);
        assert_eq!(record.source_version_id.as_deref(), Some(version.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_registration_on_a_versioned_bucket_is_registered_again_under_its_own_id() {
    let mut stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    stack.version_ingress_bucket().await.unwrap();
    let (bytes, frames) = clip("stuck.mp4", "10", 1.0).await;
    let id = stack.upload("stuck.mp4", bytes).await.unwrap();
    // A dispatcher whose CreateJob cannot reach MediaConvert registers the job and stops
    // there, as one that died after registering would leave it.
    let mut cut_off = stack.clients_as(&stack.identities.dispatcher, &stack.policies.dispatcher);
    cut_off.mediaconvert = aws_sdk_mediaconvert::Client::from_conf(
        aws_sdk_mediaconvert::config::Builder::from(&framefleet_e2e::sdk_config(
            "http://127.0.0.1:1",
        ))
        .build(),
    );
    let cut_off = Dispatcher::new(stack.dispatcher_settings.clone(), cut_off)
        .await
        .unwrap();
    wait_until("the registration", || async {
        let _ = cut_off
            .run_once(Feed::Ingress, Duration::from_secs(1))
            .await;
        stack.jobs.get(&id).await.unwrap().is_some()
    })
    .await;
    let registered = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(registered.status, JobStatus::Registered);
    let version = registered.source_version_id.clone().expect("a version");

    let dispatcher = eager_dispatcher(&stack, 3).await;
    assert_eq!(
        reconcile_until_acted(&dispatcher, &id).await,
        Action::Reregistered
    );
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Capturing, "{record:#?}");
    let twin = VideoId::derive(
        &stack.resources.ingress_bucket,
        "stuck.mp4",
        &registered.source_etag,
    );
    assert_ne!(twin, id);
    assert!(
        stack.jobs.get(&twin).await.unwrap().is_none(),
        "a twin job under the eTag's id"
    );
    stack.start_worker().await.unwrap();
    let done = events_until_final(&stack, &dispatcher, &id).await;
    assert_exact(&done, frames);
    assert_eq!(done.source_version_id, Some(version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recreated_capture_of_the_longest_video_id_completes() {
    let mut stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let dispatcher = eager_dispatcher(&stack, 3).await;
    let key = "uploads/Our Summer Holiday At The Seaside With Grandma And The Dogs.mp4";
    let (bytes, frames) = clip("long.mp4", "10", 1.0).await;
    let id = stack.upload(key, bytes).await.unwrap();
    assert_eq!(id.as_str().len(), MAX_VIDEO_ID_LEN, "{id}");
    wait_until("capture", || async {
        dispatcher
            .run_once(Feed::Ingress, Duration::from_secs(1))
            .await
            .unwrap();
        stack
            .jobs
            .get(&id)
            .await
            .unwrap()
            .is_some_and(|r| r.status == JobStatus::Capturing)
    })
    .await;
    let recorded = stack
        .jobs
        .get(&id)
        .await
        .unwrap()
        .unwrap()
        .mediaconvert_job_id
        .unwrap();
    // As if MediaConvert had lost the job: the record names one it never heard of.
    stack
        .jobs
        .restart_capture(&id, &recorded, "0000000000000-gone00")
        .await
        .unwrap();
    let new_job = match reconcile_until_acted(&dispatcher, &id).await {
        Action::Recaptured(job) => job,
        other => panic!("expected a new capture job, got {other:?}"),
    };
    let token = stack
        .clients
        .mediaconvert
        .get_job()
        .id(&new_job)
        .send()
        .await
        .unwrap()
        .job()
        .and_then(|j| j.client_request_token().map(ToString::to_string))
        .unwrap();
    assert!(token.len() <= 64, "{token}");
    stack.start_worker().await.unwrap();
    let done = events_until_final(&stack, &dispatcher, &id).await;
    assert_exact(&done, frames);
    assert_eq!(done.mediaconvert_job_id.as_deref(), Some(new_job.as_str()));
}

/// A MediaConvert "Job State Change" event as EventBridge delivers it.
fn job_event(job_id: &str, video_id: &VideoId, status: &str, detail: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": format!("event-{job_id}-{status}"),
        "detail-type": "MediaConvert Job State Change",
        "source": "aws.mediaconvert",
        "account": "000000000000",
        "time": "2026-12-05T00:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:mediaconvert:us-east-1:000000000000:jobs/{job_id}")],
        "detail": serde_json::from_str::<serde_json::Value>(&format!(
            r#"{{"timestamp":1,"accountId":"000000000000","queue":"q","jobId":"{job_id}","status":"{status}",
                "userMetadata":{{"application":"framefleet","video_id":"{video_id}"}}{detail}}}"#
        ))
        .unwrap(),
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_capture_job_of_a_video_is_canceled_and_never_counts() {
    let stack = spawn_stack_with(StackOptions::default()).await.unwrap();
    // The stand-in's one job slot is held, so the video's own capture waits in SUBMITTED.
    let (long, _) = clip("long.mp4", "30", 60.0).await;
    let blocker = stack.occupy_mediaconvert(long).await.unwrap();
    let (bytes, frames) = clip("twice.mp4", "10", 1.0).await;
    let id = stack.upload("twice.mp4", bytes).await.unwrap();
    let capturing = stack
        .wait_for(&id, &[JobStatus::Capturing], Duration::from_secs(120))
        .await
        .unwrap();
    let own = capturing.mediaconvert_job_id.clone().unwrap();

    // Another job's COMPLETE naming a thousand frames, while the video's own job has not
    // started: only the recorded job speaks for the video.
    let stray_complete = job_event(
        "1700000000000-stray0",
        &id,
        "COMPLETE",
        &format!(
            r#","outputGroupDetails":[{{"outputDetails":[{{"outputFilePaths":["s3://{}/{id}/twice.0000999.jpg"]}}],"type":"FILE_GROUP"}}]"#,
            stack.resources.frames_bucket
        ),
    );
    stack
        .clients
        .sqs
        .send_message()
        .queue_url(&stack.provisioned.job_events_queue_url)
        .message_body(stray_complete)
        .send()
        .await
        .unwrap();
    stack
        .wait_until_empty(&stack.provisioned.job_events_queue_url)
        .await
        .unwrap();
    let still = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(still.status, JobStatus::Capturing, "{still:#?}");
    assert_eq!(still.total_frames, None, "{still:#?}");

    // A second real job for the same video, as a CreateJob retried after the one-minute
    // token window makes (another attempt number, so another token). Its input is long, so
    // it is still running when the dispatcher hears of it.
    let frames_bucket = &stack.resources.frames_bucket;
    let stray = create_capture_job(
        &stack.clients.mediaconvert,
        &stack.dispatcher_settings.dispatcher,
        &CaptureRequest {
            video_id: &id,
            input_url: format!("s3://{frames_bucket}/sources/blocker/long.mp4"),
            destination: format!("s3://{frames_bucket}/stray-frames/"),
            preview_destination: format!("s3://{frames_bucket}/stray-preview/preview"),
            rate: CaptureRate::parse("30").unwrap(),
            attempt: 7,
            source_has_audio: false,
            traceparent: None,
            part: None,
        },
    )
    .await
    .unwrap();
    assert_ne!(stray, own);
    // Free the slot: the video's job runs, then the stray one.
    stack
        .clients
        .mediaconvert
        .cancel_job()
        .id(&blocker)
        .send()
        .await
        .unwrap();
    let done = stack.wait_final(&id).await.unwrap();
    assert_exact(&done, frames);
    assert_eq!(done.mediaconvert_job_id.as_deref(), Some(own.as_str()));
    wait_until("the second job's end", || async {
        matches!(
            mediaconvert_status(&stack, &stray).await,
            Some(
                MediaConvertStatus::Canceled
                    | MediaConvertStatus::Complete
                    | MediaConvertStatus::Error
            )
        )
    })
    .await;
    assert_eq!(
        mediaconvert_status(&stack, &stray).await,
        Some(MediaConvertStatus::Canceled),
        "the second job was not canceled"
    );
    let after = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_exact(&after, frames);
    assert_eq!(after.batches, done.batches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_capture_created_while_the_job_was_canceled_is_canceled() {
    // Every UpdateItem of the dispatcher waits at the gate: its start_capture is held after
    // CreateJob returned, while the user cancels the job.
    let gate = Gate::new();
    let stack = spawn_stack_with(StackOptions {
        faults: Some(FaultPlan::strict().hold_on(Service::DynamoDb, "UpdateItem", &gate)),
        ..StackOptions::idle()
    })
    .await
    .unwrap();
    let dispatcher = stack.dispatcher().await.unwrap();
    // The stand-in's one job slot is held, so the capture created below stays SUBMITTED
    // (cancelable) whatever the timing.
    let (long, _) = clip("long.mp4", "30", 60.0).await;
    stack.occupy_mediaconvert(long).await.unwrap();
    let (bytes, _) = clip("canceled.mp4", "10", 1.0).await;
    let id = stack.upload("canceled.mp4", bytes).await.unwrap();
    let registering = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move {
            dispatcher
                .run_once(Feed::Ingress, Duration::from_secs(5))
                .await
        }
    });
    wait_until("start_capture at the gate", || async { gate.reached() > 0 }).await;
    let created = mediaconvert_jobs_of(&stack, &id).await;
    assert_eq!(created.len(), 1, "{created:?}");
    // `framefleet cancel` finds no capture yet: it cancels only the job record.
    let out = stack
        .framefleet(&["cancel", id.as_str(), "--json"])
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gate.open();
    registering.await.unwrap().unwrap();
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Canceled, "{record:#?}");
    assert_eq!(
        mediaconvert_status(&stack, &created[0]).await,
        Some(MediaConvertStatus::Canceled),
        "the capture created during the cancel still runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconcile_attempt_whose_answer_is_lost_counts_once() {
    // The note applies and its answer is lost; the SDK sends it again.
    let plan = FaultPlan::seeded(20).rule(
        FaultRule::new(
            Service::DynamoDb,
            Trigger::FirstCalls(1),
            Fault::ResetAfterSuccess,
        )
        .on("UpdateItem")
        .body_contains("reconcile_attempts"),
    );
    let stack = spawn_stack_with(StackOptions {
        faults: Some(plan),
        ..StackOptions::idle()
    })
    .await
    .unwrap();
    let clients = stack.clients_as(&stack.identities.dispatcher, &stack.policies.dispatcher);
    let jobs = JobTable::new(clients.dynamodb.clone(), &stack.resources.jobs_table);
    let id = VideoId::from_raw("noted-0123456789ab");
    jobs.register(&JobRecord::new(id.clone(), "in", "noted.mp4", "e", 1))
        .await
        .unwrap();
    jobs.note_reconcile(&id, JobStatus::Registered, 0, "first")
        .await
        .unwrap();
    let proxy = stack.fault_proxy.as_ref().unwrap();
    assert_eq!(proxy.count(Fault::ResetAfterSuccess), 1);
    assert_eq!(jobs.get(&id).await.unwrap().unwrap().reconcile_attempts, 1);
    // The next attempt reads 1 and counts 2; a stale reader (still at 0) counts nothing.
    jobs.note_reconcile(&id, JobStatus::Registered, 1, "second")
        .await
        .unwrap();
    jobs.note_reconcile(&id, JobStatus::Registered, 0, "stale")
        .await
        .unwrap();
    let record = jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.reconcile_attempts, 2);
    assert_eq!(record.last_error.as_deref(), Some("second"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tagged_upload_is_pinned_and_processed_under_the_template_policy() {
    let stack = spawn_stack_with(StackOptions::default()).await.unwrap();
    stack.version_ingress_bucket().await.unwrap();
    let (bytes, frames) = clip("tagged.mp4", "10", 1.0).await;
    let out = stack
        .clients
        .s3
        .put_object()
        .bucket(&stack.resources.ingress_bucket)
        .key("tagged.mp4")
        .tagging("project=holiday&owner=grandma")
        .body(ByteStream::from(bytes))
        .send()
        .await
        .unwrap();
    let id = VideoId::of_upload(
        &stack.resources.ingress_bucket,
        "tagged.mp4",
        out.e_tag().unwrap(),
        out.version_id(),
    );
    let done = stack.wait_final(&id).await.unwrap();
    assert_exact(&done, frames);
    // The pinned copy carries none of the upload's tags: nothing was copied that the role
    // would need tagging permissions for.
    let pinned = stack
        .clients
        .s3
        .get_object_tagging()
        .bucket(&stack.resources.frames_bucket)
        .key(format!("sources/{id}/tagged.mp4"))
        .send()
        .await
        .unwrap();
    assert!(pinned.tag_set().is_empty(), "{:?}", pinned.tag_set());
}
