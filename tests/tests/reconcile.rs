//! The reconciler against moto_server, the MediaConvert stand-in and real workers: a job whose
//! events, batches, capture job or completing worker were lost still ends, with exact counts
//! or with a reason.

use std::time::{Duration, Instant};

use framefleet_core::jobs::{BatchOutcome, JobRecord, JobStatus};
use framefleet_core::video::VideoId;
use framefleet_dispatcher::reconcile::Action;
use framefleet_dispatcher::settings::ReconcileConfig;
use framefleet_dispatcher::{Dispatcher, Feed};
use framefleet_e2e::media::{count_frames, make_video};
use framefleet_e2e::reconciling::reconcile_until_acted;
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};

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
    Dispatcher::new(settings, stack.clients.clone())
        .await
        .unwrap()
}

fn quiet_stack() -> StackOptions {
    StackOptions::idle()
}

/// Uploads a generated clip and registers it with `dispatcher`; returns its id and frame count.
async fn register(stack: &Stack, dispatcher: &Dispatcher, name: &str) -> (VideoId, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    make_video(&path, 96, 64, "10", 1.0).await.unwrap();
    let frames = count_frames(&path).await.unwrap();
    let id = stack
        .upload(name, std::fs::read(&path).unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.jobs.get(&id).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "never registered");
        dispatcher
            .run_once(Feed::Ingress, Duration::from_secs(1))
            .await
            .unwrap();
    }
    (id, frames)
}

/// Deletes every message on `url` (events or batches that got lost).
async fn lose_all(stack: &Stack, url: &str) -> usize {
    let sqs = &stack.clients.sqs;
    let mut lost = 0;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            return lost;
        }
        for message in out.messages() {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .unwrap();
            lost += 1;
        }
    }
}

async fn record(stack: &Stack, id: &VideoId) -> JobRecord {
    stack.jobs.get(id).await.unwrap().unwrap()
}

async fn assert_complete_with_exact_counts(stack: &Stack, id: &VideoId, frames: u64) {
    let done = stack.wait_final(id).await.unwrap();
    assert_eq!(done.status, JobStatus::Complete, "{done:#?}");
    assert_eq!(done.total_frames, Some(frames), "{done:#?}");
    assert_eq!(
        done.processed_frames + done.failed_frames,
        frames,
        "{done:#?}"
    );
    assert!(done.fanned_out, "{done:#?}");
    let manifest = stack.manifest(id.as_str()).await.unwrap();
    assert_eq!(manifest["counts"]["total"], frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_capture_events_are_recovered_from_mediaconvert() {
    let mut stack = spawn_stack_with(quiet_stack()).await.unwrap();
    let dispatcher = eager_dispatcher(&stack, 3).await;
    let (id, frames) = register(&stack, &dispatcher, "lost-events.mp4").await;
    // The capture finishes, but none of its events ever reach the dispatcher.
    let job_id = record(&stack, &id).await.mediaconvert_job_id.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = stack
            .clients
            .mediaconvert
            .get_job()
            .id(&job_id)
            .send()
            .await
            .unwrap();
        let status = job.job().and_then(|j| j.status()).cloned();
        if status == Some(aws_sdk_mediaconvert::types::JobStatus::Complete) {
            break;
        }
        assert!(Instant::now() < deadline, "capture never completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    lose_all(&stack, &stack.provisioned.job_events_queue_url.clone()).await;
    assert_eq!(record(&stack, &id).await.status, JobStatus::Capturing);

    assert_eq!(
        reconcile_until_acted(&dispatcher, &id).await,
        Action::FannedOut
    );
    stack.start_worker().await.unwrap();
    assert_complete_with_exact_counts(&stack, &id, frames).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_batches_are_sent_again_and_counted_once() {
    let mut stack = spawn_stack_with(quiet_stack()).await.unwrap();
    let dispatcher = eager_dispatcher(&stack, 3).await;
    let (id, frames) = register(&stack, &dispatcher, "lost-batches.mp4").await;
    // Events flow; every batch of the fan-out is then lost before any worker sees it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !record(&stack, &id).await.fanned_out {
        assert!(Instant::now() < deadline, "never fanned out");
        dispatcher
            .run_once(Feed::JobEvents, Duration::from_secs(1))
            .await
            .unwrap();
    }
    let planned = record(&stack, &id).await.batches.unwrap();
    let lost = lose_all(&stack, &stack.provisioned.frames_queue_url.clone()).await;
    assert_eq!(lost as u64, planned);

    match reconcile_until_acted(&dispatcher, &id).await {
        Action::Resent(batches) => assert_eq!(batches.len() as u64, planned),
        other => panic!("expected a re-send, got {other:?}"),
    }
    let noted = record(&stack, &id).await;
    assert_eq!(noted.reconcile_attempts, 1, "{noted:#?}");
    assert!(
        noted
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("re-sent"),
        "{noted:#?}"
    );
    stack.start_worker().await.unwrap();
    assert_complete_with_exact_counts(&stack, &id, frames).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_never_counted_fail_the_job_after_the_budget() {
    let stack = spawn_stack_with(quiet_stack()).await.unwrap();
    let dispatcher = eager_dispatcher(&stack, 1).await;
    let (id, _) = register(&stack, &dispatcher, "never-counted.mp4").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !record(&stack, &id).await.fanned_out {
        assert!(Instant::now() < deadline, "never fanned out");
        dispatcher
            .run_once(Feed::JobEvents, Duration::from_secs(1))
            .await
            .unwrap();
    }
    let frames_queue = stack.provisioned.frames_queue_url.clone();
    lose_all(&stack, &frames_queue).await;
    assert!(matches!(
        reconcile_until_acted(&dispatcher, &id).await,
        Action::Resent(_)
    ));
    lose_all(&stack, &frames_queue).await;
    match reconcile_until_acted(&dispatcher, &id).await {
        Action::Failed(reason) => assert!(reason.contains("#0"), "{reason}"),
        other => panic!("expected the job to fail, got {other:?}"),
    }
    let failed = record(&stack, &id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    let reason = failed.last_error.unwrap_or_default();
    assert!(
        reason.contains("never counted after 1 re-sends") && reason.contains("#0"),
        "{reason}"
    );
    // A finished job leaves the open-jobs index: nothing more to look at.
    let again = dispatcher.reconcile_once().await.unwrap();
    assert!(again.actions.iter().all(|(v, _)| v != &id), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completion_nobody_finished_is_finished() {
    let stack = spawn_stack_with(quiet_stack()).await.unwrap();
    let dispatcher = eager_dispatcher(&stack, 3).await;
    let mut ids = Vec::new();
    for name in ["counted-unfinalized.mp4", "finalizing-orphan.mp4"] {
        let (id, frames) = register(&stack, &dispatcher, name).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !record(&stack, &id).await.fanned_out {
            assert!(Instant::now() < deadline, "never fanned out");
            dispatcher
                .run_once(Feed::JobEvents, Duration::from_secs(1))
                .await
                .unwrap();
        }
        // Every batch counted as a worker would, by a worker that dies before finalizing.
        let batches = record(&stack, &id).await.batches.unwrap();
        let batch_size = stack.dispatcher_settings.dispatcher.batch_size as u64;
        for index in 0..batches {
            let outcome = BatchOutcome {
                processed: batch_size.min(frames - index * batch_size),
                failed: Vec::new(),
                ..BatchOutcome::default()
            };
            stack
                .jobs
                .count_batch(&id, index as u32, &outcome)
                .await
                .unwrap();
        }
        ids.push((id, frames));
    }
    lose_all(&stack, &stack.provisioned.frames_queue_url.clone()).await;
    // The second one's winner died after winning FINALIZING, before its manifest.
    let (orphan, _) = &ids[1];
    stack.jobs.try_finalize(orphan).await.unwrap();
    assert_eq!(record(&stack, orphan).await.status, JobStatus::Finalizing);

    assert_eq!(
        reconcile_until_acted(&dispatcher, &ids[0].0).await,
        Action::Finalized
    );
    assert_eq!(
        reconcile_until_acted(&dispatcher, orphan).await,
        Action::Completed
    );
    for (id, frames) in &ids {
        assert_complete_with_exact_counts(&stack, id, *frames).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_capture_job_mediaconvert_lost_is_created_again() {
    let mut stack = spawn_stack_with(quiet_stack()).await.unwrap();
    let dispatcher = eager_dispatcher(&stack, 3).await;
    let (id, frames) = register(&stack, &dispatcher, "lost-job.mp4").await;
    let recorded = record(&stack, &id).await.mediaconvert_job_id.unwrap();
    // As if MediaConvert (here: a stand-in killed mid-capture) had lost the job: the job
    // record names one MediaConvert has never heard of, and no event will ever come.
    stack
        .jobs
        .restart_capture(&id, &recorded, "0000000000000-gone00")
        .await
        .unwrap();
    lose_all(&stack, &stack.provisioned.job_events_queue_url.clone()).await;

    let new_job = match reconcile_until_acted(&dispatcher, &id).await {
        Action::Recaptured(job) => job,
        other => panic!("expected a new capture job, got {other:?}"),
    };
    assert_eq!(
        record(&stack, &id).await.mediaconvert_job_id.as_deref(),
        Some(new_job.as_str())
    );
    stack.start_worker().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !record(&stack, &id).await.status.is_final() {
        assert!(Instant::now() < deadline, "never finished");
        dispatcher
            .run_once(Feed::JobEvents, Duration::from_secs(1))
            .await
            .unwrap();
    }
    assert_complete_with_exact_counts(&stack, &id, frames).await;
}
