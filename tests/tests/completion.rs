//! Completion after a crash, against moto_server, the MediaConvert stand-in and the real
//! dispatcher: a worker that wins the job's completion (FINALIZING) and dies before writing
//! the manifest leaves the job to the next delivery of its batch, which must finish it then,
//! not leave it to the reconciler minutes later. A winner that is only slow and such a finisher
//! both write the manifest: both succeed, and the manifests are the same.

use std::time::{Duration, Instant};

use framefleet_core::jobs::{
    BatchOutcome, BatchPlan, Counting, FailedFrame, JobRecord, JobStatus, Transition,
};
use framefleet_core::message::FrameBatch;
use framefleet_core::video::VideoId;
use framefleet_e2e::media::{count_frames, make_video};
use framefleet_e2e::stack::{spawn_stack_with, StackOptions};
use framefleet_worker::batch::BatchProcessor;

/// Receives every batch of the fan-out from the frames queue (deleting each, as a worker that
/// counted it would); panics after a minute.
async fn take_batches(stack: &framefleet_e2e::stack::Stack, expected: u64) -> Vec<FrameBatch> {
    let sqs = &stack.clients.sqs;
    let url = &stack.provisioned.frames_queue_url;
    let mut batches: Vec<FrameBatch> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (batches.len() as u64) < expected {
        assert!(Instant::now() < deadline, "only {} batches", batches.len());
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in out.messages() {
            batches.push(FrameBatch::parse(message.body().unwrap_or_default()).unwrap());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
    }
    batches.sort_by_key(|b| b.batch_index);
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_last_batch_finishes_a_crashed_winners_manifest() {
    // The dispatcher's reconciler keeps its default 300 s for FINALIZING jobs: only the
    // redelivery can finish this job within the test.
    let stack = spawn_stack_with(StackOptions::without_workers())
        .await
        .unwrap();
    assert!(stack.dispatcher_settings.reconcile.finalizing_after_secs >= 300);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("winner.mp4");
    make_video(&path, 96, 64, "10", 1.0).await.unwrap();
    let frames = count_frames(&path).await.unwrap();
    let id = stack
        .upload("winner.mp4", std::fs::read(&path).unwrap())
        .await
        .unwrap();
    let record = stack.wait_processing(&id).await.unwrap();
    let planned = record.batches.unwrap();
    assert!(planned >= 2, "{record:#?}");
    let batches = take_batches(&stack, planned).await;
    assert_eq!(batches.len() as u64, planned);

    // The dead winner: it counted every batch and won FINALIZING, then died before the
    // manifest.
    for batch in &batches {
        let outcome = BatchOutcome {
            processed: batch.frame_keys.len() as u64,
            failed: Vec::new(),
            ..BatchOutcome::default()
        };
        assert_eq!(
            stack
                .jobs
                .count_batch(&id, batch.batch_index, &outcome)
                .await
                .unwrap(),
            Counting::Counted
        );
    }
    assert_eq!(
        stack.jobs.try_finalize(&id).await.unwrap(),
        Transition::Applied
    );
    let manifest_key = format!("{id}/manifest.json");
    assert!(stack
        .list(&stack.resources.processed_bucket, &manifest_key)
        .await
        .unwrap()
        .is_empty());

    // SQS delivers the last batch again (its message was never deleted by the dead worker).
    let processor = BatchProcessor::new(
        stack.clients.s3.clone(),
        stack.jobs.clone(),
        &stack.resources.processed_bucket,
        2,
    );
    let last = batches.last().unwrap();
    let report = processor.process(last, true).await.unwrap();
    assert_eq!(report.counting, Counting::AlreadyCounted, "{report:?}");

    // Finished by that delivery, not by anything later.
    let done = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Complete, "{done:#?}");
    assert_eq!(done.manifest_key.as_deref(), Some(manifest_key.as_str()));
    assert_eq!(done.processed_frames, frames);
    let manifest = stack.manifest(id.as_str()).await.unwrap();
    assert_eq!(manifest["counts"]["total"], frames);
    assert_eq!(manifest["counts"]["processed"], frames);
}

/// Two finishers of one FINALIZING job at once (the winner, and a redelivery of a counted batch
/// or the reconciler that found the job FINALIZING): both write the manifest, one marks the job
/// COMPLETE, and the other finds it COMPLETE and is done. Neither fails: a retryable error
/// would send its batch message round again for nothing. Both wrote the same manifest, and a
/// finisher that comes once the job is COMPLETE writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_finishers_both_succeed_and_write_the_same_manifest() {
    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    stack.version_processed_bucket().await.unwrap();
    let processor = || {
        BatchProcessor::new(
            stack.clients.s3.clone(),
            stack.jobs.clone(),
            &stack.resources.processed_bucket,
            1,
        )
    };
    let plan = BatchPlan {
        batch_size: 4,
        params: framefleet_edge::EdgeParams::default(),
        last_frame: None,
        layout: Default::default(),
    };
    for round in 0..3 {
        let key = format!("race-{round}.mp4");
        let id = VideoId::derive("in", &key, "e");
        let jobs = &stack.jobs;
        jobs.register(&JobRecord::new(id.clone(), "in", &key, "e", 1))
            .await
            .unwrap();
        jobs.start_processing(&id, "mc-1", 8, 2, &plan)
            .await
            .unwrap();
        for (index, failed) in [(0, 0), (1, 1)] {
            let outcome = BatchOutcome {
                processed: 4 - failed,
                failed: (0..failed)
                    .map(|_| FailedFrame {
                        key: format!("{id}/clip.0000007.jpg"),
                        reason: "corrupt".into(),
                    })
                    .collect(),
                ..BatchOutcome::default()
            };
            jobs.count_batch(&id, index, &outcome).await.unwrap();
        }
        assert_eq!(jobs.try_finalize(&id).await.unwrap(), Transition::Applied);

        let (winner, finisher) = (processor(), processor());
        let (first, second) = tokio::join!(
            winner.finish_job(&id, &plan.params),
            finisher.finish_job(&id, &plan.params)
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert!(
            first ^ second,
            "one of them completed the job: {first} {second}"
        );
        let done = jobs.get(&id).await.unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Complete, "{done:#?}");
        let manifest_key = format!("{id}/manifest.json");
        assert_eq!(done.manifest_key.as_deref(), Some(manifest_key.as_str()));
        let written = stack.processed_versions(&manifest_key).await.unwrap();
        assert!(!written.is_empty());
        assert!(
            written.iter().all(|etag| *etag == written[0]),
            "round {round}: the finishers wrote different manifests: {written:?}"
        );
        let manifest = stack.manifest(id.as_str()).await.unwrap();
        assert_eq!(manifest["counts"]["failed"], 1, "{manifest:#}");
        assert_eq!(manifest["failed_frames"].as_array().map(Vec::len), Some(1));

        // Late: the job is COMPLETE already, so nothing is written and nothing fails.
        assert!(!processor().finish_job(&id, &plan.params).await.unwrap());
        assert_eq!(
            stack.processed_versions(&manifest_key).await.unwrap(),
            written
        );
    }
}
