"""The scaling rules of scripts/fleet_sim.py, one at a time, and one whole run.

    python3 -m unittest discover -s scripts -p 'test_*.py'
"""

import os
import unittest

import fleet_sim as sim

HERE = os.path.dirname(os.path.abspath(__file__))


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
        self.assertEqual(fleet.vcpu, 0.5)
        self.assertEqual((fleet.min_tasks, fleet.max_tasks), (0, 40))
        self.assertEqual(fleet.backlog_target, 60)
        self.assertEqual(fleet.batch_size, 50)
        self.assertEqual((fleet.scale_out_cooldown_s, fleet.scale_in_cooldown_s), (60, 300))
        self.assertEqual(fleet.idle_minutes, 3)
        self.assertEqual(slots, 2)


if __name__ == "__main__":
    unittest.main()
