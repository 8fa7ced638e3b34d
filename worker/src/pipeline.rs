//! Frames flow through the worker as one pipeline shared by every batch, so the cores stay busy
//! whatever the storage latency is.
//!
//! Three limits, one concern each:
//! - the **frame budget**: frames between the start of their GET and the end of their PUT,
//!   across all batches. Little's law sizes it: to keep `kernel_threads` cores computing, the
//!   worker needs `kernel_threads × (kernel + io) / kernel` frames in flight, where `io` is the
//!   mean GET + PUT time of a frame and `kernel` its mean kernel time, both measured as
//!   exponentially weighted means while the worker runs ([`frames_in_flight`]). The memory the
//!   task has bounds it ([`memory_bound`]).
//! - **admission**: one batch at a time takes frame permits, in the order batches were received,
//!   so the oldest batch finishes first and its tail (the last frames, the counting
//!   transaction, the delete) overlaps the next batch's downloads instead of every batch ending
//!   at once.
//! - **kernel slots**: at most `kernel_threads` frames run the kernel at once, so CPU work never
//!   oversubscribes the cores (and only that many decoded frames exist at a time).
//!
//! The consumer keeps [`BATCHES_AHEAD`] received batches waiting for admission, so the next
//! batch's frames are ready the moment the current one has all its permits.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::{Notify, OwnedMutexGuard, Semaphore};

/// Received batches kept waiting for admission: enough that a receive (one SQS round trip)
/// and the batch's job read finish while the batch before it is being admitted.
pub const BATCHES_AHEAD: usize = 2;

/// What one frame in flight holds beyond the kernel's own buffers: its JPEG as read, its edge
/// map as written and the SDK's and allocator's share for both. `bench-fleet` saw a worker's
/// peak RSS at 40 MiB with 8 frames in flight at 720p, 190 MiB with 81 and 325 MiB with 1024:
/// 2 MiB a frame is a bound with room for 1080p, not an estimate.
pub const DEFAULT_FRAME_MEMORY_KIB: u64 = 2048;

/// The share of the task's memory the frame budget may use; the rest is for the kernel's
/// decoded frames, the runtime and the SDK.
const MEMORY_SHARE: f64 = 0.5;

/// Most frames in flight whatever the memory: past this the worker is limited by something
/// other than latency, and more permits only hold more visibility.
pub const MAX_FRAMES_IN_FLIGHT: usize = 1024;

/// Weight of the newest sample in the running means: about the last 50 frames count.
const EWMA_WEIGHT: f64 = 0.04;

/// Until the first frames are measured: an AWS-like guess (S3 GET + PUT ≈ 100 ms, a 720p
/// frame ≈ 5 ms), high rather than low, since too many permits only cost memory.
const INITIAL_IO: Duration = Duration::from_millis(100);
const INITIAL_KERNEL: Duration = Duration::from_millis(5);

/// Frames in flight above the bare Little's-law figure: latency varies (a slow GET holds its
/// permit for its whole tail), and one frame per core waiting for a kernel slot means a core
/// never waits on a download.
const HEADROOM: f64 = 1.25;

/// How many frames must be in flight to keep `kernel_threads` cores busy when a frame spends
/// `kernel` on a core and `io` waiting on storage (Little's law: frames in flight = throughput
/// × time in the system, and the throughput wanted is `kernel_threads / kernel`), with
/// [`HEADROOM`], clamped to `min..=max`.
pub fn frames_in_flight(
    kernel_threads: usize,
    kernel: Duration,
    io: Duration,
    min: usize,
    max: usize,
) -> usize {
    let kernel_secs = kernel.as_secs_f64().max(1e-5);
    let cores = kernel_threads.max(1) as f64;
    let needed = cores * (1.0 + io.as_secs_f64() / kernel_secs) * HEADROOM + cores;
    let needed = if needed.is_finite() {
        needed.ceil() as usize
    } else {
        max
    };
    needed.clamp(min.max(1), max.max(min.max(1)))
}

/// The most frames the task's memory allows in flight: [`MEMORY_SHARE`] of `memory_bytes`
/// divided by `frame_bytes`, at least one frame per kernel thread, at most
/// [`MAX_FRAMES_IN_FLIGHT`].
pub fn memory_bound(memory_bytes: u64, frame_bytes: u64, kernel_threads: usize) -> usize {
    let frames = (memory_bytes as f64 * MEMORY_SHARE) / frame_bytes.max(1) as f64;
    (frames as usize).clamp(kernel_threads.max(1), MAX_FRAMES_IN_FLIGHT)
}

/// The memory this process may use: the cgroup's limit (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`; what ECS sets from the task's memory), else the machine's.
pub fn detected_memory_bytes() -> Option<u64> {
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| std::fs::read_to_string(path).ok())
    .filter_map(|text| text.trim().parse::<u64>().ok())
    // v1 reports "no limit" as a huge number rounded to the page size.
    .find(|&bytes| bytes < (1 << 60));
    cgroup.or_else(|| {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    })
}

/// How the pipeline is sized; built from the worker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Frames running the kernel at once (the cores to keep busy).
    pub kernel_threads: usize,
    /// `Some(n)`: exactly `n` frames in flight; `None`: sized by Little's law.
    pub fixed_frames: Option<usize>,
    /// The memory bound on frames in flight.
    pub max_frames: usize,
}

/// Running means of what a frame costs, and the frame budget they imply.
#[derive(Debug, Clone, Copy)]
struct Means {
    kernel: f64,
    io: f64,
    /// Time a frame waited for a kernel slot or for its thread to get a core.
    waited: f64,
    frames: u64,
    logged: Option<Instant>,
}

/// What one frame's kernel call measured, carried from [`Pipeline::kernel`] to the frame's own
/// bookkeeping.
#[derive(Debug, Default, Clone, Copy)]
struct KernelTiming {
    waited: Duration,
    ran: Duration,
}

tokio::task_local! {
    static FRAME_KERNEL: Cell<KernelTiming>;
}

/// The shared pipeline: one per worker process.
#[derive(Debug)]
pub struct Pipeline {
    config: PipelineConfig,
    budget: Budget,
    admission: Arc<tokio::sync::Mutex<()>>,
    kernel_slots: Semaphore,
    means: Mutex<Means>,
    waiting: AtomicUsize,
    room_ahead: Notify,
}

impl Pipeline {
    /// A pipeline sized as `config` says; auto-sized ones start from an AWS-like guess.
    pub fn new(config: PipelineConfig) -> Arc<Self> {
        let means = Means {
            kernel: INITIAL_KERNEL.as_secs_f64(),
            io: INITIAL_IO.as_secs_f64(),
            waited: 0.0,
            frames: 0,
            logged: None,
        };
        let limit = config.fixed_frames.unwrap_or_else(|| {
            frames_in_flight(
                config.kernel_threads,
                INITIAL_KERNEL,
                INITIAL_IO,
                config.kernel_threads,
                config.max_frames,
            )
        });
        Arc::new(Self {
            config,
            budget: Budget::new(limit),
            admission: Arc::new(tokio::sync::Mutex::new(())),
            kernel_slots: Semaphore::new(config.kernel_threads.max(1)),
            means: Mutex::new(means),
            waiting: AtomicUsize::new(0),
            room_ahead: Notify::new(),
        })
    }

    /// How it is sized.
    pub fn config(&self) -> PipelineConfig {
        self.config
    }

    /// The frame budget now.
    pub fn frames_in_flight(&self) -> usize {
        self.budget.limit.load(Ordering::Relaxed)
    }

    /// Mean kernel and I/O time per frame so far, for logs.
    pub fn means(&self) -> (Duration, Duration) {
        let means = *lock(&self.means);
        (
            Duration::from_secs_f64(means.kernel),
            Duration::from_secs_f64(means.io),
        )
    }

    /// A received batch now waits for admission; the ticket ends the wait when dropped or
    /// when the batch is admitted.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Ticket {
            pipeline: Some(Arc::clone(self)),
        }
    }

    /// Batches received and not yet admitted that the consumer may still add.
    pub fn room_ahead(&self) -> usize {
        BATCHES_AHEAD.saturating_sub(self.waiting.load(Ordering::Acquire))
    }

    /// Waits until fewer than [`BATCHES_AHEAD`] batches wait for admission.
    pub async fn wait_for_room_ahead(&self) {
        loop {
            let notified = self.room_ahead.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.room_ahead() > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Waits for this batch's turn to take frame permits. `ticket` (if the consumer made one)
    /// ends here: the batch no longer waits ahead.
    pub async fn admit(self: &Arc<Self>, ticket: Option<Ticket>) -> Admission {
        let turn = Arc::clone(&self.admission).lock_owned().await;
        drop(ticket);
        Admission {
            pipeline: Arc::clone(self),
            _turn: turn,
        }
    }

    /// Runs one frame (the GET, kernel and PUT of `frame`), holding its permit, and feeds
    /// what it took into the running means.
    pub async fn run_frame<T>(
        self: Arc<Self>,
        permit: FramePermit,
        frame: impl Future<Output = T>,
    ) -> T {
        let started = Instant::now();
        let (result, kernel) = FRAME_KERNEL
            .scope(Cell::new(KernelTiming::default()), async {
                let result = frame.await;
                (result, FRAME_KERNEL.with(Cell::get))
            })
            .await;
        drop(permit);
        tracing::debug!(?kernel, "frame done");
        if !kernel.ran.is_zero() {
            let io = started
                .elapsed()
                .saturating_sub(kernel.waited)
                .saturating_sub(kernel.ran);
            self.record(kernel.ran, io, kernel.waited);
        }
        result
    }

    /// Runs the kernel for one frame on the blocking pool once a kernel slot is free.
    pub async fn kernel<T, F>(&self, work: F) -> Result<T, tokio::task::JoinError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let asked = Instant::now();
        let _slot = self.kernel_slots.acquire().await;
        let waited = asked.elapsed();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let before = thread_cpu();
            let result = work();
            let cpu = thread_cpu()
                .zip(before)
                .map(|(after, before)| after.saturating_sub(before));
            (result, cpu)
        })
        .await;
        let elapsed = started.elapsed();
        // The kernel's cost is its CPU time: on a busy machine its wall time also holds the
        // time its thread waited for a core, which more frames in flight cannot shorten.
        let (result, ran) = match result {
            Ok((result, cpu)) => (Ok(result), cpu.unwrap_or(elapsed)),
            Err(error) => (Err(error), elapsed),
        };
        let waited = waited + elapsed.saturating_sub(ran);
        let _ = FRAME_KERNEL.try_with(|timing| {
            let mut t = timing.get();
            t.waited += waited;
            t.ran += ran;
            timing.set(t);
        });
        result
    }

    fn record(&self, kernel: Duration, io: Duration, waited: Duration) {
        let (kernel_mean, io_mean, waited_mean, log) = {
            let mut means = lock(&self.means);
            let weight = if means.frames < 10 {
                // The first frames replace the guess quickly.
                1.0 / (means.frames + 1) as f64
            } else {
                EWMA_WEIGHT
            };
            means.kernel += weight * (kernel.as_secs_f64() - means.kernel);
            means.io += weight * (io.as_secs_f64() - means.io);
            means.waited += weight * (waited.as_secs_f64() - means.waited);
            means.frames += 1;
            // The budget in the log every 10 s, for whoever sizes the task.
            let log = means
                .logged
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
            if log {
                means.logged = Some(Instant::now());
            }
            (means.kernel, means.io, means.waited, log)
        };
        if self.config.fixed_frames.is_none() {
            let target = frames_in_flight(
                self.config.kernel_threads,
                Duration::from_secs_f64(kernel_mean),
                Duration::from_secs_f64(io_mean),
                self.config.kernel_threads,
                self.config.max_frames,
            );
            // Frames already queue for the cores (for a kernel slot, or a core for its thread):
            // the CPU is the limit, and more frames would only lengthen the measured I/O (the
            // runtime's threads wait for a core too), which would ask for more frames again.
            let current = self.frames_in_flight();
            let saturated = waited_mean > kernel_mean / 2.0;
            let target = if saturated {
                target.min(current)
            } else {
                target
            };
            let before = self.budget.set_limit(target);
            if log || before.abs_diff(target) * 4 >= before.max(1) {
                tracing::info!(
                    frames_in_flight = target,
                    kernel_ms = kernel_mean * 1e3,
                    io_ms = io_mean * 1e3,
                    waited_ms = waited_mean * 1e3,
                    "frame budget resized"
                );
            }
        }
    }
}

/// Runs one batch's `frames` through `pipeline`: waits for the batch's turn, starts each frame
/// as a permit frees (driving the ones already running meanwhile), gives the turn up once every
/// frame has started, and returns the frames' results in order.
pub async fn run_frames<F, T>(
    pipeline: &Arc<Pipeline>,
    frames: Vec<F>,
    ticket: Option<Ticket>,
) -> Vec<T>
where
    F: Future<Output = T>,
{
    let mut running = FuturesOrdered::new();
    let mut results = Vec::with_capacity(frames.len());
    let admission = pipeline.admit(ticket).await;
    tracing::debug!(frames = frames.len(), "batch admitted");
    for frame in frames {
        let permit = loop {
            tokio::select! {
                biased;
                Some(result) = running.next(), if !running.is_empty() => results.push(result),
                permit = admission.permit() => break permit,
            }
        };
        running.push_back(Arc::clone(pipeline).run_frame(permit, frame));
    }
    drop(admission);
    tracing::debug!("every frame of the batch started");
    while let Some(result) = running.next().await {
        results.push(result);
    }
    results
}

/// A received batch waiting for admission (see [`Pipeline::ticket`]).
#[derive(Debug)]
pub struct Ticket {
    pipeline: Option<Arc<Pipeline>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.waiting.fetch_sub(1, Ordering::AcqRel);
            pipeline.room_ahead.notify_one();
        }
    }
}

/// One batch's turn to take frame permits; the next batch's turn starts when it is dropped.
#[derive(Debug)]
pub struct Admission {
    pipeline: Arc<Pipeline>,
    _turn: OwnedMutexGuard<()>,
}

impl Admission {
    /// Waits for a frame permit. Only the batch holding the turn asks, so dropping this
    /// future (to drive the batch's running frames meanwhile) loses no place in any queue.
    pub async fn permit(&self) -> FramePermit {
        self.pipeline.budget.acquire().await;
        FramePermit {
            pipeline: Arc::clone(&self.pipeline),
        }
    }
}

/// One frame in flight; its slot in the budget is freed when dropped.
#[derive(Debug)]
pub struct FramePermit {
    pipeline: Arc<Pipeline>,
}

impl Drop for FramePermit {
    fn drop(&mut self) {
        self.pipeline.budget.release();
    }
}

/// A counting limit that can change while permits are out: a lowered limit takes effect as
/// permits come back.
#[derive(Debug)]
struct Budget {
    limit: AtomicUsize,
    in_flight: AtomicUsize,
    freed: Notify,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Self {
            limit: AtomicUsize::new(limit.max(1)),
            in_flight: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Sets the limit; returns the one before.
    fn set_limit(&self, limit: usize) -> usize {
        let before = self.limit.swap(limit.max(1), Ordering::AcqRel);
        if limit > before {
            self.freed.notify_one();
        }
        before
    }

    async fn acquire(&self) {
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = self
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.limit.load(Ordering::Acquire)).then_some(n + 1)
                })
                .is_ok();
            if taken {
                return;
            }
            notified.await;
        }
    }

    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }
}

/// CPU time of the calling thread so far, from `/proc/thread-self/schedstat` (its first field
/// is the time on a CPU, in ns; "sched-stats", Linux kernel documentation); `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn littles_law_sizes_the_budget() {
        // No I/O: one frame per core running and one waiting, plus headroom.
        assert_eq!(frames_in_flight(2, MS(4), Duration::ZERO, 1, 1024), 5);
        // 60 ms of I/O per 3.5 ms frame on one core: ~18 frames to keep it busy, with headroom.
        let one = frames_in_flight(1, Duration::from_micros(3500), MS(60), 1, 1024);
        assert!((18..=26).contains(&one), "{one}");
        // Twice the cores, twice the frames.
        let two = frames_in_flight(2, Duration::from_micros(3500), MS(60), 1, 1024);
        assert!(two >= 2 * one - 1 && two <= 2 * one + 1, "{one} {two}");
        // More latency, more frames.
        assert!(frames_in_flight(2, MS(4), MS(200), 1, 1024) > two);
    }

    #[test]
    fn the_budget_stays_within_its_bounds() {
        assert_eq!(frames_in_flight(4, MS(1), MS(10_000), 4, 100), 100);
        assert_eq!(frames_in_flight(4, MS(100), Duration::ZERO, 16, 100), 16);
        // A zero kernel time (nothing measured yet) does not divide by zero.
        assert_eq!(frames_in_flight(2, Duration::ZERO, MS(50), 2, 300), 300);
        // Bounds the wrong way round: the minimum wins, never zero.
        assert_eq!(frames_in_flight(2, MS(4), MS(50), 0, 0), 1);
    }

    #[test]
    fn memory_bounds_the_budget() {
        const MIB: u64 = 1024 * 1024;
        // 2 GiB task, 1 MiB a frame: half the memory, 1024 frames.
        assert_eq!(memory_bound(2048 * MIB, MIB, 2), 1024);
        assert_eq!(memory_bound(512 * MIB, MIB, 2), 256);
        // Never below one frame per kernel thread, never above the cap.
        assert_eq!(memory_bound(MIB, MIB, 4), 4);
        assert_eq!(memory_bound(1 << 40, MIB, 2), MAX_FRAMES_IN_FLIGHT);
    }

    #[tokio::test]
    async fn the_budget_admits_up_to_its_limit_and_follows_a_new_one() {
        let pipeline = Pipeline::new(PipelineConfig {
            kernel_threads: 1,
            fixed_frames: Some(2),
            max_frames: 8,
        });
        let admission = pipeline.admit(None).await;
        let a = admission.permit().await;
        let _b = admission.permit().await;
        let third = tokio::time::timeout(MS(50), admission.permit()).await;
        assert!(third.is_err(), "a third permit beyond a limit of 2");
        drop(a);
        let _c = tokio::time::timeout(MS(1000), admission.permit())
            .await
            .expect("a freed permit is handed out");
        pipeline.budget.set_limit(3);
        let _d = tokio::time::timeout(MS(1000), admission.permit())
            .await
            .expect("a raised limit hands out more");
    }

    #[tokio::test]
    async fn batches_are_admitted_in_turn_and_tickets_count_those_waiting() {
        let pipeline = Pipeline::new(PipelineConfig {
            kernel_threads: 1,
            fixed_frames: Some(4),
            max_frames: 8,
        });
        assert_eq!(pipeline.room_ahead(), BATCHES_AHEAD);
        let first = pipeline.ticket();
        let second = pipeline.ticket();
        assert_eq!(pipeline.room_ahead(), BATCHES_AHEAD - 2);
        let turn = pipeline.admit(Some(first)).await;
        assert_eq!(pipeline.room_ahead(), BATCHES_AHEAD - 1);
        let next = tokio::time::timeout(MS(50), pipeline.admit(Some(second))).await;
        assert!(next.is_err(), "the second batch waits for the first's turn");
        // The timed-out admit dropped the second ticket with it.
        assert_eq!(pipeline.room_ahead(), BATCHES_AHEAD);
        drop(turn);
        tokio::time::timeout(MS(1000), pipeline.admit(None))
            .await
            .expect("the turn passes on");
    }

    #[tokio::test]
    async fn measured_frames_resize_an_automatic_budget() {
        let pipeline = Pipeline::new(PipelineConfig {
            kernel_threads: 2,
            fixed_frames: None,
            max_frames: 1024,
        });
        let guess = pipeline.frames_in_flight();
        for _ in 0..50 {
            pipeline.record(MS(4), Duration::ZERO, Duration::ZERO);
        }
        assert_eq!(pipeline.frames_in_flight(), 5, "from {guess}");
        for _ in 0..200 {
            pipeline.record(MS(4), MS(400), Duration::ZERO);
        }
        let grown = pipeline.frames_in_flight();
        assert!(grown > guess);
        // Frames that wait for the cores: the CPU is the limit, the budget grows no more,
        // however long the I/O looks.
        for _ in 0..200 {
            pipeline.record(MS(4), MS(400), MS(10));
        }
        assert_eq!(pipeline.frames_in_flight(), grown);
        for _ in 0..200 {
            pipeline.record(MS(4), MS(4000), MS(10));
        }
        assert_eq!(pipeline.frames_in_flight(), grown);
    }
}

#[cfg(test)]
mod flow_tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_batch_finishes_through_a_small_budget() {
        let pipeline = Pipeline::new(PipelineConfig {
            kernel_threads: 2,
            fixed_frames: None,
            max_frames: 6,
        });
        let mut batches = Vec::new();
        for b in 0..4u64 {
            let pipeline = Arc::clone(&pipeline);
            let ticket = pipeline.ticket();
            batches.push(tokio::spawn(async move {
                let p2 = Arc::clone(&pipeline);
                let frames: Vec<_> = (0..50u64)
                    .map(|i| {
                        let p = Arc::clone(&p2);
                        async move {
                            tokio::time::sleep(Duration::from_millis(2 + i % 3)).await;
                            p.kernel(move || b * 100 + i).await.unwrap()
                        }
                    })
                    .collect();
                run_frames(&pipeline, frames, Some(ticket)).await
            }));
        }
        for (b, batch) in batches.into_iter().enumerate() {
            let results = tokio::time::timeout(Duration::from_secs(20), batch)
                .await
                .expect("batch finishes")
                .unwrap();
            assert_eq!(results.len(), 50);
            assert_eq!(results[49], b as u64 * 100 + 49);
        }
        assert!(pipeline.means().0 > Duration::ZERO);
        assert_eq!(pipeline.room_ahead(), BATCHES_AHEAD);
    }
}
