//! Liveness for containers without a shell: each service loop touches a heartbeat file after
//! every receive, and the binary's `healthcheck` subcommand checks how old it is.

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

/// The exit status of a `healthcheck` subcommand: healthy when a beat came in the last 90 s
/// (long polls last 20 s, so a live loop beats several times in that window).
pub fn check(service: &str) -> std::process::ExitCode {
    if Heartbeat::new(service).is_fresh(Duration::from_secs(90)) {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("{service}: no heartbeat in the last 90 s");
        std::process::ExitCode::FAILURE
    }
}
