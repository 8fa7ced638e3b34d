//! ECS task scale-in protection while batches are in flight, so a scale-in does not pick a
//! busy task (AWS's recommendation for queue workers). Off ECS (`ECS_AGENT_URI` unset) it does
//! nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts busy batches and tells the ECS agent when the task goes busy or idle.
#[derive(Debug, Clone)]
pub struct ScaleInProtection {
    agent_uri: Option<Arc<str>>,
    busy: Arc<AtomicUsize>,
    http: reqwest::Client,
}

/// Held while one batch is in flight.
pub struct BusyGuard {
    protection: ScaleInProtection,
}

impl ScaleInProtection {
    /// Protection through `agent_uri` (the task's `ECS_AGENT_URI`); `None` disables it.
    pub fn new(agent_uri: Option<String>) -> Self {
        Self {
            agent_uri: agent_uri.filter(|u| !u.is_empty()).map(Into::into),
            busy: Arc::new(AtomicUsize::new(0)),
            http: reqwest::Client::new(),
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
        let Some(uri) = self.agent_uri.clone() else {
            return;
        };
        let http = self.http.clone();
        tokio::spawn(async move {
            // Expiry bounds the damage if the task dies without turning it off.
            let body = if enabled {
                serde_json::json!({"ProtectionEnabled": true, "ExpiresInMinutes": 60})
            } else {
                serde_json::json!({"ProtectionEnabled": false})
            };
            let result = http
                .put(format!("{uri}/task-protection/v1/state"))
                .json(&body)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            if let Err(error) = result {
                tracing::warn!(enabled, %error, "cannot set ECS task scale-in protection");
            }
        });
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.protection.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.protection.set(false);
        }
    }
}
