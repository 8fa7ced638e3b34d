//! What the two consumer loops and every message handler share: settings, clients, the job
//! table and the queues. Its own module so that `service` (the loops) and `ingress` / `fanout`
//! (the handlers) both depend on it rather than on each other.

use framefleet_core::aws::AwsClients;
use framefleet_core::jobs::JobTable;
use framefleet_core::queue::Queue;
use framefleet_edge::EdgeParams;

use crate::settings::DispatcherSettings;

/// Shared by the loops and the handlers; lives behind an `Arc` in [`crate::Dispatcher`].
#[derive(Debug)]
pub(crate) struct Inner {
    /// Validated settings.
    pub(crate) settings: DispatcherSettings,
    /// S3, SQS, DynamoDB and MediaConvert clients.
    pub(crate) clients: AwsClients,
    /// The job table.
    pub(crate) jobs: JobTable,
    /// S3 notifications of uploads.
    pub(crate) ingress: Queue,
    /// MediaConvert job state changes.
    pub(crate) job_events: Queue,
    /// Where frame batches go.
    pub(crate) frames: Queue,
    /// Kernel parameters every batch carries.
    pub(crate) params: EdgeParams,
}
