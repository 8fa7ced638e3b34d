//! Chaos: the world changing under a job. An upload overwritten while its capture waits, a
//! worker scaled in while SQS hands its long poll a batch, a dispatcher stopped between the last
//! batch and recording it. Everything against moto_server, real ffmpeg and the stand-in.

use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_mediaconvert::types::JobStatus as MediaConvertStatus;
use aws_sdk_s3::primitives::ByteStream;
use framefleet_core::jobs::JobStatus;
use framefleet_core::video::VideoId;
use framefleet_dispatcher::pin::{
    pin_upload, PinError, PinLimits, PinnedSource, Upload, MIN_PART, SOURCE_ETAG_METADATA,
};
use framefleet_e2e::media::video_bytes;
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};
use framefleet_provision::QueueSettings;
use tokio_util::sync::CancellationToken;

async fn put(stack: &Stack, bucket: &str, key: &str, body: Vec<u8>) -> String {
    let out = stack
        .clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
    out.e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

async fn mediaconvert_status(stack: &Stack, job_id: &str) -> MediaConvertStatus {
    let job = stack
        .clients
        .mediaconvert
        .get_job()
        .id(job_id)
        .send()
        .await
        .unwrap();
    job.job().and_then(|j| j.status()).cloned().unwrap()
}

/// Polls `condition` every 20 ms for up to a minute.
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwrite_while_capture_is_queued_keeps_each_job_on_its_own_bytes() {
    let stack = spawn_stack_with(StackOptions::default()).await.unwrap();
    let (content_a, frames_a) = video_bytes("a.mp4", 64, 48, "10", 25.0).await.unwrap();
    let (content_b, frames_b) = video_bytes("b.mp4", 64, 48, "10", 15.0).await.unwrap();
    assert_ne!(frames_a, frames_b);
    // Hold the stand-in's one job slot with a long capture outside the pipeline, so A's job
    // waits in SUBMITTED, as jobs do on a busy MediaConvert queue.
    let (long, _) = video_bytes("long.mp4", 64, 48, "30", 60.0).await.unwrap();
    let blocker = stack.occupy_mediaconvert(long).await.unwrap();
    wait_until("the blocker to run", || async {
        mediaconvert_status(&stack, &blocker).await == MediaConvertStatus::Progressing
    })
    .await;

    let key = "race/clip.mp4";
    let id_a = stack.upload(key, content_a).await.unwrap();
    let registered = stack
        .wait_for(&id_a, &[JobStatus::Capturing], Duration::from_secs(60))
        .await
        .unwrap();
    let job_a = registered.mediaconvert_job_id.clone().unwrap();
    let id_b = stack.upload(key, content_b).await.unwrap();
    assert_eq!(
        mediaconvert_status(&stack, &job_a).await,
        MediaConvertStatus::Submitted,
        "premise: A's capture had not read its input when B overwrote the key"
    );
    stack
        .clients
        .mediaconvert
        .cancel_job()
        .id(&blocker)
        .send()
        .await
        .unwrap();

    let b = stack.wait_final(&id_b).await.unwrap();
    assert_eq!(b.status, JobStatus::Complete, "{b:#?}");
    assert_eq!(b.total_frames, Some(frames_b));
    assert_eq!(b.processed_frames, frames_b);
    let a = stack.wait_final(&id_a).await.unwrap();
    assert_ne!(a.total_frames, Some(frames_b), "A got B's frames: {a:#?}");
    match a.status {
        JobStatus::Complete => {
            assert_eq!(a.total_frames, Some(frames_a), "{a:#?}");
            assert_eq!(a.processed_frames, frames_a);
        }
        JobStatus::Failed => {
            let reason = a.last_error.clone().unwrap_or_default();
            assert!(reason.contains(&a.source_etag), "{reason}");
        }
        other => panic!("A ended {other}: {a:#?}"),
    }
}

/// On the template's versioned ingress bucket an overwrite does not take the first upload's
/// bytes away: each version is its own job, pinned by its version id, and each completes on its
/// own bytes. (On an unversioned bucket the pin's eTag condition refuses the overwritten bytes:
/// `pin_copies_the_registered_bytes_in_parts_and_refuses_others`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_overwritten_before_registration_keeps_each_version_its_own_job() {
    let mut stack = spawn_stack_with(StackOptions {
        dispatcher: false,
        workers: 1,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (content_a, frames_a) = video_bytes("a.mp4", 64, 48, "5", 1.0).await.unwrap();
    let (content_b, frames_b) = video_bytes("b.mp4", 64, 48, "5", 2.0).await.unwrap();
    let key = "gone/clip.mp4";
    let id_a = stack.upload(key, content_a).await.unwrap();
    let id_b = stack.upload(key, content_b).await.unwrap();
    assert_ne!(id_a, id_b, "two versions are two jobs");
    stack.start_dispatcher().await.unwrap();

    for (id, frames) in [(&id_a, frames_a), (&id_b, frames_b)] {
        let job = stack.wait_final(id).await.unwrap();
        assert_eq!(job.status, JobStatus::Complete, "{job:#?}");
        assert_eq!(job.total_frames, Some(frames), "{job:#?}");
        assert_eq!(job.processed_frames, frames);
        assert!(job.source_version_id.is_some(), "{job:#?}");
    }
    let mut sources = stack
        .list(&stack.resources.frames_bucket, "sources/")
        .await
        .unwrap();
    sources.sort();
    let mut expected = vec![
        format!("sources/{id_a}/clip.mp4"),
        format!("sources/{id_b}/clip.mp4"),
    ];
    expected.sort();
    assert_eq!(sources, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pin_copies_the_registered_bytes_in_parts_and_refuses_others() {
    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let s3 = &stack.clients.s3;
    let ingress = stack.resources.ingress_bucket.clone();
    let frames = stack.resources.frames_bucket.clone();
    let key = "big/a clip+ü.mp4";
    let size = 2 * MIN_PART + 12_345;
    let original: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let etag = put(&stack, &ingress, key, original.clone()).await;
    let in_parts = PinLimits {
        multipart_threshold: 0,
        part_size: MIN_PART,
    };
    let upload = Upload {
        bucket: &ingress,
        key,
        etag: &etag,
        version_id: None,
        size,
    };
    let id = VideoId::from_raw("big-1");
    let pinned = pin_upload(s3, upload, &frames, &id, &in_parts)
        .await
        .unwrap();
    assert_eq!(pinned, PinnedSource::location(&frames, &id, key));
    assert_eq!(pinned.key, "sources/big-1/a clip+ü.mp4");
    assert!(stack.get(&frames, &pinned.key).await.unwrap() == original);
    let head = s3
        .head_object()
        .bucket(&frames)
        .key(&pinned.key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().and_then(|m| m.get(SOURCE_ETAG_METADATA)),
        Some(&etag)
    );

    // The key now holds other bytes.
    put(&stack, &ingress, key, b"someone else's video".to_vec()).await;
    // A redelivered registration finds the copy it made before.
    let again = pin_upload(s3, upload, &frames, &id, &in_parts)
        .await
        .unwrap();
    assert_eq!(again, pinned);
    assert!(stack.get(&frames, &pinned.key).await.unwrap() == original);
    // A job that had not pinned yet is refused, in parts and whole.
    for (id, limits) in [("big-2", in_parts), ("big-3", PinLimits::default())] {
        let error = pin_upload(s3, upload, &frames, &VideoId::from_raw(id), &limits)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, PinError::Gone { code, .. } if code == "PreconditionFailed"),
            "{error:?}"
        );
        assert!(error.to_string().contains(&etag), "{error}");
        assert!(!error.is_retryable());
    }
    // Deleted: NoSuchKey, in parts and whole.
    s3.delete_object()
        .bucket(&ingress)
        .key(key)
        .send()
        .await
        .unwrap();
    for (id, limits) in [("big-4", in_parts), ("big-5", PinLimits::default())] {
        let error = pin_upload(s3, upload, &frames, &VideoId::from_raw(id), &limits)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, PinError::Gone { code, .. } if code == "NoSuchKey"),
            "{error:?}"
        );
    }
    // Failed multipart copies were aborted, and nothing was written for the refused jobs.
    let uploads = s3
        .list_multipart_uploads()
        .bucket(&frames)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    let sources = stack.list(&frames, "sources/").await.unwrap();
    assert_eq!(sources, [pinned.key]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_in_leaves_no_batch_invisible() {
    let stack = spawn_stack_with(StackOptions {
        queues: QueueSettings {
            // As long as a stranded batch would hide on AWS with the template's default.
            frames_visibility_timeout_secs: 300,
            ..StackOptions::default().queues
        },
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    let frames_queue = stack.provisioned.frames_queue_url.clone();
    let (video, frames) = video_bytes("scale.mp4", 64, 48, "10", 3.0).await.unwrap();
    let video_id = stack.upload("scale.mp4", video).await.unwrap();
    let record = stack.wait_processing(&video_id).await.unwrap();
    let batches = record.batches.unwrap() as usize;
    assert!(batches >= 3, "{record:#?}");
    // Take the batches off the queue; they go back one at a time as the test needs.
    let mut bodies = Vec::new();
    while bodies.len() < batches {
        let out = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(&frames_queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for message in out.messages() {
            bodies.push(message.body().unwrap_or_default().to_string());
            stack
                .clients
                .sqs
                .delete_message()
                .queue_url(&frames_queue)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
    }
    let send = |body: String| {
        let sqs = stack.clients.sqs.clone();
        let url = frames_queue.clone();
        async move {
            sqs.send_message()
                .queue_url(url)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
    };

    // The worker to be scaled in handles one batch; with a slot still free it is back in a
    // long poll while that batch is counted.
    let leaving = stack.worker().await.unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn(leaving.run(stop.clone()));
    send(bodies.pop().unwrap()).await;
    wait_until("the first batch to be counted and deleted", || async {
        let counted = stack.jobs.get(&video_id).await.unwrap().unwrap();
        counted.processed_frames > 0 && stack.queue_depth(&frames_queue).await.unwrap() == 0
    })
    .await;

    // Scale-in: the signal, and batches arriving while that long poll is still open.
    let signalled = Instant::now();
    stop.cancel();
    for body in bodies.drain(..) {
        send(body).await;
    }
    let summary = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
    let delay = signalled.elapsed();
    eprintln!("scale-in of a worker with batches arriving: stopped {delay:?} after the signal; {summary:?}");
    assert_eq!(
        stack.not_visible(&frames_queue).await.unwrap(),
        0,
        "the stopped worker left batches invisible: {summary:?}"
    );
    assert_eq!(summary.abandoned, 0, "{summary:?}");
    assert!(
        summary.released >= 1,
        "premise: the long poll open at the signal got a batch: {summary:?}"
    );

    // Another worker finishes the job at once, not after the 300 s visibility timeout.
    let staying = stack.worker().await.unwrap();
    let finisher = CancellationToken::new();
    let running = tokio::spawn(staying.run(finisher.clone()));
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames);
    assert_eq!(record.failed_frames, 0);
    // An idle worker's scale-in waits for its open long poll at most.
    wait_until("the finisher to be idle", || async {
        stack.queue_depth(&frames_queue).await.unwrap() == 0
    })
    .await;
    let signalled = Instant::now();
    finisher.cancel();
    let summary = running.await.unwrap().unwrap();
    eprintln!(
        "scale-in of an idle worker: stopped {:?} after the signal; {summary:?}",
        signalled.elapsed()
    );
    assert_eq!(stack.not_visible(&frames_queue).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn complete_job_is_recorded_fanned_out_after_a_lost_mark() {
    let mut stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let dispatcher = stack.dispatcher().await.unwrap();
    let (video, frames) = video_bytes("mark.mp4", 64, 48, "5", 2.0).await.unwrap();
    let video_id = stack.upload("mark.mp4", video).await.unwrap();
    // Drive the dispatcher by hand, keeping the COMPLETE event to deliver it again.
    let mut complete_event = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while complete_event.is_none() {
        assert!(Instant::now() < deadline, "no COMPLETE event");
        dispatcher
            .run_once(framefleet_dispatcher::Feed::Ingress, Duration::ZERO)
            .await
            .unwrap();
        let out = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(&stack.provisioned.job_events_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in out.messages() {
            let body = message.body().unwrap_or_default();
            dispatcher.handle_job_event(body).await.unwrap();
            if body.contains("\"COMPLETE\"") {
                complete_event = Some(body.to_string());
            }
            stack
                .clients
                .sqs
                .delete_message()
                .queue_url(&stack.provisioned.job_events_queue_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
    }
    let record = stack.jobs.get(&video_id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Processing);
    assert!(record.fanned_out);
    // The dispatcher was killed after sending the last batch, before recording it.
    lose_fanned_out(&stack, &video_id).await;
    stack.start_worker().await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames);
    assert!(
        record.fanned_out,
        "COMPLETE implies fanned out: {record:#?}"
    );
    // A record completed without the mark (written before completion set it) gets it from the
    // redelivered COMPLETE, which sends nothing.
    lose_fanned_out(&stack, &video_id).await;
    dispatcher
        .handle_job_event(complete_event.as_deref().unwrap())
        .await
        .unwrap();
    let record = stack.jobs.get(&video_id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Complete);
    assert!(record.fanned_out);
    assert_eq!(
        stack
            .queue_depth(&stack.provisioned.frames_queue_url)
            .await
            .unwrap(),
        0
    );
}

/// Sets `fanned_out = false` on the job, as a dispatcher killed before recording it leaves it.
async fn lose_fanned_out(stack: &Stack, video_id: &VideoId) {
    use aws_sdk_dynamodb::types::AttributeValue;
    stack
        .clients
        .dynamodb
        .update_item()
        .table_name(&stack.resources.jobs_table)
        .key("pk", AttributeValue::S(video_id.to_string()))
        .key("sk", AttributeValue::S("job".into()))
        .update_expression("SET fanned_out = :no")
        .expression_attribute_values(":no", AttributeValue::Bool(false))
        .send()
        .await
        .context("resetting fanned_out")
        .unwrap();
}
