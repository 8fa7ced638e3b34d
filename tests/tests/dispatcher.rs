//! The dispatcher as a service: it drains what it holds on SIGTERM and keeps a message to
//! itself for as long as its handler runs, against moto_server and the MediaConvert stand-in.

use std::time::{Duration, Instant};

use framefleet_core::jobs::JobStatus;
use framefleet_core::video::VideoId;
use framefleet_dispatcher::settings::DispatcherConfig;
use framefleet_dispatcher::Feed;
use framefleet_e2e::media::make_video;
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};
use framefleet_provision::QueueSettings;
use tokio_util::sync::CancellationToken;

/// Uploads one small video under `count` keys and folds their S3 notifications into a single
/// ingress message (S3 may put several records in one), so that one handler works through
/// `count` registrations in a row: long enough to be caught mid-way. Returns the video ids.
async fn one_message_of_many_uploads(stack: &Stack, count: usize) -> Vec<VideoId> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.mp4");
    make_video(&path, 64, 48, "5", 0.4).await.unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(
            stack
                .upload(&format!("many/clip-{i:03}.mp4"), bytes.clone())
                .await
                .unwrap(),
        );
    }
    let sqs = &stack.clients.sqs;
    let queue = &stack.provisioned.ingress_queue_url;
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while records.len() < count && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in out.messages() {
            let body: serde_json::Value =
                serde_json::from_str(message.body().unwrap_or_default()).unwrap();
            if let Some(list) = body["Records"].as_array() {
                records.extend(list.iter().cloned());
            }
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(records.len(), count, "S3 notifications of the uploads");
    sqs.send_message()
        .queue_url(queue)
        .message_body(serde_json::json!({ "Records": records }).to_string())
        .send()
        .await
        .unwrap();
    ids
}

async fn status_of(stack: &Stack, id: &VideoId) -> Option<JobStatus> {
    stack.jobs.get(id).await.unwrap().map(|r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_the_handler_under_way_finish() {
    let stack = spawn_stack_with(StackOptions {
        dispatcher_config: DispatcherConfig {
            // A receive under way is finished on shutdown; a short one leaves the handler
            // still running when the loop stops, so only the drain lets it finish.
            poll_wait_secs: 1,
            ..StackOptions::default().dispatcher_config
        },
        ..StackOptions::idle()
    })
    .await
    .unwrap();
    let ids = one_message_of_many_uploads(&stack, 40).await;
    let dispatcher = stack.dispatcher().await.unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    // SIGTERM as soon as the handler has registered the first upload of the message.
    let deadline = Instant::now() + Duration::from_secs(60);
    while status_of(&stack, &ids[0]).await.is_none() {
        assert!(Instant::now() < deadline, "the message was never handled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unstarted = {
        let mut n = 0;
        for id in &ids {
            n += usize::from(status_of(&stack, id).await.is_none());
        }
        n
    };
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(90), running)
        .await
        .expect("the dispatcher stops within its drain time")
        .unwrap()
        .unwrap();
    for id in &ids {
        let status = status_of(&stack, id).await;
        assert!(
            matches!(status, Some(JobStatus::Capturing | JobStatus::Processing)),
            "{id} is {status:?}: every record of the message is handled before the dispatcher stops"
        );
    }
    assert_eq!(
        stack
            .queue_depth(&stack.provisioned.ingress_queue_url)
            .await
            .unwrap(),
        0,
        "the handled message was deleted, not left for redelivery"
    );
    // Without this the test would prove nothing: the signal came while records were left.
    assert!(unstarted > 0, "the handler had finished before the signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_stays_invisible_while_its_handler_runs() {
    let stack = spawn_stack_with(StackOptions {
        queues: QueueSettings {
            max_receive_count: 5,
            frames_visibility_timeout_secs: 30,
            // Shorter than the handler takes: only the handler's lease keeps it invisible.
            control_visibility_timeout_secs: 1,
        },
        ..StackOptions::idle()
    })
    .await
    .unwrap();
    let ids = one_message_of_many_uploads(&stack, 40).await;
    let first = stack.dispatcher().await.unwrap();
    let second = stack.dispatcher().await.unwrap();
    let started = Instant::now();
    let handling = tokio::spawn(async move {
        first
            .run_once(Feed::Ingress, Duration::from_secs(5))
            .await
            .unwrap()
    });
    // The first dispatcher holds the message once it has registered an upload from it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while status_of(&stack, &ids[0]).await.is_none() {
        assert!(Instant::now() < deadline, "the message was never handled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut stolen = 0;
    while !handling.is_finished() {
        let outcome = second
            .run_once(Feed::Ingress, Duration::from_secs(1))
            .await
            .unwrap();
        stolen += outcome.received;
    }
    let elapsed = started.elapsed();
    let outcome = handling.await.unwrap();
    assert_eq!((outcome.received, outcome.handled), (1, 1), "{outcome:?}");
    assert_eq!(
        stolen, 0,
        "a second dispatcher received the message under way"
    );
    for id in &ids {
        assert_eq!(
            status_of(&stack, id).await,
            Some(JobStatus::Capturing),
            "{id}"
        );
    }
    // Without this the test would prove nothing: the handler outlived the queue's timeout.
    assert!(
        elapsed > Duration::from_secs(2),
        "the handler took {elapsed:?}, within the 1 s visibility timeout"
    );
}

fn state_change(job_id: &str, video_id: &VideoId, status: &str, extra: &str) -> String {
    format!(
        r#"{{"version":"0","id":"e","detail-type":"MediaConvert Job State Change","source":"aws.mediaconvert","account":"123456789012","time":"2026-11-30T00:00:00Z","region":"us-east-1","resources":[],"detail":{{"timestamp":1,"accountId":"123456789012","queue":"q","jobId":"{job_id}","status":"{status}","userMetadata":{{"application":"framefleet","video_id":"{video_id}"}}{extra}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_of_another_mediaconvert_job_do_not_touch_the_job() {
    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let dispatcher = stack.dispatcher().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    make_video(&path, 64, 48, "5", 0.4).await.unwrap();
    let id = stack
        .upload("clip.mp4", std::fs::read(&path).unwrap())
        .await
        .unwrap();
    while status_of(&stack, &id).await.is_none() {
        dispatcher
            .run_once(Feed::Ingress, Duration::from_secs(1))
            .await
            .unwrap();
    }
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    let own = record.mediaconvert_job_id.clone().expect("capture started");
    // A second CreateJob for the same video (a handler cut off after CreateJob, redelivered
    // after the client-token window) fails: its ERROR must not fail the job.
    let stray = state_change(
        "1111111111111-stray1",
        &id,
        "ERROR",
        r#","errorCode":1010,"errorMessage":"Unable to open input file""#,
    );
    dispatcher.handle_job_event(&stray).await.unwrap();
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_ne!(record.status, JobStatus::Failed, "{record:#?}");
    // The job's own ERROR still fails it, with MediaConvert's code and message.
    let own_error = state_change(
        &own,
        &id,
        "ERROR",
        r#","errorCode":1030,"errorMessage":"Video codec not supported""#,
    );
    dispatcher.handle_job_event(&own_error).await.unwrap();
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Failed, "{record:#?}");
    assert_eq!(
        record.last_error.as_deref(),
        Some("MediaConvert error 1030: Video codec not supported")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_counted_batch_delivered_again_is_not_processed_again() {
    use framefleet_core::message::{FrameBatch, FRAME_BATCH_VERSION};
    use framefleet_worker::batch::BatchProcessor;

    let stack = framefleet_e2e::stack::spawn_stack().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    make_video(&path, 64, 48, "5", 1.0).await.unwrap();
    let id = stack
        .upload("clip.mp4", std::fs::read(&path).unwrap())
        .await
        .unwrap();
    let record = stack.wait_final(&id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    // Batch 0 as the dispatcher planned it: the first `batch_size` frames.
    let frames_bucket = &stack.resources.frames_bucket;
    let mut keys = stack.list(frames_bucket, &format!("{id}/")).await.unwrap();
    keys.retain(|k| framefleet_core::frames::frame_index(k).is_some());
    keys.truncate(stack.dispatcher_settings.dispatcher.batch_size);
    let batch = FrameBatch {
        version: FRAME_BATCH_VERSION,
        video_id: id.clone(),
        batch_index: 0,
        frames_bucket: frames_bucket.clone(),
        frame_keys: keys.clone(),
        params: stack.dispatcher_settings.kernel.params(),
        layout: Default::default(),
        first_index: None,
    };
    // Were the frames read again, their absence would show as failed frames.
    for key in &keys {
        stack
            .clients
            .s3
            .delete_object()
            .bucket(frames_bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    let processor = BatchProcessor::new(
        stack.clients.s3.clone(),
        stack.jobs.clone(),
        &stack.resources.processed_bucket,
        4,
    );
    let report = processor.process(&batch, true).await.unwrap();
    assert_eq!(
        report.counting,
        framefleet_core::jobs::Counting::AlreadyCounted
    );
    assert_eq!(
        report.outcome,
        Default::default(),
        "frames were processed again"
    );
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.failed_frames, 0, "{record:#?}");
}
