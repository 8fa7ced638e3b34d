//! A FINALIZING job's manifest, written by the dispatcher: for a winner that died (the
//! reconciler) and for a segmented job whose batches were all counted before its total existed
//! (`segments`' sweep).

use framefleet_core::jobs::{BatchPlan, JobRecord};
use framefleet_core::manifest::ManifestWriter;

use crate::context::Inner;
use crate::error::DispatchError;

/// The job's stored batch plan, or the one today's settings give a job that stored none.
pub(crate) fn plan_of(inner: &Inner, record: &JobRecord) -> BatchPlan {
    record.plan.clone().unwrap_or_else(|| BatchPlan {
        batch_size: inner.settings.dispatcher.batch_size,
        params: inner.params.clone(),
        last_frame: None,
        layout: inner.settings.dispatcher.output_layout,
    })
}

/// Writes the manifest of a FINALIZING job and completes it, as the winning worker would.
pub(crate) async fn finish(inner: &Inner, record: &JobRecord) -> Result<(), DispatchError> {
    let plan = plan_of(inner, record);
    let writer = ManifestWriter::new(
        inner.clients.s3.clone(),
        inner.jobs.clone(),
        &inner.settings.resources.processed_bucket,
        inner.settings.pricing.clone(),
    );
    writer
        .finish_job(&record.video_id, &plan.params)
        .await
        .map(|_finish| ())
        .map_err(|error| DispatchError::Reconcile {
            video_id: record.video_id.to_string(),
            message: format!("finishing the manifest: {error}"),
        })
}
