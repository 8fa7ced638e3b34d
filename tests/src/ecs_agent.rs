//! An ECS container agent stand-in for the task scale-in protection endpoint
//! (`$ECS_AGENT_URI/task-protection/v1/state`), on a free loopback port. It answers the way the
//! agent does ("Amazon ECS task scale-in protection endpoint", Amazon ECS Developer Guide,
//! https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection-endpoint.html):
//! `{"protection": {...}}` on success and `{"requestID", "error": {Arn, Code, Message}}` when
//! the UpdateTaskProtection call the agent makes with the task role is refused. The task role
//! here is the worker's template policy: without `ecs:UpdateTaskProtection` on the task the
//! answer is AccessDeniedException, HTTP 400 as the ECS API returns it ("Common Errors",
//! Amazon ECS API Reference,
//! https://docs.aws.amazon.com/AmazonECS/latest/APIReference/CommonErrors.html).
//!
//! Protection lapses as on ECS: `ExpiresInMinutes` (1..=2880, 120 when left out) after the call
//! that set it. The stand-in's minute is [`AgentOptions::minute`], so a test can let protection
//! lapse in seconds; every lapse of a protection still switched on (no renewal in time) is
//! counted, as a window in which a scale-in could have stopped the task.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use axum::{Json, Router};
use framefleet_provision::policy::{decide, Decision, PolicyDocument};
use serde_json::{json, Value};
use tokio::sync::watch;

/// What the agent has been asked and has answered, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtectionLog {
    /// The protection state ECS holds for the task now.
    pub enabled: bool,
    /// Every accepted change, oldest first (`true` = protection turned on).
    pub changes: Vec<bool>,
    /// Requests refused with AccessDeniedException.
    pub refusals: usize,
    /// Well-formed requests that arrived, counted on arrival (before any
    /// [`AgentOptions::off_delay`]).
    pub received: usize,
    /// When the protection set last runs out (`None` while off).
    pub expires_at: Option<tokio::time::Instant>,
    /// Times the protection ran out while still switched on before the next request came: each
    /// one a window in which a scale-in could have stopped the task.
    pub lapses: usize,
}

impl ProtectionLog {
    /// True when ECS would spare the task from a scale-in at `now`.
    pub fn protected_at(&self, now: tokio::time::Instant) -> bool {
        self.enabled && self.expires_at.is_some_and(|at| now < at)
    }

    /// The lapses so far, counting one under way now.
    pub fn lapses_by(&self, now: tokio::time::Instant) -> usize {
        self.lapses + usize::from(self.enabled && !self.protected_at(now))
    }
}

/// How the stand-in keeps time and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentOptions {
    /// What one of `ExpiresInMinutes`' minutes lasts here (a minute by default).
    pub minute: Duration,
    /// How long a request turning protection off takes to apply, e.g. to let a newer "on" sent
    /// meanwhile overtake it, as two requests in flight at once can on a network.
    pub off_delay: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            minute: Duration::from_secs(60),
            off_delay: Duration::ZERO,
        }
    }
}

struct Agent {
    task_arn: String,
    role_arn: String,
    task_role: Vec<PolicyDocument>,
    log: watch::Sender<ProtectionLog>,
    options: AgentOptions,
}

/// A running agent stand-in; stops when dropped.
pub struct EcsAgent {
    uri: String,
    log: watch::Receiver<ProtectionLog>,
    server: tokio::task::JoinHandle<()>,
}

impl EcsAgent {
    /// Serves the endpoint for the task `task_arn`, whose task role `role_arn` has the
    /// policies `task_role`.
    pub async fn start(
        task_arn: &str,
        role_arn: &str,
        task_role: Vec<PolicyDocument>,
    ) -> anyhow::Result<Self> {
        Self::start_with(task_arn, role_arn, task_role, AgentOptions::default()).await
    }

    /// Like [`EcsAgent::start`], keeping time and answering as `options` say.
    pub async fn start_with(
        task_arn: &str,
        role_arn: &str,
        task_role: Vec<PolicyDocument>,
        options: AgentOptions,
    ) -> anyhow::Result<Self> {
        let (sender, log) = watch::channel(ProtectionLog::default());
        let agent = Arc::new(Agent {
            task_arn: task_arn.to_string(),
            role_arn: role_arn.to_string(),
            task_role,
            log: sender,
            options,
        });
        let app = Router::new()
            .route("/task-protection/v1/state", put(update).get(current))
            .with_state(agent);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("no loopback port for the ECS agent stand-in")?;
        let uri = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { uri, log, server })
    }

    /// The value of `ECS_AGENT_URI` for the task.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The log as it is now.
    pub fn log(&self) -> ProtectionLog {
        self.log.borrow().clone()
    }

    /// True when ECS would spare the task from a scale-in now.
    pub fn protected_now(&self) -> bool {
        self.log.borrow().protected_at(tokio::time::Instant::now())
    }

    /// Lapses of a protection still switched on so far, counting one under way now.
    pub fn lapses_now(&self) -> usize {
        self.log.borrow().lapses_by(tokio::time::Instant::now())
    }

    /// Waits until `condition` holds for the log and returns that log.
    pub async fn wait_until(
        &self,
        condition: impl Fn(&ProtectionLog) -> bool,
    ) -> anyhow::Result<ProtectionLog> {
        let mut log = self.log.clone();
        let seen = log
            .wait_for(|l| condition(l))
            .await
            .context("the ECS agent stand-in stopped")?;
        Ok(seen.clone())
    }
}

impl Drop for EcsAgent {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn protection(agent: &Agent, enabled: bool, expires_in_minutes: i64) -> Value {
    let expiration = enabled.then(|| {
        (time::OffsetDateTime::now_utc() + time::Duration::minutes(expires_in_minutes))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    });
    json!({"protection": {
        "ExpirationDate": expiration,
        "ProtectionEnabled": enabled,
        "TaskArn": agent.task_arn,
    }})
}

async fn current(State(agent): State<Arc<Agent>>) -> Json<Value> {
    let enabled = agent.log.borrow().protected_at(tokio::time::Instant::now());
    Json(protection(&agent, enabled, 120))
}

async fn update(State(agent): State<Arc<Agent>>, body: String) -> (StatusCode, Json<Value>) {
    let error = |status: StatusCode, code: &str, message: String| {
        (
            status,
            Json(json!({
                "requestID": format!("local-{}", std::process::id()),
                "error": {"Arn": agent.task_arn, "Code": code, "Message": message},
            })),
        )
    };
    let request: Value = match serde_json::from_str(&body) {
        Ok(value) => value,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                format!("the body is not JSON: {e}"),
            )
        }
    };
    let Some(enabled) = request.get("ProtectionEnabled").and_then(Value::as_bool) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "ProtectionEnabled is required and must be a boolean".into(),
        );
    };
    let minutes = request
        .get("ExpiresInMinutes")
        .and_then(Value::as_i64)
        .unwrap_or(120);
    if !(1..=2880).contains(&minutes) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "ExpiresInMinutes must be between 1 and 2880".into(),
        );
    }
    agent.log.send_modify(|log| log.received += 1);
    let action = "ecs:UpdateTaskProtection";
    if decide(&agent.task_role, action, &agent.task_arn) != Decision::Allowed {
        agent.log.send_modify(|log| log.refusals += 1);
        let task_id = agent.task_arn.rsplit('/').next().unwrap_or_default();
        let role = agent.role_arn.rsplit('/').next().unwrap_or_default();
        let account = agent.task_arn.split(':').nth(4).unwrap_or_default();
        return error(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            format!(
                "User: arn:aws:sts::{account}:assumed-role/{role}/{task_id} is not authorized to \
                 perform: {action} on resource: {} because no identity-based policy allows the \
                 {action} action",
                agent.task_arn
            ),
        );
    }
    if !enabled && !agent.options.off_delay.is_zero() {
        tokio::time::sleep(agent.options.off_delay).await;
    }
    let lasts = agent.options.minute * u32::try_from(minutes).unwrap_or(u32::MAX);
    agent.log.send_modify(|log| {
        let now = tokio::time::Instant::now();
        log.lapses = log.lapses_by(now);
        log.enabled = enabled;
        log.expires_at = enabled.then(|| now + lasts);
        log.changes.push(enabled);
    });
    (StatusCode::OK, Json(protection(&agent, enabled, minutes)))
}
