//! The worker cluster and service in the AWS emulator: created as the template creates them
//! (`Cluster`, `WorkerTaskDefinition`, `WorkerService`), and their desired count, which both
//! the dispatcher's scaler and the queue-depth rules write. moto serves ECS's control plane
//! only: it runs no task, and it reports `runningCount` equal to the desired count at once,
//! so the running workers are counted here, not read from ECS.

use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, LaunchType, NetworkMode};
use framefleet_core::aws::describe;

/// An ECS call failed.
#[derive(Debug, thiserror::Error)]
#[error("ECS {operation} on `{cluster}/{service}`: {message}")]
pub struct EcsError {
    /// The operation.
    pub operation: &'static str,
    /// The cluster.
    pub cluster: String,
    /// The service.
    pub service: String,
    /// The service's message (or why the answer was unusable).
    pub message: String,
}

/// The worker service of one cluster.
#[derive(Debug, Clone)]
pub struct WorkerService {
    ecs: aws_sdk_ecs::Client,
    cluster: String,
    service: String,
}

impl WorkerService {
    /// The service `service` of cluster `cluster`, through `ecs`.
    pub fn new(ecs: aws_sdk_ecs::Client, cluster: &str, service: &str) -> Self {
        Self {
            ecs,
            cluster: cluster.to_string(),
            service: service.to_string(),
        }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    fn error(&self, operation: &'static str, message: String) -> EcsError {
        EcsError {
            operation,
            cluster: self.cluster.clone(),
            service: self.service.clone(),
            message,
        }
    }

    /// Creates the cluster, an arm64 Fargate task definition and the service with
    /// `desired_count` tasks, unless the service exists already (then nothing changes).
    pub async fn ensure(&self, desired_count: u32) -> Result<(), EcsError> {
        if self.desired_count().await.is_ok() {
            return Ok(());
        }
        self.ecs
            .create_cluster()
            .cluster_name(&self.cluster)
            .send()
            .await
            .map_err(|e| self.error("CreateCluster", describe(&e)))?;
        let family = format!("{}-{}", self.cluster, self.service);
        let container = ContainerDefinition::builder()
            .name("worker")
            .image("framefleet-worker")
            .essential(true)
            .build();
        self.ecs
            .register_task_definition()
            .family(&family)
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu("2048")
            .memory("4096")
            .container_definitions(container)
            .send()
            .await
            .map_err(|e| self.error("RegisterTaskDefinition", describe(&e)))?;
        self.ecs
            .create_service()
            .cluster(&self.cluster)
            .service_name(&self.service)
            .task_definition(&family)
            .launch_type(LaunchType::Fargate)
            .desired_count(i32::try_from(desired_count).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| self.error("CreateService", describe(&e)))?;
        Ok(())
    }

    /// The service's desired count (`DescribeServices`).
    pub async fn desired_count(&self) -> Result<u32, EcsError> {
        let out = self
            .ecs
            .describe_services()
            .cluster(&self.cluster)
            .services(&self.service)
            .send()
            .await
            .map_err(|e| self.error("DescribeServices", describe(&e)))?;
        if let Some(failure) = out.failures().first() {
            return Err(self.error(
                "DescribeServices",
                failure.reason().unwrap_or("unknown failure").to_string(),
            ));
        }
        let service = out
            .services()
            .first()
            .ok_or_else(|| self.error("DescribeServices", "no such service".into()))?;
        Ok(u32::try_from(service.desired_count()).unwrap_or(0))
    }

    /// Sets the service's desired count (`UpdateService`), as Application Auto Scaling does.
    pub async fn set_desired_count(&self, desired: u32) -> Result<(), EcsError> {
        self.ecs
            .update_service()
            .cluster(&self.cluster)
            .service(&self.service)
            .desired_count(i32::try_from(desired).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| self.error("UpdateService", describe(&e)))?;
        Ok(())
    }
}
