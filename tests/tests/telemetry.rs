//! OpenTelemetry across the fleet, end to end: the real `dispatcher`, `worker` and
//! `mediaconvert-standin` processes export to the suite's own OTLP receiver
//! ([`framefleet_e2e::otlp`]), the dispatcher over gRPC and the workers over http/protobuf,
//! configured only by `OTEL_*` variables. For one job: one trace id links the dispatcher's
//! spans (register, capture, the capture's events, fan-out) and every batch span, each batch
//! span a child of the fan-out span that sent it; and the exported frame counters, summed over
//! the workers, equal the job's counts. A second test points every service at a closed port:
//! the job still completes and every service still stops. A third runs the services in-process,
//! exporting through `StackOptions::otel_env`. The last two point every service at the receiver
//! and turn exports off with the standard switches: `OTEL_SDK_DISABLED=true` sends nothing at
//! all, `OTEL_TRACES_EXPORTER=none` and `OTEL_METRICS_EXPORTER=none` only their own signal.
//!
//! Build the binaries first: `cargo build --workspace --bins` (`scripts/test` does).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use framefleet_core::jobs::JobStatus;
use framefleet_e2e::media::video_bytes;
use framefleet_e2e::otlp::{OtlpReceiver, Received, ReceivedSpan};
use framefleet_e2e::processes::{Fleet, Service, Signal};
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};
use framefleet_provision::QueueSettings;

/// A stack with no services of its own; `otel_env` for every process, `dispatcher_env` and
/// `worker_env` on top for the dispatcher and the workers.
async fn fleet_stack(
    otel_env: Vec<(String, String)>,
    dispatcher_env: Vec<(String, String)>,
    worker_env: Vec<(String, String)>,
) -> (Stack, Fleet) {
    let stack = spawn_stack_with(StackOptions {
        queues: QueueSettings {
            max_receive_count: 5,
            frames_visibility_timeout_secs: 30,
            control_visibility_timeout_secs: 10,
        },
        otel_env,
        ..StackOptions::fleet()
    })
    .await
    .unwrap();
    let mut dispatcher = vec![
        ("FRAMEFLEET__DISPATCHER__BATCH_SIZE".to_string(), "3".into()),
        ("FRAMEFLEET__DISPATCHER__POLL_WAIT_SECS".into(), "2".into()),
    ];
    dispatcher.extend(dispatcher_env);
    // The workers log JSON, so the test can find the trace id beside the video id.
    let mut worker = vec![(
        "FRAMEFLEET__TELEMETRY__LOG_FORMAT".to_string(),
        "json".to_string(),
    )];
    worker.extend(worker_env);
    let extra = HashMap::from([(Service::Dispatcher, dispatcher), (Service::Worker, worker)]);
    let fleet = Fleet::new(&stack, extra).unwrap();
    (stack, fleet)
}

async fn clip() -> Vec<u8> {
    let (bytes, _frames) = video_bytes("clip.mp4", 96, 64, "10", 2.0).await.unwrap();
    bytes
}

async fn start_all(fleet: &mut Fleet) {
    fleet.start("standin", Service::Standin).await.unwrap();
    fleet
        .start("dispatcher", Service::Dispatcher)
        .await
        .unwrap();
    fleet.start("worker-1", Service::Worker).await.unwrap();
    fleet.start("worker-2", Service::Worker).await.unwrap();
}

/// SIGTERM to every process, each waited for: the telemetry guard flushes on the way out.
async fn stop_all(fleet: &mut Fleet) {
    for name in ["worker-1", "worker-2", "dispatcher", "standin"] {
        fleet.stop(name, Signal::Term).await.unwrap();
    }
}

/// Waits (polling, with a generous deadline for a slow machine) until `done` holds.
async fn wait_received(
    receiver: &OtlpReceiver,
    what: &str,
    done: impl Fn(&Received) -> bool,
) -> Received {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let received = receiver.received();
        if done(&received) {
            return received;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not received; metrics {:?}, {} spans, requests {:?}",
            received.metric_names(),
            received.spans.len(),
            received.requests
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn spans_named<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_links_the_dispatcher_and_every_batch_and_counters_add_up() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let (stack, mut fleet) = fleet_stack(
        receiver.env("http/protobuf"),
        receiver.env("grpc"),
        Vec::new(),
    )
    .await;
    start_all(&mut fleet).await;
    let id = stack.upload("traced.mp4", clip().await).await.unwrap();
    let done = stack.wait_final(&id).await.unwrap();
    let logs = fleet.log_dir().display().to_string();
    assert_eq!(done.status, JobStatus::Complete, "{done:#?} (logs: {logs})");
    let batches = done.batches.unwrap();
    assert!(batches >= 2, "a job of several batches: {done:#?}");
    let traceparent = done
        .traceparent
        .clone()
        .expect("the job record keeps its traceparent");
    let frames = done.processed_frames + done.failed_frames;

    // Counters are exported every 500 ms while the workers run; wait until they add up.
    wait_received(&receiver, "frame counters equal to the job's", |r| {
        r.counter_total("framefleet.frames.processed") == done.processed_frames as i64
            && r.counter_total("framefleet.frames.failed") == done.failed_frames as i64
    })
    .await;
    stop_all(&mut fleet).await;
    let received = receiver.received();

    // The dispatcher's spans: a root `register` span for the video, whose trace is the job's.
    let register: Vec<_> = spans_named(&received.spans, "dispatcher", "register")
        .into_iter()
        .filter(|s| s.attributes.get("video_id").map(String::as_str) == Some(id.as_str()))
        .collect();
    assert_eq!(register.len(), 1, "{register:#?}");
    let trace = register[0].trace_id.clone();
    assert!(
        register[0].parent_span_id.is_empty(),
        "register starts the trace"
    );
    assert!(
        traceparent.contains(&trace),
        "stored traceparent {traceparent} names trace {trace}"
    );
    assert_eq!(register[0].protocol, "grpc");
    let in_trace = |service: &str, name: &str| -> Vec<ReceivedSpan> {
        spans_named(&received.spans, service, name)
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .cloned()
            .collect()
    };
    let capture = in_trace("dispatcher", "capture");
    assert_eq!(capture.len(), 1, "capture in the trace: {capture:#?}");
    // The state change events carry the traceparent in userMetadata through the stand-in.
    let events = in_trace("dispatcher", "job_event");
    assert!(!events.is_empty(), "MediaConvert events rejoin the trace");
    assert!(events
        .iter()
        .all(|e| e.parent_span_id == register[0].span_id));
    let fan_out = in_trace("dispatcher", "fan_out");
    assert_eq!(fan_out.len(), 1, "{fan_out:#?}");
    let fan_out_id = fan_out[0].span_id.clone();

    // Every batch span is in that trace, a child of the fan-out span that sent it.
    let batch_spans = in_trace("worker", "batch");
    assert!(
        batch_spans.len() as u64 >= batches,
        "{} batch spans in the trace for {batches} batches (logs: {logs})",
        batch_spans.len()
    );
    for span in &batch_spans {
        assert_eq!(
            span.parent_span_id, fan_out_id,
            "batch span's parent is the fan-out: {span:#?}"
        );
        assert_eq!(span.protocol, "http/protobuf");
        assert_eq!(span.attributes.get("video_id"), Some(&id.to_string()));
    }
    let indexes: BTreeSet<u64> = batch_spans
        .iter()
        .filter_map(|s| s.attributes.get("batch_index")?.parse().ok())
        .collect();
    assert_eq!(indexes, (0..batches).collect(), "every batch index");
    // And no batch span of this video outside the trace.
    let strays: Vec<_> = spans_named(&received.spans, "worker", "batch")
        .into_iter()
        .filter(|s| s.attributes.get("video_id") == Some(&id.to_string()) && s.trace_id != trace)
        .collect();
    assert!(
        strays.is_empty(),
        "batch spans outside the trace: {strays:#?}"
    );
    // The steps of a batch are children of its span.
    let batch_ids: BTreeSet<&str> = batch_spans.iter().map(|s| s.span_id.as_str()).collect();
    for step in ["download", "kernel", "upload", "count"] {
        let steps = in_trace("worker", step);
        assert!(!steps.is_empty(), "{step} spans");
        assert!(
            steps
                .iter()
                .all(|s| batch_ids.contains(s.parent_span_id.as_str())),
            "{step} spans are children of batch spans"
        );
    }
    // The workers' JSON logs carry the trace id beside the video id.
    let logged = ["worker-1", "worker-2"]
        .iter()
        .flat_map(|name| {
            fleet
                .log(name)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .collect::<Vec<_>>()
        })
        .filter(|line| line["span"]["trace_id"] == trace.as_str())
        .filter(|line| line["span"]["video_id"] == id.as_str())
        .count();
    assert!(
        logged > 0,
        "no worker log line with trace_id {trace} and video_id {id}"
    );
    let downloads = in_trace("worker", "download").len() as u64;
    assert!(
        downloads >= frames,
        "{downloads} downloads for {frames} frames"
    );

    // The counters, after the final flush at shutdown, still add up exactly.
    assert_eq!(
        received.counter_total("framefleet.frames.processed"),
        done.processed_frames as i64
    );
    assert_eq!(
        received.counter_total("framefleet.frames.failed"),
        done.failed_frames as i64
    );
    assert_eq!(
        received.counter_total("framefleet.batches.counted"),
        batches as i64
    );
    assert_eq!(received.counter_total("framefleet.jobs.completed"), 1);
    assert_eq!(received.counter_total("framefleet.jobs.registered"), 1);
    assert_eq!(
        received.counter_total("framefleet.batches.sent"),
        batches as i64
    );
    assert_eq!(received.counter_total("framefleet.batches.in_flight"), 0);
    for histogram in [
        "framefleet.kernel.duration",
        "framefleet.s3.request.duration",
        "framefleet.batch.queue_wait",
        "framefleet.job.duration",
    ] {
        assert!(
            received.histograms.get(histogram).is_some_and(|n| *n > 0),
            "{histogram}: {:?}",
            received.histograms
        );
    }
    assert!(received.requests.get("grpc").is_some_and(|n| *n > 0));
    assert!(received
        .requests
        .get("http/protobuf")
        .is_some_and(|n| *n > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_collector_neither_stops_the_job_nor_the_shutdown() {
    // A port nothing listens on: bound, then released.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let env = |protocol: &str| {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                format!("http://127.0.0.1:{closed}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".to_string(), protocol.into()),
            ("OTEL_METRIC_EXPORT_INTERVAL".to_string(), "200".into()),
            ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "50".into()),
        ]
    };
    let (stack, mut fleet) = fleet_stack(env("http/protobuf"), env("grpc"), Vec::new()).await;
    start_all(&mut fleet).await;
    let id = stack.upload("untraced.mp4", clip().await).await.unwrap();
    let done = stack.wait_final(&id).await.unwrap();
    assert_eq!(
        done.status,
        JobStatus::Complete,
        "{done:#?} (logs: {})",
        fleet.log_dir().display()
    );
    assert!(
        done.traceparent.is_some(),
        "traced even with nowhere to send"
    );
    // Each stop waits for the process to exit: a dead collector must not hold them up.
    stop_all(&mut fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_process_services_export_through_the_stack_options() {
    // The stack installs this test process's providers from `StackOptions::otel_env`: the
    // in-process dispatcher and workers share them (service `tests`), and the trace still
    // travels through the job record, MediaConvert and SQS.
    let receiver = OtlpReceiver::start().await.unwrap();
    let stack = spawn_stack_with(StackOptions {
        otel_env: receiver.env("grpc"),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let id = stack.upload("in-process.mp4", clip().await).await.unwrap();
    let done = stack.wait_final(&id).await.unwrap();
    assert_eq!(done.status, JobStatus::Complete, "{done:#?}");
    let batches = done.batches.unwrap();
    let received = wait_received(&receiver, "every batch span and the frame counter", |r| {
        r.counter_total("framefleet.frames.processed") == done.processed_frames as i64
            && spans_named(&r.spans, "tests", "batch")
                .iter()
                .filter(|s| s.attributes.get("video_id") == Some(&id.to_string()))
                .count() as u64
                >= batches
    })
    .await;
    let register: Vec<_> = spans_named(&received.spans, "tests", "register")
        .into_iter()
        .filter(|s| s.attributes.get("video_id") == Some(&id.to_string()))
        .collect();
    assert_eq!(register.len(), 1, "{register:#?}");
    let batch_traces: BTreeSet<&str> = spans_named(&received.spans, "tests", "batch")
        .into_iter()
        .filter(|s| s.attributes.get("video_id") == Some(&id.to_string()))
        .map(|s| s.trace_id.as_str())
        .collect();
    assert_eq!(
        batch_traces,
        BTreeSet::from([register[0].trace_id.as_str()]),
        "every batch span in the video's trace"
    );
    assert!(received.requests.get("grpc").is_some_and(|n| *n > 0));
}

fn with(mut env: Vec<(String, String)>, variable: &str, value: &str) -> Vec<(String, String)> {
    env.push((variable.to_string(), value.to_string()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sdk_switch_turns_every_export_off() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let (stack, mut fleet) = fleet_stack(
        with(receiver.env("http/protobuf"), "OTEL_SDK_DISABLED", "true"),
        Vec::new(),
        Vec::new(),
    )
    .await;
    start_all(&mut fleet).await;
    let id = stack.upload("dark.mp4", clip().await).await.unwrap();
    let done = stack.wait_final(&id).await.unwrap();
    let logs = fleet.log_dir().display().to_string();
    assert_eq!(done.status, JobStatus::Complete, "{done:#?} (logs: {logs})");
    assert_eq!(done.traceparent, None, "no trace ids without the SDK");
    // Stopped processes have flushed whatever they had to send.
    stop_all(&mut fleet).await;
    let received = receiver.received();
    assert!(
        received.requests.is_empty() && received.spans.is_empty() && received.sums.is_empty(),
        "nothing may reach the receiver: requests {:?}, {} spans, metrics {:?} (logs: {logs})",
        received.requests,
        received.spans.len(),
        received.metric_names()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_exporter_switch_turns_its_own_signal_off() {
    // The dispatcher exports metrics only, the workers spans only, to the same receiver.
    let receiver = OtlpReceiver::start().await.unwrap();
    let (stack, mut fleet) = fleet_stack(
        receiver.env("http/protobuf"),
        with(Vec::new(), "OTEL_TRACES_EXPORTER", "none"),
        with(Vec::new(), "OTEL_METRICS_EXPORTER", "none"),
    )
    .await;
    start_all(&mut fleet).await;
    let id = stack.upload("half-lit.mp4", clip().await).await.unwrap();
    let done = stack.wait_final(&id).await.unwrap();
    let logs = fleet.log_dir().display().to_string();
    assert_eq!(done.status, JobStatus::Complete, "{done:#?} (logs: {logs})");
    let batches = done.batches.unwrap();
    // What each still sends arrives: the switches are not the receiver being unreachable.
    wait_received(
        &receiver,
        "dispatcher metrics and worker batch spans",
        |r| {
            r.counter_total("framefleet.jobs.registered") == 1
                && spans_named(&r.spans, "worker", "batch")
                    .iter()
                    .filter(|s| s.attributes.get("video_id") == Some(&id.to_string()))
                    .count() as u64
                    >= batches
        },
    )
    .await;
    stop_all(&mut fleet).await;
    let received = receiver.received();
    let dispatcher_spans = received
        .spans
        .iter()
        .filter(|s| s.service == "dispatcher")
        .count();
    assert_eq!(
        dispatcher_spans, 0,
        "OTEL_TRACES_EXPORTER=none on the dispatcher (logs: {logs})"
    );
    let worker_metrics: BTreeSet<&str> = received
        .sums
        .iter()
        .filter(|p| p.service == "worker")
        .map(|p| p.metric.as_str())
        .collect();
    assert!(
        worker_metrics.is_empty(),
        "OTEL_METRICS_EXPORTER=none on the workers: {worker_metrics:?} (logs: {logs})"
    );
    for histogram in ["framefleet.kernel.duration", "framefleet.batch.queue_wait"] {
        assert!(
            !received.histograms.contains_key(histogram),
            "{histogram} is a worker metric: {:?}",
            received.histograms
        );
    }
    assert_eq!(received.counter_total("framefleet.frames.processed"), 0);
}
