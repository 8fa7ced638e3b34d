//! The template's queue-depth scaling rules (deploy/framefleet.yaml, `WorkerScalableTarget`
//! and its policies and alarms), as pure functions of what the queue and the fleet look like
//! each period.
//!
//! On AWS, Application Auto Scaling and the dispatcher's scaler both write the service's one
//! desired count; so does this: [`QueueRules::apply`] returns the desired count the rules
//! would set, or `None` to leave the current one (which the dispatcher may have set).
//!
//! - Scale from zero (`WorkerScaleFromZeroPolicy`): batches visible and no task running, and
//!   a desired count of 0: one task.
//! - Target tracking (`WorkerBacklogPerTaskPolicy`): with tasks running, visible batches per
//!   running task above the target raises the desired count to `ceil(visible / target)`. Its
//!   own scale-in (15 minutes below the target on AWS) is left out: the idle alarm scales in.
//! - The idle alarm (`WorkerIdleAlarm` → `WorkerScaleToMinimumPolicy`): nothing visible or in
//!   flight for `idle_periods` periods in a row sets the minimum.

/// The scalable target's bounds and the target tracking policy's target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingBounds {
    /// `WorkerMinTasks`.
    pub min_tasks: u32,
    /// `WorkerMaxTasks`.
    pub max_tasks: u32,
    /// `BacklogPerTaskTarget`: visible batches per running task.
    pub backlog_per_task: f64,
    /// Periods with nothing visible or in flight before the idle alarm fires (3 one-minute
    /// datapoints on AWS).
    pub idle_periods: u32,
}

/// What the rules see in one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// The service's desired count now.
    pub desired: u32,
    /// Worker tasks running.
    pub running: u32,
    /// `ApproximateNumberOfMessagesVisible` of the frames queue.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible` of the frames queue.
    pub in_flight: u64,
}

/// The rules' state across periods (the idle alarm's datapoints).
#[derive(Debug, Clone)]
pub struct QueueRules {
    bounds: ScalingBounds,
    idle_streak: u32,
}

impl QueueRules {
    /// Rules with these bounds, no datapoints yet.
    pub fn new(bounds: ScalingBounds) -> Self {
        Self {
            bounds,
            idle_streak: 0,
        }
    }

    /// The bounds.
    pub fn bounds(&self) -> ScalingBounds {
        self.bounds
    }

    /// The desired count the rules set this period, or `None` to leave it.
    pub fn apply(&mut self, seen: Observation) -> Option<u32> {
        let b = self.bounds;
        if seen.visible == 0 && seen.in_flight == 0 {
            self.idle_streak = self.idle_streak.saturating_add(1);
        } else {
            self.idle_streak = 0;
        }
        let mut desired = seen.desired;
        if self.idle_streak >= b.idle_periods.max(1) {
            desired = b.min_tasks;
        } else if seen.running == 0 {
            if seen.visible > 0 && desired == 0 {
                desired = 1;
            }
        } else {
            let wanted = (seen.visible as f64 / b.backlog_per_task).ceil();
            let wanted = if wanted.is_finite() {
                wanted.min(f64::from(b.max_tasks)) as u32
            } else {
                b.max_tasks
            };
            desired = desired.max(wanted);
        }
        // Application Auto Scaling keeps what it sets within the scalable target's bounds.
        let desired = desired.clamp(b.min_tasks, b.max_tasks.max(b.min_tasks));
        (desired != seen.desired).then_some(desired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(min: u32, max: u32, backlog: f64, idle: u32) -> QueueRules {
        QueueRules::new(ScalingBounds {
            min_tasks: min,
            max_tasks: max,
            backlog_per_task: backlog,
            idle_periods: idle,
        })
    }

    fn seen(desired: u32, running: u32, visible: u64, in_flight: u64) -> Observation {
        Observation {
            desired,
            running,
            visible,
            in_flight,
        }
    }

    #[test]
    fn scale_from_zero_starts_one_task_for_waiting_batches() {
        let mut r = rules(0, 10, 4.0, 3);
        assert_eq!(r.apply(seen(0, 0, 0, 0)), None);
        assert_eq!(r.apply(seen(0, 0, 100, 0)), Some(1));
        // Already asked for: nothing more until tasks run.
        assert_eq!(r.apply(seen(1, 0, 100, 0)), None);
    }

    #[test]
    fn target_tracking_raises_to_backlog_over_target_within_the_maximum() {
        let mut r = rules(0, 10, 4.0, 3);
        assert_eq!(r.apply(seen(1, 1, 9, 2)), Some(3));
        assert_eq!(r.apply(seen(3, 3, 9, 2)), None);
        assert_eq!(r.apply(seen(3, 3, 1000, 2)), Some(10));
        // It never lowers a count the dispatcher set higher.
        assert_eq!(r.apply(seen(8, 2, 4, 2)), None);
    }

    #[test]
    fn the_idle_alarm_sets_the_minimum_after_its_periods() {
        let mut r = rules(1, 10, 4.0, 3);
        assert_eq!(r.apply(seen(5, 5, 0, 0)), None);
        assert_eq!(r.apply(seen(5, 5, 0, 0)), None);
        assert_eq!(r.apply(seen(5, 5, 0, 0)), Some(1));
        // Work in flight resets the datapoints.
        let mut r = rules(0, 10, 4.0, 2);
        assert_eq!(r.apply(seen(5, 5, 0, 0)), None);
        assert_eq!(r.apply(seen(5, 5, 0, 3)), None);
        assert_eq!(r.apply(seen(5, 5, 0, 0)), None);
        assert_eq!(r.apply(seen(5, 5, 0, 0)), Some(0));
    }

    #[test]
    fn a_desired_count_outside_the_bounds_is_brought_inside() {
        let mut r = rules(2, 4, 4.0, 3);
        assert_eq!(r.apply(seen(0, 0, 0, 1)), Some(2));
        assert_eq!(r.apply(seen(9, 4, 0, 1)), Some(4));
    }
}
