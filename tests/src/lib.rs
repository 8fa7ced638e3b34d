//! Test harness for the end-to-end suite: a real moto_server on a free loopback port
//! ([`moto`]), SDK configuration pointed at it, and [`stack`] to provision and run the real
//! dispatcher, workers and MediaConvert stand-in in-process with random resource names, each
//! with its own IAM identity from the template while moto enforces IAM. [`strict_s3`] makes
//! S3's missing-key answer depend on `s3:ListBucket` as on AWS; [`ecs_agent`] stands in for
//! the ECS agent's task scale-in protection endpoint; [`fault_proxy`] sits between the services
//! and moto when a test wants AWS's failures; [`processes`] runs the services as processes for
//! the chaos suite; [`local_fleet`] runs worker processes under the local fleet supervisor;
//! [`fleet_bench`] is `bench-fleet`, one worker process timed against its
//! kernel; [`settings_env`] checks that a deployment's `FRAMEFLEET__*` variables reach the
//! settings they name.

mod binaries;
pub mod ecs_agent;
pub mod fault_proxy;
pub mod fleet_bench;
pub mod local_fleet;
pub mod media;
pub mod moto;
pub mod otlp;
pub mod processes;
pub mod reconciling;
pub mod settings_env;
pub mod stack;
pub mod strict_s3;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use framefleet_core::config::Resources;

/// Every resource named `<prefix>-<role>`, as the provisioner creates them.
pub fn resources_named(prefix: &str) -> Resources {
    Resources {
        ingress_bucket: format!("{prefix}-ingress"),
        frames_bucket: format!("{prefix}-frames"),
        processed_bucket: format!("{prefix}-processed"),
        ingress_queue: format!("{prefix}-ingress"),
        job_events_queue: format!("{prefix}-job-events"),
        frames_queue: format!("{prefix}-frames"),
        jobs_table: format!("{prefix}-jobs"),
    }
}

/// SDK configuration for an emulator at `endpoint`: dummy credentials, us-east-1.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    sdk_config_as(endpoint, "test", "test")
}

/// SDK configuration for an emulator at `endpoint` signing with one access key, us-east-1.
pub fn sdk_config_as(endpoint: &str, access_key_id: &str, secret_access_key: &str) -> SdkConfig {
    let credentials =
        aws_sdk_s3::config::Credentials::new(access_key_id, secret_access_key, None, None, "tests");
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            credentials,
        ))
        // moto checks SigV4 signatures once it enforces IAM, and computes them wrongly for
        // the aws-chunked bodies with checksum trailers the SDK sends by default: checksums
        // only where an operation requires one.
        .request_checksum_calculation(
            aws_types::sdk_config::RequestChecksumCalculation::WhenRequired,
        )
        .build()
}
