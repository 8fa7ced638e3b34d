//! The job table's exactly-once accounting against a real DynamoDB API (moto_server):
//! transactions with batch markers, forward-only status, exactly one completion winner.

use framefleet_core::aws::AwsClients;
use framefleet_core::config::Resources;
use framefleet_core::jobs::{
    BatchOutcome, Counting, FailedFrame, JobRecord, JobStatus, JobTable, Registration, Transition,
};
use framefleet_core::video::VideoId;
use framefleet_e2e::moto::MotoServer;
use framefleet_provision::ProvisionSettings;

async fn table() -> (MotoServer, JobTable) {
    let moto = MotoServer::start().await.unwrap();
    let clients = AwsClients::from_config(&framefleet_e2e::sdk_config(moto.endpoint()), true, None);
    let settings = ProvisionSettings {
        resources: Resources {
            jobs_table: "jobs-under-test".into(),
            ..Resources::default()
        },
        ..ProvisionSettings::default()
    };
    framefleet_provision::provision(&clients, &settings)
        .await
        .unwrap();
    let table = JobTable::new(clients.dynamodb.clone(), "jobs-under-test");
    (moto, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_count_once_and_one_worker_wins() {
    let (_moto, jobs) = table().await;
    let id = VideoId::derive("in", "race.mp4", "e");
    let record = JobRecord::new(id.clone(), "in", "race.mp4", "e", 10);
    assert_eq!(jobs.register(&record).await.unwrap(), Registration::Created);
    assert_eq!(
        jobs.register(&record).await.unwrap(),
        Registration::Existing
    );
    assert_eq!(
        jobs.start_capture(&id, "mc-1", "5/1").await.unwrap(),
        Transition::Applied
    );
    assert_eq!(
        jobs.start_processing(&id, "mc-1", 40, 10, &plan())
            .await
            .unwrap(),
        Transition::Applied
    );
    // Out-of-order and duplicate transitions are refused.
    assert_eq!(
        jobs.start_capture(&id, "mc-1", "5/1").await.unwrap(),
        Transition::NotApplicable
    );
    assert_eq!(
        jobs.start_processing(&id, "mc-1", 40, 10, &plan())
            .await
            .unwrap(),
        Transition::NotApplicable
    );

    // Ten batches, each delivered twice, all at once.
    let mut tasks = Vec::new();
    for copy in 0..2 {
        for batch in 0..10u32 {
            let jobs = jobs.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let outcome = BatchOutcome {
                    processed: if batch == 3 { 3 } else { 4 },
                    failed: if batch == 3 {
                        vec![FailedFrame {
                            key: format!("v/f.{:07}.jpg", batch * 4),
                            reason: format!("corrupt (copy {copy})"),
                        }]
                    } else {
                        Vec::new()
                    },
                    usage: batch_usage(),
                    job_item_bytes: 500,
                    // Batch 3 has a failed frame and a pack, batch 7 a pack only.
                    pack: [3, 7].contains(&batch).then(|| format!("pack-{batch}")),
                    failure_log: None,
                };
                let counting = jobs.count_batch(&id, batch, &outcome).await.unwrap();
                let won = jobs.try_finalize(&id).await.unwrap();
                (counting, won)
            }));
        }
    }
    let mut counted = 0;
    let mut winners = 0;
    for task in tasks {
        let (counting, won) = task.await.unwrap();
        counted += usize::from(counting == Counting::Counted);
        winners += usize::from(won == Transition::Applied);
    }
    assert_eq!(counted, 10, "each batch counted once");
    assert_eq!(winners, 1, "exactly one completion");
    let record = jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Finalizing);
    assert_eq!(
        jobs.complete(&id, "v/manifest.json").await.unwrap(),
        Transition::Applied
    );
    let record = jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Complete);
    assert_eq!(record.manifest_key.as_deref(), Some("v/manifest.json"));
    assert_eq!(record.processed_frames, 39);
    assert_eq!(record.failed_frames, 1);
    // One Query of the markers gives the manifest both the failures and the packs.
    let markers = jobs.markers(&id).await.unwrap();
    assert_eq!(markers.failed.len(), 1);
    assert_eq!(markers.failed[0].key, "v/f.0000012.jpg");
    assert_eq!(markers.packs, ["pack-3", "pack-7"]);
    // Usage is counted exactly once per batch, like the frames: ten batches, not twenty
    // deliveries; the transaction adds its own 2 + 2 write units (marker and job item, each
    // under 1 KB).
    let once = batch_usage();
    assert_eq!(record.usage.s3_get_requests, 10 * once.s3_get_requests);
    assert_eq!(record.usage.worker_cpu_ms, 10 * once.worker_cpu_ms);
    assert_eq!(record.usage.sqs_requests, 10 * once.sqs_requests);
    assert_eq!(
        record.usage.dynamodb_write_units,
        10 * (once.dynamodb_write_units + 4)
    );
    // A final job cannot fail or complete again.
    assert_eq!(
        jobs.fail(&id, "late").await.unwrap(),
        Transition::NotApplicable
    );
    assert_eq!(
        jobs.try_finalize(&id).await.unwrap(),
        Transition::NotApplicable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_job_does_not_complete() {
    let (_moto, jobs) = table().await;
    let id = VideoId::derive("in", "half.mp4", "e");
    jobs.register(&JobRecord::new(id.clone(), "in", "half.mp4", "e", 1))
        .await
        .unwrap();
    jobs.start_processing(&id, "mc-2", 8, 2, &plan())
        .await
        .unwrap();
    let outcome = BatchOutcome {
        processed: 4,
        failed: Vec::new(),
        ..BatchOutcome::default()
    };
    assert_eq!(
        jobs.count_batch(&id, 0, &outcome).await.unwrap(),
        Counting::Counted
    );
    assert_eq!(
        jobs.try_finalize(&id).await.unwrap(),
        Transition::NotApplicable
    );
    assert_eq!(
        jobs.fail(&id, "MediaConvert error 1010: unreadable")
            .await
            .unwrap(),
        Transition::Applied
    );
    let record = jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Failed);
    assert_eq!(
        record.last_error.as_deref(),
        Some("MediaConvert error 1010: unreadable")
    );
}

fn batch_usage() -> framefleet_core::usage::Usage {
    framefleet_core::usage::Usage {
        s3_get_requests: 4,
        s3_put_requests: 4,
        sqs_requests: 3,
        dynamodb_read_units: 1,
        dynamodb_write_units: 1,
        worker_cpu_ms: 7,
    }
}

fn plan() -> framefleet_core::jobs::BatchPlan {
    framefleet_core::jobs::BatchPlan {
        batch_size: 4,
        params: framefleet_edge::EdgeParams::default(),
        last_frame: Some("s3://frames/v/clip.0000039.jpg".into()),
        layout: Default::default(),
    }
}
