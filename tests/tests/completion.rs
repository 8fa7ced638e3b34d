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

/// A batch whose failed frames, with their reasons, take far more than DynamoDB's 400 KB item
/// limit (300 frames, 2,000-byte reasons: about 620 KB; moto refuses items over about
/// 405,000 bytes as DynamoDB refuses them over 400 KB). Stored whole in its marker, the
/// counting transaction is refused and the batch can never be counted. The worker writes the
/// full list to a failure log first (its role may: `*/failures/*`), the marker keeps the count,
/// a sample and the log's key, and the manifest lists every failure in full, read back through
/// the worker's role; the reconciler's role may read the log too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_beyond_the_item_limit_reach_the_manifest_in_full() {
    use framefleet_core::jobs::{JobTable, MARKER_FAILURE_SAMPLE};
    use framefleet_core::manifest::{failure_log, Finish, ManifestWriter};
    use framefleet_core::pricing::PriceTable;

    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let worker = stack.clients_as(&stack.identities.worker, &stack.policies.worker);
    let dispatcher = stack.clients_as(&stack.identities.dispatcher, &stack.policies.dispatcher);
    let jobs = JobTable::new(worker.dynamodb.clone(), &stack.resources.jobs_table);
    let processed = &stack.resources.processed_bucket;
    let plan = BatchPlan {
        batch_size: 300,
        params: framefleet_edge::EdgeParams::default(),
        last_frame: None,
        layout: Default::default(),
    };
    let id = VideoId::derive("in", "failing.mp4", "e");
    stack
        .jobs
        .register(&JobRecord::new(id.clone(), "in", "failing.mp4", "e", 1))
        .await
        .unwrap();
    stack
        .jobs
        .start_processing(&id, "mc-1", 300, 1, &plan)
        .await
        .unwrap();
    let failed: Vec<FailedFrame> = (0..300)
        .map(|i| FailedFrame {
            key: format!("{id}/failing.{i:07}.jpg"),
            reason: format!("input is corrupt: frame {i}: {}", "x".repeat(2000)),
        })
        .collect();
    let mut outcome = BatchOutcome {
        failed: failed.clone(),
        ..BatchOutcome::default()
    };
    // What the worker does before counting (worker/src/batch.rs).
    if let Some((key, body)) = failure_log(&id, 0, &outcome.failed) {
        worker
            .s3
            .put_object()
            .bucket(processed)
            .key(&key)
            .body(body.into())
            .send()
            .await
            .unwrap();
        outcome.failure_log = Some(key);
    }
    assert_eq!(
        jobs.count_batch(&id, 0, &outcome).await.unwrap(),
        Counting::Counted
    );
    let log_key = outcome.failure_log.clone().expect("too long for a marker");
    let record = jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.failed_frames, 300);
    // The marker: the count, a sample with reasons cut short, the log's key.
    let marker = stack
        .clients
        .dynamodb
        .get_item()
        .table_name(&stack.resources.jobs_table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("batch#000000".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        marker["failures_sample"].as_l().unwrap().len(),
        MARKER_FAILURE_SAMPLE
    );
    assert_eq!(marker["failure_log"].as_s().unwrap(), &log_key);
    assert!(!marker.contains_key("failures"));

    assert_eq!(jobs.try_finalize(&id).await.unwrap(), Transition::Applied);
    let writer = ManifestWriter::new(
        worker.s3.clone(),
        jobs.clone(),
        processed,
        PriceTable::default(),
    );
    let finish = writer.finish_job(&id, &plan.params).await.unwrap();
    assert!(matches!(finish, Finish::Completed(_)), "{finish:?}");
    let manifest = stack.manifest(id.as_str()).await.unwrap();
    assert_eq!(manifest["counts"]["failed"], 300);
    let listed: Vec<FailedFrame> =
        serde_json::from_value(manifest["failed_frames"].clone()).unwrap();
    assert_eq!(listed, failed, "every failure, in full, in order");

    // The reconciler finishes manifests too: its role reads failure logs.
    dispatcher
        .s3
        .get_object()
        .bucket(processed)
        .key(&log_key)
        .send()
        .await
        .unwrap();
}
