//! Scaling on known work against moto_server: the dispatcher's scaler sets the worker service's
//! desired count in ECS (moto) from the jobs table, the template grants it exactly that
//! service, and the local fleet supervisor runs worker processes to that count, stopping idle
//! ones only.

use std::time::{Duration, Instant};

use framefleet_core::jobs::JobStatus;
use framefleet_core::video::VideoId;
use framefleet_dispatcher::settings::ScalingConfig;
use framefleet_dispatcher::{Dispatcher, Feed};
use framefleet_e2e::local_fleet;
use framefleet_e2e::media::{count_frames, make_video};
use framefleet_e2e::stack::{spawn_stack_with, Stack, StackOptions};
use framefleet_fleet::{ScalingBounds, WorkerService};
use framefleet_provision::iam_from_template::{LocalNames, Template, TEMPLATE, WORKER_SERVICE};
use framefleet_provision::policy::{decide, Decision, PolicyDocument};

/// The worker service of `stack`'s cluster, through the test's own (admin) ECS client.
async fn worker_service(stack: &Stack) -> WorkerService {
    let ecs = aws_sdk_ecs::Client::new(&stack.clients.config);
    let service = WorkerService::new(ecs, &stack.names.cluster, WORKER_SERVICE);
    service.ensure(0).await.unwrap();
    service
}

/// Scaling settings for `stack`: its worker service, 0..=10 tasks, `backlog` batches a task.
fn scaling(stack: &Stack, backlog: f64) -> ScalingConfig {
    ScalingConfig {
        enabled: true,
        cluster: stack.names.cluster.clone(),
        service: WORKER_SERVICE.into(),
        min_tasks: 0,
        max_tasks: 10,
        backlog_per_task: backlog,
        period_secs: 1,
        ..ScalingConfig::default()
    }
}

/// Uploads a generated clip and drives `dispatcher` until the job is fanned out; returns its
/// id and frame count.
async fn fanned_out(
    stack: &Stack,
    dispatcher: &Dispatcher,
    name: &str,
    seconds: &str,
) -> (VideoId, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    make_video(&path, 96, 64, "10", seconds.parse().unwrap())
        .await
        .unwrap();
    let frames = count_frames(&path).await.unwrap();
    let id = stack
        .upload(name, std::fs::read(&path).unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = stack.jobs.get(&id).await.unwrap().map(|r| r.status);
        if status == Some(JobStatus::Processing) {
            break;
        }
        assert!(Instant::now() < deadline, "never fanned out: {status:?}");
        let feed = if status.is_none() {
            Feed::Ingress
        } else {
            Feed::JobEvents
        };
        dispatcher
            .run_once(feed, Duration::from_secs(1))
            .await
            .unwrap();
    }
    (id, frames)
}

fn documents(stack_names: LocalNames, scale_on_known_work: &str) -> Vec<PolicyDocument> {
    Template::parse(TEMPLATE, stack_names)
        .unwrap()
        .with_parameter("ScaleOnKnownWork", scale_on_known_work)
        .unwrap()
        .service_policies()
        .unwrap()
        .dispatcher
        .into_iter()
        .map(|p| p.document)
        .collect()
}

fn names() -> LocalNames {
    LocalNames::new(framefleet_e2e::resources_named("t"), "us-east-1", "t")
}

/// moto does not enforce IAM for ECS, so the dispatcher's two ECS calls are checked against
/// the template's dispatcher policy with the project's evaluator: allowed on the worker service
/// only, and not at all with `ScaleOnKnownWork` off.
#[test]
fn the_template_lets_the_dispatcher_scale_the_worker_service_and_nothing_else() {
    let names = names();
    let worker = names.worker_service_arn();
    let on = documents(names.clone(), "true");
    let off = documents(names.clone(), "false");
    let dispatcher_service = worker.replace("/worker", "/dispatcher");
    let other_cluster = worker.replace(&format!("/{}/", names.cluster), "/other/");
    for action in ["ecs:UpdateService", "ecs:DescribeServices"] {
        assert_eq!(decide(&on, action, &worker), Decision::Allowed, "{action}");
        assert_ne!(decide(&off, action, &worker), Decision::Allowed, "{action}");
        for elsewhere in [&dispatcher_service, &other_cluster] {
            assert_ne!(
                decide(&on, action, elsewhere),
                Decision::Allowed,
                "{action} {elsewhere}"
            );
        }
    }
    // Nothing else of ECS.
    for action in [
        "ecs:CreateService",
        "ecs:DeleteService",
        "ecs:RunTask",
        "ecs:StopTask",
    ] {
        assert_ne!(decide(&on, action, &worker), Decision::Allowed, "{action}");
    }
}

/// The dispatcher's UpdateService reaches ECS: a fanned-out job raises the worker service's
/// desired count to ceil(batches / backlog target), a second pass changes nothing, and once
/// every batch is counted the count goes back to the minimum.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_desired_count_follows_the_known_work_into_ecs() {
    let mut stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let service = worker_service(&stack).await;
    stack.dispatcher_settings.scaling = scaling(&stack, 2.0);
    let dispatcher = stack.dispatcher().await.unwrap();

    let idle = dispatcher.scale_once().await.unwrap();
    assert_eq!(
        (idle.work.frames, idle.desired, idle.updated),
        (0, 0, false)
    );

    let (id, frames) = fanned_out(&stack, &dispatcher, "scale.mp4", "3").await;
    let batch_size = stack.dispatcher_settings.dispatcher.batch_size as u64;
    let batches = frames.div_ceil(batch_size);
    let expected = batches.div_ceil(2).min(10) as i32;
    assert!(
        expected > 1,
        "the clip must need more than one task: {batches} batches"
    );

    let report = dispatcher.scale_once().await.unwrap();
    assert_eq!(report.work.frames, frames);
    assert_eq!(report.work.batches, batches);
    assert_eq!((report.previous, report.desired), (0, expected));
    assert!(report.updated);
    assert_eq!(service.desired_count().await.unwrap(), expected as u32);

    // `framefleet status` shows the worker service's counts when told which it is (moto
    // reports as running what is desired), and nothing of them otherwise.
    let cluster = stack.names.cluster.clone();
    let shown = stack
        .framefleet(&[
            "--json",
            "--cluster",
            &cluster,
            "--worker-service",
            WORKER_SERVICE,
            "status",
            id.as_str(),
        ])
        .await
        .unwrap();
    let view: serde_json::Value =
        serde_json::from_slice(shown.stdout.split(|&b| b == b'\n').next().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&shown.stderr)));
    assert_eq!(
        view["workers"]["desired"].as_i64(),
        Some(i64::from(expected)),
        "{view}"
    );
    let plain = stack
        .framefleet(&["--json", "status", id.as_str()])
        .await
        .unwrap();
    let view: serde_json::Value =
        serde_json::from_slice(plain.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert!(view.get("workers").is_none(), "{view}");

    let again = dispatcher.scale_once().await.unwrap();
    assert_eq!(
        (again.previous, again.desired, again.updated),
        (expected, expected, false)
    );

    // Every batch counted: the known work is zero and so is the desired count.
    stack.start_worker().await.unwrap();
    let record = stack.wait_final(&id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete);
    assert_eq!(record.processed_frames, frames);
    let done = dispatcher.scale_once().await.unwrap();
    assert_eq!((done.work.frames, done.desired, done.updated), (0, 0, true));
    assert_eq!(service.desired_count().await.unwrap(), 0);
}

/// What a worker does through its agent when it takes (or finishes) a batch.
async fn protect(agent_uri: &str, enabled: bool) {
    let response = reqwest::Client::new()
        .put(format!("{agent_uri}/task-protection/v1/state"))
        .json(&serde_json::json!({"ProtectionEnabled": enabled, "ExpiresInMinutes": 60}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
}

fn bounds(max: u32, backlog: f64) -> ScalingBounds {
    ScalingBounds {
        min_tasks: 0,
        max_tasks: max,
        backlog_per_task: backlog,
        idle_periods: 3,
    }
}

/// A job scales the local fleet out and back in with nothing lost: the dispatcher (all its
/// loops, its scaler among them) and the supervisor's worker processes run; the fleet grows
/// past one worker while the job's batches wait, every frame is counted once, one manifest is
/// written, and the fleet goes back to zero once the work is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_scales_the_local_fleet_out_and_back_in_with_nothing_lost() {
    let mut stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let mut fleet = local_fleet::supervisor(&stack, bounds(3, 2.0))
        .await
        .unwrap();
    stack.dispatcher_settings.scaling = scaling(&stack, 2.0);
    stack.dispatcher_settings.scaling.max_tasks = 3;
    stack.start_dispatcher().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.mp4");
    make_video(&path, 96, 64, "10", 4.0).await.unwrap();
    let frames = count_frames(&path).await.unwrap();
    let id = stack
        .upload("fleet.mp4", std::fs::read(&path).unwrap())
        .await
        .unwrap();

    // The fleet acts once the dispatcher knows the whole job: its scaler has asked for more
    // than one worker before any runs, so the scale-out does not depend on timing.
    stack.wait_processing(&id).await.unwrap();
    let service = worker_service(&stack).await;
    let asked = Instant::now() + Duration::from_secs(60);
    while service.desired_count().await.unwrap() < 2 {
        assert!(
            Instant::now() < asked,
            "the dispatcher never asked for 2 workers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut stopped = 0;
    let mut finished = false;
    loop {
        assert!(Instant::now() < deadline, "the fleet never settled");
        let tick = fleet.tick().await.unwrap();
        stopped += tick.stopped;
        if !finished {
            finished = stack
                .jobs
                .get(&id)
                .await
                .unwrap()
                .is_some_and(|r| r.status.is_final());
        }
        if finished && tick.desired == 0 && tick.running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let record = stack.jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!((record.processed_frames, record.failed_frames), (frames, 0));
    assert!(
        fleet.peak() >= 2,
        "the fleet never scaled out: peak {}",
        fleet.peak()
    );
    assert_eq!(
        stopped,
        fleet.peak(),
        "every worker started was stopped as idle"
    );
    let manifest = stack.manifest(id.as_str()).await.unwrap();
    assert_eq!(
        manifest["counts"]["processed"].as_u64(),
        Some(frames),
        "{manifest}"
    );
    let edge_maps = stack
        .list(&stack.resources.processed_bucket, &format!("{id}/"))
        .await
        .unwrap();
    let manifests = edge_maps
        .iter()
        .filter(|k| k.ends_with("manifest.json"))
        .count();
    assert_eq!(manifests, 1, "{edge_maps:?}");
    fleet.stop_all().await;
}

/// Scale-in spares a busy worker: with the desired count lowered below the running workers,
/// a worker holding scale-in protection (set through its ECS agent stand-in, as the worker does
/// when it takes a batch) is left running and the idle one gets SIGTERM; once protection is
/// off, the next period stops it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_in_stops_idle_workers_only() {
    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let mut fleet = local_fleet::supervisor(&stack, bounds(3, 250.0))
        .await
        .unwrap();
    let service = worker_service(&stack).await;
    service.set_desired_count(2).await.unwrap();
    let tick = fleet.tick().await.unwrap();
    assert_eq!((tick.started, tick.running), (2, 2));
    let agents = fleet.agent_uris();
    // The older worker is busy.
    protect(&agents[0], true).await;

    service.set_desired_count(0).await.unwrap();
    let tick = fleet.tick().await.unwrap();
    assert_eq!((tick.stopped, tick.spared, tick.running), (1, 1, 1));
    assert_eq!(fleet.agent_uris(), vec![agents[0].clone()]);
    // Still busy: still spared, however many periods pass.
    let tick = fleet.tick().await.unwrap();
    assert_eq!((tick.stopped, tick.spared, tick.running), (0, 1, 1));

    protect(&agents[0], false).await;
    let tick = fleet.tick().await.unwrap();
    assert_eq!((tick.stopped, tick.spared, tick.running), (1, 0, 0));
    fleet.stop_all().await;
}
