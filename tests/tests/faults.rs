//! The pipeline under the failures AWS really returns, injected by the fault proxy between the
//! services and moto_server: throttling, 5xx, transaction conflicts, lost connections before
//! and after a call took effect, and SendMessageBatch's total size limit.

use std::time::{Duration, Instant};

use framefleet_core::frames::frame_index;
use framefleet_core::jobs::JobStatus;
use framefleet_e2e::fault_proxy::{
    Fault, FaultPlan, FaultRule, Latency, Service, Trigger, SQS_MAX_BATCH_PAYLOAD_BYTES,
};
use framefleet_e2e::media::video_bytes;
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};

/// The job's counts are exact, every frame has its edge map, there is one manifest, and no
/// queue sent anything to its DLQ.
async fn assert_complete_and_exact(stack: &Stack, video_id: &str, frames: u64) {
    let record = stack
        .jobs
        .get(&framefleet_core::video::VideoId::from_raw(video_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    let captured = stack.captured_frames(&video_id).await.unwrap();
    assert_eq!(captured.len() as u64, frames, "frames captured");
    assert_eq!(record.total_frames, Some(frames));
    assert_eq!(record.processed_frames, frames, "{record:#?}");
    assert_eq!(record.failed_frames, 0, "{record:#?}");
    let outputs = stack
        .list(&stack.resources.processed_bucket, &format!("{video_id}/"))
        .await
        .unwrap();
    assert_eq!(
        outputs.iter().filter(|k| frame_index(k).is_some()).count() as u64,
        frames,
        "edge maps"
    );
    assert_eq!(
        outputs
            .iter()
            .filter(|k| k.ends_with("/manifest.json"))
            .count(),
        1,
        "one manifest: {outputs:?}"
    );
    let manifest = stack.manifest(video_id).await.unwrap();
    assert_eq!(manifest["counts"]["total"], frames);
    assert_eq!(manifest["counts"]["processed"], frames);
    for queue in [
        &stack.resources.ingress_queue,
        &stack.resources.job_events_queue,
        &stack.resources.frames_queue,
    ] {
        let dlq = stack.dlq_url(queue);
        assert_eq!(stack.queue_depth(dlq).await.unwrap(), 0, "DLQ of {queue}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_completes_exactly_under_faults_on_every_service() {
    use Fault::*;
    use Service::*;
    use Trigger::*;
    // Steady rates (every n-th call) make sure each kind happens; the seeded chances add
    // faults wherever they land. A connection lost after forwarding is only aimed at calls
    // that are safe to repeat blindly, as the SDK does: object writes, deletes, the fan-out
    // (a duplicate batch is counted once) and the counting transaction (its marker).
    let plan = FaultPlan::seeded(0x00fa_0175)
        .rule(FaultRule::new(S3, EveryNth(7), S3InternalError).on("GetObject"))
        .rule(FaultRule::new(S3, EveryNth(11), S3RequestTimeout).on("GetObject"))
        .rule(FaultRule::new(S3, EveryNth(7), S3SlowDown).on("PutObject"))
        .rule(FaultRule::new(S3, EveryNth(9), ResetAfterForwarding).on("PutObject"))
        .rule(FaultRule::new(S3, Probability(0.03), ResetBeforeForwarding))
        .rule(FaultRule::new(Sqs, FirstCalls(1), ResetAfterForwarding).on("SendMessageBatch"))
        .rule(FaultRule::new(Sqs, EveryNth(3), ResetAfterForwarding).on("DeleteMessage"))
        .rule(FaultRule::new(
            Sqs,
            Probability(0.05),
            ResetBeforeForwarding,
        ))
        .rule(
            FaultRule::new(DynamoDb, EveryNth(3), DynamoDbTransactionCanceledConflict)
                .on("TransactWriteItems"),
        )
        .rule(FaultRule::new(DynamoDb, EveryNth(4), ResetAfterForwarding).on("TransactWriteItems"))
        .rule(FaultRule::new(DynamoDb, EveryNth(3), DynamoDbTransactionConflict).on("UpdateItem"))
        .rule(FaultRule::new(DynamoDb, EveryNth(5), DynamoDbThrottling))
        .rule(FaultRule::new(
            DynamoDb,
            EveryNth(6),
            DynamoDbProvisionedThroughputExceeded,
        ))
        .rule(FaultRule::new(
            DynamoDb,
            Probability(0.03),
            ResetBeforeForwarding,
        ))
        .latency(Latency {
            fixed: Duration::from_millis(1),
            tail: Duration::from_millis(40),
            tail_probability: 0.1,
        });
    let stack = spawn_stack_with(StackOptions {
        faults: Some(plan),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (bytes, frames) = video_bytes("clip.mp4", 64, 48, "10", 2.0).await.unwrap();
    let video_id = stack.upload("faulty.mp4", bytes).await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_complete_and_exact(&stack, video_id.as_str(), frames).await;
    let proxy = stack.fault_proxy.as_ref().unwrap();
    let injected = proxy.injected();
    for (service, fault) in [
        (S3, S3InternalError),
        (S3, S3RequestTimeout),
        (S3, S3SlowDown),
        (S3, ResetAfterForwarding),
        (Sqs, ResetAfterForwarding),
        (DynamoDb, DynamoDbTransactionCanceledConflict),
        (DynamoDb, DynamoDbTransactionConflict),
        (DynamoDb, DynamoDbThrottling),
        (DynamoDb, DynamoDbProvisionedThroughputExceeded),
        (DynamoDb, ResetAfterForwarding),
    ] {
        assert!(
            proxy.count_on(service, fault) > 0,
            "no {fault} on {service:?}: {injected:#?}"
        );
    }
    assert!(proxy.count(ResetBeforeForwarding) > 0, "{injected:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_counting_transactions_are_retried_in_process() {
    // The first attempt of every counting transaction (one per batch marker) is cancelled
    // with TransactionConflict, as when concurrent batches update the same job item.
    let plan = FaultPlan::seeded(1).rule(
        FaultRule::new(
            Service::DynamoDb,
            Trigger::OncePerCall,
            Fault::DynamoDbTransactionCanceledConflict,
        )
        .on("TransactWriteItems"),
    );
    let stack = spawn_stack_with(StackOptions {
        faults: Some(plan),
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    let (bytes, frames) = video_bytes("clip.mp4", 64, 48, "10", 2.0).await.unwrap();
    let video_id = stack.upload("conflicts.mp4", bytes).await.unwrap();
    let record = stack.wait_processing(&video_id).await.unwrap();
    let batches = record.batches.unwrap();
    assert!(batches > 1, "{record:#?}");
    // One worker, driven round by round, so every outcome is seen.
    let worker = stack.worker().await.unwrap();
    let mut handled = 0;
    let mut retried = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let outcome = worker.run_once(10, Duration::from_secs(1)).await.unwrap();
        handled += outcome.handled;
        retried += outcome.retried;
        assert_eq!(outcome.rejected, 0, "{outcome:?}");
        let record = stack.jobs.get(&video_id).await.unwrap().unwrap();
        if record.status.is_final() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job never completed (frames uncounted?): {record:#?}"
        );
    }
    assert_eq!(retried, 0, "no batch was left for redelivery");
    assert_eq!(
        handled as u64, batches,
        "each batch handled on its first delivery"
    );
    assert_complete_and_exact(&stack, video_id.as_str(), frames).await;
    let proxy = stack.fault_proxy.as_ref().unwrap();
    assert_eq!(
        proxy.count(Fault::DynamoDbTransactionCanceledConflict),
        batches,
        "{:#?}",
        proxy.injected()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fan_out_larger_than_one_send_message_batch_completes() {
    // Frame keys carry the upload's basename: with a long one, the bodies of one
    // SendMessageBatch (40 keys of ~950 bytes each, up to ten bodies) sum past 256 KiB, which
    // the proxy refuses as SQS does.
    let stack = spawn_stack_with(StackOptions {
        faults: Some(FaultPlan::strict()),
        dispatcher_config: framefleet_dispatcher::settings::DispatcherConfig {
            batch_size: 40,
            ..StackOptions::default().dispatcher_config
        },
        workers: 2,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (bytes, frames) = video_bytes("clip.mp4", 32, 32, "30", 10.0).await.unwrap();
    let name = format!("uploads/{}.mp4", "a-very-long-file-name-".repeat(41));
    let video_id = stack.upload(&name, bytes).await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    let captured = stack.captured_frames(&video_id).await.unwrap();
    let key_bytes: usize = captured.iter().map(|k| k.len() + 3).sum();
    assert!(
        key_bytes > SQS_MAX_BATCH_PAYLOAD_BYTES,
        "the fan-out must not fit one call: {key_bytes} bytes of keys"
    );
    assert!(
        record.batches.unwrap() > 1 && record.batches.unwrap() <= 10,
        "{record:#?}"
    );
    assert_complete_and_exact(&stack, video_id.as_str(), frames).await;
    let proxy = stack.fault_proxy.as_ref().unwrap();
    assert_eq!(
        proxy.count(Fault::SqsBatchRequestTooLong),
        0,
        "{:#?}",
        proxy.injected()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn injected_faults_reach_the_sdk_in_the_services_own_shapes() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use Fault::*;
    use Service::*;
    use Trigger::FirstCalls;
    // Rules are tried in order and FirstCalls counts only the calls that reach it, so the
    // n-th call of an operation gets the n-th fault listed for it.
    let plan = FaultPlan::seeded(3)
        .rule(FaultRule::new(S3, FirstCalls(1), S3InternalError).on("GetObject"))
        .rule(FaultRule::new(S3, FirstCalls(1), S3SlowDown).on("GetObject"))
        .rule(FaultRule::new(S3, FirstCalls(1), S3RequestTimeout).on("GetObject"))
        .rule(FaultRule::new(S3, FirstCalls(1), ResetBeforeForwarding).on("GetObject"))
        .rule(FaultRule::new(DynamoDb, FirstCalls(1), DynamoDbThrottling).on("GetItem"))
        .rule(
            FaultRule::new(
                DynamoDb,
                FirstCalls(1),
                DynamoDbProvisionedThroughputExceeded,
            )
            .on("GetItem"),
        )
        .rule(FaultRule::new(DynamoDb, FirstCalls(1), DynamoDbTransactionConflict).on("UpdateItem"))
        .rule(
            FaultRule::new(DynamoDb, FirstCalls(1), DynamoDbTransactionCanceledConflict)
                .on("TransactWriteItems"),
        );
    let stack = spawn_stack_with(StackOptions {
        faults: Some(plan),
        ..StackOptions::idle()
    })
    .await
    .unwrap();
    let proxy = stack.fault_proxy.as_ref().unwrap();
    // The SDK without its retries, to see each answer as it arrives.
    let sdk = framefleet_e2e::sdk_config_as(
        &proxy.endpoint(),
        &stack.identities.admin.access_key_id,
        &stack.identities.admin.secret_access_key,
    )
    .into_builder()
    .retry_config(aws_config::retry::RetryConfig::disabled())
    .build();
    let clients = framefleet_core::aws::AwsClients::from_config(&sdk, true, None);
    let bucket = &stack.resources.ingress_bucket;
    stack
        .clients
        .s3
        .put_object()
        .bucket(bucket)
        .key("k")
        .body(b"v".to_vec().into())
        .send()
        .await
        .unwrap();

    for (code, status) in [
        ("InternalError", 500),
        ("SlowDown", 503),
        ("RequestTimeout", 400),
    ] {
        let error = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key("k")
            .send()
            .await
            .unwrap_err();
        let service = error.as_service_error().expect("a service error");
        assert_eq!(
            aws_sdk_s3::error::ProvideErrorMetadata::code(service),
            Some(code)
        );
        assert_eq!(error.raw_response().unwrap().status().as_u16(), status);
        assert!(framefleet_core::aws::is_transient(&error), "{code}");
    }
    let reset = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key("k")
        .send()
        .await
        .unwrap_err();
    // A connection closed before an answer: the SDK retries it as transient, and so do we.
    assert!(
        matches!(reset, aws_sdk_s3::error::SdkError::DispatchFailure(_)),
        "{reset:?}"
    );
    assert!(framefleet_core::aws::is_transient(&reset));
    let body = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key("k")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&body[..], b"v", "the fifth call goes through");

    let table = &stack.resources.jobs_table;
    let key = |sk: &str| {
        std::collections::HashMap::from([
            ("pk".to_string(), AttributeValue::S("v".into())),
            ("sk".to_string(), AttributeValue::S(sk.into())),
        ])
    };
    let get = || {
        clients
            .dynamodb
            .get_item()
            .table_name(table)
            .set_key(Some(key("job")))
    };
    let error = get().send().await.unwrap_err();
    assert_eq!(
        aws_sdk_dynamodb::error::ProvideErrorMetadata::code(error.as_service_error().unwrap()),
        Some("ThrottlingException")
    );
    assert!(framefleet_core::aws::is_transient(&error));
    let error = get().send().await.unwrap_err();
    assert!(
        error
            .as_service_error()
            .unwrap()
            .is_provisioned_throughput_exceeded_exception(),
        "{error:?}"
    );
    get().send().await.unwrap();
    let error = clients
        .dynamodb
        .update_item()
        .table_name(table)
        .set_key(Some(key("job")))
        .update_expression("SET a = :a")
        .expression_attribute_values(":a", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap_err();
    assert!(
        error
            .as_service_error()
            .unwrap()
            .is_transaction_conflict_exception(),
        "{error:?}"
    );
    assert!(framefleet_core::aws::is_transaction_conflict(&error));
    let put = aws_sdk_dynamodb::types::Put::builder()
        .table_name(table)
        .set_item(Some(key("batch#000000")))
        .build()
        .unwrap();
    let update = aws_sdk_dynamodb::types::Update::builder()
        .table_name(table)
        .set_key(Some(key("job")))
        .update_expression("ADD n :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .build()
        .unwrap();
    let error = clients
        .dynamodb
        .transact_write_items()
        .transact_items(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .put(put)
                .build(),
        )
        .transact_items(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .update(update)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    let Some(
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
            cancelled,
        ),
    ) = error.as_service_error()
    else {
        panic!("not a cancellation: {error:?}");
    };
    let codes: Vec<_> = cancelled
        .cancellation_reasons()
        .iter()
        .map(|r| r.code())
        .collect();
    assert_eq!(
        codes,
        [Some("TransactionConflict"), Some("TransactionConflict")]
    );

    // More than 256 KiB in one SendMessageBatch: refused as SQS refuses it.
    let entries = (0..2)
        .map(|i| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body("x".repeat(SQS_MAX_BATCH_PAYLOAD_BYTES / 2 + 1))
                .build()
                .unwrap()
        })
        .collect();
    let error = clients
        .sqs
        .send_message_batch()
        .queue_url(&stack.provisioned.frames_queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap_err();
    assert!(
        error
            .as_service_error()
            .unwrap()
            .is_batch_request_too_long(),
        "{error:?}"
    );
    assert!(!framefleet_core::aws::is_transient(&error));
    assert_eq!(
        stack
            .queue_depth(&stack.provisioned.frames_queue_url)
            .await
            .unwrap(),
        0
    );
    assert_eq!(proxy.count(SqsBatchRequestTooLong), 1);
    assert_eq!(proxy.count_on(S3, S3InternalError), 1);
    assert_eq!(
        proxy.count_on(DynamoDb, DynamoDbTransactionCanceledConflict),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn winner_whose_finalize_answer_is_lost_still_writes_the_manifest() {
    // The write that moves the job to FINALIZING applies, and its answer is lost: the SDK sends
    // it again, and that copy fails its condition. The winner must still know it won.
    let plan = FaultPlan::seeded(5).rule(
        FaultRule::new(
            Service::DynamoDb,
            Trigger::EveryNth(1),
            Fault::ResetAfterSuccess,
        )
        .on("UpdateItem")
        .body_contains("done_frames = total_frames"),
    );
    let stack = spawn_stack_with(StackOptions {
        faults: Some(plan),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (bytes, frames) = video_bytes("clip.mp4", 64, 48, "10", 1.0).await.unwrap();
    let video_id = stack.upload("lost-answer.mp4", bytes).await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_complete_and_exact(&stack, video_id.as_str(), frames).await;
    let proxy = stack.fault_proxy.as_ref().unwrap();
    assert_eq!(
        proxy.count(Fault::ResetAfterSuccess),
        1,
        "{:#?}",
        proxy.injected()
    );
}
