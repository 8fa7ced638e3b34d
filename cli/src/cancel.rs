//! `framefleet cancel`: the job is marked CANCELED first (a final status), then its
//! MediaConvert job is canceled. In that order, the CANCELED event MediaConvert then sends
//! finds the job final and cannot turn it FAILED, and a COMPLETE that raced the cancel fans
//! nothing out. Workers read the job before each batch and drop a canceled job's batches.
//!
//! MediaConvert `CancelJob` (`DELETE /2017-08-29/jobs/{id}`): "Jobs id",
//! <https://docs.aws.amazon.com/mediaconvert/latest/apireference/jobs-id.html>. It refuses a
//! job that already finished, which is fine: the job table is what workers read.
//!
//! A segmented capture has one MediaConvert job per segment: every segment still SUBMITTED
//! with a recorded job is canceled too, besides the job record's own job (a single capture's
//! or a fallback's).

use framefleet_core::jobs::{JobStatus, SegmentState, Transition};
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
    // Re-read: the capture (or a segment's, or the fallback's) may have been created between
    // the first read and the cancel.
    let now = context.jobs.get(video_id).await?;
    let segmented = now.as_ref().map_or(record.segments_total.is_some(), |r| {
        r.segments_total.is_some()
    });
    let mut job_ids: Vec<String> = now
        .and_then(|r| r.mediaconvert_job_id)
        .or(record.mediaconvert_job_id)
        .into_iter()
        .collect();
    if segmented {
        // Every segment whose MediaConvert job may still run: SUBMITTED with a recorded job.
        // COMPLETE and FANNED_OUT segments' jobs have finished; a FAILED one's ended.
        for segment in context.jobs.segments(video_id).await? {
            if segment.state == SegmentState::Submitted {
                if let Some(job_id) = segment.mediaconvert_job_id {
                    if !job_ids.contains(&job_id) {
                        job_ids.push(job_id);
                    }
                }
            }
        }
    }
    let mut captures = Vec::with_capacity(job_ids.len());
    let mut canceled = 0;
    for job_id in job_ids {
        let result = context
            .clients
            .mediaconvert
            .cancel_job()
            .id(&job_id)
            .send()
            .await;
        captures.push(match result {
            Ok(_) => {
                canceled += 1;
                format!("MediaConvert job {job_id} canceled")
            }
            Err(error) => format!(
                "MediaConvert job {job_id} not canceled ({}): it had most likely finished",
                framefleet_core::aws::describe(&error)
            ),
        });
    }
    report_canceled(context, video_id, &captures, canceled);
    Ok(exit::OK)
}

/// Prints a job this call canceled, with what became of each of its MediaConvert jobs: in
/// JSON, `capture` (all of them, `; `-separated, or null when there were none), `captures`
/// (one line per job) and `canceled_jobs` (how many CancelJob calls succeeded).
fn report_canceled(context: &Context, video_id: &VideoId, captures: &[String], canceled: usize) {
    let capture = (!captures.is_empty()).then(|| captures.join("; "));
    match context.output {
        Output::Json => crate::out!(
            "{}",
            serde_json::json!({
                "video_id": video_id.as_str(),
                "status": "CANCELED",
                "result": "CANCELED",
                "capture": capture,
                "captures": captures,
                "canceled_jobs": canceled,
            })
        ),
        _ => match capture {
            Some(capture) => crate::out!(
                "{video_id} CANCELED; {capture} ({canceled} MediaConvert job{} canceled)",
                if canceled == 1 { "" } else { "s" }
            ),
            None => crate::out!("{video_id} CANCELED"),
        },
    }
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
