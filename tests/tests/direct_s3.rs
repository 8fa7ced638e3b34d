//! The worker's direct S3 requests (`worker.s3_client = "direct"`, worker/src/direct_s3.rs)
//! against moto with the template's IAM enforced (moto verifies each SigV4 signature): a job
//! with a missing and a corrupt frame completes with both failed and every edge map equal to
//! the kernel's, the PUT checksums are stored; and S3's transient errors are retried inside the
//! request, so no batch goes back to the queue.

use std::time::{Duration, Instant};

use aws_sdk_s3::types::ChecksumMode;
use framefleet_core::jobs::JobStatus;
use framefleet_e2e::fault_proxy::{Fault, FaultPlan, FaultRule, Service, Trigger};
use framefleet_e2e::media::video_bytes;
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};
use framefleet_edge::EdgeParams;
use framefleet_worker::output::output_key;
use framefleet_worker::settings::S3Client;

async fn video() -> (Vec<u8>, u64) {
    video_bytes("direct.mp4", 64, 48, "10", 1.5).await.unwrap()
}

/// A stack with no worker running yet whose workers send frame requests directly.
async fn stack(faults: Option<FaultPlan>) -> Stack {
    let mut stack = spawn_stack_with(StackOptions {
        faults,
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    stack.worker_settings.worker.s3_client = S3Client::Direct;
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_requests_complete_a_job_under_iam() {
    let mut stack = stack(None).await;
    let (bytes, frames) = video().await;
    let video_id = stack.upload("direct.mp4", bytes).await.unwrap();
    let id = video_id.to_string();
    stack.wait_processing(&video_id).await.unwrap();
    let captured = stack.captured_frames(&id).await.unwrap();
    assert_eq!(captured.len() as u64, frames);
    // One frame gone (a 404 the worker may see: it can list the frames bucket), one corrupt.
    let (missing, broken) = (captured[1].clone(), captured[3].clone());
    stack.delete_frame(&missing).await.unwrap();
    stack.corrupt_frame(&broken).await.unwrap();
    stack.start_worker().await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames - 2);
    assert_eq!(record.failed_frames, 2);
    let manifest = stack.manifest(&id).await.unwrap();
    let failed = manifest["failed_frames"].as_array().unwrap();
    let reason = |key: &str| {
        failed
            .iter()
            .find(|f| f["key"] == key)
            .and_then(|f| f["reason"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(reason(&missing).contains("NoSuchKey"), "{manifest:#}");
    assert!(!reason(&broken).is_empty(), "{manifest:#}");

    // Every other edge map is the offline kernel's, and its PUT carried a CRC32 S3 stored.
    let params: EdgeParams = serde_json::from_value(manifest["parameters"].clone()).unwrap();
    let processed = &stack.resources.processed_bucket;
    for key in captured.iter().filter(|k| **k != missing && **k != broken) {
        let frame = stack
            .get(&stack.resources.frames_bucket, key)
            .await
            .unwrap();
        let expected = framefleet_edge::process(&frame, &params).unwrap().bytes;
        let out = stack
            .clients
            .s3
            .get_object()
            .bucket(processed)
            .key(output_key(&id, key, "jpg"))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let stored_crc = out.checksum_crc32().map(str::to_string);
        let body = out.body.collect().await.unwrap().into_bytes();
        assert!(body == expected, "{key}");
        let crc = crc32fast::hash(&body).to_be_bytes();
        assert_eq!(
            stored_crc.as_deref(),
            Some(base64(&crc).as_str()),
            "{key}: the PUT's x-amz-checksum-crc32"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_requests_retry_s3_errors_without_giving_the_batch_back() {
    // The first attempt of every frame GET and every PUT fails as S3 fails under load, and
    // every PUT's second attempt loses its connection after S3 wrote: each request gets through
    // on its last attempt. (Each OncePerCall rule keeps its own record of the calls it failed,
    // so a PUT meets the second rule only on its retry.)
    let plan = FaultPlan::seeded(5)
        .rule(FaultRule::new(Service::S3, Trigger::OncePerCall, Fault::S3SlowDown).on("GetObject"))
        .rule(
            FaultRule::new(Service::S3, Trigger::OncePerCall, Fault::S3InternalError)
                .on("PutObject"),
        )
        .rule(
            FaultRule::new(
                Service::S3,
                Trigger::OncePerCall,
                Fault::ResetAfterForwarding,
            )
            .on("PutObject"),
        );
    let stack = stack(Some(plan)).await;
    let (bytes, frames) = video().await;
    let video_id = stack.upload("retried.mp4", bytes).await.unwrap();
    let record = stack.wait_processing(&video_id).await.unwrap();
    let batches = record.batches.unwrap();
    let worker = stack.worker().await.unwrap();
    let (mut handled, mut retried) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let outcome = worker.run_once(10, Duration::from_secs(1)).await.unwrap();
        handled += outcome.handled;
        retried += outcome.retried;
        let record = stack.jobs.get(&video_id).await.unwrap().unwrap();
        if record.status.is_final() {
            assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
            assert_eq!(record.processed_frames, frames);
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {record:#?}");
    }
    assert_eq!(retried, 0, "a batch went back to the queue");
    assert_eq!(handled as u64, batches);
    let proxy = stack.fault_proxy.as_ref().unwrap();
    for fault in [
        Fault::S3SlowDown,
        Fault::S3InternalError,
        Fault::ResetAfterForwarding,
    ] {
        assert!(
            proxy.count_on(Service::S3, fault) > 0,
            "{fault}: {:#?}",
            proxy.injected()
        );
    }
}

/// Standard base64 (RFC 4648) of the checksum bytes, as S3 returns them.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
