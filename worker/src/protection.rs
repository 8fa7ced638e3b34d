//! ECS task scale-in protection while batches are in flight, so a scale-in does not pick a
//! busy task (AWS's recommendation for queue workers). Off ECS (`ECS_AGENT_URI` unset) it does
//! nothing.
//!
//! The agent's endpoint is `PUT $ECS_AGENT_URI/task-protection/v1/state` with
//! `{"ProtectionEnabled": true, "ExpiresInMinutes": N}`, N between 1 and 2880 (48 hours); the
//! protection lapses N minutes after the call that set it ("Amazon ECS task scale-in protection
//! endpoint", Amazon ECS Developer Guide,
//! <https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection-endpoint.html>;
//! "Protect your Amazon ECS tasks from being terminated by scale-in events",
//! <https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection.html>).
//! A task busy for longer than N minutes must therefore renew it, and the expiry is what limits
//! the damage when a task dies protected without turning it off.
//!
//! One task owns the agent's state: it sends the PUTs one after another, always with the latest
//! state asked for, and while busy sends "on" again every renewal period. A late "off" can thus
//! never land after a newer "on" (two PUTs in flight at once could arrive in either order).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// How long protection lasts and how often a busy task renews it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectionTiming {
    /// `ExpiresInMinutes` of every "on" request (1..=2880).
    pub expires_in_minutes: u32,
    /// How often a busy task sends "on" again; shorter than the expiry, so the renewal lands
    /// before the protection lapses.
    pub renew_every: Duration,
}

impl ProtectionTiming {
    /// Protection for `expires_in_minutes`, renewed at half of it.
    pub fn renewed_at_half(expires_in_minutes: u32) -> Self {
        Self {
            expires_in_minutes,
            renew_every: Duration::from_secs(u64::from(expires_in_minutes) * 30),
        }
    }
}

impl Default for ProtectionTiming {
    fn default() -> Self {
        Self::renewed_at_half(60)
    }
}

/// Counts busy batches and keeps the ECS agent's protection state in step with them.
#[derive(Debug, Clone)]
pub struct ScaleInProtection {
    busy: Arc<AtomicUsize>,
    /// The state asked for, read by the task that owns the agent's state; `None` off ECS.
    desired: Option<Arc<watch::Sender<bool>>>,
    /// How many PUTs the owner finished (accepted or not), for [`ScaleInProtection::settled`].
    sent: Option<watch::Receiver<Sent>>,
}

/// The owner's progress: the state of its last finished PUT and how many it made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sent {
    state: Option<bool>,
    requests: u64,
}

/// Held while one batch is in flight.
pub struct BusyGuard {
    protection: ScaleInProtection,
}

impl ScaleInProtection {
    /// Protection through `agent_uri` (the task's `ECS_AGENT_URI`); `None` disables it. Spawns
    /// the task that owns the agent's state, so it must be called inside a Tokio runtime; the
    /// task ends when every clone is dropped.
    pub fn new(agent_uri: Option<String>, timing: ProtectionTiming) -> Self {
        let Some(uri) = agent_uri.filter(|u| !u.is_empty()) else {
            return Self {
                busy: Arc::new(AtomicUsize::new(0)),
                desired: None,
                sent: None,
            };
        };
        let (desired, wanted) = watch::channel(false);
        let (report, sent) = watch::channel(Sent::default());
        tokio::spawn(own_state(uri, timing, wanted, report));
        Self {
            busy: Arc::new(AtomicUsize::new(0)),
            desired: Some(Arc::new(desired)),
            sent: Some(sent),
        }
    }

    /// Marks a batch as started; the first one turns protection on.
    pub fn busy(&self) -> BusyGuard {
        if self.busy.fetch_add(1, Ordering::SeqCst) == 0 {
            self.set(true);
        }
        BusyGuard {
            protection: self.clone(),
        }
    }

    fn set(&self, enabled: bool) {
        if let Some(desired) = &self.desired {
            desired.send_replace(enabled);
        }
    }

    /// Waits until the agent has been sent the state asked for now (tests: the order of
    /// requests is settled). Returns at once off ECS.
    pub async fn settled(&self) {
        let (Some(desired), Some(sent)) = (&self.desired, &self.sent) else {
            return;
        };
        let mut sent = sent.clone();
        let _ = sent.wait_for(|s| s.state == Some(*desired.borrow())).await;
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.protection.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.protection.set(false);
        }
    }
}

/// The one task that talks to the agent: each PUT carries the latest state asked for and is
/// finished before the next starts; while "on", it is sent again every `renew_every`.
async fn own_state(
    uri: String,
    timing: ProtectionTiming,
    mut wanted: watch::Receiver<bool>,
    report: watch::Sender<Sent>,
) {
    let http = reqwest::Client::new();
    let url = format!("{uri}/task-protection/v1/state");
    let renew_every = timing.renew_every.max(Duration::from_millis(100));
    let mut agent_state = false;
    loop {
        let enabled = *wanted.borrow_and_update();
        if enabled || agent_state {
            let body = if enabled {
                serde_json::json!({
                    "ProtectionEnabled": true,
                    "ExpiresInMinutes": timing.expires_in_minutes,
                })
            } else {
                serde_json::json!({"ProtectionEnabled": false})
            };
            let result = http
                .put(&url)
                .json(&body)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            match result {
                Ok(_) => agent_state = enabled,
                Err(error) => {
                    tracing::warn!(enabled, %error, "cannot set ECS task scale-in protection");
                }
            }
        }
        report.send_modify(|s| {
            s.state = Some(enabled);
            s.requests += 1;
        });
        if enabled {
            // Busy: renew at the period unless the state changes first.
            tokio::select! {
                changed = wanted.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(renew_every) => {}
            }
        } else if wanted.changed().await.is_err() {
            break;
        }
    }
    if agent_state {
        // Every handle is gone (the worker stopped): leave the task unprotected.
        let _ = http
            .put(&url)
            .json(&serde_json::json!({"ProtectionEnabled": false}))
            .send()
            .await;
    }
}
