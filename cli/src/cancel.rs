//! `framefleet cancel`: the job is marked CANCELED first (a final status), then its
//! MediaConvert job is canceled. In that order, the CANCELED event MediaConvert then sends
//! finds the job final and cannot turn it FAILED, and a COMPLETE that raced the cancel fans
//! nothing out. Workers read the job before each batch and drop a canceled job's batches.
//!
//! MediaConvert `CancelJob` (`DELETE /2017-08-29/jobs/{id}`): "Jobs id",
//! <https://docs.aws.amazon.com/mediaconvert/latest/apireference/jobs-id.html>. It refuses a
//! job that already finished, which is fine: the job table is what workers read.

use framefleet_core::jobs::{JobStatus, Transition};
use framefleet_core::video::VideoId;

use crate::{exit, CliError, Context, Output};

/// Cancels the job; exit code 0 once it is CANCELED (now or before).
pub async fn run(context: &Context, video_id: &VideoId) -> Result<u8, CliError> {
    let not_found = || CliError::JobNotFound {
        video_id: video_id.to_string(),
        table: context.resources.jobs_table.clone(),
    };
    let record = context.jobs.get(video_id).await?.ok_or_else(not_found)?;
    if record.status == JobStatus::Canceled {
        report(context, video_id, "was already CANCELED", None);
        return Ok(exit::OK);
    }
    let transition = context
        .jobs
        .cancel(video_id, "canceled by the user (framefleet cancel)")
        .await?;
    if transition == Transition::NotApplicable {
        let now = context.jobs.get(video_id).await?.ok_or_else(not_found)?;
        if now.status == JobStatus::Canceled {
            report(context, video_id, "was already CANCELED", None);
            return Ok(exit::OK);
        }
        return Err(CliError::WrongStatus {
            video_id: video_id.to_string(),
            status: now.status,
            message: "only REGISTERED, CAPTURING or PROCESSING jobs can be canceled".into(),
        });
    }
    // Re-read: the capture may have been created between the first read and the cancel.
    let job_id = context
        .jobs
        .get(video_id)
        .await?
        .and_then(|r| r.mediaconvert_job_id)
        .or(record.mediaconvert_job_id);
    let mut capture = None;
    if let Some(job_id) = job_id {
        let result = context
            .clients
            .mediaconvert
            .cancel_job()
            .id(&job_id)
            .send()
            .await;
        capture = Some(match result {
            Ok(_) => format!("MediaConvert job {job_id} canceled"),
            Err(error) => format!(
                "MediaConvert job {job_id} not canceled ({}): it had most likely finished",
                framefleet_core::aws::describe(&error)
            ),
        });
    }
    report(context, video_id, "CANCELED", capture);
    Ok(exit::OK)
}

fn report(context: &Context, video_id: &VideoId, what: &str, capture: Option<String>) {
    match context.output {
        Output::Json => crate::out!(
            "{}",
            serde_json::json!({"video_id": video_id.as_str(), "status": "CANCELED", "result": what, "capture": capture})
        ),
        _ => match capture {
            Some(capture) => crate::out!("{video_id} {what}; {capture}"),
            None => crate::out!("{video_id} {what}"),
        },
    }
}
