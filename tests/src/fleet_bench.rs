//! `bench-fleet`: one real worker process against a real S3 protocol server (`s3s-fs`, fast
//! enough not to be the bottleneck) behind the [`crate::fault_proxy`] adding AWS-like latency
//! per S3 operation, with moto for SQS and DynamoDB, measured against the kernel alone on the
//! same frames and the same cores (`worker bench` edge and edge-parallel).
//!
//! Each run registers a job in PROCESSING, puts every batch on the queue, starts a worker and,
//! from the moment it logs that it started, waits for the job to be COMPLETE. Frames/s
//! is the job's frames over that time (so the last batch's tail, transaction and manifest
//! count), and the worker's CPU is read from `/proc/<pid>/stat` over the same time, as is the
//! CPU of everything else the bench runs (moto, s3s-fs, this process with the proxy) and of
//! the whole machine. Every scheduling runs at every latency in one process run, in turn.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_s3::primitives::ByteStream;
use framefleet_core::aws::AwsClients;
use framefleet_core::config::Resources;
use framefleet_core::jobs::{BatchPlan, JobRecord, JobStatus, JobTable};
use framefleet_core::message::{FrameBatch, OutputLayout, FRAME_BATCH_VERSION};
use framefleet_core::queue::Queue;
use framefleet_core::video::VideoId;
use framefleet_edge::EdgeParams;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::fault_proxy::{FaultPlan, FaultProxy, Latency, Service};
use crate::moto::{free_port, MotoServer};

/// What to run; see `scripts/bench-fleet`.
#[derive(Debug, Clone)]
pub struct FleetBenchArgs {
    /// The release `worker` binary.
    pub worker: PathBuf,
    /// The `s3s-fs` binary.
    pub s3s_fs: PathBuf,
    /// Folder of `.jpg` frames.
    pub frames: PathBuf,
    /// Each frame is uploaded this many times under distinct keys.
    pub copies: usize,
    /// Frames per batch (the dispatcher's default is 50).
    pub batch_size: usize,
    /// AWS-like latency of a GetObject and a PutObject, and the tail some calls get.
    pub get: Duration,
    /// See `get`.
    pub put: Duration,
    /// Extra latency of the unlucky calls.
    pub tail: Duration,
    /// Share of calls that get the tail.
    pub tail_probability: f64,
    /// Rounds of every run; the best round of each run is reported.
    pub rounds: usize,
}

/// A scheduling to measure: the worker settings that select it.
struct Scheduling {
    name: &'static str,
    env: Vec<(&'static str, &'static str)>,
    /// The output layout the batches ask for (per-frame objects unless said).
    layout: OutputLayout,
}

fn schedulings() -> Vec<Scheduling> {
    vec![
        Scheduling {
            name: "per-batch",
            // The scheduling before the pipeline: two batches, four frames each.
            env: vec![
                ("FRAMEFLEET__WORKER__BATCHES_IN_FLIGHT", "2"),
                ("FRAMEFLEET__WORKER__FRAME_CONCURRENCY", "4"),
            ],
            layout: OutputLayout::Objects,
        },
        Scheduling {
            name: "pipeline",
            env: vec![],
            layout: OutputLayout::Objects,
        },
        Scheduling {
            // One PUT per batch instead of one per frame (`dispatcher.output_layout = packed`).
            name: "pipeline-packed",
            env: vec![],
            layout: OutputLayout::Packed,
        },
        Scheduling {
            // The frame hot path's GET and PUT without the SDK's orchestration
            // (worker/src/direct_s3.rs).
            name: "pipeline-direct",
            env: vec![("FRAMEFLEET__WORKER__S3_CLIENT", "direct")],
            layout: OutputLayout::Objects,
        },
        Scheduling {
            name: "pipeline-packed-direct",
            env: vec![("FRAMEFLEET__WORKER__S3_CLIENT", "direct")],
            layout: OutputLayout::Packed,
        },
        Scheduling {
            // What SigV4-signing every PUT body costs (a SHA-256 of each edge map): the
            // worker sends them as UNSIGNED-PAYLOAD unless told to sign.
            name: "pipeline-signed-payloads",
            env: vec![("FRAMEFLEET__WORKER__SIGN_S3_PAYLOADS", "true")],
            layout: OutputLayout::Objects,
        },
        Scheduling {
            // What the SDK's default S3 checksums cost (a CRC of every PUT body, a check of
            // every GET answer that carries one): the SDK's own switches turn them down to
            // the operations that require them.
            name: "pipeline-checksums-when-required",
            env: vec![
                ("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required"),
                ("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required"),
            ],
            layout: OutputLayout::Objects,
        },
        Scheduling {
            // Both: with no checksum the body is what SigV4 would sign.
            name: "pipeline-checksums-when-required-signed-payloads",
            env: vec![
                ("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required"),
                ("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required"),
                ("FRAMEFLEET__WORKER__SIGN_S3_PAYLOADS", "true"),
            ],
            layout: OutputLayout::Objects,
        },
    ]
}

/// When the worker logged that it wrote the manifest (the job COMPLETE), from the timestamp of
/// that JSON log line.
fn completed_at(log_path: &Path) -> Option<std::time::SystemTime> {
    let log = std::fs::read_to_string(log_path).ok()?;
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("job COMPLETE"))
        })?;
    let at = time::OffsetDateTime::parse(
        line["timestamp"].as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    Some(std::time::SystemTime::from(at))
}

/// CPU seconds a process used so far (user + system, all threads), from `/proc/<pid>/stat`.
fn process_cpu(pid: u32, ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 3 is the first after the name.
    (field(11) + field(12)) / ticks
}

/// Busy CPU seconds of the whole machine so far, from `/proc/stat`.
fn machine_busy(ticks: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    (total - idle) / ticks
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// `s3s-fs` serving `root` on a free port, killed on drop.
struct S3Server {
    endpoint: String,
    child: Child,
}

impl S3Server {
    async fn start(binary: &Path, root: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "test", "--secret-key", "test"])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            if Instant::now() > deadline {
                bail!("s3s-fs did not listen on {address}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            endpoint: format!("http://{address}"),
            child,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }
}

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    scheduling: &'static str,
    latency: &'static str,
    frames: usize,
    seconds: f64,
    worker_cpu: f64,
    aux_cpu: f64,
    /// The same, per party: this process (the fault proxy), s3s-fs, moto.
    aux_split: [f64; 3],
    machine_cpu: f64,
    peak_rss_mib: f64,
    frames_in_flight: Option<u64>,
    /// CPU seconds the worker's kernel calls took, as the job's usage counted them (the thread
    /// CPU time of each call on the blocking pool).
    kernel_cpu: f64,
}

impl Run {
    fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds
    }
}

/// The bench: everything started, frames uploaded.
struct Bench {
    args: FleetBenchArgs,
    moto: MotoServer,
    s3: S3Server,
    /// s3s-fs's folder: a folder per bucket, a file per object.
    store: PathBuf,
    resources: Resources,
    jobs: JobTable,
    sqs: aws_sdk_sqs::Client,
    keys: Vec<String>,
    ticks: f64,
    logs: Logs,
}

/// Where the workers' logs go.
enum Logs {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Logs {
    fn path(&self) -> &Path {
        match self {
            Logs::Temporary(dir) => dir.path(),
            Logs::Kept(path) => path,
        }
    }
}

/// Runs the bench and prints one JSON line per run, then the summary as the last line.
pub async fn run(args: FleetBenchArgs) -> anyhow::Result<()> {
    let ticks = clock_ticks();
    let logs = tempfile::Builder::new()
        .prefix("bench-fleet-logs")
        .tempdir()?;
    // `BENCH_FLEET_KEEP_LOGS=1` keeps the workers' logs for a look afterwards.
    let logs = if std::env::var_os("BENCH_FLEET_KEEP_LOGS").is_some() {
        let kept = logs.keep();
        eprintln!("bench-fleet: worker logs in {}", kept.display());
        Logs::Kept(kept)
    } else {
        Logs::Temporary(logs)
    };
    let store = tempfile::tempdir()?;
    let moto = MotoServer::start().await?;
    let s3 = S3Server::start(&args.s3s_fs, store.path()).await?;
    let prefix = format!("bench{:x}", std::process::id());
    let resources = crate::resources_named(&prefix);
    let plain = AwsClients::from_config(&crate::sdk_config(moto.endpoint()), true, None);
    framefleet_provision::provision(
        &plain,
        &framefleet_provision::ProvisionSettings {
            resources: resources.clone(),
            ..Default::default()
        },
    )
    .await
    .context("provisioning moto")?;
    let s3_client = AwsClients::from_config(&crate::sdk_config(&s3.endpoint), true, None).s3;
    for bucket in [&resources.frames_bucket, &resources.processed_bucket] {
        s3_client
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .with_context(|| format!("creating bucket {bucket} on s3s-fs"))?;
    }
    let keys = upload_frames(&s3_client, &resources.frames_bucket, &args).await?;
    eprintln!(
        "bench-fleet: {} frames on s3s-fs at {}, moto at {}",
        keys.len(),
        s3.endpoint,
        moto.endpoint()
    );
    let bench = Bench {
        jobs: JobTable::new(plain.dynamodb.clone(), &resources.jobs_table),
        sqs: plain.sqs.clone(),
        args,
        moto,
        s3,
        store: store.path().to_path_buf(),
        resources,
        keys,
        ticks,
        logs,
    };
    let kernel = bench.kernel_reference()?;
    let edge_ms = kernel.0;
    let parallel_fps = kernel.1;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let aws = FaultPlan::seeded(7)
        .latency_on(
            Service::S3,
            "GetObject",
            Latency {
                fixed: bench.args.get,
                tail: bench.args.tail,
                tail_probability: bench.args.tail_probability,
            },
        )
        .latency_on(
            Service::S3,
            "PutObject",
            Latency {
                fixed: bench.args.put,
                tail: bench.args.tail,
                tail_probability: bench.args.tail_probability,
            },
        );
    let plans = [("aws", aws), ("0ms", FaultPlan::seeded(7))];
    let mut best: Vec<Run> = Vec::new();
    let mut number = 0;
    for round in 0..bench.args.rounds {
        for (latency, plan) in &plans {
            let proxy = FaultProxy::start(&bench.s3.endpoint, plan.clone()).await?;
            for scheduling in schedulings() {
                number += 1;
                let run = bench
                    .run_once(number, &scheduling, latency, &proxy)
                    .await
                    .with_context(|| format!("run {} at {latency}", scheduling.name))?;
                let line = run_json(&run, edge_ms, parallel_fps, cores, round);
                println!("{line}");
                match best
                    .iter_mut()
                    .find(|b| b.scheduling == run.scheduling && b.latency == run.latency)
                {
                    Some(b) if b.fps() >= run.fps() => {}
                    Some(b) => *b = run,
                    None => best.push(run),
                }
            }
        }
    }
    let find = |scheduling: &str, latency: &str| {
        best.iter()
            .find(|r| r.scheduling == scheduling && r.latency == latency)
            .map(|r| run_json(r, edge_ms, parallel_fps, cores, 0))
            .unwrap_or_default()
    };
    let new_aws = find("pipeline", "aws");
    let packed_aws = find("pipeline-packed", "aws");
    let direct_aws = find("pipeline-direct", "aws");
    let packed_direct_aws = find("pipeline-packed-direct", "aws");
    let old_aws = find("per-batch", "aws");
    let new_0 = find("pipeline", "0ms");
    let old_0 = find("per-batch", "0ms");
    let ratio = |a: &Value, b: &Value| {
        round3(a["fps"].as_f64().unwrap_or(0.0) / b["fps"].as_f64().unwrap_or(f64::NAN))
    };
    let summary = json!({
        "bench": "fleet",
        "efficiency": new_aws["efficiency"],
        "glue_overhead": new_aws["glue_overhead"],
        "efficiency_of_available_cpu": new_aws["efficiency_of_available_cpu"],
        "kernel_in_worker_over_edge": new_aws["kernel_in_worker_over_edge"],
        "glue_beyond_kernel_calls": new_aws["glue_beyond_kernel_calls"],
        "packed_aws": {
            "efficiency": packed_aws["efficiency"],
            "glue_overhead": packed_aws["glue_overhead"],
            "glue_beyond_kernel_calls": packed_aws["glue_beyond_kernel_calls"],
        },
        "direct_aws": {
            "efficiency": direct_aws["efficiency"],
            "glue_overhead": direct_aws["glue_overhead"],
            "glue_beyond_kernel_calls": direct_aws["glue_beyond_kernel_calls"],
        },
        "packed_direct_aws": {
            "efficiency": packed_direct_aws["efficiency"],
            "glue_overhead": packed_direct_aws["glue_overhead"],
            "glue_beyond_kernel_calls": packed_direct_aws["glue_beyond_kernel_calls"],
        },
        "latency": {
            "get_ms": bench.args.get.as_millis() as u64,
            "put_ms": bench.args.put.as_millis() as u64,
            "tail_ms": bench.args.tail.as_millis() as u64,
            "tail_probability": bench.args.tail_probability,
        },
        "cores": cores,
        "frames": bench.keys.len(),
        "batch_size": bench.args.batch_size,
        "pipeline_over_per_batch_aws": ratio(&new_aws, &old_aws),
        "pipeline_over_per_batch_0ms": ratio(&new_0, &old_0),
        "at_0ms": {
            "efficiency": new_0["efficiency"],
            "glue_overhead": new_0["glue_overhead"],
            "efficiency_of_available_cpu": new_0["efficiency_of_available_cpu"],
        },
        "per_batch_aws": {
            "efficiency": old_aws["efficiency"],
            "glue_overhead": old_aws["glue_overhead"],
        },
        "per_batch_0ms": {
            "efficiency": old_0["efficiency"],
            "glue_overhead": old_0["glue_overhead"],
        },
    });
    println!("{summary}");
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A run as JSON: its ratios, and the CPU each party used, in cores (CPU seconds per second).
fn run_json(run: &Run, edge_ms: f64, parallel_fps: f64, cores: f64, round: usize) -> Value {
    let cpu_ms_per_frame = run.worker_cpu * 1e3 / run.frames as f64;
    let kernel_ms_in_worker = run.kernel_cpu * 1e3 / run.frames as f64;
    let aux_cores = run.aux_cpu / run.seconds;
    let others_cores = ((run.machine_cpu - run.worker_cpu - run.aux_cpu) / run.seconds).max(0.0);
    // What the worker could have had: the cores less what the bench's own servers and other
    // processes on the machine took meanwhile.
    let available = (cores - aux_cores - others_cores).max(0.1);
    json!({
        "run": format!("{}@{}", run.scheduling, run.latency),
        "round": round,
        "frames": run.frames,
        "fps": round3(run.fps()),
        "efficiency": round3(run.fps() / parallel_fps),
        "efficiency_of_available_cpu": round3(run.fps() / (parallel_fps * available / cores)),
        "glue_overhead": round3((cpu_ms_per_frame - edge_ms) / edge_ms),
        // The same CPU split inside the worker: its kernel calls' own CPU time against the
        // reference (how much slower the kernel runs beside the I/O), and everything else the
        // worker did, as a fraction of those kernel calls.
        "kernel_ms_in_worker": round3(kernel_ms_in_worker),
        "kernel_in_worker_over_edge": round3(kernel_ms_in_worker / edge_ms),
        "glue_beyond_kernel_calls": round3(
            (cpu_ms_per_frame - kernel_ms_in_worker) / kernel_ms_in_worker
        ),
        "worker_cpu_cores": round3(run.worker_cpu / run.seconds),
        "aux_cpu_cores": round3(aux_cores),
        "proxy_s3s_moto_cpu_cores": run.aux_split.map(|c| round3(c / run.seconds)),
        "other_cpu_cores": round3(others_cores),
        "worker_peak_rss_mib": round3(run.peak_rss_mib),
        "frames_in_flight": run.frames_in_flight,
        "kernel_ms_per_frame": round3(edge_ms),
        "edge_parallel_fps": round3(parallel_fps),
    })
}

/// Uploads every frame `copies` times under distinct names.
async fn upload_frames(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    args: &FleetBenchArgs,
) -> anyhow::Result<Vec<String>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&args.frames)
        .with_context(|| format!("reading {}", args.frames.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("no .jpg frames in {}", args.frames.display());
    }
    let mut uploads = Vec::new();
    for copy in 0..args.copies {
        for (index, path) in paths.iter().enumerate() {
            let key = format!("bench/clip.{:07}.jpg", copy * paths.len() + index + 1);
            uploads.push((key, path.clone()));
        }
    }
    let keys: Vec<String> = uploads.iter().map(|(k, _)| k.clone()).collect();
    // Sixteen uploads at a time.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for (key, path) in uploads {
        let s3 = s3.clone();
        let bucket = bucket.to_string();
        let slot = slots.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let _slot = slot;
            let body = tokio::fs::read(&path).await?;
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(ByteStream::from(body))
                .send()
                .await
                .with_context(|| format!("uploading {key}"))?;
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(keys)
}

impl Bench {
    /// The kernel alone on the same frames: ms per frame on one core (`edge`) and frames/s on
    /// every core (`edge-parallel`), from `worker bench`.
    fn kernel_reference(&self) -> anyhow::Result<(f64, f64)> {
        let output = std::process::Command::new(&self.args.worker)
            .args(["bench", "--json", "--only", "edge,edge-parallel"])
            .args(["--passes", "5", "--seconds", "4", "--frames"])
            .arg(&self.args.frames)
            .output()
            .context("running worker bench")?;
        if !output.status.success() {
            bail!(
                "worker bench failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let mut edge_ms = None;
        let mut parallel_fps = None;
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            println!("{line}");
            let value: Value = serde_json::from_str(line)?;
            match value["pipeline"].as_str() {
                Some("edge") => edge_ms = value["ms_per_frame"].as_f64(),
                Some("edge-parallel") => parallel_fps = value["fps"].as_f64(),
                _ => {}
            }
        }
        match (edge_ms, parallel_fps) {
            (Some(e), Some(p)) => Ok((e, p)),
            _ => bail!("worker bench printed no edge / edge-parallel figures"),
        }
    }

    async fn run_once(
        &self,
        number: usize,
        scheduling: &Scheduling,
        latency: &'static str,
        proxy: &FaultProxy,
    ) -> anyhow::Result<Run> {
        let video_id = VideoId::from_raw(format!("bench-{number}-{}", scheduling.name));
        let batches: Vec<String> = self
            .keys
            .chunks(self.args.batch_size)
            .enumerate()
            .map(|(index, keys)| {
                FrameBatch {
                    version: FRAME_BATCH_VERSION,
                    video_id: video_id.clone(),
                    batch_index: index as u32,
                    frames_bucket: self.resources.frames_bucket.clone(),
                    frame_keys: keys.to_vec(),
                    params: EdgeParams::default(),
                    layout: scheduling.layout,
                    first_index: None,
                }
                .to_body()
            })
            .collect();
        self.jobs
            .register(&JobRecord::new(
                video_id.clone(),
                &self.resources.ingress_bucket,
                "bench.mp4",
                "etag",
                0,
            ))
            .await?;
        let plan = BatchPlan {
            batch_size: self.args.batch_size,
            params: EdgeParams::default(),
            last_frame: None,
            layout: scheduling.layout,
        };
        self.jobs
            .start_processing(
                &video_id,
                "bench",
                self.keys.len() as u64,
                batches.len() as u64,
                &plan,
            )
            .await?;
        // A queue per run: the long poll of the worker stopped after the run before is still
        // open in moto and would take the first batch sent to a shared queue.
        let frames_queue = format!("{}-{number}", self.resources.frames_queue);
        let url = self
            .sqs
            .create_queue()
            .queue_name(&frames_queue)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "300",
            )
            .send()
            .await?
            .queue_url
            .unwrap_or_default();
        Queue::new(self.sqs.clone(), url)
            .send_all(&batches, None, 8)
            .await?;
        let log_path = self
            .logs
            .path()
            .join(format!("worker-{number}-{}.log", scheduling.name));
        let log = std::fs::File::create(&log_path)?;
        let r = &self.resources;
        let mut worker = Command::new(&self.args.worker)
            .env("AWS_ENDPOINT_URL", self.moto.endpoint())
            .env("AWS_ENDPOINT_URL_S3", proxy.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("FRAMEFLEET__RESOURCES__INGRESS_BUCKET", &r.ingress_bucket)
            .env("FRAMEFLEET__RESOURCES__FRAMES_BUCKET", &r.frames_bucket)
            .env(
                "FRAMEFLEET__RESOURCES__PROCESSED_BUCKET",
                &r.processed_bucket,
            )
            .env("FRAMEFLEET__RESOURCES__INGRESS_QUEUE", &r.ingress_queue)
            .env(
                "FRAMEFLEET__RESOURCES__JOB_EVENTS_QUEUE",
                &r.job_events_queue,
            )
            .env("FRAMEFLEET__RESOURCES__FRAMES_QUEUE", &frames_queue)
            .env("FRAMEFLEET__RESOURCES__JOBS_TABLE", &r.jobs_table)
            .env("FRAMEFLEET__WORKER__SCALE_IN_PROTECTION", "false")
            .env("FRAMEFLEET__TELEMETRY__LOG_FORMAT", "json")
            .envs(scheduling.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting the worker")?;
        let pid = worker.id().unwrap_or_default();
        // The clock starts when the worker is ready (its settings read, its queue resolved).
        let ready_by = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("worker started")
        {
            if Instant::now() > ready_by {
                bail!("the worker did not start; log: {}", log_path.display());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let aux_pids = [std::process::id(), self.s3.pid(), self.moto.pid()];
        let split = |ticks| aux_pids.map(|p| process_cpu(p, ticks));
        let aux = |ticks| split(ticks).iter().sum::<f64>();
        let split0 = split(self.ticks);
        let (worker0, aux0, machine0) = (
            process_cpu(pid, self.ticks),
            aux(self.ticks),
            machine_busy(self.ticks),
        );
        let started = Instant::now();
        let started_at = std::time::SystemTime::now();
        let deadline = started + Duration::from_secs(600);
        let kernel_cpu = loop {
            let record = self.jobs.get(&video_id).await?;
            match record.as_ref().map(|r| r.status) {
                Some(JobStatus::Complete) => {
                    break record.map_or(0.0, |r| r.usage.worker_cpu_ms as f64 / 1e3)
                }
                Some(JobStatus::Failed | JobStatus::Canceled) => bail!("the job did not complete"),
                _ if Instant::now() > deadline => bail!("the job took over 600 s"),
                // Polled slowly: moto's CPU is the bench's, not the worker's. The time the
                // job completed comes from the worker's log below.
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            if let Ok(Some(status)) = worker.try_wait() {
                bail!("the worker exited ({status}); log: {}", log_path.display());
            }
        };
        let seconds = completed_at(&log_path)
            .and_then(|at| at.duration_since(started_at).ok())
            .map_or_else(|| started.elapsed().as_secs_f64(), |d| d.as_secs_f64());
        let run = Run {
            scheduling: scheduling.name,
            latency,
            frames: self.keys.len(),
            seconds,
            worker_cpu: process_cpu(pid, self.ticks) - worker0,
            aux_cpu: aux(self.ticks) - aux0,
            aux_split: {
                let now = split(self.ticks);
                [0, 1, 2].map(|i| now[i] - split0[i])
            },
            machine_cpu: machine_busy(self.ticks) - machine0,
            peak_rss_mib: peak_rss_mib(pid),
            frames_in_flight: None,
            kernel_cpu,
        };
        let _ = worker.start_kill();
        let _ = worker.wait().await;
        // A run's outputs are not read again: removed, so that many runs and rounds do not
        // fill the disk (s3s-fs keeps a bucket as a folder).
        let _ = std::fs::remove_dir_all(
            self.store
                .join(&self.resources.processed_bucket)
                .join(video_id.as_str()),
        );
        let frames_in_flight = std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v["frames_in_flight"].as_u64());
        Ok(Run {
            frames_in_flight,
            ..run
        })
    }
}
