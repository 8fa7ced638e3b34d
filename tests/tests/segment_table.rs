//! The job table's segmented capture against a real DynamoDB API (moto_server): the job and
//! its segment items written in one transaction, segments submitted, completed and counted
//! exactly once, processing started only when every segment captured its planned frames, the
//! fallback to one MediaConvert job set once; the dispatcher role's `ConditionCheckItem`, and
//! `framefleet cancel` canceling every running segment's MediaConvert job.

use aws_sdk_mediaconvert::types::JobStatus as MediaConvertStatus;
use framefleet_core::aws::AwsClients;
use framefleet_core::config::Resources;
use framefleet_core::jobs::{
    BatchOutcome, BatchPlan, Counting, JobRecord, JobStatus, JobTable, SegmentRecord, SegmentState,
    SegmentedCapture, Transition, MAX_SEGMENTS,
};
use framefleet_core::video::VideoId;
use framefleet_e2e::moto::MotoServer;
use framefleet_e2e::stack::{spawn_stack_with, StackOptions};
use framefleet_provision::iam_from_template::NamedPolicy;
use framefleet_provision::ProvisionSettings;

use Transition::{Applied, NotApplicable};

const BATCH_FRAMES: u64 = 4;

async fn table() -> (MotoServer, JobTable) {
    let moto = MotoServer::start().await.unwrap();
    let clients = AwsClients::from_config(&framefleet_e2e::sdk_config(moto.endpoint()), true, None);
    let settings = ProvisionSettings {
        resources: Resources {
            jobs_table: "segments-under-test".into(),
            ..Resources::default()
        },
        ..ProvisionSettings::default()
    };
    framefleet_provision::provision(&clients, &settings)
        .await
        .unwrap();
    let table = JobTable::new(clients.dynamodb.clone(), "segments-under-test");
    (moto, table)
}

fn plan() -> BatchPlan {
    BatchPlan {
        batch_size: BATCH_FRAMES as usize,
        params: framefleet_edge::EdgeParams::default(),
        last_frame: None,
        layout: Default::default(),
    }
}

/// PENDING segments of `frames` each, numbered and placed as the spec says: `first_k` the
/// frames before, `batch_base_k` the batches before.
fn planned(frames: &[u64]) -> Vec<SegmentRecord> {
    let mut first = 0;
    let mut batch_base = 0u32;
    frames
        .iter()
        .enumerate()
        .map(|(k, &count)| {
            let batches = count.div_ceil(BATCH_FRAMES);
            let mut segment = SegmentRecord::pending(k as u32, first, count, batch_base, batches);
            segment.start_timecode = Some(format!("00:00:{:02}:00", k * 2));
            segment.end_timecode = Some(format!("00:00:{:02}:24", k * 2 + 1));
            first += count;
            batch_base += batches as u32;
            segment
        })
        .collect()
}

fn capture<'a>(
    plan: &'a BatchPlan,
    segments: &'a [SegmentRecord],
    note: &'a str,
) -> SegmentedCapture<'a> {
    SegmentedCapture {
        capture_rate: "25/1",
        planned_frames: segments.iter().map(|s| s.frames).sum(),
        plan,
        batch_frames: BATCH_FRAMES,
        batches: segments.iter().map(|s| s.batches).sum(),
        note,
        segments,
    }
}

/// A REGISTERED job `name`, then segmented into `frames`.
async fn segmented(jobs: &JobTable, name: &str, frames: &[u64]) -> VideoId {
    let id = VideoId::derive("in", name, "e");
    jobs.register(&JobRecord::new(id.clone(), "in", name, "e", 1))
        .await
        .unwrap();
    let plan = plan();
    let segments = planned(frames);
    assert_eq!(
        jobs.start_segmented_capture(&id, &capture(&plan, &segments, "long enough"))
            .await
            .unwrap(),
        Applied
    );
    id
}

async fn segment(jobs: &JobTable, id: &VideoId, index: u32) -> SegmentRecord {
    jobs.segments(id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.index == index)
        .unwrap()
}

async fn job(jobs: &JobTable, id: &VideoId) -> JobRecord {
    jobs.get(id).await.unwrap().unwrap()
}

/// What a stored segment must equal, ignoring when it was written.
fn without_time(mut segment: SegmentRecord) -> SegmentRecord {
    segment.updated_at = String::new();
    segment
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segmented_capture_is_written_in_one_transaction_once() {
    let (_moto, jobs) = table().await;
    let id = VideoId::derive("in", "long.mp4", "e");
    jobs.register(&JobRecord::new(id.clone(), "in", "long.mp4", "e", 1))
        .await
        .unwrap();
    // The note can be written while the plan is being made.
    assert_eq!(
        jobs.note_capture_plan(&id, "probing").await.unwrap(),
        Applied
    );
    let plan = plan();
    let segments = planned(&[10, 10, 7]);
    assert_eq!(
        jobs.start_segmented_capture(&id, &capture(&plan, &segments, "3 segments of 120 s"))
            .await
            .unwrap(),
        Applied
    );
    let record = job(&jobs, &id).await;
    assert_eq!(record.status, JobStatus::Capturing);
    assert_eq!(record.segments_total, Some(3));
    assert_eq!(record.segments_complete, 0);
    assert_eq!(record.captured_frames, 0);
    assert_eq!(record.planned_frames, Some(27));
    assert_eq!(record.batches, Some(3 + 3 + 2));
    assert_eq!(record.batch_frames, Some(BATCH_FRAMES));
    assert_eq!(record.plan, Some(plan.clone()));
    assert_eq!(record.capture_rate.as_deref(), Some("25/1"));
    assert_eq!(record.capture_note.as_deref(), Some("3 segments of 120 s"));
    assert!(record.capture_started_at.is_some());
    assert_eq!(record.fallback, None);
    assert_eq!(record.mediaconvert_job_id, None);
    assert_eq!(record.total_frames, None);
    let stored = jobs.segments(&id).await.unwrap();
    assert_eq!(
        stored.into_iter().map(without_time).collect::<Vec<_>>(),
        segments
            .iter()
            .cloned()
            .map(without_time)
            .collect::<Vec<_>>()
    );
    assert_eq!(segment(&jobs, &id, 2).await.batch_base, 6);

    // A second call (another plan) is refused and changes nothing.
    let again = planned(&[9, 9, 9, 9]);
    assert_eq!(
        jobs.start_segmented_capture(&id, &capture(&plan, &again, "4 segments"))
            .await
            .unwrap(),
        NotApplicable
    );
    assert_eq!(job(&jobs, &id).await, record);
    assert_eq!(jobs.segments(&id).await.unwrap().len(), 3);
    assert_eq!(
        jobs.note_capture_plan(&id, "noted while capturing")
            .await
            .unwrap(),
        Applied
    );

    // 100 segments do not fit one transaction: refused before anything is written; 99 do.
    let plan = self::plan();
    for (name, count, expected) in [
        ("hundred.mp4", 100, None),
        ("most.mp4", MAX_SEGMENTS, Some(Applied)),
    ] {
        let id = VideoId::derive("in", name, "e");
        jobs.register(&JobRecord::new(id.clone(), "in", name, "e", 1))
            .await
            .unwrap();
        let segments = planned(&vec![5; count]);
        let result = jobs
            .start_segmented_capture(&id, &capture(&plan, &segments, "many"))
            .await;
        match expected {
            None => {
                let error = result.unwrap_err();
                assert!(!error.is_retryable(), "{error}");
                assert_eq!(job(&jobs, &id).await.status, JobStatus::Registered);
                assert!(jobs.segments(&id).await.unwrap().is_empty());
            }
            Some(expected) => {
                assert_eq!(result.unwrap(), expected);
                assert_eq!(jobs.segments(&id).await.unwrap().len(), count);
                assert_eq!(job(&jobs, &id).await.segments_total, Some(count as u32));
            }
        }
    }

    // A job captured by one MediaConvert job is never segmented, and reads as before.
    let single = VideoId::derive("in", "single.mp4", "e");
    jobs.register(&JobRecord::new(single.clone(), "in", "single.mp4", "e", 1))
        .await
        .unwrap();
    jobs.start_capture(&single, "mc-1", "25/1").await.unwrap();
    let segments = planned(&[5, 5]);
    assert_eq!(
        jobs.start_segmented_capture(&single, &capture(&plan, &segments, "late"))
            .await
            .unwrap(),
        NotApplicable
    );
    let record = job(&jobs, &single).await;
    assert_eq!(record.segments_total, None);
    assert_eq!(record.segments_complete, 0);
    assert_eq!(record.planned_frames, None);
    assert_eq!(record.fallback, None);
    assert!(jobs.segments(&single).await.unwrap().is_empty());
    jobs.start_processing(&single, "mc-1", 8, 2, &plan)
        .await
        .unwrap();
    assert_eq!(
        jobs.note_capture_plan(&single, "too late").await.unwrap(),
        NotApplicable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_are_claimed_once_per_attempt() {
    let (_moto, jobs) = table().await;
    let id = segmented(&jobs, "submit.mp4", &[10, 10, 7]).await;
    assert_eq!(jobs.submit_segment(&id, 0, 0).await.unwrap(), Applied);
    assert_eq!(jobs.submit_segment(&id, 0, 0).await.unwrap(), NotApplicable);
    let first = segment(&jobs, &id, 0).await;
    assert_eq!((first.state, first.attempt), (SegmentState::Submitted, 0));
    assert_eq!(
        jobs.record_segment_job(&id, 0, 0, "mc-a").await.unwrap(),
        Applied
    );
    assert_eq!(
        jobs.record_segment_job(&id, 0, 0, "mc-a").await.unwrap(),
        Applied,
        "the same id again is idempotent"
    );
    assert_eq!(
        jobs.record_segment_job(&id, 0, 0, "mc-b").await.unwrap(),
        NotApplicable
    );
    assert_eq!(
        segment(&jobs, &id, 0).await.mediaconvert_job_id.as_deref(),
        Some("mc-a")
    );

    // Re-submission: SUBMITTED at attempt 0 → SUBMITTED at attempt 1, the old job forgotten.
    assert_eq!(jobs.submit_segment(&id, 0, 1).await.unwrap(), Applied);
    let again = segment(&jobs, &id, 0).await;
    assert_eq!((again.state, again.attempt), (SegmentState::Submitted, 1));
    assert_eq!(again.mediaconvert_job_id, None);
    assert_eq!(jobs.submit_segment(&id, 0, 1).await.unwrap(), NotApplicable);
    assert_eq!(jobs.submit_segment(&id, 0, 3).await.unwrap(), NotApplicable);
    assert_eq!(jobs.submit_segment(&id, 0, 0).await.unwrap(), NotApplicable);
    // The old attempt's job cannot be recorded any more.
    assert_eq!(
        jobs.record_segment_job(&id, 0, 0, "mc-a").await.unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.record_segment_job(&id, 0, 1, "mc-c").await.unwrap(),
        Applied
    );
    // A PENDING segment's first attempt is 0, not 1.
    assert_eq!(jobs.submit_segment(&id, 1, 1).await.unwrap(), NotApplicable);
    // A segment that does not exist.
    assert_eq!(jobs.submit_segment(&id, 7, 0).await.unwrap(), NotApplicable);

    // Concurrent claims of one attempt: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (jobs, id) = (jobs.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            jobs.submit_segment(&id, 1, 0).await.unwrap()
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.unwrap() == Applied);
    }
    assert_eq!(won, 1);

    // Once the job has fallen back, nothing more is submitted.
    assert_eq!(
        jobs.fall_back(&id, "segment 0 failed twice").await.unwrap(),
        Applied
    );
    assert_eq!(jobs.submit_segment(&id, 2, 0).await.unwrap(), NotApplicable);
    assert_eq!(jobs.submit_segment(&id, 1, 1).await.unwrap(), NotApplicable);
    assert_eq!(segment(&jobs, &id, 2).await.state, SegmentState::Pending);

    // Nor once the job is canceled.
    let canceled = segmented(&jobs, "canceled.mp4", &[5, 5]).await;
    assert_eq!(jobs.submit_segment(&canceled, 0, 0).await.unwrap(), Applied);
    assert_eq!(
        jobs.cancel(&canceled, "by the user").await.unwrap(),
        Applied
    );
    assert_eq!(
        jobs.submit_segment(&canceled, 1, 0).await.unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.submit_segment(&canceled, 0, 1).await.unwrap(),
        NotApplicable
    );
    assert_eq!(
        segment(&jobs, &canceled, 1).await.state,
        SegmentState::Pending
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_segment_is_counted_exactly_once() {
    let (_moto, jobs) = table().await;
    let id = segmented(&jobs, "count.mp4", &[10, 10, 7]).await;
    for k in 0..3 {
        assert_eq!(jobs.submit_segment(&id, k, 0).await.unwrap(), Applied);
    }
    jobs.record_segment_job(&id, 0, 0, "mc-0").await.unwrap();
    // Another job's COMPLETE (an earlier attempt's) is refused and adds nothing.
    assert_eq!(
        jobs.complete_segment(&id, 0, "mc-old", 10).await.unwrap(),
        NotApplicable
    );
    let record = job(&jobs, &id).await;
    assert_eq!((record.segments_complete, record.captured_frames), (0, 0));
    assert_eq!(
        jobs.complete_segment(&id, 0, "mc-0", 10).await.unwrap(),
        Applied
    );
    assert_eq!(
        jobs.complete_segment(&id, 0, "mc-0", 10).await.unwrap(),
        NotApplicable,
        "a duplicate COMPLETE event"
    );
    let record = job(&jobs, &id).await;
    assert_eq!((record.segments_complete, record.captured_frames), (1, 10));
    let done = segment(&jobs, &id, 0).await;
    assert_eq!(done.state, SegmentState::Complete);
    assert_eq!(done.captured, Some(10));
    // A fail after the completion leaves it COMPLETE.
    assert_eq!(
        jobs.fail_segment(&id, 0, "late error").await.unwrap(),
        NotApplicable
    );

    // The COMPLETE event overtook the create call: the event's job id is recorded, and the
    // create call's record of the same id agrees.
    assert_eq!(
        jobs.complete_segment(&id, 1, "mc-1", 10).await.unwrap(),
        Applied
    );
    assert_eq!(
        segment(&jobs, &id, 1).await.mediaconvert_job_id.as_deref(),
        Some("mc-1")
    );
    assert_eq!(
        jobs.record_segment_job(&id, 1, 0, "mc-1").await.unwrap(),
        Applied
    );
    assert_eq!(
        jobs.record_segment_job(&id, 1, 0, "mc-z").await.unwrap(),
        NotApplicable
    );

    // Five copies of the last segment's COMPLETE at once: one counts.
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (jobs, id) = (jobs.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            jobs.complete_segment(&id, 2, "mc-2", 7).await.unwrap()
        }));
    }
    let mut counted = 0;
    for task in tasks {
        counted += usize::from(task.await.unwrap() == Applied);
    }
    assert_eq!(counted, 1);
    let record = job(&jobs, &id).await;
    assert_eq!(record.segments_complete, 3);
    assert_eq!(record.captured_frames, 27);
    assert_eq!(record.status, JobStatus::Capturing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_starts_only_when_every_segment_captured_its_plan() {
    let (_moto, jobs) = table().await;
    let id = segmented(&jobs, "finish.mp4", &[8, 5]).await;
    for k in 0..2 {
        jobs.submit_segment(&id, k, 0).await.unwrap();
    }
    assert_eq!(
        jobs.start_segmented_processing(&id, 13).await.unwrap(),
        NotApplicable,
        "no segment complete"
    );
    jobs.complete_segment(&id, 0, "mc-0", 8).await.unwrap();
    assert_eq!(
        jobs.start_segmented_processing(&id, 13).await.unwrap(),
        NotApplicable,
        "one of two segments complete"
    );
    // Segment 0's batches are counted before the total exists (they were fanned out as soon
    // as it completed): the job cannot finalize while it has no total.
    for (batch, processed) in [(0u32, 4u64), (1, 4)] {
        let outcome = BatchOutcome {
            processed,
            ..BatchOutcome::default()
        };
        assert_eq!(
            jobs.count_batch(&id, batch, &outcome).await.unwrap(),
            Counting::Counted
        );
    }
    assert_eq!(jobs.try_finalize(&id).await.unwrap(), NotApplicable);
    jobs.complete_segment(&id, 1, "mc-1", 5).await.unwrap();
    for (batch, processed) in [(2u32, 4u64), (3, 1)] {
        let outcome = BatchOutcome {
            processed,
            ..BatchOutcome::default()
        };
        jobs.count_batch(&id, batch, &outcome).await.unwrap();
    }
    assert_eq!(jobs.try_finalize(&id).await.unwrap(), NotApplicable);
    // Not the planned frame count: refused.
    assert_eq!(
        jobs.start_segmented_processing(&id, 12).await.unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.start_segmented_processing(&id, 13).await.unwrap(),
        Applied
    );
    let record = job(&jobs, &id).await;
    assert_eq!(record.status, JobStatus::Processing);
    assert_eq!(record.total_frames, Some(13));
    assert_eq!(record.capture_progress, Some(100));
    assert!(record.processing_started_at.is_some());
    assert_eq!(
        jobs.start_segmented_processing(&id, 13).await.unwrap(),
        NotApplicable
    );
    assert_eq!(jobs.try_finalize(&id).await.unwrap(), Applied);
    assert_eq!(job(&jobs, &id).await.status, JobStatus::Finalizing);

    // A segment that captured fewer frames than planned: every segment complete, but the
    // captured total is not F.
    let short = segmented(&jobs, "short.mp4", &[8, 5]).await;
    for (k, captured) in [(0u32, 8u64), (1, 4)] {
        jobs.submit_segment(&short, k, 0).await.unwrap();
        jobs.complete_segment(&short, k, &format!("mc-{k}"), captured)
            .await
            .unwrap();
    }
    let record = job(&jobs, &short).await;
    assert_eq!((record.segments_complete, record.captured_frames), (2, 12));
    for total in [12, 13] {
        assert_eq!(
            jobs.start_segmented_processing(&short, total)
                .await
                .unwrap(),
            NotApplicable
        );
    }
    assert_eq!(job(&jobs, &short).await.status, JobStatus::Capturing);

    // A segment that over-captured makes the frames add up to F before every segment is
    // complete: still refused.
    let over = segmented(&jobs, "over.mp4", &[8, 5]).await;
    jobs.submit_segment(&over, 0, 0).await.unwrap();
    jobs.complete_segment(&over, 0, "mc-0", 13).await.unwrap();
    let record = job(&jobs, &over).await;
    assert_eq!((record.segments_complete, record.captured_frames), (1, 13));
    assert_eq!(
        jobs.start_segmented_processing(&over, 13).await.unwrap(),
        NotApplicable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_fan_out_moves_forward_only() {
    let (_moto, jobs) = table().await;
    let id = segmented(&jobs, "fanout.mp4", &[12, 12, 12]).await;
    jobs.submit_segment(&id, 0, 0).await.unwrap();
    // Not COMPLETE yet.
    assert_eq!(
        jobs.record_segment_fanout_progress(&id, 0, 1)
            .await
            .unwrap(),
        NotApplicable
    );
    jobs.complete_segment(&id, 0, "mc-0", 12).await.unwrap();
    assert_eq!(
        jobs.record_segment_fanout_progress(&id, 0, 2)
            .await
            .unwrap(),
        Applied
    );
    for stale in [1, 2] {
        assert_eq!(
            jobs.record_segment_fanout_progress(&id, 0, stale)
                .await
                .unwrap(),
            NotApplicable
        );
    }
    assert_eq!(segment(&jobs, &id, 0).await.fanout_next, Some(2));
    assert_eq!(
        jobs.record_segment_fanout_progress(&id, 0, 3)
            .await
            .unwrap(),
        Applied
    );
    assert_eq!(segment(&jobs, &id, 0).await.fanout_next, Some(3));
    assert_eq!(jobs.mark_segment_fanned_out(&id, 0).await.unwrap(), Applied);
    assert_eq!(
        jobs.mark_segment_fanned_out(&id, 0).await.unwrap(),
        NotApplicable
    );
    assert_eq!(segment(&jobs, &id, 0).await.state, SegmentState::FannedOut);
    assert_eq!(
        jobs.record_segment_fanout_progress(&id, 0, 4)
            .await
            .unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.fail_segment(&id, 0, "late").await.unwrap(),
        NotApplicable
    );
    // PENDING and SUBMITTED segments fail, once; they cannot be fanned out.
    assert_eq!(
        jobs.mark_segment_fanned_out(&id, 1).await.unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.fail_segment(&id, 1, "no capture").await.unwrap(),
        Applied
    );
    jobs.submit_segment(&id, 2, 0).await.unwrap();
    assert_eq!(
        jobs.fail_segment(&id, 2, "MediaConvert error 1010")
            .await
            .unwrap(),
        Applied
    );
    assert_eq!(
        jobs.fail_segment(&id, 2, "again").await.unwrap(),
        NotApplicable
    );
    let segments = jobs.segments(&id).await.unwrap();
    assert_eq!(
        segments.iter().map(|s| s.state).collect::<Vec<_>>(),
        [
            SegmentState::FannedOut,
            SegmentState::Failed,
            SegmentState::Failed
        ]
    );
    assert_eq!(segments[1].last_error.as_deref(), Some("no capture"));
    assert_eq!(
        segments[2].last_error.as_deref(),
        Some("MediaConvert error 1010")
    );
    // A FAILED segment is neither re-submitted nor completed.
    assert_eq!(jobs.submit_segment(&id, 2, 1).await.unwrap(), NotApplicable);
    assert_eq!(
        jobs.complete_segment(&id, 2, "mc-2", 12).await.unwrap(),
        NotApplicable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segmented_capture_falls_back_once_to_one_recorded_job() {
    let (_moto, jobs) = table().await;
    let id = segmented(&jobs, "fallback.mp4", &[8, 5]).await;
    for k in 0..2 {
        jobs.submit_segment(&id, k, 0).await.unwrap();
    }
    jobs.complete_segment(&id, 0, "mc-0", 8).await.unwrap();
    // Nothing of the fallback before it is decided.
    assert_eq!(
        jobs.record_fallback_job(&id, "mc-full").await.unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.start_fallback_processing(&id, "mc-full", 13, 4)
            .await
            .unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.fall_back(&id, "segment 1 captured 4 of 5 frames")
            .await
            .unwrap(),
        Applied
    );
    assert_eq!(
        jobs.fall_back(&id, "a second reason").await.unwrap(),
        NotApplicable
    );
    let record = job(&jobs, &id).await;
    assert_eq!(
        record.fallback.as_deref(),
        Some("segment 1 captured 4 of 5 frames")
    );
    assert!(
        record
            .capture_note
            .as_deref()
            .is_some_and(|note| note.contains("segment 1 captured 4 of 5 frames")),
        "{record:#?}"
    );
    // The segments are done with: no count, no processing from them.
    assert_eq!(
        jobs.complete_segment(&id, 1, "mc-1", 5).await.unwrap(),
        NotApplicable
    );
    assert_eq!(segment(&jobs, &id, 1).await.state, SegmentState::Submitted);
    let record = job(&jobs, &id).await;
    assert_eq!((record.segments_complete, record.captured_frames), (1, 8));
    assert_eq!(
        jobs.start_segmented_processing(&id, 13).await.unwrap(),
        NotApplicable
    );
    // No job recorded yet: no processing.
    assert_eq!(
        jobs.start_fallback_processing(&id, "mc-full", 13, 4)
            .await
            .unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.record_fallback_job(&id, "mc-full").await.unwrap(),
        Applied
    );
    assert_eq!(
        jobs.record_fallback_job(&id, "mc-full").await.unwrap(),
        Applied,
        "the same id again is idempotent"
    );
    assert_eq!(
        jobs.record_fallback_job(&id, "mc-other").await.unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.start_fallback_processing(&id, "mc-other", 13, 4)
            .await
            .unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.start_fallback_processing(&id, "mc-full", 13, 4)
            .await
            .unwrap(),
        Applied
    );
    let record = job(&jobs, &id).await;
    assert_eq!(record.status, JobStatus::Processing);
    assert_eq!(record.total_frames, Some(13));
    assert_eq!(record.batches, Some(4));
    assert_eq!(record.mediaconvert_job_id.as_deref(), Some("mc-full"));
    assert_eq!(record.capture_progress, Some(100));
    assert_eq!(
        jobs.start_fallback_processing(&id, "mc-full", 13, 4)
            .await
            .unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.fall_back(&id, "too late").await.unwrap(),
        NotApplicable
    );

    // A job captured by one MediaConvert job has nothing to fall back from.
    let single = VideoId::derive("in", "one.mp4", "e");
    jobs.register(&JobRecord::new(single.clone(), "in", "one.mp4", "e", 1))
        .await
        .unwrap();
    jobs.start_capture(&single, "mc-1", "25/1").await.unwrap();
    assert_eq!(
        jobs.fall_back(&single, "no segments").await.unwrap(),
        NotApplicable
    );
    assert_eq!(
        jobs.start_fallback_processing(&single, "mc-1", 8, 2)
            .await
            .unwrap(),
        NotApplicable
    );
}

/// The dispatcher's role from the template runs a segment's life; the same role without
/// `dynamodb:ConditionCheckItem` is refused the submission (its ConditionCheck of the job),
/// as AWS authorises each item of a transaction, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dispatcher_role_needs_condition_check_item() {
    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let as_role = |key, policies: &[NamedPolicy]| {
        JobTable::new(
            stack.clients_as(key, policies).dynamodb,
            &stack.resources.jobs_table,
        )
    };
    let without: Vec<NamedPolicy> = stack
        .policies
        .dispatcher
        .iter()
        .map(|p| NamedPolicy {
            name: p.name.clone(),
            document: p.document.without_action("dynamodb:ConditionCheckItem"),
        })
        .collect();
    let key = stack
        .create_identity("dispatcher-no-check", &without)
        .await
        .unwrap();
    let blind = as_role(&key, &without);
    // PutItem and UpdateItem are enough to start the capture (Update and Puts only).
    let id = segmented(&blind, "iam.mp4", &[5, 5]).await;
    let refused = blind.submit_segment(&id, 0, 0).await.unwrap_err();
    assert!(!refused.is_retryable(), "{refused}");
    assert_eq!(
        segment(&stack.jobs, &id, 0).await.state,
        SegmentState::Pending
    );

    let dispatcher = as_role(&stack.identities.dispatcher, &stack.policies.dispatcher);
    assert_eq!(dispatcher.submit_segment(&id, 0, 0).await.unwrap(), Applied);
    assert_eq!(
        dispatcher
            .record_segment_job(&id, 0, 0, "mc-0")
            .await
            .unwrap(),
        Applied
    );
    assert_eq!(
        dispatcher
            .complete_segment(&id, 0, "mc-0", 5)
            .await
            .unwrap(),
        Applied
    );
    assert_eq!(dispatcher.segments(&id).await.unwrap().len(), 2);
    assert_eq!(
        dispatcher
            .record_segment_fanout_progress(&id, 0, 1)
            .await
            .unwrap(),
        Applied
    );
    assert_eq!(
        dispatcher.mark_segment_fanned_out(&id, 0).await.unwrap(),
        Applied
    );
    assert_eq!(dispatcher.fall_back(&id, "test").await.unwrap(), Applied);
}

/// `framefleet cancel` of a segmented job cancels the MediaConvert job of every SUBMITTED
/// segment (and leaves a COMPLETE segment's alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_cancels_every_running_segment() {
    let stack = spawn_stack_with(StackOptions::idle()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.mp4");
    framefleet_e2e::media::make_video(&long, 96, 64, "30", 60.0)
        .await
        .unwrap();
    let long = std::fs::read(&long).unwrap();
    // A blocker holds the stand-in's one job slot, so the segments' three real jobs wait in
    // SUBMITTED, where CancelJob takes them, however fast ffmpeg is.
    let blocker = stack.occupy_mediaconvert(long.clone()).await.unwrap();
    let mut job_ids = Vec::new();
    for k in 0..3 {
        job_ids.push(segment_job(&stack, k).await);
    }
    let jobs = &stack.jobs;
    let id = segmented(jobs, "cancel.mp4", &[10, 10, 10]).await;
    for (k, job_id) in job_ids.iter().enumerate() {
        let k = k as u32;
        assert_eq!(jobs.submit_segment(&id, k, 0).await.unwrap(), Applied);
        assert_eq!(
            jobs.record_segment_job(&id, k, 0, job_id).await.unwrap(),
            Applied
        );
    }
    // Segment 2 is counted as complete: its job is not the job table's to cancel any more.
    assert_eq!(
        jobs.complete_segment(&id, 2, &job_ids[2], 10)
            .await
            .unwrap(),
        Applied
    );

    let out = stack
        .framefleet(&["cancel", id.as_str(), "--json"])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(report["canceled_jobs"], 2, "{report}");
    assert_eq!(report["captures"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(job(jobs, &id).await.status, JobStatus::Canceled);
    let status = |job_id: String| {
        let mediaconvert = stack.clients.mediaconvert.clone();
        async move {
            mediaconvert
                .get_job()
                .id(job_id)
                .send()
                .await
                .unwrap()
                .job()
                .and_then(|j| j.status())
                .cloned()
        }
    };
    for job_id in &job_ids[..2] {
        assert_eq!(
            status(job_id.clone()).await,
            Some(MediaConvertStatus::Canceled),
            "{job_id}"
        );
    }
    assert_ne!(
        status(job_ids[2].clone()).await,
        Some(MediaConvertStatus::Canceled)
    );
    for job_id in [&blocker, &job_ids[2]] {
        let _ = stack
            .clients
            .mediaconvert
            .cancel_job()
            .id(job_id)
            .send()
            .await;
    }
}

/// A real capture job in the stand-in for segment `k` of the cancel test, of the video
/// `occupy_mediaconvert` put under `sources/blocker/` (each with its own token: one per
/// video id).
async fn segment_job(stack: &framefleet_e2e::stack::Stack, k: u32) -> String {
    use framefleet_dispatcher::mediaconvert::{create_capture_job, CaptureRequest};
    use framefleet_dispatcher::rate::CaptureRate;
    let frames_bucket = &stack.resources.frames_bucket;
    create_capture_job(
        &stack.clients.mediaconvert,
        &stack.dispatcher_settings.dispatcher,
        &CaptureRequest {
            video_id: &VideoId::from_raw(format!("segment-{k}")),
            input_url: format!("s3://{frames_bucket}/sources/blocker/long.mp4"),
            destination: format!("s3://{frames_bucket}/segment-frames/s{k:04}/"),
            preview_destination: format!("s3://{frames_bucket}/segment-preview/preview-s{k:04}"),
            rate: CaptureRate::parse("30").unwrap(),
            attempt: 0,
            source_has_audio: false,
            traceparent: None,
            part: None,
        },
    )
    .await
    .unwrap()
}
