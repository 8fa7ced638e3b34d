//! Liveness for containers without a shell: each service loop touches a heartbeat file of its
//! own after every receive, and the binary's `healthcheck` subcommand checks how old they are.
//! One file per loop, so a service whose one loop is stuck is reported unhealthy even while its
//! other loop is fine.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A heartbeat file for one service, in the temporary directory.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    path: PathBuf,
}

impl Heartbeat {
    /// The heartbeat of `service` (e.g. `worker`).
    pub fn new(service: &str) -> Self {
        Self {
            path: std::env::temp_dir().join(format!("framefleet-{service}.heartbeat")),
        }
    }

    /// Records that the service is alive now. Failures are logged, never fatal.
    pub fn beat(&self) {
        if let Err(error) = std::fs::write(&self.path, b"alive") {
            tracing::debug!(%error, path = %self.path.display(), "cannot write heartbeat");
        }
    }

    /// True when the last beat is younger than `max_age`.
    pub fn is_fresh(&self, max_age: Duration) -> bool {
        std::fs::metadata(&self.path)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age <= max_age)
    }
}

/// How old a beat may be: long polls last 20 s, so a live loop beats several times in it.
const MAX_AGE: Duration = Duration::from_secs(90);

/// The exit status of a `healthcheck` subcommand: healthy when a beat came in the last 90 s.
pub fn check(service: &str) -> std::process::ExitCode {
    check_all(&[service])
}

/// Like [`check`], for a service with several loops: healthy only when every loop beat.
pub fn check_all(loops: &[&str]) -> std::process::ExitCode {
    let stale: Vec<&str> = loops
        .iter()
        .copied()
        .filter(|name| !Heartbeat::new(name).is_fresh(MAX_AGE))
        .collect();
    if stale.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("no heartbeat in the last 90 s from: {}", stale.join(", "));
        std::process::ExitCode::FAILURE
    }
}
