"""The scaling rules of scripts/fleet_sim.py, one at a time, the task's frame rate under
both schedulings, the bench figures it reads, and one whole run.

    python3 -m unittest discover -s scripts -p 'test_*.py'
"""

import os
import unittest

import fleet_sim as sim

HERE = os.path.dirname(os.path.abspath(__file__))


def read(*path):
    with open(os.path.join(HERE, "..", *path), encoding="utf-8") as f:
        return f.read()


def template_defaults():
    """Costs and fleet as deploy/framefleet.yaml deploys them by default, as simulate-fleet
    reads them."""
    template = read("deploy", "framefleet.yaml")
    fleet, _ = sim.template_fleet(template, read("dispatcher", "src", "settings.rs"))
    return sim.replace(sim.Costs(), **sim.template_capture(template)), fleet


def minute(end_s, visible, running, in_flight=0):
    return sim.Datapoint(
        minute_end_s=end_s,
        visible=visible,
        in_flight=in_flight,
        running_avg=running,
        running_max=running,
    )


def fleet_with(points, desired, **fleet):
    """A simulation whose metrics are `points` (one a minute, ending at 60, 120, ...)."""
    s = sim.Simulation(sim.Costs(), sim.Fleet(**fleet), uploads=[])
    s.desired = desired
    s.datapoints = [minute(60 * (i + 1), v, r) for i, (v, r) in enumerate(points)]
    return s


def evaluate_after(s, minutes):
    """Evaluates the alarms once all `minutes` datapoints are visible (the delay has passed)."""
    now = 60 * minutes + s.fleet.metric_delay_s
    s.evaluate_alarms(now)
    return now


class TargetTracking(unittest.TestCase):
    def test_scale_out_needs_three_consecutive_datapoints_above_target(self):
        # 600 visible over 2 tasks = 300 per task, target 60.
        s = fleet_with([(600, 2)] * 2, desired=2, backlog_target=60)
        evaluate_after(s, 2)
        self.assertEqual(s.desired, 2)
        s = fleet_with([(600, 2)] * 3, desired=2, backlog_target=60)
        evaluate_after(s, 3)
        # Proportional: ceil(2 x 300 / 60).
        self.assertEqual(s.desired, 10)

    def test_one_datapoint_below_target_resets_the_count(self):
        s = fleet_with([(600, 2), (60, 2), (600, 2), (600, 2)], desired=2, backlog_target=60)
        evaluate_after(s, 4)
        self.assertEqual(s.desired, 2)

    def test_scale_out_is_bounded_by_the_maximum(self):
        s = fleet_with([(10_000, 1)] * 3, desired=1, backlog_target=60, max_tasks=20)
        evaluate_after(s, 3)
        self.assertEqual(s.desired, 20)

    def test_scale_in_needs_fifteen_datapoints_below_ninety_percent_of_target(self):
        # 20 per task: below 0.9 x 60.
        s = fleet_with([(200, 10)] * 14, desired=10, backlog_target=60)
        evaluate_after(s, 14)
        self.assertEqual(s.desired, 10)
        s = fleet_with([(200, 10)] * 15, desired=10, backlog_target=60)
        evaluate_after(s, 15)
        self.assertEqual(s.desired, 4)  # ceil(10 x 20 / 60)
        # 57 per task is below the target but above the low alarm's threshold (54).
        s = fleet_with([(570, 10)] * 15, desired=10, backlog_target=60)
        evaluate_after(s, 15)
        self.assertEqual(s.desired, 10)

    def test_scale_in_waits_for_its_cooldown(self):
        s = fleet_with([(200, 10)] * 15, desired=10, backlog_target=60)
        now = 60 * 15 + s.fleet.metric_delay_s
        s.last_scale_in = now - 120
        s.evaluate_alarms(now)
        self.assertEqual(s.desired, 10)

    def test_no_running_task_is_no_datapoint(self):
        # The ratio has no value: target tracking neither scales out nor in...
        s = fleet_with([(600, 0)] * 15, desired=0, backlog_target=60)
        evaluate_after(s, 15)
        # ...but the scale-from-zero alarm adds exactly one task, then waits its cooldown.
        self.assertEqual(s.desired, 1)
        s.evaluate_alarms(60 * 15 + s.fleet.metric_delay_s + 60)
        self.assertEqual(s.desired, 1)
        s.evaluate_alarms(60 * 15 + s.fleet.metric_delay_s + 120)
        self.assertEqual(s.desired, 2)

    def test_datapoints_reach_the_alarms_only_after_the_metric_delay(self):
        s = fleet_with([(600, 2)] * 3, desired=2, backlog_target=60, metric_delay_s=90)
        s.evaluate_alarms(60 * 3 + 60)
        self.assertEqual(s.desired, 2)
        s.evaluate_alarms(60 * 3 + 90)
        self.assertEqual(s.desired, 10)


class IdleAlarm(unittest.TestCase):
    def test_nothing_visible_or_in_flight_for_its_datapoints_goes_back_to_the_minimum(self):
        s = fleet_with([(0, 8)] * 2, desired=8, idle_minutes=3, min_tasks=1)
        evaluate_after(s, 2)
        self.assertEqual(s.desired, 8)
        s = fleet_with([(0, 8)] * 3, desired=8, idle_minutes=3, min_tasks=1)
        evaluate_after(s, 3)
        self.assertEqual(s.desired, 1)

    def test_batches_in_flight_are_not_idle(self):
        s = fleet_with([], desired=8, idle_minutes=3)
        s.datapoints = [minute(60 * (i + 1), 0, 8, in_flight=3) for i in range(3)]
        evaluate_after(s, 3)
        self.assertEqual(s.desired, 8)


class ScaleInProtection(unittest.TestCase):
    def test_a_lower_desired_count_stops_only_idle_tasks(self):
        s = sim.Simulation(sim.Costs(), sim.Fleet(), uploads=[])
        busy = sim.Task(launched_s=0, running_s=0, slots=[sim.Slot(0, 50, 0, 50.0)])
        idle = sim.Task(launched_s=0, running_s=0)
        s.tasks = [busy, idle]
        s.desired = 0
        s.reconcile(now=100)
        self.assertIsNone(busy.stopped_s)
        self.assertEqual(idle.stopped_s, 100)
        busy.slots.clear()
        s.reconcile(now=101)
        self.assertEqual(busy.stopped_s, 101)

    def test_a_higher_desired_count_launches_tasks_that_start_after_the_startup_time(self):
        s = sim.Simulation(sim.Costs(), sim.Fleet(startup_s=45), uploads=[])
        s.desired = 3
        s.reconcile(now=10)
        self.assertEqual(len(s.tasks), 3)
        self.assertFalse(any(t.running(54) for t in s.tasks))
        self.assertTrue(all(t.running(55) for t in s.tasks))


class TaskRate(unittest.TestCase):
    """A busy task's frames/s: the pipeline's from its CPU unless its frame budget is short."""

    def test_the_pipeline_is_cpu_bound_at_aws_like_latency(self):
        costs = sim.Costs(kernel_ms=3.7, glue=0.45, efficiency=0.9, s3_get_ms=30, s3_put_ms=40)
        cpu_s = 3.7e-3 * 1.45 / 0.9
        for vcpu in (0.5, 1.0, 2.0):
            with self.subTest(vcpu=vcpu):
                rate = costs.task_rate(vcpu, 2.0 * vcpu, batch_size=50)
                self.assertAlmostEqual(rate, vcpu / cpu_s)
                cpu, budget = costs.pipeline_rates(vcpu, 2.0 * vcpu)
                self.assertGreater(budget, 2 * cpu)
        # Twice the vCPUs, twice the frames: no round trip in the way.
        self.assertAlmostEqual(
            costs.task_rate(2.0, 4.0, 50), 4 * costs.task_rate(0.5, 1.0, 50)
        )

    def test_the_frame_budget_is_the_workers(self):
        costs = sim.Costs(kernel_ms=3.7, s3_get_ms=30, s3_put_ms=40)
        # pipeline::frames_in_flight: ceil(cores x (1 + 70 / 3.7) x 1.25 + cores).
        self.assertEqual(costs.kernel_threads(0.5), 1)
        self.assertEqual(costs.frame_budget(0.5, 1.0), 26)
        self.assertEqual(costs.kernel_threads(2.0), 2)
        self.assertEqual(costs.frame_budget(2.0, 4.0), 52)
        # pipeline::memory_bound: half the memory at 2 MiB a frame, at most 1024.
        self.assertEqual(costs.memory_bound(0.5, 1.0), 256)
        self.assertEqual(costs.memory_bound(2.0, 8.0), 1024)

    def test_a_tiny_task_is_bound_by_its_frame_budget(self):
        # 64 MiB: 16 frames in flight, each 1 s of round trips plus its CPU at half a core.
        costs = sim.Costs(s3_get_ms=500, s3_put_ms=500)
        self.assertEqual(costs.frame_budget(0.5, 0.0625), 16)
        wall = 1.0 + costs.cpu_s_per_frame() / 0.5
        self.assertAlmostEqual(costs.task_rate(0.5, 0.0625, 50), 16 / wall)
        self.assertLess(costs.task_rate(0.5, 0.0625, 50), costs.pipeline_rates(0.5, 0.0625)[0])

    def test_huge_latency_is_bound_by_the_memory(self):
        # 10 s a frame of round trips: Little's law asks for far more than 1 GB's 256 frames.
        costs = sim.Costs(s3_get_ms=5_000, s3_put_ms=5_000)
        self.assertEqual(costs.frame_budget(0.5, 1.0), 256)
        wall = 10.0 + costs.cpu_s_per_frame() / 0.5
        self.assertAlmostEqual(costs.task_rate(0.5, 1.0, 50), 256 / wall)

    def test_per_batch_is_unchanged(self):
        # The older model's figures, with its old cost estimates.
        costs = sim.Costs(kernel_ms=3.5, glue=0.10, efficiency=0.9, scheduling="per-batch")
        self.assertAlmostEqual(costs.task_rate(0.5, 1.0, 50), 88.3436, places=3)
        self.assertAlmostEqual(costs.task_rate(1.0, 2.0, 50), 92.7238, places=3)
        wider = sim.replace(costs, batches_in_flight=4)
        self.assertAlmostEqual(wider.task_rate(2.0, 4.0, 50), 185.4475, places=3)

    def test_the_pipeline_overlaps_batch_overhead(self):
        """Ten batches on one running task: the pipeline takes their frames' time and one
        batch tail; per-batch adds each batch's overhead to its slot."""
        for scheduling in sim.SCHEDULINGS:
            with self.subTest(scheduling=scheduling):
                costs = sim.Costs(scheduling=scheduling, batches_in_flight=1, batch_overhead_s=1.0)
                fleet = sim.Fleet(vcpu=0.5, batch_size=50)
                s = sim.Simulation(costs, fleet, uploads=[(0.0, 500)])
                s.jobs[0].captured_s = 0.0
                s.waiting_capture.clear()
                s.queue = [(0, 50)] * 10
                s.tasks = [sim.Task(launched_s=0, running_s=0)]
                now = 0.0
                while s.jobs[0].finished_s is None and now < 600:
                    s.work(now, 1.0)
                    now += 1.0
                if scheduling == "pipeline":
                    expected = 500 / costs.task_rate(0.5, 1.0, 50) + 1.0
                else:
                    expected = 10 * (1.0 + 50 / costs.slot_rate(0.5, 1))
                self.assertAlmostEqual(s.jobs[0].finished_s, expected, places=6)


BENCH_OUTPUT = """\
   Compiling framefleet-e2e
{"pipeline":"edge","frames":132,"ms_per_frame":3.712,"fps":269.4}
{"pipeline":"edge-parallel","frames":132,"ms_per_frame":1.9,"fps":526.3}
{"run":"pipeline@aws","fps":180.0,"glue_overhead":0.44}
{"bench":"fleet","efficiency":0.39,"glue_overhead":0.44,"efficiency_of_available_cpu":0.66,"latency":{"get_ms":20,"put_ms":40,"tail_ms":100,"tail_probability":0.05},"cores":2.0}
"""


class BenchFigures(unittest.TestCase):
    def test_the_summary_and_the_kernel_line_give_the_costs(self):
        costs = sim.bench_costs(BENCH_OUTPUT)
        self.assertEqual(costs["glue"], 0.44)
        # Mean latency: 5 % of calls take 100 ms more.
        self.assertAlmostEqual(costs["s3_get_ms"], 25.0)
        self.assertAlmostEqual(costs["s3_put_ms"], 45.0)
        self.assertEqual(costs["kernel_ms"], 3.712)
        self.assertAlmostEqual(costs["efficiency"], 0.66 * 1.44)

    def test_without_the_kernel_line_the_kernel_is_left_alone(self):
        summary = BENCH_OUTPUT.splitlines()[-2:]
        costs = sim.bench_costs("\n".join(summary))
        self.assertNotIn("kernel_ms", costs)

    def test_other_output_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, "no JSON line"):
            sim.bench_costs("error: could not compile\n")
        with self.assertRaisesRegex(ValueError, "glue_overhead"):
            sim.bench_costs('{"bench":"fleet","latency":{"get_ms":20,"put_ms":40}}')


class WholeRun(unittest.TestCase):
    def test_every_frame_is_done_once_and_the_fleet_returns_to_its_minimum(self):
        fleet = sim.Fleet(vcpu=0.5, max_tasks=10, idle_minutes=3)
        result = sim.simulate(sim.Costs(), fleet, sim.burst(uploads=5, frames=900))
        self.assertEqual(result.frames_done[-1], 5 * 900)
        self.assertIsNotNone(result.finish_s)
        self.assertEqual(result.desired[-1], 0)
        # Billed: at least one minute per task launched, at 0.5 vCPU.
        self.assertGreater(result.vcpu_hours(), 0.5 / 60)

    def test_the_template_is_what_the_simulation_runs(self):
        with open(os.path.join(HERE, "..", "deploy", "framefleet.yaml"), encoding="utf-8") as f:
            template = f.read()
        with open(
            os.path.join(HERE, "..", "dispatcher", "src", "settings.rs"), encoding="utf-8"
        ) as f:
            settings = f.read()
        fleet, slots = sim.template_fleet(template, settings)
        self.assertEqual((fleet.vcpu, fleet.memory_gb), (2.0, 4.0))
        self.assertEqual((fleet.min_tasks, fleet.max_tasks), (0, 10))
        self.assertEqual(fleet.backlog_target, 250)
        self.assertEqual(fleet.batch_size, 50)
        self.assertEqual((fleet.scale_out_cooldown_s, fleet.scale_in_cooldown_s), (60, 300))
        self.assertEqual(fleet.idle_minutes, 3)
        self.assertEqual(slots, 2)


class SegmentedCapture(unittest.TestCase):
    def test_the_plan_partitions_the_frames_contiguously(self):
        costs = sim.Costs(segment_min_s=120, max_segments=16, fps=30)
        for frames in (65_000, 16 * 4_000 - 1, 16 * 4_000, 16 * 4_000 + 1, 7_201):
            with self.subTest(frames=frames):
                plan = costs.plan_segments(frames)
                self.assertEqual(sum(plan), frames)
                self.assertLessEqual(max(plan) - min(plan), 1)
        # 36 min: 18 segments of two minutes, capped at 16.
        self.assertEqual(len(costs.plan_segments(65_000)), 16)
        # 5 min: two whole segments of at least two minutes.
        self.assertEqual(len(costs.plan_segments(9_000)), 2)

    def test_eligibility_is_the_dispatchers(self):
        # plan_capture: N = min(floor(duration / segment), max_segments, frames), and one job
        # unless duration >= the minimum duration and N >= 2.
        costs = sim.Costs(segment_min_s=120, segment_min_duration_s=600, fps=30)
        # 5 min: two whole segments, but under the minimum duration.
        self.assertEqual(costs.plan_segments(30 * 300), [30 * 300])
        self.assertEqual(costs.plan_segments(30 * 599), [30 * 599])
        self.assertEqual(len(costs.plan_segments(30 * 600)), 5)
        # No minimum duration: still two whole segments at least.
        costs = sim.replace(costs, segment_min_duration_s=0)
        self.assertEqual(costs.plan_segments(30 * 240 - 1), [30 * 240 - 1])
        self.assertEqual(costs.plan_segments(30 * 240), [30 * 120, 30 * 120])
        # The minimum duration below two segments does not segment shorter videos.
        costs = sim.replace(costs, segment_min_s=200, segment_min_duration_s=240)
        self.assertEqual(costs.plan_segments(30 * 300), [30 * 300])
        # max_segments 1 turns it off.
        self.assertEqual(sim.replace(costs, max_segments=1).plan_segments(65_000), [65_000])
        # Never more segments than frames.
        sparse = sim.Costs(segment_min_s=120, fps=0.005)
        self.assertEqual(sparse.plan_segments(3), [1, 1, 1])

    def test_short_videos_keep_one_job(self):
        costs = sim.Costs(segment_min_s=120, fps=30)
        # Below twice the minimum: one job, so a burst of short clips does not starve the
        # queue's concurrent jobs.
        self.assertEqual(costs.plan_segments(30 * 239), [30 * 239])
        self.assertEqual(sim.Costs().plan_segments(65_000), [65_000])

    def test_a_video_runs_at_most_its_segments_in_flight(self):
        costs = sim.Costs(segment_min_s=60, max_segments=8, segments_in_flight=3)
        s = sim.Simulation(costs, sim.Fleet(), uploads=[(0.0, 30 * 600)])
        s.capture(0.0)
        self.assertEqual(len(s.capturing), 3)
        self.assertEqual(len(s.waiting_capture), 5)

    def test_segments_fan_out_as_each_completes(self):
        costs = sim.Costs(segment_min_s=60, max_segments=4, capture_overhead_s=0)
        s = sim.Simulation(costs, sim.Fleet(batch_size=50), uploads=[(0.0, 30 * 240)])
        s.capture(0.0)
        s.capturing[0].seconds = 1.0  # the first segment lands early
        s.capture(1.0)
        self.assertEqual(s.jobs[0].first_captured_s, 1.0)
        self.assertIsNone(s.jobs[0].captured_s)
        self.assertEqual(sum(n for _, n in s.fanout), 30 * 60)

    def test_a_full_length_preview_job_holds_the_manifest(self):
        for preview, slower in (("parts", False), ("full", True)):
            with self.subTest(preview=preview):
                costs = sim.Costs(segment_min_s=120, preview=preview)
                fleet = sim.Fleet(vcpu=2.0, max_tasks=10, backlog_target=250, known_work=True)
                result = sim.simulate(costs, fleet, sim.long_video())
                job = result.jobs[0]
                if slower:
                    # The preview encodes the whole video at capture speed.
                    self.assertGreaterEqual(result.finish_s, job.preview_done_s)
                    self.assertGreater(result.finish_s, job.finished_s)
                else:
                    self.assertIsNone(job.preview_done_s)
                    self.assertEqual(result.finish_s, job.finished_s)


class TemplateCapture(unittest.TestCase):
    def test_the_template_is_what_the_capture_model_runs(self):
        capture = sim.template_capture(read("deploy", "framefleet.yaml"))
        self.assertEqual(
            capture,
            {
                "segment_min_s": 120.0,
                "segment_min_duration_s": 240.0,
                "max_segments": 16,
                "segments_in_flight": 16,
                "preview": "parts",
            },
        )

    def test_the_dispatcher_gets_the_parameters_the_model_reads(self):
        """The four parameters reach the dispatcher's container as its settings' environment
        names, so what the model reads is what the dispatcher segments by."""
        template = sim.load_template(read("deploy", "framefleet.yaml"))
        dispatcher = template["Resources"]["DispatcherTaskDefinition"]["Properties"]
        container = next(
            c for c in dispatcher["ContainerDefinitions"] if c["Name"] == "dispatcher"
        )
        environment = {
            e["Name"]: e["Value"] for e in container["Environment"] if isinstance(e, dict)
        }
        expected = {
            "FRAMEFLEET__DISPATCHER__SEGMENT_SECS": "SegmentSeconds",
            "FRAMEFLEET__DISPATCHER__SEGMENT_MIN_DURATION_SECS": "SegmentMinDurationSeconds",
            "FRAMEFLEET__DISPATCHER__MAX_SEGMENTS": "MaxSegments",
            "FRAMEFLEET__DISPATCHER__SEGMENTS_IN_FLIGHT": "SegmentsInFlight",
        }
        self.assertEqual(set(expected.values()), set(sim.CAPTURE_PARAMETERS))
        for name, parameter in expected.items():
            with self.subTest(name=name):
                # `!Ref Parameter`, kept as its argument by the loader.
                self.assertEqual(environment.get(name), parameter)
        self.assertEqual(template["Parameters"]["MaxSegments"]["MaxValue"], 99)

    def test_a_template_without_segments_or_sampling_frames_captures_one_job(self):
        template = read("deploy", "framefleet.yaml")
        before = template.replace("  SegmentSeconds:\n", "  UnusedSeconds:\n")
        self.assertNotEqual(before, template)
        self.assertEqual(sim.template_capture(before), {"segment_min_s": None})
        sampled = template.replace("    Default: source\n", "    Default: \"5\"\n")
        self.assertNotEqual(sampled, template)
        self.assertIsNone(sim.template_capture(sampled)["segment_min_s"])


class KnownWork(unittest.TestCase):
    def test_the_desired_count_follows_the_known_frames(self):
        fleet = sim.Fleet(batch_size=50, backlog_target=250, max_tasks=10, known_work=True)
        s = sim.Simulation(sim.Costs(), fleet, uploads=[(0.0, 65_000)])
        s.jobs[0].captured_s = 0.0
        s.waiting_capture.clear()
        s.scale_on_known_work(0.0)
        self.assertEqual(s.desired, 6)  # ceil(1,300 batches / 250)
        s.jobs[0].done_frames = 65_000 - 100
        s.scale_on_known_work(10.0)
        self.assertEqual(s.desired, 1)
        s.jobs[0].done_frames = 65_000
        s.jobs[0].finished_s = 20.0
        s.scale_on_known_work(20.0)
        self.assertEqual(s.desired, 0)

    def test_frames_landing_within_a_task_start_count_and_later_ones_do_not(self):
        costs = sim.Costs(capture_overhead_s=0)
        fleet = sim.Fleet(batch_size=50, backlog_target=10, max_tasks=100, startup_s=45)
        s = sim.Simulation(costs, sim.replace(fleet, known_work=True), uploads=[(0.0, 3_000)])
        s.capture(0.0)  # one job of 3,000 frames: 25 s at 4x real time
        s.capturing[0].seconds = 100.0
        s.scale_on_known_work(0.0)
        self.assertEqual(s.desired, 0)
        s.scale_on_known_work(60.0)  # lands at 100 s, within 45 s of start-up
        self.assertEqual(s.desired, 6)  # ceil(60 batches / 10)

    def test_it_is_bounded_by_the_template(self):
        fleet = sim.Fleet(batch_size=50, backlog_target=10, max_tasks=4, min_tasks=1)
        s = sim.Simulation(sim.Costs(), sim.replace(fleet, known_work=True), [(0.0, 65_000)])
        s.jobs[0].captured_s = 0.0
        s.waiting_capture.clear()
        s.scale_on_known_work(0.0)
        self.assertEqual(s.desired, 4)


class LongVideoInMinutes(unittest.TestCase):
    """Issue 21's targets on the model: the template's fleet (2 vCPU, 0-10 tasks, target 250),
    capture at 4x real time with 30 s of job start-up, 45 s of Fargate start-up."""

    def fleet(self, known_work):
        return sim.Fleet(
            vcpu=2.0, memory_gb=4.0, max_tasks=10, backlog_target=250, idle_minutes=3,
            known_work=known_work,
        )

    def test_segments_and_known_work_take_the_long_video_to_minutes(self):
        today = sim.simulate(sim.Costs(), self.fleet(False), sim.long_video())
        costs = sim.Costs(segment_min_s=120, max_segments=16, segments_in_flight=16)
        both = sim.simulate(costs, self.fleet(True), sim.long_video())
        self.assertGreater(today.finish_s, 14 * 60)
        self.assertLessEqual(both.finish_s, 3 * 60)
        self.assertLessEqual(both.jobs[0].first_counted_s, 90)
        self.assertLessEqual(both.vcpu_hours(), 1.5 * today.vcpu_hours())

    def test_the_template_defaults_meet_the_targets(self):
        """Issue 21's targets with what deploy/framefleet.yaml deploys: the long video in 3
        minutes at most, its first edge maps within 90 s, at most 1.5x today's vCPU-hours;
        the burst of one-minute clips no slower than today (one job each)."""
        costs, fleet = template_defaults()
        long_video = sim.simulate(costs, fleet, sim.long_video())
        self.assertEqual(len(long_video.jobs[0].segments), 16)
        today = sim.simulate(sim.Costs(), self.fleet(False), sim.long_video())
        self.assertLessEqual(long_video.finish_s, 3 * 60)
        self.assertLessEqual(long_video.jobs[0].first_counted_s, 90)
        self.assertLessEqual(long_video.vcpu_hours(), 1.5 * today.vcpu_hours())
        burst = sim.simulate(costs, fleet, sim.burst())
        self.assertTrue(all(len(j.segments) == 1 for j in burst.jobs))
        today = sim.simulate(sim.Costs(), self.fleet(False), sim.burst())
        self.assertLessEqual(burst.finish_s, today.finish_s)
        # Pinned figures (seconds; vCPU-hours), to notice when the model or the template moves.
        pinned = (
            (long_video.jobs[0].first_counted_s, 65.3),
            (long_video.finish_s, 97.4),
            (long_video.vcpu_hours(), 0.26),
            (burst.finish_s, 261.5),
            (burst.vcpu_hours(), 0.70),
        )
        for got, expected in pinned:
            self.assertAlmostEqual(got, expected, delta=0.05)

    def test_the_burst_is_not_slower(self):
        today = sim.simulate(sim.Costs(), self.fleet(False), sim.burst())
        costs = sim.Costs(segment_min_s=120, max_segments=16, segments_in_flight=16)
        both = sim.simulate(costs, self.fleet(True), sim.burst())
        self.assertLessEqual(both.finish_s, today.finish_s)
        # One-minute clips stay one job each.
        self.assertTrue(all(len(j.segments) == 1 for j in both.jobs))


if __name__ == "__main__":
    unittest.main()
