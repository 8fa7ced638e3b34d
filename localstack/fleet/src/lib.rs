//! The local fleet supervisor: it plays ECS and Application Auto Scaling for the worker service
//! of the local stack (tests and `scripts/demo`), so scaling runs locally and not only in the
//! template.
//!
//! - [`service`]: the worker cluster and service in the AWS emulator (moto serves ECS's
//!   control plane but runs nothing), and their desired count, which the dispatcher's scaler
//!   sets as it does on AWS.
//! - [`rules`]: the template's queue-depth rules, applied to the real frames queue as the
//!   fallback Application Auto Scaling applies on AWS (target tracking on backlog per task,
//!   scale from zero, the idle alarm), within the scalable target's bounds.
//! - [`supervisor`]: worker processes up to the desired count; above it, idle workers are
//!   stopped with SIGTERM, and a worker that holds scale-in protection (its ECS agent stand-in
//!   says so) is never stopped, as ECS spares protected tasks.
//!
//! What only AWS does (Fargate start-up and image pulls, CloudWatch's one-minute metrics and
//! the policies' cooldowns) is not modelled: here a worker starts in well under a second and
//! the rules see the queue every period.

pub mod rules;
pub mod service;
pub mod supervisor;

pub use rules::{QueueRules, ScalingBounds};
pub use service::WorkerService;
pub use supervisor::{AgentHost, FleetConfig, Supervisor, TaskAgent, Tick};
