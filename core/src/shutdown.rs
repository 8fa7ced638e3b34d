//! Turns SIGTERM and SIGINT into a cancelled [`CancellationToken`], so every loop stops between
//! receives and in-flight work drains within the container's stop timeout.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled on the first SIGTERM or SIGINT.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the service");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Time kept back from the stop timeout for what follows the drain: stopping or handing back
/// the work the drain gave up on (one ChangeMessageVisibility each, at once), flushing
/// telemetry, exiting.
pub const EXIT_MARGIN: Duration = Duration::from_secs(10);

/// Longest stop timeout Fargate allows ("stopTimeout", Amazon ECS task definition parameters,
/// <https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html#container_definition_timeout>:
/// SIGKILL follows SIGTERM after it, at most 120 s on Fargate).
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// How a service spends the time between SIGTERM and the SIGKILL that follows after the
/// container's stop timeout: the receive under way finishes (a long poll, at most
/// `receive_wait`), in-flight work gets `drain`, and [`EXIT_MARGIN`] is left for the rest.
/// Built from the stop timeout, so the one number the task definition sets is the one the
/// service plans with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopBudget {
    /// The container's stop timeout.
    pub stop_timeout: Duration,
    /// The longest a receive under way at SIGTERM takes to finish.
    pub receive_wait: Duration,
    /// Grace for in-flight work.
    pub drain: Duration,
    /// Whether the receive finishes before the drain starts (the dispatcher, which handles
    /// what that receive returns) or alongside it (the worker, which hands it back at once).
    pub receive_then_drain: bool,
}

impl StopBudget {
    /// The budget of a service that finishes its receive first, then drains: the drain is
    /// what is left of `stop_timeout` after the receive and the margin, or `drain` when given
    /// (non-zero) and it fits. The error says what does not fit.
    pub fn receive_then_drain(
        stop_timeout: Duration,
        receive_wait: Duration,
        drain: Duration,
    ) -> Result<Self, String> {
        Self::fit(stop_timeout, receive_wait, drain, true)
    }

    /// The budget of a service whose receive finishes alongside the drain: the drain is what
    /// is left of `stop_timeout` after the margin, or `drain` when given (non-zero) and it fits.
    pub fn receive_alongside_drain(
        stop_timeout: Duration,
        receive_wait: Duration,
        drain: Duration,
    ) -> Result<Self, String> {
        Self::fit(stop_timeout, receive_wait, drain, false)
    }

    fn fit(
        stop_timeout: Duration,
        receive_wait: Duration,
        drain: Duration,
        receive_then_drain: bool,
    ) -> Result<Self, String> {
        if stop_timeout > MAX_STOP_TIMEOUT {
            return Err(format!(
                "stop timeout {} s is above Fargate's maximum of {} s",
                stop_timeout.as_secs(),
                MAX_STOP_TIMEOUT.as_secs()
            ));
        }
        let before_drain = if receive_then_drain {
            receive_wait
        } else {
            Duration::ZERO
        };
        let room = stop_timeout
            .checked_sub(before_drain + EXIT_MARGIN)
            .filter(|room| !room.is_zero() && receive_wait + EXIT_MARGIN <= stop_timeout)
            .ok_or_else(|| {
                format!(
                    "stop timeout {} s leaves no time to drain after a {} s receive and the {} s \
                     exit margin",
                    stop_timeout.as_secs(),
                    receive_wait.as_secs(),
                    EXIT_MARGIN.as_secs()
                )
            })?;
        if drain > room {
            return Err(format!(
                "a drain of {} s does not fit in the stop timeout of {} s (at most {} s)",
                drain.as_secs(),
                stop_timeout.as_secs(),
                room.as_secs()
            ));
        }
        Ok(Self {
            stop_timeout,
            receive_wait,
            drain: if drain.is_zero() { room } else { drain },
            receive_then_drain,
        })
    }

    /// The longest the service takes from SIGTERM to exit.
    pub fn worst_case(&self) -> Duration {
        let before_exit = if self.receive_then_drain {
            self.receive_wait + self.drain
        } else {
            self.receive_wait.max(self.drain)
        };
        before_exit + EXIT_MARGIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_budget_fits_the_stop_timeout() {
        // The dispatcher in the template: 60 s, 20 s long polls, then the drain.
        let dispatcher = StopBudget::receive_then_drain(S(60), S(20), S(0)).unwrap();
        assert_eq!(dispatcher.drain, S(30));
        assert_eq!(dispatcher.worst_case(), S(60));
        // The worker: 120 s; its receive finishes alongside the drain.
        let worker = StopBudget::receive_alongside_drain(S(120), S(20), S(0)).unwrap();
        assert_eq!(worker.drain, S(110));
        assert_eq!(worker.worst_case(), S(120));
        // A drain asked for is kept when it fits.
        let short = StopBudget::receive_then_drain(S(60), S(2), S(10)).unwrap();
        assert_eq!((short.drain, short.worst_case()), (S(10), S(22)));
        for stop in 1..=120 {
            for wait in 1..=20 {
                for budget in [
                    StopBudget::receive_then_drain(S(stop), S(wait), S(0)),
                    StopBudget::receive_alongside_drain(S(stop), S(wait), S(0)),
                ]
                .into_iter()
                .flatten()
                {
                    assert!(budget.worst_case() <= S(stop), "{budget:?}");
                    assert!(!budget.drain.is_zero(), "{budget:?}");
                }
            }
        }
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        // The old defaults: a 20 s long poll and a 45 s drain in a 60 s stop timeout.
        let error = StopBudget::receive_then_drain(S(60), S(20), S(45)).unwrap_err();
        assert!(error.contains("at most 30 s"), "{error}");
        assert!(StopBudget::receive_then_drain(S(30), S(20), S(0)).is_err());
        assert!(StopBudget::receive_alongside_drain(S(25), S(20), S(0)).is_err());
        assert!(StopBudget::receive_alongside_drain(S(121), S(20), S(0)).is_err());
    }
}
