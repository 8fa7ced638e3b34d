//! Fan-out of a long video's frames: in memory that does not grow with the frame count or the
//! key length, checkpointed, always cut by the plan stored with the job, and re-sending only
//! the batches that are missing.
//!
//! The memory tests count this process's heap with a `#[global_allocator]` wrapper (nextest
//! runs every test in a process of its own, so nothing else allocates beside it). A 3M-frame
//! fan-out is 60,000 batches in 6,000 SendMessageBatch calls; moto's queues slow down as they
//! fill (on this machine about 5 calls of 10 messages a second at 500 messages, 1 a second at
//! 1,500), so those calls are answered by the fault proxy's SQS sink
//! ([`FaultPlan::sqs_sink`]) after the dispatcher's real SDK client has built, signed and sent
//! them, and only every 500th call reaches moto's queue. Everything else (the COMPLETE event on
//! the job-events queue, the job item, the checkpoints) is moto's, with IAM enforced.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use framefleet_core::jobs::{JobRecord, JobStatus};
use framefleet_core::message::FrameBatch;
use framefleet_core::video::VideoId;
use framefleet_dispatcher::reconcile::{Action, ReconcileReport};
use framefleet_dispatcher::settings::{DispatcherConfig, ReconcileConfig};
use framefleet_dispatcher::{Dispatcher, Feed};
use framefleet_e2e::fault_proxy::{Fault, FaultPlan, FaultRule, Service, Trigger};
use framefleet_e2e::media::{count_frames, make_video};
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};

/// Counts the bytes this process holds on the heap, and the most it held since the last
/// [`reset_peak`].
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence the system's) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts a new peak at what is held now; returns that.
fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn peak_since(baseline: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(baseline)
}

const MIB: usize = 1024 * 1024;

/// SendMessageBatch calls that reach moto: one in this many.
const FORWARD_EVERY: u64 = 500;

fn sink_stack() -> StackOptions {
    StackOptions {
        faults: Some(FaultPlan::strict().sqs_sink(FORWARD_EVERY)),
        dispatcher_config: DispatcherConfig {
            batch_size: 50,
            ..DispatcherConfig::default()
        },
        ..StackOptions::idle()
    }
}

/// The dispatcher of `stack`, its reconciler acting on one second of silence.
async fn eager_dispatcher(stack: &Stack, config: DispatcherConfig) -> Dispatcher {
    let mut settings = stack.dispatcher_settings.clone();
    settings.dispatcher = config;
    settings.reconcile = ReconcileConfig {
        enabled: true,
        interval_secs: 1,
        registered_after_secs: 1,
        capturing_after_secs: 1,
        processing_after_secs: 1,
        finalizing_after_secs: 1,
        max_attempts: 3,
    };
    let clients = stack.clients_as(&stack.identities.dispatcher, &stack.policies.dispatcher);
    Dispatcher::new(settings, clients).await.unwrap()
}

/// A job MediaConvert is capturing, then its COMPLETE event naming frame `frames - 1` with a
/// base name that makes every key `key_len` bytes long, on the job-events queue (no frame
/// exists: fan-out names them from the last one).
async fn synthetic_complete(stack: &Stack, frames: u64, key_len: usize) -> VideoId {
    let id = VideoId::from_raw(format!("synthetic-{frames}-{key_len}"));
    stack
        .jobs
        .register(&JobRecord::new(
            id.clone(),
            &stack.resources.ingress_bucket,
            "synthetic.mp4",
            "etag",
            1,
        ))
        .await
        .unwrap();
    let job_id = format!("mc-{id}");
    stack.jobs.start_capture(&id, &job_id, "30").await.unwrap();
    // `<id>/<base>.NNNNNNN.jpg`
    let base_len = key_len - id.as_str().len() - 1 - ".0000000.jpg".len();
    let base = "b".repeat(base_len);
    let last = format!(
        "s3://{}/{id}/{base}.{:07}.jpg",
        stack.resources.frames_bucket,
        frames - 1
    );
    let event = serde_json::json!({
        "version": "0",
        "id": "synthetic",
        "detail-type": "MediaConvert Job State Change",
        "source": "aws.mediaconvert",
        "account": "000000000000",
        "time": "2026-12-05T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "timestamp": 1,
            "accountId": "000000000000",
            "queue": "default",
            "jobId": job_id,
            "status": "COMPLETE",
            "userMetadata": {"application": "framefleet", "video_id": id.as_str()},
            "outputGroupDetails": [{
                "outputDetails": [{"outputFilePaths": [last], "durationInMs": 1}],
                "type": "FILE_GROUP"
            }]
        }
    });
    stack
        .clients
        .sqs
        .send_message()
        .queue_url(&stack.provisioned.job_events_queue_url)
        .message_body(event.to_string())
        .send()
        .await
        .unwrap();
    id
}

/// Handles job events until `id` is fanned out; returns the record.
async fn fan_out(stack: &Stack, dispatcher: &Dispatcher, id: &VideoId) -> JobRecord {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        dispatcher
            .run_once(Feed::JobEvents, Duration::from_secs(1))
            .await
            .unwrap();
        let record = stack.jobs.get(id).await.unwrap().unwrap();
        if record.fanned_out {
            return record;
        }
        assert!(Instant::now() < deadline, "never fanned out: {record:#?}");
    }
}

/// Fans out a synthetic COMPLETE of `frames` frames with `key_len`-byte keys; returns the peak
/// heap growth during the fan-out and the record.
async fn measured_fan_out(
    stack: &Stack,
    dispatcher: &Dispatcher,
    frames: u64,
    key_len: usize,
) -> (usize, JobRecord) {
    let id = synthetic_complete(stack, frames, key_len).await;
    let proxy = stack.fault_proxy.as_ref().unwrap();
    proxy.clear_log();
    let baseline = reset_peak();
    let started = Instant::now();
    let record = fan_out(stack, dispatcher, &id).await;
    let peak = peak_since(baseline);
    let log = proxy.log();
    eprintln!(
        "{frames} frames, {key_len}-byte keys: {} batches in {} SendMessageBatch calls, peak +{:.2} MiB, {:.1} s",
        log.sqs_entries,
        log.count(Service::Sqs, "SendMessageBatch"),
        peak as f64 / MIB as f64,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(record.total_frames, Some(frames));
    assert_eq!(
        log.sqs_entries,
        record.batches.unwrap(),
        "every batch sent once"
    );
    (peak, record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fan_out_memory_does_not_grow_with_frames_or_key_length() {
    let stack = spawn_stack_with(sink_stack()).await.unwrap();
    let dispatcher = stack.dispatcher().await.unwrap();
    // Warm up (connection pools, lazily built SDK state) outside the measurements.
    measured_fan_out(&stack, &dispatcher, 3_000, 60).await;
    let mut peaks = Vec::new();
    // Long keys at 3M would be 2.9 GB of bodies through the proxy's JSON parsing (about
    // 20 minutes here), so they are measured at 30k and 150k: growth with frames shows at any
    // two counts, growth with key length at any count.
    for (frames, key_len) in [(30_000, 60), (3_000_000, 60), (30_000, 950), (150_000, 950)] {
        let (peak, record) = measured_fan_out(&stack, &dispatcher, frames, key_len).await;
        peaks.push((frames, key_len, peak, record));
    }
    // What may be held at once: the calls in flight, each at most 256 KiB of bodies, in a few
    // copies (ours, the SDK's request and its serialised form, the proxy's buffer and parse).
    let in_flight = stack.dispatcher_settings.dispatcher.fanout_in_flight;
    let bound = in_flight * 256 * 1024 * 8;
    let low = peaks.iter().map(|p| p.2).min().unwrap();
    let high = peaks.iter().map(|p| p.2).max().unwrap();
    assert!(
        high - low <= bound,
        "fan-out peaks differ by {} KiB (bound {} KiB): {:?}",
        (high - low) / 1024,
        bound / 1024,
        peaks
            .iter()
            .map(|p| (p.0, p.1, p.2 / 1024))
            .collect::<Vec<_>>()
    );
    // The eager fan-out this replaced held every key and body: ~500 MiB at 3M frames.
    assert!(high <= 64 * MIB, "peak {} KiB", high / 1024);
    // The calls that reached moto carry batches a worker reads, cut by the stored plan.
    let (_, _, _, long) = &peaks[3];
    let out = stack
        .clients
        .sqs
        .receive_message()
        .queue_url(&stack.provisioned.frames_queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert!(!out.messages().is_empty(), "a subset reaches moto");
    for message in out.messages() {
        let batch = FrameBatch::parse(message.body().unwrap()).unwrap();
        if batch.video_id == long.video_id {
            assert_eq!(batch.frame_keys.len() as u64, long.batch_frames.unwrap());
            assert!(batch.frame_keys.iter().all(|k| k.len() == 950));
        }
    }
}

/// Writes the markers of every batch of `id` but `missing`, as the workers' counting
/// transactions would have, 25 to a BatchWriteItem.
async fn count_all_but(stack: &Stack, id: &VideoId, batches: u64, missing: &[u64]) {
    let mut requests = Vec::new();
    for index in (0..batches).filter(|i| !missing.contains(i)) {
        let item = [
            ("pk", AttributeValue::S(id.to_string())),
            ("sk", AttributeValue::S(format!("batch#{index:06}"))),
            ("processed_frames", AttributeValue::N("50".into())),
            ("failed_frames", AttributeValue::N("0".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        requests.push(
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build(),
        );
    }
    for chunk in requests.chunks(25) {
        let mut pending = chunk.to_vec();
        while !pending.is_empty() {
            let out = stack
                .clients
                .dynamodb
                .batch_write_item()
                .request_items(&stack.resources.jobs_table, pending)
                .send()
                .await
                .unwrap();
            pending = out
                .unprocessed_items()
                .and_then(|u| u.get(&stack.resources.jobs_table))
                .cloned()
                .unwrap_or_default();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resending_five_missing_batches_of_three_million_frames_is_five_batches_of_work() {
    let stack = spawn_stack_with(sink_stack()).await.unwrap();
    let config = stack.dispatcher_settings.dispatcher.clone();
    let dispatcher = eager_dispatcher(&stack, config).await;
    let id = synthetic_complete(&stack, 3_000_000, 60).await;
    let record = fan_out(&stack, &dispatcher, &id).await;
    let batches = record.batches.unwrap();
    assert_eq!(batches, 60_000);
    let missing = [0, 17, 29_999, 45_000, 59_999];
    count_all_but(&stack, &id, batches, &missing).await;

    let proxy = stack.fault_proxy.as_ref().unwrap();
    proxy.clear_log();
    let baseline = reset_peak();
    let deadline = Instant::now() + Duration::from_secs(120);
    let action = loop {
        let ReconcileReport { actions, .. } = dispatcher.reconcile_once().await.unwrap();
        if let Some((_, action)) = actions.into_iter().find(|(v, _)| v == &id) {
            break action;
        }
        assert!(Instant::now() < deadline, "the reconciler never acted");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let peak = peak_since(baseline);
    let log = proxy.log();
    eprintln!("re-send: {log:#?}, peak +{} KiB", peak / 1024);
    assert_eq!(
        action,
        Action::Resent(missing.iter().map(|&i| i as u32).collect())
    );
    // Five batches written and sent, in one call; no listing, no reads of frames.
    assert_eq!(log.sqs_entries, 5);
    assert_eq!(log.count(Service::Sqs, "SendMessageBatch"), 1);
    assert_eq!(log.on(Service::S3), 0, "{log:#?}");
    // DynamoDB: the stale-job index (one Query per shard, passes until the job is stale), the
    // job read, the markers' Query pages, the note. Nothing per batch but the markers' pages,
    // which hold hundreds of markers each.
    let other_dynamodb = log.on(Service::DynamoDb)
        - log.count(Service::DynamoDb, "Query")
        - log.count(Service::DynamoDb, "GetItem");
    assert!(other_dynamodb <= 2, "{log:#?}");
    assert!(log.count(Service::DynamoDb, "GetItem") <= 10, "{log:#?}");
    // The eager re-send rebuilt all 60,000 batches (~500 MiB) to send five; this holds the
    // marker set and five bodies.
    assert!(peak <= 32 * MIB, "peak {} KiB", peak / 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_cut_short_resumes_from_its_checkpoint_with_the_stored_batch_size() {
    // The third SendMessageBatch call is refused: the first fan-out stops after 20 batches,
    // its checkpoint at 20.
    let cut = FaultRule::new(
        Service::Sqs,
        Trigger::NthCall(3),
        Fault::SqsBatchRequestTooLong,
    )
    .on("SendMessageBatch");
    let first = DispatcherConfig {
        batch_size: 1,
        fanout_in_flight: 1,
        fanout_checkpoint_batches: 10,
        ..StackOptions::default().dispatcher_config
    };
    let mut stack = spawn_stack_with(StackOptions {
        faults: Some(FaultPlan::strict().rule(cut)),
        dispatcher_config: first.clone(),
        ..StackOptions::idle()
    })
    .await
    .unwrap();
    let dispatcher = eager_dispatcher(&stack, first.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resume.mp4");
    make_video(&path, 96, 64, "10", 3.0).await.unwrap();
    let frames = count_frames(&path).await.unwrap();
    assert!(frames > 20, "{frames} frames: three calls of ten");
    let id = stack
        .upload("resume.mp4", std::fs::read(&path).unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        dispatcher
            .run_once(Feed::Ingress, Duration::from_secs(1))
            .await
            .unwrap();
        dispatcher
            .run_once(Feed::JobEvents, Duration::from_secs(1))
            .await
            .unwrap();
        let record = stack.jobs.get(&id).await.unwrap();
        if record.as_ref().is_some_and(|r| r.fanout_next.is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never started fanning out: {record:#?}"
        );
    }
    // The cut fan-out's event is gone (redelivery would resume too): the reconciler resumes.
    let events = stack.provisioned.job_events_queue_url.clone();
    loop {
        let out = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(&events)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            break;
        }
        for message in out.messages() {
            stack
                .clients
                .sqs
                .delete_message()
                .queue_url(&events)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let cut_short = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(cut_short.status, JobStatus::Processing);
    assert!(!cut_short.fanned_out);
    assert_eq!(cut_short.fanout_next, Some(20), "{cut_short:#?}");
    assert_eq!(cut_short.batch_frames, Some(1));
    let frames_queue = stack.provisioned.frames_queue_url.clone();
    assert_eq!(stack.queue_depth(&frames_queue).await.unwrap(), 20);

    // A redeploy changes the batch size before the reconciler resumes the fan-out.
    let redeployed = eager_dispatcher(
        &stack,
        DispatcherConfig {
            batch_size: 3,
            ..first
        },
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let action = loop {
        let ReconcileReport { actions, .. } = redeployed.reconcile_once().await.unwrap();
        if let Some((_, action)) = actions.into_iter().find(|(v, _)| v == &id) {
            break action;
        }
        assert!(Instant::now() < deadline, "the reconciler never acted");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(action, Action::FannedOut);
    // Resumed at the checkpoint: the first 20 batches were not sent again.
    assert_eq!(stack.queue_depth(&frames_queue).await.unwrap(), frames);

    stack.start_worker().await.unwrap();
    let done = stack.wait_final(&id).await.unwrap();
    assert_eq!(done.status, JobStatus::Complete, "{done:#?}");
    assert_eq!(done.total_frames, Some(frames));
    assert_eq!(done.batches, Some(frames));
    assert_eq!(done.processed_frames + done.failed_frames, frames);
    // Uniform batches: one frame in every marker, one marker per frame.
    let markers = stack
        .clients
        .dynamodb
        .query()
        .table_name(&stack.resources.jobs_table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :batch)")
        .expression_attribute_values(":pk", AttributeValue::S(id.to_string()))
        .expression_attribute_values(":batch", AttributeValue::S("batch#".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert_eq!(markers.items().len() as u64, frames);
    for item in markers.items() {
        let n = |field: &str| {
            item.get(field)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        assert_eq!(n("processed_frames") + n("failed_frames"), 1, "{item:?}");
    }
}

/// Fan-out throughput, the eager path this replaced against the streaming one, side by side in
/// one process through the same SDK client and the proxy's SQS sink (so moto's queue speed is
/// not what is measured): `cargo nextest run -p framefleet-e2e --test fanout --run-ignored
/// only fan_out_rate`. Prints batches per second of each and their ratio.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run on its own and read the ratio it prints"]
async fn fan_out_rate_eager_against_streaming() {
    use framefleet_core::frames::FrameSeries;
    use framefleet_core::message::{frames_per_batch, plan_batches, BatchSeries, OutputLayout};
    use framefleet_core::queue::Queue;
    use framefleet_edge::EdgeParams;
    use futures::StreamExt;

    let stack = spawn_stack_with(sink_stack()).await.unwrap();
    let clients = stack.clients_as(&stack.identities.dispatcher, &stack.policies.dispatcher);
    let queue = Queue::new(clients.sqs.clone(), &stack.provisioned.frames_queue_url);
    let id = VideoId::from_raw("rate-0123456789ab");
    let frames_bucket = stack.resources.frames_bucket.clone();
    let params = EdgeParams::default();
    let frames = 300_000u64;
    let series = FrameSeries {
        prefix: format!("{id}/"),
        base: "clip".into(),
        first_name: 0,
        count: frames,
    };
    let mut rates = Vec::new();
    for round in 0..3 {
        // Eager: every key, every batch, every body, then one call at a time.
        let started = Instant::now();
        let keys: Vec<String> = (0..frames).map(|i| series.key(i)).collect();
        let batches = plan_batches(
            &id,
            &frames_bucket,
            keys,
            50,
            &params,
            OutputLayout::Objects,
        );
        let bodies: Vec<String> = batches.iter().map(FrameBatch::to_body).collect();
        queue.send_all(&bodies, None, 8).await.unwrap();
        let eager = bodies.len() as f64 / started.elapsed().as_secs_f64();
        drop((batches, bodies));
        // Streaming: bodies written as calls have room, four calls in flight.
        let started = Instant::now();
        let per = frames_per_batch(
            &id,
            &frames_bucket,
            &series,
            50,
            &params,
            OutputLayout::Objects,
        );
        let plan = BatchSeries {
            video_id: &id,
            frames_bucket: &frames_bucket,
            series: &series,
            frames_per_batch: per,
            batch_base: 0,
            params: &params,
            layout: OutputLayout::Objects,
            first_index: None,
        };
        let total = plan.len();
        let sent: usize = queue
            .send_stream((0..total).map(|j| plan.body(j)), None, 8, 4)
            .map(|r| r.unwrap())
            .fold(0, |a, b| async move { a + b })
            .await;
        assert_eq!(sent as u64, total);
        let streaming = total as f64 / started.elapsed().as_secs_f64();
        eprintln!(
            "round {round}: eager {eager:.0} batches/s, streaming {streaming:.0} batches/s, ratio {:.2}",
            streaming / eager
        );
        rates.push((eager, streaming));
    }
    let (eager, streaming) = rates
        .iter()
        .fold((0.0, 0.0), |(a, b), (e, s)| (a + e, b + s));
    eprintln!(
        "over {} rounds: eager {:.0} batches/s, streaming {:.0} batches/s, ratio {:.2}",
        rates.len(),
        eager / rates.len() as f64,
        streaming / rates.len() as f64,
        streaming / eager
    );
}
