"""The worker fleet of deploy/framefleet.yaml on paper: a discrete-time model (1 s steps) of
MediaConvert capture, fan-out, the frames queue, the worker tasks and the template's scaling
policy, driven by measured per-frame costs. `scripts/simulate-fleet` runs the scenarios, plots
them and explores a grid of defaults; the tests in scripts/test_fleet_sim.py pin the scaling
rules.

The scaling rules, and where they come from:

- Target tracking on backlog per task (WorkerBacklogPerTaskPolicy): Application Auto Scaling
  creates two CloudWatch alarms on the metric, a high one and a low one, and the new capacity is
  proportional, ceil(capacity x metric / target); it scales out "as fast as it can" and scales in
  only once the metric is below a threshold "usually more than 10 %" under the target ("How
  target tracking scaling for Application Auto Scaling works", Application Auto Scaling User
  Guide,
  https://docs.aws.amazon.com/autoscaling/application/userguide/target-tracking-scaling-policy-overview.html).
  For a one-minute metric the alarms it creates need 3 consecutive datapoints above the target
  (high) and 15 below 90 % of it (low), as their configuration in the CloudWatch console shows;
  all three numbers are parameters here. While an alarm stays in ALARM its action repeats every
  minute. Scale-in waits for the scale-in cooldown (300 s) after the last scale-in and for the
  scale-out cooldown (60 s) after the last scale-out; a scale-out is never blocked by the
  scale-in cooldown (TargetTrackingScalingPolicyConfiguration, Application Auto Scaling API
  Reference). With no running task the ratio has no value: target tracking "does not perform
  scaling when the specified metric has insufficient data" ("Target tracking scaling policies",
  Amazon ECS Developer Guide).
- Back to the minimum when idle (WorkerIdleAlarm/WorkerScaleToMinimumPolicy, `idle_minutes`):
  when no batch has been visible or in flight for that many one-minute datapoints
  (ApproximateNumberOfMessagesVisible + ApproximateNumberOfMessagesNotVisible = 0), the desired
  count drops to the minimum at once rather than after target tracking's 15 minutes.
- Scale from zero (WorkerScaleFromZeroAlarm/Policy): one one-minute datapoint of "batches
  visible and no task running" adds one task, then a 120 s cooldown.
- Metrics: SQS publishes ApproximateNumberOfMessagesVisible once a minute, Container Insights
  RunningTaskCount per minute; a datapoint becomes visible to the alarms `metric_delay_s` after
  its minute ends.
- Fargate: a task launched by a higher desired count starts consuming after `startup_s` (image
  pull and start, 30-60 s for a small image) and is billed from launch, per second with a
  one-minute minimum ("AWS Fargate pricing", https://aws.amazon.com/fargate/pricing/).
- Scale-in protection: the worker holds ECS task scale-in protection while batches are in
  flight, so a lower desired count stops idle tasks only; busy tasks stop when they go idle.

Per-frame cost: a frame costs `kernel_ms` of one core (the kernel bench's `edge` pipeline at
720p) plus its `glue` overhead (the worker's CPU beyond the kernel: SDK, HTTP, checksums, JSON,
runtime, as a fraction of the kernel), and the worker keeps `efficiency` of its task's vCPU busy
with that work; a frame's wall time adds the S3 GET and PUT latencies. Two schedulings:

- `pipeline` (the worker's default, worker/src/pipeline.rs): one frame budget shared by all
  batches, sized by Little's law, kernel threads x (1 + io / kernel) x 1.25 + kernel threads, and
  bounded by memory (half the task's memory at `frame_memory_mib` a frame, at most 1024); kernel
  threads are the cores the process may use, which `available_parallelism` takes from the cgroup
  CPU quota (0.5 vCPU: one thread at half a core). A busy task then does
  min(vCPU x efficiency / CPU per frame, budget / frame wall time) frames/s, the first bound
  (its CPU) unless the memory bound is small against the latency. Batches are admitted in
  turn with two received ahead, so a batch's `batch_overhead_s` (the counting transaction,
  the delete) overlaps the next batch's frames: it delays the batch's count, not the task.
- `per-batch` (the older scheduling, `worker.frame_concurrency > 0`): a task runs
  `batches_in_flight` batches at once, each with `frame_concurrency` frames in flight, and its
  vCPUs bound the total: a slot processes frames at min(frame_concurrency / frame latency,
  task CPU rate / active slots), and each batch adds `batch_overhead_s` (receive, the
  transaction, delete) to its slot's time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

MINUTE = 60

# Fargate Linux/ARM (Graviton), us-east-1, per hour (AWS Fargate pricing page).
PRICE_VCPU_HOUR = 0.03238
PRICE_GB_HOUR = 0.00356


SCHEDULINGS = ("pipeline", "per-batch")

# The worker's pipeline constants (worker/src/pipeline.rs).
BATCHES_AHEAD = 2
HEADROOM = 1.25
MEMORY_SHARE = 0.5
MAX_FRAMES_IN_FLIGHT = 1024


@dataclass(frozen=True)
class Costs:
    """What one frame, one batch and one capture cost, and how the worker schedules frames;
    every value is a parameter so the figures can be redone when a benchmark measures them."""

    kernel_ms: float = 3.7
    """CPU milliseconds of one core per 720p frame (decode, blur, Sobel, encode): `worker bench`
    `edge` on one x86_64 core; not measured on Graviton."""
    efficiency: float = 0.9
    """Share of a task's vCPU the worker keeps busy with frames (kernel and glue)."""
    glue: float = 0.45
    """CPU overhead per frame beyond the kernel, as a fraction of it (bench-fleet's
    `glue_overhead`)."""
    s3_get_ms: float = 30.0
    """Latency of one frame GET (about 90 KB) from a task in the same region."""
    s3_put_ms: float = 40.0
    """Latency of one edge-map PUT."""
    batch_overhead_s: float = 0.15
    """Receive, the DynamoDB counting transaction and the delete of one batch."""
    scheduling: str = "pipeline"
    """`pipeline` (one frame budget for all batches) or `per-batch` (the older scheduling)."""
    frame_memory_mib: float = 2.0
    """Memory one frame in flight holds (worker.frame_memory_kib), for the pipeline's bound."""
    frame_concurrency: int = 4
    """Per-batch: frames of one batch in flight at once (worker.frame_concurrency)."""
    batches_in_flight: int = 2
    """Per-batch: batches one task runs at once (worker.batches_in_flight)."""
    fps: float = 30.0
    """Frames per second of the source videos (capture rate `source`)."""
    capture_speed: float = 4.0
    """Seconds of video MediaConvert captures per second of wall time."""
    capture_overhead_s: float = 30.0
    """MediaConvert job queueing and start-up."""
    capture_concurrency: int = 20
    """MediaConvert jobs running at once on the on-demand queue."""
    fanout_messages_per_s: float = 300.0
    """Frame batches the dispatcher sends per second (SendMessageBatch, 10 a call)."""
    segment_min_s: float | None = None
    """Segmented capture, the segment length (the template's SegmentSeconds,
    `dispatcher.segment_secs`): each segment covers at least this many seconds, so an eligible
    video is captured as N = min(floor(duration / segment_min_s), max_segments, frames)
    MediaConvert jobs, each clipped to its frames (InputClippings), run at once; None: one job
    per video."""
    segment_min_duration_s: float = 0.0
    """Shortest video segmented at all (SegmentMinDurationSeconds,
    `dispatcher.segment_min_duration_secs`)."""
    max_segments: int = 16
    """Most segments one video is split into (MaxSegments); 1 turns segmentation off."""
    segments_in_flight: int = 16
    """Most MediaConvert jobs of one video running at once (the rest wait their turn)."""
    preview: str = "parts"
    """What the mandatory regular output of a segmented job becomes: `parts` (each segment
    job writes its part of the preview: no extra job; what the dispatcher does) or `full`
    (one extra full-length preview job beside the segments, which the manifest waits for)."""

    def segment_count(self, frames: int) -> int:
        """How many MediaConvert jobs capture a video of `frames` frames: the dispatcher's rule
        (dispatcher/src/timecode.rs, `plan_capture`): N = min(floor(duration / segment
        length), max_segments, frames), and one job unless duration >= the minimum duration
        and N >= 2. The model's videos are constant-rate MP4s captured at their own rate, the
        other conditions of that rule."""
        duration = frames / self.fps
        if self.segment_min_s is None or self.segment_min_s <= 0:
            return 1
        n = min(math.floor(duration / self.segment_min_s), self.max_segments, frames)
        if duration < self.segment_min_duration_s or n < 2:
            return 1
        return n

    def plan_segments(self, frames: int) -> list[int]:
        """Frames of each MediaConvert job of a video: [s_k, s_(k+1)) with s_k = floor(k F / N),
        contiguous and disjoint by construction (`plan_segments` in the dispatcher)."""
        n = self.segment_count(frames)
        starts = [k * frames // n for k in range(n + 1)]
        return [starts[k + 1] - starts[k] for k in range(n)]

    def capture_s(self, frames: int) -> float:
        """Wall time of one MediaConvert job capturing `frames` frames."""
        return frames / self.fps / self.capture_speed + self.capture_overhead_s

    def cpu_s_per_frame(self) -> float:
        """Seconds of one vCPU a frame costs, glue included."""
        return self.kernel_ms / 1000.0 * (1.0 + self.glue) / self.efficiency

    def io_s(self) -> float:
        """A frame's S3 round trips, GET and PUT."""
        return (self.s3_get_ms + self.s3_put_ms) / 1000.0

    def slot_rate(self, vcpu: float, active_slots: int) -> float:
        """Per-batch: frames per second one busy batch slot of a task processes."""
        cpu = self.cpu_s_per_frame()
        latency = self.io_s() + cpu / min(1.0, vcpu)
        io_bound = self.frame_concurrency / latency
        cpu_bound = vcpu / cpu / max(1, active_slots)
        return min(io_bound, cpu_bound)

    # -- the pipeline ---------------------------------------------------------------------
    @staticmethod
    def kernel_threads(vcpu: float) -> int:
        """The cores the worker may use: `available_parallelism` under a cgroup CPU quota is
        the quota in whole cores, at least one."""
        return max(1, math.floor(vcpu))

    def memory_bound(self, vcpu: float, memory_gb: float) -> int:
        """Most frames in flight the task's memory allows (pipeline::memory_bound)."""
        frames = int(memory_gb * 1024 * MEMORY_SHARE / self.frame_memory_mib)
        return min(max(frames, self.kernel_threads(vcpu)), MAX_FRAMES_IN_FLIGHT)

    def frame_budget(self, vcpu: float, memory_gb: float) -> int:
        """Frames in flight the worker settles on (pipeline::frames_in_flight): Little's law on
        the kernel's CPU time (what the worker measures) and the S3 round trips, with headroom,
        within the memory bound."""
        cores = self.kernel_threads(vcpu)
        kernel_s = max(self.kernel_ms / 1000.0, 1e-5)
        needed = math.ceil(cores * (1.0 + self.io_s() / kernel_s) * HEADROOM + cores)
        return min(max(needed, cores), self.memory_bound(vcpu, memory_gb))

    def pipeline_rates(self, vcpu: float, memory_gb: float) -> tuple[float, float]:
        """Pipeline: (CPU bound, frame-budget bound) on a busy task's frames per second. The
        second is Little's law the other way round: frames in flight / a frame's wall time,
        its round trips plus its CPU on a kernel thread's share of the vCPUs."""
        cpu = self.cpu_s_per_frame()
        share = min(1.0, vcpu / self.kernel_threads(vcpu))
        wall = self.io_s() + cpu / share
        return vcpu / cpu, self.frame_budget(vcpu, memory_gb) / wall

    def task_rate(self, vcpu: float, memory_gb: float, batch_size: int) -> float:
        """Frames per second of a task that always has work, batch overhead included."""
        if self.scheduling == "pipeline":
            return min(self.pipeline_rates(vcpu, memory_gb))
        slots = self.batches_in_flight
        rate = self.slot_rate(vcpu, slots)
        return slots * batch_size / (batch_size / rate + self.batch_overhead_s)

    def batches_held(self, vcpu: float, memory_gb: float, batch_size: int) -> int:
        """Batches a busy task holds received (invisible in the queue): per-batch, its slots;
        the pipeline, the batches its frame budget spans plus the two waiting ahead."""
        if self.scheduling == "pipeline":
            spanned = math.ceil(self.frame_budget(vcpu, memory_gb) / batch_size)
            return BATCHES_AHEAD + max(1, spanned)
        return self.batches_in_flight


@dataclass(frozen=True)
class Fleet:
    """The template's worker service and its scaling policy."""

    vcpu: float = 1.0
    """Worker task size (WorkerTaskDefinition Cpu / 1024)."""
    memory_gb: float | None = None
    """Task memory (WorkerTaskDefinition Memory / 1024); None: 2 GB per vCPU."""
    min_tasks: int = 0
    max_tasks: int = 20
    backlog_target: float = 60.0
    """BacklogPerTaskTarget: visible batches per running task."""
    batch_size: int = 50
    """Frames per batch (dispatcher.batch_size)."""
    startup_s: float = 45.0
    scale_out_cooldown_s: float = 60.0
    scale_in_cooldown_s: float = 300.0
    high_datapoints: int = 3
    low_datapoints: int = 15
    low_threshold_ratio: float = 0.9
    metric_delay_s: float = 60.0
    from_zero_cooldown_s: float = 120.0
    idle_minutes: int | None = None
    """With a value: the idle alarm (no batch visible or in flight for this many one-minute
    datapoints) sets the desired count to the minimum at once, instead of waiting for target
    tracking's 15-datapoint scale-in. None: target tracking alone."""
    known_work: bool = False
    """Scaling on known work: every `known_work_period_s` the dispatcher sets the desired
    count to ceil(known frames / batch size / backlog target) within [min, max], where the
    known frames are those captured and not yet done plus those of capture jobs expected to
    complete within `startup_s` (so tasks start as the frames land, not minutes after);
    queue-depth target tracking and the alarms stay as they are."""
    known_work_period_s: float = 10.0
    """How often the dispatcher recomputes the known work."""

    def task_memory_gb(self) -> float:
        """Task memory: as set, else 2 GB per vCPU, as the template pairs them."""
        return self.memory_gb if self.memory_gb is not None else 2.0 * self.vcpu


@dataclass
class Job:
    """One upload: its frames, when it arrived, captured, and finished."""

    frames: int
    arrival_s: float
    captured_s: float | None = None
    """When its last capture job completed (the whole video captured)."""
    done_frames: int = 0
    finished_s: float | None = None
    segments: list[int] = field(default_factory=list)
    """Frames of each capture job (one entry: not segmented)."""
    segments_done: int = 0
    first_captured_s: float | None = None
    """When its first capture job completed (its first frames can be fanned out)."""
    first_counted_s: float | None = None
    """When its first batch was counted: its first edge maps exist."""
    preview_done_s: float | None = None
    """With a full-length preview job: when it completed."""


@dataclass
class Capture:
    """One MediaConvert job: a video's segment (or the whole video), or its preview."""

    job: int
    frames: int
    """Frames it captures; 0 for a preview-only job."""
    seconds: float
    started_s: float | None = None


@dataclass
class Slot:
    """One batch in flight on a task."""

    job: int
    frames: int
    overhead_left_s: float
    frames_left: float


@dataclass
class Task:
    """One worker task from launch to stop."""

    launched_s: float
    running_s: float
    stopped_s: float | None = None
    slots: list[Slot] = field(default_factory=list)

    def running(self, now: float) -> bool:
        return self.stopped_s is None and now >= self.running_s

    def alive(self) -> bool:
        return self.stopped_s is None


@dataclass
class Datapoint:
    """One minute of the metrics the alarms read."""

    minute_end_s: float
    visible: int
    in_flight: int
    running_avg: float
    running_max: int

    def backlog_per_task(self) -> float | None:
        """visible / running, or None (no value) with no running task, as the metric math."""
        return self.visible / self.running_avg if self.running_avg > 0 else None


def breaching(values: list[float | None], count: int, predicate) -> bool:
    """True when the last `count` datapoints all exist and satisfy `predicate` (a missing
    datapoint does not breach)."""
    if len(values) < count:
        return False
    recent = values[-count:]
    return all(v is not None and predicate(v) for v in recent)


def target_tracking_capacity(capacity: int, metric: float, target: float) -> int:
    """The proportional capacity target tracking asks for."""
    return math.ceil(capacity * metric / target)


@dataclass
class Result:
    """Time series and totals of one run."""

    times: list[float]
    desired: list[int]
    running: list[int]
    visible: list[int]
    in_flight: list[int]
    frames_done: list[int]
    total_frames: int
    finish_s: float | None
    task_seconds: float
    vcpu: float
    memory_gb: float
    jobs: list[Job]

    def vcpu_hours(self) -> float:
        return self.task_seconds * self.vcpu / 3600.0

    def cost_usd(self) -> float:
        hours = self.task_seconds / 3600.0
        return hours * (self.vcpu * PRICE_VCPU_HOUR + self.memory_gb * PRICE_GB_HOUR)


class Simulation:
    """The fleet, second by second."""

    def __init__(self, costs: Costs, fleet: Fleet, uploads: list[tuple[float, int]]):
        self.costs, self.fleet = costs, fleet
        self.jobs = [
            Job(frames=f, arrival_s=t, segments=costs.plan_segments(f)) for t, f in sorted(uploads)
        ]
        # Capture jobs in submission order: each video's segments, then its preview job when
        # the preview is a full-length job of its own.
        self.waiting_capture: list[Capture] = []
        for i, job in enumerate(self.jobs):
            self.waiting_capture += [Capture(i, n, costs.capture_s(n)) for n in job.segments]
            if len(job.segments) > 1 and costs.preview == "full":
                self.waiting_capture.append(Capture(i, 0, costs.capture_s(job.frames)))
        self.capturing: list[Capture] = []
        self.fanout: list[tuple[int, int]] = []  # (job, frames) batches not yet sent
        self.queue: list[tuple[int, int]] = []  # visible batches, FIFO
        self.tasks: list[Task] = []
        self.desired = fleet.min_tasks
        self.datapoints: list[Datapoint] = []
        self.running_this_minute: list[int] = []
        self.last_scale_out = -math.inf
        self.last_scale_in = -math.inf
        self.last_from_zero = -math.inf
        for _ in range(fleet.min_tasks):
            # Minimum tasks are already running when the uploads arrive.
            self.tasks.append(Task(launched_s=-3600.0, running_s=-3600.0))

    # -- one second -----------------------------------------------------------------------
    def step(self, now: float, dt: float = 1.0) -> None:
        self.capture(now)
        if self.fleet.known_work and now % self.fleet.known_work_period_s < dt:
            self.scale_on_known_work(now)
        self.send_batches(dt)
        self.work(now, dt)
        self.reconcile(now)
        self.running_this_minute.append(sum(t.running(now) for t in self.tasks))
        if (now + dt) % MINUTE < dt:
            self.close_minute(now + dt)
            self.evaluate_alarms(now + dt)

    def capture(self, now: float) -> None:
        """Completes the capture jobs due by `now`, fanning out their frames, then starts
        waiting ones in order while the queue has room and their video is under its
        `segments_in_flight`."""
        c = self.costs
        for unit in [u for u in self.capturing if now >= u.started_s + u.seconds]:
            self.capturing.remove(unit)
            job = self.jobs[unit.job]
            if unit.frames == 0:
                job.preview_done_s = now
                continue
            job.segments_done += 1
            if job.first_captured_s is None:
                job.first_captured_s = now
            if job.segments_done == len(job.segments):
                job.captured_s = now
            size = self.fleet.batch_size
            self.fanout.extend(
                (unit.job, min(size, unit.frames - start)) for start in range(0, unit.frames, size)
            )
        started = []
        for unit in self.waiting_capture:
            if len(self.capturing) >= c.capture_concurrency:
                break
            if self.jobs[unit.job].arrival_s > now:
                break
            mine = sum(1 for u in self.capturing if u.job == unit.job)
            if mine >= c.segments_in_flight:
                continue
            unit.started_s = now
            self.capturing.append(unit)
            started.append(unit)
        if started:
            self.waiting_capture = [u for u in self.waiting_capture if u.started_s is None]

    def known_frames(self, now: float) -> int:
        """Frames the dispatcher knows are there to do or about to be: captured and not yet
        done, plus those of capture jobs it expects to complete within a task's start-up (it
        knows each job's frames from the probe and its progress from STATUS_UPDATE events)."""
        soon = now + self.fleet.startup_s
        known = 0
        for i, job in enumerate(self.jobs):
            if job.arrival_s > now or job.finished_s is not None:
                continue
            landing = sum(
                u.frames for u in self.capturing if u.job == i and u.started_s + u.seconds <= soon
            )
            known += max(0, self.captured_frames(i) + landing - job.done_frames)
        return known

    def captured_frames(self, job: int) -> int:
        """Frames of a video's capture jobs that have completed."""
        pending = sum(u.frames for u in self.capturing if u.job == job) + sum(
            u.frames for u in self.waiting_capture if u.job == job
        )
        return sum(self.jobs[job].segments) - pending

    def scale_on_known_work(self, now: float) -> None:
        """The dispatcher's desired count from the known work (ecs:UpdateService within the
        scalable target's bounds): up at once, and down as the work is done (busy tasks keep
        their scale-in protection)."""
        f = self.fleet
        batches = math.ceil(self.known_frames(now) / f.batch_size)
        self.desired = min(f.max_tasks, max(f.min_tasks, math.ceil(batches / f.backlog_target)))

    def send_batches(self, dt: float) -> None:
        n = int(self.costs.fanout_messages_per_s * dt)
        self.queue.extend(self.fanout[:n])
        del self.fanout[:n]

    def work(self, now: float, dt: float) -> None:
        """Each running task fills its free slots from the queue and works for `dt`; a batch
        that finishes within the step is followed by the next one with the time left, so the
        step length does not round batch times up."""
        c, f = self.costs, self.fleet
        memory = f.task_memory_gb()
        held = c.batches_held(f.vcpu, memory, f.batch_size)
        for task in self.tasks:
            if not task.running(now):
                continue
            while len(task.slots) < held and self.queue:
                task.slots.append(self.receive())
            if not task.slots:
                continue
            if c.scheduling == "pipeline":
                self.work_pipeline(task, c.task_rate(f.vcpu, memory, f.batch_size), now, dt)
            else:
                self.work_per_batch(task, c.slot_rate(f.vcpu, len(task.slots)), now, dt)

    def work_pipeline(self, task: Task, rate: float, now: float, dt: float) -> None:
        """The task's frames flow at `rate`, oldest batch first, whatever batch they belong
        to; a batch's tail (transaction, delete) overlaps the next batch's frames, so it only
        delays the batch's count."""
        budget = dt
        while task.slots and budget > 0:
            slot = task.slots[0]
            needed = slot.frames_left / rate
            if needed > budget:
                slot.frames_left -= rate * budget
                break
            budget -= needed
            task.slots.pop(0)
            self.count(slot, now + dt - budget + self.costs.batch_overhead_s)
            if self.queue:
                task.slots.append(self.receive())

    def work_per_batch(self, task: Task, rate: float, now: float, dt: float) -> None:
        """Each batch slot works through its batch at `rate`, after the batch's overhead."""
        kept = []
        for slot in task.slots:
            budget = dt
            while slot is not None and budget > 0:
                spent = min(budget, slot.overhead_left_s)
                slot.overhead_left_s -= spent
                budget -= spent
                needed = slot.frames_left / rate
                if needed > budget:
                    slot.frames_left -= rate * budget
                    budget = 0.0
                    break
                budget -= needed
                self.count(slot, now + dt - budget)
                slot = self.receive() if self.queue else None
            if slot is not None:
                kept.append(slot)
        task.slots = kept

    def receive(self) -> Slot:
        job, frames = self.queue.pop(0)
        return Slot(job, frames, self.costs.batch_overhead_s, float(frames))

    def count(self, slot: Slot, at: float) -> None:
        """The batch's frames are done; the job finishes with its last batch."""
        job = self.jobs[slot.job]
        job.done_frames += slot.frames
        if job.first_counted_s is None:
            job.first_counted_s = at
        if job.done_frames >= job.frames and job.finished_s is None:
            job.finished_s = at

    def job_end(self, job: Job) -> float | None:
        """When a job is COMPLETE: its last batch counted, and, with a full-length preview job
        of its own, that job done too (the manifest names the preview)."""
        if job.finished_s is None:
            return None
        if len(job.segments) > 1 and self.costs.preview == "full":
            if job.preview_done_s is None:
                return None
            return max(job.finished_s, job.preview_done_s)
        return job.finished_s

    def reconcile(self, now: float) -> None:
        """ECS service scheduler: launch up to the desired count; above it, cancel starting
        tasks, then stop idle ones (busy tasks hold scale-in protection)."""
        alive = [t for t in self.tasks if t.alive()]
        excess = len(alive) - self.desired
        if excess < 0:
            for _ in range(-excess):
                self.tasks.append(Task(launched_s=now, running_s=now + self.fleet.startup_s))
            return
        for task in sorted(alive, key=lambda t: -t.running_s):
            if excess <= 0:
                break
            if not task.running(now) or not task.slots:
                task.stopped_s = now
                excess -= 1

    def close_minute(self, end: float) -> None:
        running = self.running_this_minute or [0]
        self.datapoints.append(
            Datapoint(
                minute_end_s=end,
                visible=len(self.queue),
                in_flight=sum(len(t.slots) for t in self.tasks),
                running_avg=sum(running) / len(running),
                running_max=max(running),
            )
        )
        self.running_this_minute = []

    def available(self, now: float) -> list[Datapoint]:
        return [d for d in self.datapoints if d.minute_end_s + self.fleet.metric_delay_s <= now]

    def evaluate_alarms(self, now: float) -> None:
        f = self.fleet
        points = self.available(now)
        if not points:
            return
        ratios = [d.backlog_per_task() for d in points]
        if breaching(ratios, f.high_datapoints, lambda v: v > f.backlog_target):
            wanted = target_tracking_capacity(self.desired, ratios[-1], f.backlog_target)
            wanted = min(f.max_tasks, max(f.min_tasks, wanted))
            if wanted > self.desired:
                self.desired = wanted
                self.last_scale_out = now
        elif breaching(
            ratios, f.low_datapoints, lambda v: v < f.low_threshold_ratio * f.backlog_target
        ):
            cooled = (
                now - self.last_scale_in >= f.scale_in_cooldown_s
                and now - self.last_scale_out >= f.scale_out_cooldown_s
            )
            wanted = target_tracking_capacity(self.desired, ratios[-1], f.backlog_target)
            wanted = min(f.max_tasks, max(f.min_tasks, wanted))
            if cooled and wanted < self.desired:
                self.desired = wanted
                self.last_scale_in = now
        idle = [d.visible + d.in_flight == 0 for d in points]
        if (
            f.idle_minutes is not None
            and len(idle) >= f.idle_minutes
            and all(idle[-f.idle_minutes :])
            and self.desired > f.min_tasks
        ):
            self.desired = f.min_tasks
            self.last_scale_in = now
        last = points[-1]
        if (
            last.visible > 0
            and last.running_max == 0
            and now - self.last_from_zero >= f.from_zero_cooldown_s
        ):
            self.desired = min(f.max_tasks, self.desired + 1)
            self.last_from_zero = now

    # -- a whole run ------------------------------------------------------------------------
    def run(self, limit_s: float = 6 * 3600.0) -> Result:
        f = self.fleet
        series: dict[str, list] = {k: [] for k in ("t", "d", "r", "v", "i", "f")}
        now = 0.0
        finish = None
        while now < limit_s:
            self.step(now)
            now += 1.0
            series["t"].append(now)
            series["d"].append(self.desired)
            series["r"].append(sum(t.running(now) for t in self.tasks))
            series["v"].append(len(self.queue))
            series["i"].append(sum(len(t.slots) for t in self.tasks))
            series["f"].append(sum(j.done_frames for j in self.jobs))
            ends = [self.job_end(j) for j in self.jobs]
            if finish is None and all(e is not None for e in ends):
                finish = max(ends)
            alive = sum(t.alive() for t in self.tasks)
            if finish is not None and self.desired == f.min_tasks and alive == f.min_tasks:
                break
        task_seconds = 0.0
        for task in self.tasks:
            start = max(task.launched_s, 0.0)
            end = task.stopped_s if task.stopped_s is not None else now
            task_seconds += max(MINUTE, end - start) if end > start else 0.0
        return Result(
            times=series["t"],
            desired=series["d"],
            running=series["r"],
            visible=series["v"],
            in_flight=series["i"],
            frames_done=series["f"],
            total_frames=sum(j.frames for j in self.jobs),
            finish_s=finish,
            task_seconds=task_seconds,
            vcpu=f.vcpu,
            memory_gb=f.task_memory_gb(),
            jobs=self.jobs,
        )


def load_template(template_text: str) -> dict:
    """deploy/framefleet.yaml as plain data: CloudFormation short-form tags (!Ref, !Sub, ...)
    kept as their plain argument."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor(
        "!",
        lambda loader, suffix, node: loader.construct_scalar(node)
        if isinstance(node, yaml.ScalarNode)
        else None,
    )
    return yaml.load(template_text, Loader=Loader)


def template_fleet(template_text: str, dispatcher_settings_text: str) -> tuple[Fleet, int]:
    """The fleet as deploy/framefleet.yaml deploys it by default, and the worker's batches in
    flight: task size, minimum and maximum, backlog target, cooldowns, the scale-from-zero and
    idle alarms, with the batch size from the dispatcher's default (dispatcher/src/settings.rs).
    Reading them, rather than repeating them, keeps the simulation on the template."""
    import re

    template = load_template(template_text)
    parameters = template["Parameters"]
    resources = template["Resources"]

    def default(name):
        return parameters[name]["Default"]

    worker = resources["WorkerTaskDefinition"]["Properties"]
    tracking = resources["WorkerBacklogPerTaskPolicy"]["Properties"][
        "TargetTrackingScalingPolicyConfiguration"
    ]
    from_zero = resources["WorkerScaleFromZeroPolicy"]["Properties"][
        "StepScalingPolicyConfiguration"
    ]
    idle = resources.get("WorkerIdleAlarm", {}).get("Properties")
    environment = {
        e["Name"]: e["Value"]
        for e in worker["ContainerDefinitions"][0]["Environment"]
        if isinstance(e, dict)
    }
    batch_size = re.search(r"\bbatch_size: (\d+),", dispatcher_settings_text)
    if batch_size is None:
        raise ValueError("no `batch_size: N,` default in the dispatcher's settings")
    # Scaling on known work, once the template has its switch (a parameter defaulting to
    # "true"); off until then.
    known_work = str(parameters.get("ScaleOnKnownWork", {}).get("Default", "false")).lower()
    fleet = Fleet(
        vcpu=int(worker["Cpu"]) / 1024,
        memory_gb=int(worker["Memory"]) / 1024,
        min_tasks=int(default("WorkerMinTasks")),
        max_tasks=int(default("WorkerMaxTasks")),
        backlog_target=float(default("BacklogPerTaskTarget")),
        batch_size=int(batch_size.group(1)),
        scale_out_cooldown_s=float(tracking["ScaleOutCooldown"]),
        scale_in_cooldown_s=float(tracking["ScaleInCooldown"]),
        from_zero_cooldown_s=float(from_zero["Cooldown"]),
        idle_minutes=int(idle["DatapointsToAlarm"]) if idle else None,
        known_work=known_work == "true",
    )
    return fleet, int(environment.get("FRAMEFLEET__WORKER__BATCHES_IN_FLIGHT", 2))


CAPTURE_PARAMETERS = {
    "SegmentSeconds": ("segment_min_s", float),
    "SegmentMinDurationSeconds": ("segment_min_duration_s", float),
    "MaxSegments": ("max_segments", int),
    "SegmentsInFlight": ("segments_in_flight", int),
}
"""The template's segmented-capture parameters and the `Costs` field each sets."""


def template_capture(template_text: str) -> dict:
    """The capture model's settings as deploy/framefleet.yaml deploys them by default (as
    `template_fleet` reads the fleet): the four segmented-capture parameters, which the
    template passes to the dispatcher, and the preview in parts (what the dispatcher writes).
    A CaptureRate other than `source` samples frames, which the dispatcher never segments;
    a template without the parameters (before segmented capture) captures one job a video.
    Returns `Costs` fields to replace."""
    parameters = load_template(template_text)["Parameters"]
    if "SegmentSeconds" not in parameters:
        return {"segment_min_s": None}
    settings = {
        field_name: kind(parameters[name]["Default"])
        for name, (field_name, kind) in CAPTURE_PARAMETERS.items()
    }
    settings["preview"] = "parts"
    if str(parameters.get("CaptureRate", {}).get("Default", "source")) != "source":
        settings["segment_min_s"] = None
    return settings


def bench_costs(text: str) -> dict[str, float]:
    """Per-frame costs measured by `scripts/bench-fleet`, from what it printed: its last JSON
    line (the summary) gives `glue`, the S3 latencies (mean: fixed plus tail x probability)
    and, with `efficiency_of_available_cpu`, the share of the CPU the worker kept busy
    (that efficiency x (1 + glue), at most 1); the kernel bench's `edge` line, when the file
    has it, gives `kernel_ms`. Raises ValueError naming what is missing."""
    import json

    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if not lines:
        raise ValueError("no JSON line: not the output of scripts/bench-fleet")
    summary = lines[-1]

    def number(value, name):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"the last JSON line has no number `{name}`")
        return float(value)

    latency = summary.get("latency") or {}
    tail = float(latency.get("tail_ms") or 0) * float(latency.get("tail_probability") or 0)
    glue = number(summary.get("glue_overhead"), "glue_overhead")
    costs = {
        "glue": glue,
        "s3_get_ms": number(latency.get("get_ms"), "latency.get_ms") + tail,
        "s3_put_ms": number(latency.get("put_ms"), "latency.put_ms") + tail,
    }
    available = summary.get("efficiency_of_available_cpu")
    if isinstance(available, (int, float)) and available > 0:
        costs["efficiency"] = min(1.0, available * (1.0 + glue))
    edge = [l["ms_per_frame"] for l in lines if l.get("pipeline") == "edge"]
    if edge:
        costs["kernel_ms"] = number(edge[-1], "ms_per_frame")
    return costs


def simulate(costs: Costs, fleet: Fleet, uploads: list[tuple[float, int]]) -> Result:
    """Runs one scenario to completion and back to the minimum fleet."""
    return Simulation(costs, fleet, uploads).run()


def long_video(frames: int = 65_000) -> list[tuple[float, int]]:
    """One upload of `frames` frames at t = 0."""
    return [(0.0, frames)]


def burst(uploads: int = 100, frames: int = 1_800, over_s: float = 60.0) -> list[tuple[float, int]]:
    """`uploads` uploads of `frames` frames each, spread evenly over `over_s` seconds."""
    return [(i * over_s / uploads, frames) for i in range(uploads)]


__all__ = [
    "SCHEDULINGS",
    "Costs",
    "Fleet",
    "Result",
    "Simulation",
    "bench_costs",
    "breaching",
    "load_template",
    "burst",
    "long_video",
    "replace",
    "simulate",
    "target_tracking_capacity",
    "template_capture",
    "template_fleet",
]
