//! Liveness for containers without a shell: each service loop touches a heartbeat file of its
//! own, and the binary's `healthcheck` subcommand checks how old they are. One file per loop,
//! so a service whose one loop is stuck is reported unhealthy even while its other loop is fine.
//!
//! A loop beats between units of work (after a receive, after a reconciler pass), and a long
//! unit of work beats from its own progress: the loop runs it inside [`Heartbeat::scope`], and
//! the code doing the work calls [`progress`] at each step it completes (each part of a
//! multipart copy, each SendMessageBatch of a fan-out, each job of a reconciler pass). A copy
//! of many gigabytes thus keeps its dispatcher healthy, while work that really stalls (no step
//! completes) stops the beats and the container's health check replaces the task.
//!
//! Each beat writes the loop's staleness window into its file, so the `healthcheck` process
//! judges a beat by the window the service was configured with, without reading its settings.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How old a beat may be unless a service says otherwise: long polls last 20 s, so a live loop
/// beats several times in it.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(90);

/// A heartbeat file for one service loop.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    path: PathBuf,
    max_age: Duration,
}

tokio::task_local! {
    /// The heartbeat of the unit of work running on this task, if any.
    static PROGRESS: Heartbeat;
}

impl Heartbeat {
    /// The heartbeat of `service` (e.g. `worker`) in the temporary directory, with the default
    /// staleness window.
    pub fn new(service: &str) -> Self {
        Self::in_dir(&std::env::temp_dir(), service, DEFAULT_MAX_AGE)
    }

    /// The heartbeat of `service` in `dir`, stale once `max_age` passes without a beat.
    pub fn in_dir(dir: &Path, service: &str, max_age: Duration) -> Self {
        Self {
            path: dir.join(format!("framefleet-{service}.heartbeat")),
            max_age,
        }
    }

    /// Records that the service is alive now. Failures are logged, never fatal.
    pub fn beat(&self) {
        let window = self.max_age.as_millis().to_string();
        if let Err(error) = std::fs::write(&self.path, window) {
            tracing::debug!(%error, path = %self.path.display(), "cannot write heartbeat");
        }
    }

    /// True when the last beat is younger than the window it was written with.
    pub fn is_fresh(&self) -> bool {
        let window = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map_or(DEFAULT_MAX_AGE, Duration::from_millis);
        std::fs::metadata(&self.path)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age <= window)
    }

    /// Runs `work` with this heartbeat as the one [`progress`] beats, so a long unit of work
    /// keeps its loop alive for as long as it makes progress.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        PROGRESS.scope(self.clone(), work).await
    }
}

/// Reports that the unit of work running on this task completed a step: beats the heartbeat of
/// the [`Heartbeat::scope`] it runs in (nothing outside one). Call it where a long piece of
/// work makes measurable progress, not on a timer: a timer would beat on while the work stalls.
pub fn progress() {
    let _ = PROGRESS.try_with(Heartbeat::beat);
}

/// The exit status of a `healthcheck` subcommand: healthy when the service's last beat is
/// within its window.
pub fn check(service: &str) -> std::process::ExitCode {
    check_all(&[service])
}

/// Like [`check`], for a service with several loops: healthy only when every loop beat.
pub fn check_all(loops: &[&str]) -> std::process::ExitCode {
    match stale_in(&std::env::temp_dir(), loops) {
        stale if stale.is_empty() => std::process::ExitCode::SUCCESS,
        stale => {
            eprintln!("no recent heartbeat from: {}", stale.join(", "));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The loops among `loops` whose heartbeat in `dir` is stale or missing: what the
/// `healthcheck` subcommand reports on (an empty list is healthy).
pub fn stale_in<'a>(dir: &Path, loops: &[&'a str]) -> Vec<&'a str> {
    loops
        .iter()
        .copied()
        .filter(|name| !Heartbeat::in_dir(dir, name, DEFAULT_MAX_AGE).is_fresh())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn progress_beats_the_scope_it_runs_in() {
        let dir = std::env::temp_dir().join(format!("ff-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let heartbeat = Heartbeat::in_dir(&dir, "unit", Duration::from_secs(60));
        assert_eq!(stale_in(&dir, &["unit"]), ["unit"]);
        progress(); // outside a scope: nothing
        assert_eq!(stale_in(&dir, &["unit"]), ["unit"]);
        heartbeat.scope(async { progress() }).await;
        assert!(stale_in(&dir, &["unit"]).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
