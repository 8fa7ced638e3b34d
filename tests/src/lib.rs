//! Test harness for the end-to-end suite: a real moto_server on a free loopback port
//! ([`moto`]), SDK configuration pointed at it, and [`stack`] to provision and run the real
//! dispatcher, workers and MediaConvert stand-in in-process with random resource names;
//! [`fault_proxy`] sits between the services and moto when a test wants AWS's failures.

pub mod fault_proxy;
pub mod media;
pub mod moto;
pub mod processes;
pub mod stack;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// SDK configuration for an emulator at `endpoint`: dummy credentials, us-east-1.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    let credentials = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests");
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            credentials,
        ))
        .build()
}
