//! Every timer-driven renewal the services make, exercised past the expiry it guards against,
//! with short configured durations: 3 s visibility timeouts, a 3 s "minute" in the ECS agent
//! stand-in, a 5 s health window, and work held for [`WORK`] (more than three of any of them).
//! Each test checks what a user would see if the renewal did not happen: a second handler
//! running the same message, a redelivered batch, an unprotected busy task, a dispatcher
//! reported unhealthy while it works. The services run in process against moto_server; the
//! work is made long by holding one AWS call at a gate of the fault proxy (or slowing it).
//!
//! The last test stops a dispatcher process as ECS does (SIGTERM, SIGKILL after the stop
//! timeout) and needs the binaries built first (`cargo build --workspace --bins`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use framefleet_core::jobs::JobStatus;
use framefleet_dispatcher::service::HEARTBEATS;
use framefleet_dispatcher::settings::DispatcherConfig;
use framefleet_e2e::ecs_agent::{AgentOptions, EcsAgent};
use framefleet_e2e::fault_proxy::{FaultPlan, Gate, Latency, Service};
use framefleet_e2e::media::video_bytes;
use framefleet_e2e::processes::{Fleet, Service as Process};
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};
use framefleet_provision::QueueSettings;
use framefleet_worker::protection::{ProtectionTiming, ScaleInProtection};

/// How long the held work lasts: over three visibility timeouts, protection "minutes" and
/// health windows, so a renewal that does not happen shows.
const WORK: Duration = Duration::from_secs(10);
/// Every queue's visibility timeout in these tests.
const VISIBILITY_SECS: u32 = 3;

/// Queues whose messages reappear [`VISIBILITY_SECS`] after a receive unless renewed.
fn short_queues() -> QueueSettings {
    QueueSettings {
        max_receive_count: 5,
        frames_visibility_timeout_secs: VISIBILITY_SECS,
        control_visibility_timeout_secs: VISIBILITY_SECS,
    }
}

/// Dispatcher settings with a 3 s lease (extended every second) and 1 s long polls.
fn short_lease() -> DispatcherConfig {
    DispatcherConfig {
        batch_size: 4,
        poll_wait_secs: 1,
        lease_secs: u64::from(VISIBILITY_SECS),
        ..DispatcherConfig::default()
    }
}

/// Polls `condition` every 50 ms for up to a minute.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A health window of `secs` for the stack's next dispatcher, its reconciler beating every
/// second (the window must exceed the reconciler's interval and the long poll).
fn short_health_window(stack: &mut Stack, secs: u64) {
    let settings = &mut stack.dispatcher_settings;
    settings.reconcile.interval_secs = 1;
    settings.dispatcher.heartbeat_max_age_secs = secs;
    settings.validate().unwrap();
}

/// Two dispatchers on one stack whose `operation` on `service` is held at `gate`.
async fn two_dispatchers_held_at(service: Service, operation: &str, gate: &Gate) -> Stack {
    let mut stack = spawn_stack_with(StackOptions {
        dispatcher: false,
        workers: 0,
        queues: short_queues(),
        dispatcher_config: short_lease(),
        faults: Some(FaultPlan::strict().hold_on(service, operation, gate)),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack.start_dispatcher().await.unwrap();
    stack.start_dispatcher().await.unwrap();
    stack
}

/// The dispatcher's lease during a long pin: the upload's ingress message stays invisible for
/// the whole copy, so the second dispatcher never starts the same registration (a second
/// handler would reach the held CopyObject too).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_pin_keeps_its_message_from_a_second_dispatcher() {
    let copy = Gate::new();
    let stack = two_dispatchers_held_at(Service::S3, "CopyObject", &copy).await;
    let (bytes, _) = video_bytes("pin.mp4", 64, 48, "5", 1.0).await.unwrap();
    let video_id = stack.upload("held/pin.mp4", bytes).await.unwrap();
    wait_until("the pin to start", || copy.reached() >= 1).await;
    tokio::time::sleep(WORK).await;
    assert_eq!(
        copy.reached(),
        1,
        "the ingress message reappeared while its pin ran and a second handler pinned it"
    );
    assert_eq!(
        stack
            .not_visible(&stack.provisioned.ingress_queue_url)
            .await
            .unwrap(),
        1
    );
    copy.open();
    let record = stack
        .wait_for(
            &video_id,
            &[
                JobStatus::Capturing,
                JobStatus::Processing,
                JobStatus::Complete,
            ],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(record.mediaconvert_job_id.is_some(), "{record:#?}");
    stack
        .wait_until_empty(&stack.provisioned.ingress_queue_url)
        .await
        .unwrap();
    assert_eq!(copy.reached(), 1, "the message was handled twice");
}

/// The dispatcher's lease during a long fan-out: the job-events message stays invisible while
/// its batches are being sent, and only one dispatcher sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_fan_out_keeps_its_message_from_a_second_dispatcher() {
    let send = Gate::new();
    let stack = two_dispatchers_held_at(Service::Sqs, "SendMessageBatch", &send).await;
    let (bytes, frames) = video_bytes("fan.mp4", 64, 48, "6", 1.0).await.unwrap();
    let video_id = stack.upload("held/fan.mp4", bytes).await.unwrap();
    wait_until("the fan-out to start", || send.reached() >= 1).await;
    tokio::time::sleep(WORK).await;
    assert_eq!(
        send.reached(),
        1,
        "the job-events message reappeared while its fan-out ran and a second handler sent batches"
    );
    send.open();
    stack.wait_processing(&video_id).await.unwrap();
    stack
        .wait_until_empty(&stack.provisioned.job_events_queue_url)
        .await
        .unwrap();
    let batches = frames.div_ceil(4);
    assert!(
        batches <= 10,
        "premise: one SendMessageBatch carries them all"
    );
    assert_eq!(send.reached(), 1, "the fan-out ran twice");
    assert_eq!(
        stack
            .queue_depth(&stack.provisioned.frames_queue_url)
            .await
            .unwrap(),
        batches
    );
}

/// The worker's visibility heartbeat during a long batch: while one worker's batch waits to be
/// counted, the other worker never receives it (a redelivery would reach the held transaction
/// again), and the job ends with every frame counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_batch_is_not_redelivered_to_another_worker() {
    let counting = Gate::new();
    let stack = spawn_stack_with(StackOptions {
        workers: 2,
        queues: short_queues(),
        dispatcher_config: DispatcherConfig {
            batch_size: 50,
            ..short_lease()
        },
        faults: Some(FaultPlan::strict().hold_on(
            Service::DynamoDb,
            "TransactWriteItems",
            &counting,
        )),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (bytes, frames) = video_bytes("batch.mp4", 64, 48, "5", 1.0).await.unwrap();
    assert!(frames <= 50, "premise: one batch");
    let video_id = stack.upload("held/batch.mp4", bytes).await.unwrap();
    wait_until("the batch to be counted", || counting.reached() >= 1).await;
    tokio::time::sleep(WORK).await;
    assert_eq!(
        counting.reached(),
        1,
        "the batch reappeared on the frames queue while a worker held it and was run again"
    );
    counting.open();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames);
    assert_eq!(counting.reached(), 1, "the batch was processed twice");
}

/// Scale-in protection while a worker is busy for longer than the protection's expiry: the
/// agent stand-in's minute lasts 3 s and the worker asks for one minute, renewed every second;
/// the task is protected at every moment of its 10 s batch (no lapse), and unprotected once
/// idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_busy_past_its_protection_expiry_stays_protected() {
    let counting = Gate::new();
    let mut stack = spawn_stack_with(StackOptions {
        workers: 0,
        dispatcher_config: DispatcherConfig {
            batch_size: 50,
            ..short_lease()
        },
        faults: Some(FaultPlan::strict().hold_on(
            Service::DynamoDb,
            "TransactWriteItems",
            &counting,
        )),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack.worker_settings.worker.scale_in_protection_minutes = 1;
    stack.worker_settings.worker.scale_in_protection_renew_secs = 1;
    stack
        .start_worker_with(AgentOptions {
            minute: Duration::from_secs(3),
            ..AgentOptions::default()
        })
        .await
        .unwrap();
    let (bytes, _) = video_bytes("busy.mp4", 64, 48, "5", 1.0).await.unwrap();
    let video_id = stack.upload("held/busy.mp4", bytes).await.unwrap();
    wait_until("the batch to be counted", || counting.reached() >= 1).await;
    let agent = &stack.ecs_agents[0];
    assert!(
        agent.protected_now(),
        "busy but unprotected: {:?}",
        agent.log()
    );
    tokio::time::sleep(WORK).await;
    assert!(
        agent.protected_now(),
        "the protection lapsed while the task was busy: {:?}",
        agent.log()
    );
    assert_eq!(agent.lapses_now(), 0, "{:?}", agent.log());
    counting.open();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    let log = agent
        .wait_until(|log| !log.enabled && !log.changes.is_empty())
        .await
        .unwrap();
    assert_eq!(log.lapses, 0, "{log:?}");
    assert_eq!(log.refusals, 0, "{log:?}");
    assert!(
        log.changes.iter().filter(|on| **on).count() >= 3,
        "renewed while busy: {log:?}"
    );
}

/// An "off" that is slow to apply never wins over a newer "on": the task goes idle, the "off"
/// is on its way (the agent stand-in takes a second to apply it), a new batch starts, and the
/// task ends protected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_off_does_not_undo_a_newer_on() {
    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let agent = EcsAgent::start_with(
        &stack.names.task_arn("ordered"),
        "arn:aws:iam::123456789012:role/t-worker",
        stack
            .policies
            .worker
            .iter()
            .map(|p| p.document.clone())
            .collect(),
        AgentOptions {
            off_delay: Duration::from_secs(1),
            ..AgentOptions::default()
        },
    )
    .await
    .unwrap();
    let protection =
        ScaleInProtection::new(Some(agent.uri().to_string()), ProtectionTiming::default());
    let first = protection.busy();
    protection.settled().await;
    drop(first);
    agent.wait_until(|log| log.received == 2).await.unwrap();
    let _second = protection.busy();
    protection.settled().await;
    let log = agent
        .wait_until(|log| log.changes.len() == 3)
        .await
        .unwrap();
    assert_eq!(log.changes, [true, false, true]);
    assert!(agent.protected_now(), "busy but unprotected: {log:?}");
}

/// A dispatcher whose one handler slot is taken by a long fan-out, with a 5 s health window:
/// every batch request sent beats the loop's heartbeat, so the health check the container runs
/// passes throughout; without those beats the loop would look dead after 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dispatcher_busy_with_a_long_fan_out_stays_healthy() {
    let mut stack = spawn_stack_with(StackOptions {
        dispatcher: false,
        workers: 0,
        dispatcher_config: DispatcherConfig {
            batch_size: 1,
            concurrency: 1,
            poll_wait_secs: 1,
            ..DispatcherConfig::default()
        },
        faults: Some(FaultPlan::strict().latency_on(
            Service::Sqs,
            "SendMessageBatch",
            Latency {
                fixed: Duration::from_secs(2),
                ..Latency::default()
            },
        )),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    short_health_window(&mut stack, 5);
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = stack
        .dispatcher()
        .await
        .unwrap()
        .with_heartbeat_dir(dir.path());
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(stop.clone()));
    wait_until("every loop to beat", || {
        framefleet_core::health::stale_in(dir.path(), &HEARTBEATS).is_empty()
    })
    .await;
    // 60 frames in batches of one: six SendMessageBatch calls of 2 s each, one after another.
    let (bytes, frames) = video_bytes("long.mp4", 64, 48, "10", 6.0).await.unwrap();
    assert!(frames >= 51, "premise: more than five requests");
    stack.upload("slow/long.mp4", bytes).await.unwrap();
    let frames_queue = stack.provisioned.frames_queue_url.clone();
    let mut samples = 0;
    while stack.queue_depth(&frames_queue).await.unwrap() < frames {
        let stale = framefleet_core::health::stale_in(dir.path(), &HEARTBEATS);
        assert!(stale.is_empty(), "unhealthy while fanning out: {stale:?}");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(samples > 0);
    stop.cancel();
    running.await.unwrap().unwrap();
}

/// The same dispatcher whose fan-out really stalls (its batch request held, no step completes)
/// is reported unhealthy once its window passes, and healthy again when the work moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dispatcher_whose_work_stalls_turns_unhealthy() {
    let send = Gate::new();
    let mut stack = spawn_stack_with(StackOptions {
        dispatcher: false,
        workers: 0,
        dispatcher_config: DispatcherConfig {
            concurrency: 1,
            poll_wait_secs: 1,
            ..DispatcherConfig::default()
        },
        faults: Some(FaultPlan::strict().hold_on(Service::Sqs, "SendMessageBatch", &send)),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    short_health_window(&mut stack, 3);
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = stack
        .dispatcher()
        .await
        .unwrap()
        .with_heartbeat_dir(dir.path());
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(stop.clone()));
    let (bytes, _) = video_bytes("stall.mp4", 64, 48, "5", 1.0).await.unwrap();
    let video_id = stack.upload("stall/stall.mp4", bytes).await.unwrap();
    wait_until("the fan-out to start", || send.reached() >= 1).await;
    wait_until("the stalled loop to be reported", || {
        framefleet_core::health::stale_in(dir.path(), &HEARTBEATS) == ["dispatcher-job-events"]
    })
    .await;
    send.open();
    stack.wait_processing(&video_id).await.unwrap();
    wait_until("the loop to beat again", || {
        framefleet_core::health::stale_in(dir.path(), &HEARTBEATS).is_empty()
    })
    .await;
    stop.cancel();
    running.await.unwrap().unwrap();
}

/// A dispatcher process stopped as ECS stops it (SIGTERM, then SIGKILL after the template's
/// 60 s stop timeout) while its long polls are open: it exits by itself, with status 0, and the
/// upload that arrived in its last long poll is not lost (it is handled in the drain, or left
/// for the next dispatcher, which takes the job to COMPLETE).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dispatcher_stopped_mid_long_poll_exits_by_itself_and_loses_nothing() {
    let stack = spawn_stack_with(StackOptions::fleet()).await.unwrap();
    let stop_timeout = Duration::from_secs(60);
    let dispatcher_env = vec![
        (
            "FRAMEFLEET__DISPATCHER__STOP_TIMEOUT_SECS".to_string(),
            stop_timeout.as_secs().to_string(),
        ),
        (
            "FRAMEFLEET__DISPATCHER__POLL_WAIT_SECS".to_string(),
            "20".to_string(),
        ),
    ];
    let mut fleet = Fleet::new(
        &stack,
        HashMap::from([(Process::Dispatcher, dispatcher_env)]),
    )
    .unwrap();
    fleet.start("standin", Process::Standin).await.unwrap();
    fleet
        .start("dispatcher", Process::Dispatcher)
        .await
        .unwrap();
    // Its first long polls are open once both loops are waiting on an empty queue.
    wait_until("the dispatcher to poll", || {
        fleet.log("dispatcher").contains("dispatcher started")
    })
    .await;
    let (bytes, frames) = video_bytes("term.mp4", 64, 48, "5", 1.0).await.unwrap();
    let (status, video_id) = tokio::join!(
        async { fleet.stop_as_ecs("dispatcher", stop_timeout).await.unwrap() },
        async { stack.upload("term/term.mp4", bytes).await.unwrap() }
    );
    assert!(
        status.success(),
        "the dispatcher did not stop by itself within its stop timeout: {status:?}"
    );
    fleet
        .start("dispatcher-2", Process::Dispatcher)
        .await
        .unwrap();
    fleet.start("worker", Process::Worker).await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.processed_frames, frames);
}

/// The task definitions give each service the stop timeout they set as its container's
/// `StopTimeout`, and the service plans its stop within it: with that environment the stop
/// budget derives and its worst case fits.
#[test]
fn the_template_passes_each_service_its_stop_timeout() {
    let template: serde_yaml::Value =
        serde_yaml::from_str(framefleet_provision::iam_from_template::TEMPLATE).unwrap();
    for (task, container, key) in [
        (
            "DispatcherTaskDefinition",
            "dispatcher",
            "FRAMEFLEET__DISPATCHER__STOP_TIMEOUT_SECS",
        ),
        (
            "WorkerTaskDefinition",
            "worker",
            "FRAMEFLEET__WORKER__STOP_TIMEOUT_SECS",
        ),
    ] {
        let definition = template["Resources"][task]["Properties"]["ContainerDefinitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["Name"].as_str() == Some(container))
            .unwrap();
        let stop_timeout = definition["StopTimeout"].as_u64().unwrap();
        let passed: Vec<&str> = definition["Environment"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|variable| variable["Name"].as_str() == Some(key))
            .filter_map(|variable| variable["Value"].as_str())
            .collect();
        assert_eq!(passed, [stop_timeout.to_string()], "{task}: {key}");
        let env = HashMap::from([(key.to_string(), stop_timeout.to_string())]);
        let budget = if container == "dispatcher" {
            let settings: framefleet_dispatcher::DispatcherSettings =
                framefleet_core::config::load(None, Some(env)).unwrap();
            settings.stop_budget().unwrap()
        } else {
            let settings: framefleet_worker::WorkerSettings =
                framefleet_core::config::load(None, Some(env)).unwrap();
            settings.worker.stop_budget().unwrap()
        };
        assert_eq!(budget.stop_timeout, Duration::from_secs(stop_timeout));
        assert!(
            budget.worst_case() <= budget.stop_timeout,
            "{task}: {budget:?}"
        );
    }
}
