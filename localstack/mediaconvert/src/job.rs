//! Job records and the in-memory job table: ids and ARNs in MediaConvert's format, forward-only
//! status (SUBMITTED → PROGRESSING → COMPLETE / ERROR / CANCELED), `ClientRequestToken`
//! idempotency, and the `Job` JSON that `GetJob`, `ListJobs` and `CreateJob` return.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::plan::JobPlan;

/// How long a `ClientRequestToken` maps to its job: MediaConvert returns the original job for a
/// token reused "within one minute of a successful request".
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(60);

/// Most jobs one `ListJobs` page holds (MediaConvert's limit).
pub const MAX_LIST_RESULTS: usize = 20;

/// A job's status as MediaConvert reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Accepted, waiting for a free slot.
    Submitted,
    /// Running.
    Progressing,
    /// All captures written.
    Complete,
    /// Cancelled through `CancelJob`.
    Canceled,
    /// Failed; `errorCode` and `errorMessage` say why.
    Error,
}

impl JobStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "SUBMITTED",
            Self::Progressing => "PROGRESSING",
            Self::Complete => "COMPLETE",
            Self::Canceled => "CANCELED",
            Self::Error => "ERROR",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Submitted,
            Self::Progressing,
            Self::Complete,
            Self::Canceled,
            Self::Error,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// True once the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Canceled | Self::Error)
    }
}

/// The phase of a running job (`currentPhase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Reading the input.
    Probing = 0,
    /// Capturing frames.
    Transcoding = 1,
    /// Writing captures to S3.
    Uploading = 2,
}

impl Phase {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probing => "PROBING",
            Self::Transcoding => "TRANSCODING",
            Self::Uploading => "UPLOADING",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Probing,
            1 => Self::Transcoding,
            _ => Self::Uploading,
        }
    }
}

/// Live progress of a running job, written by the runner and read by `GetJob` and the status
/// updates without taking the table lock.
#[derive(Debug, Default)]
pub struct JobProgress {
    phase: AtomicU8,
    /// Outputs whose captures are finished.
    pub outputs_done: AtomicU64,
    /// Outputs in the job.
    pub outputs_total: AtomicU64,
    /// Position of the running capture in the input, in microseconds.
    pub position_us: AtomicU64,
    /// Input duration in microseconds (0 when unknown).
    pub duration_us: AtomicU64,
    /// Input frames per second × 1000 (0 when unknown).
    pub input_fps_milli: AtomicU64,
    /// Captures written to S3.
    pub uploaded: AtomicU64,
    /// Captures to write to S3.
    pub to_upload: AtomicU64,
}

impl JobProgress {
    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// Input frames decoded so far, estimated from the capture position and the input rate.
    pub fn frames_decoded(&self) -> Option<u64> {
        let fps_milli = self.input_fps_milli.load(Ordering::Relaxed);
        if fps_milli == 0 {
            return None;
        }
        let outputs_done = self.outputs_done.load(Ordering::Relaxed);
        let duration = self.duration_us.load(Ordering::Relaxed);
        let position = self.position_us.load(Ordering::Relaxed);
        // Every output decodes the whole input; count the passes done plus the current one.
        let us = outputs_done * duration + position;
        Some(us * fps_milli / 1_000_000_000)
    }

    /// Percent complete: probing 0–5, capturing 5–90 (by input position over all outputs),
    /// uploading 90–100.
    pub fn percent(&self) -> u8 {
        match self.phase() {
            Phase::Probing => 0,
            Phase::Transcoding => {
                let total = self.outputs_total.load(Ordering::Relaxed).max(1) as f64;
                let done = self.outputs_done.load(Ordering::Relaxed) as f64;
                let duration = self.duration_us.load(Ordering::Relaxed);
                let fraction = if duration == 0 {
                    0.0
                } else {
                    (self.position_us.load(Ordering::Relaxed) as f64 / duration as f64).min(1.0)
                };
                (5.0 + 85.0 * ((done + fraction) / total).min(1.0)) as u8
            }
            Phase::Uploading => {
                let total = self.to_upload.load(Ordering::Relaxed).max(1) as f64;
                let done = self.uploaded.load(Ordering::Relaxed) as f64;
                (90.0 + 10.0 * (done / total).min(1.0)).min(99.0) as u8
            }
        }
    }
}

/// Why a job ended in ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    /// MediaConvert error code, e.g. 1010.
    pub code: i32,
    /// MediaConvert-style message.
    pub message: String,
}

/// What one output produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputResult {
    /// `s3://` URL of the MP4, or of the last capture of a frame-capture output (MediaConvert
    /// reports only that one).
    pub path: String,
    /// Captures written (0 for an MP4).
    pub captures: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
}

/// What one output group produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResult {
    /// One entry per output, in request order.
    pub outputs: Vec<OutputResult>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Captures written.
    Complete(Vec<GroupResult>),
    /// Failed.
    Error(JobFailure),
    /// Cancelled through `CancelJob`.
    Canceled,
}

/// One job.
#[derive(Debug)]
pub struct JobRecord {
    /// `<epoch ms>-<6 chars>`, as MediaConvert makes them.
    pub id: String,
    /// `arn:aws:mediaconvert:<region>:<account>:jobs/<id>`.
    pub arn: String,
    /// When `CreateJob` accepted it.
    pub created_at: OffsetDateTime,
    /// The role from the request.
    pub role: String,
    /// The settings from the request, verbatim.
    pub settings: Value,
    /// The user metadata from the request.
    pub user_metadata: BTreeMap<String, String>,
    /// The queue ARN.
    pub queue_arn: String,
    /// The idempotency token from the request.
    pub client_request_token: Option<String>,
    /// The status update interval from the request (`SECONDS_60` when absent).
    pub status_update_interval: String,
    /// The priority from the request.
    pub priority: i64,
    /// Current status.
    pub status: JobStatus,
    /// When it started PROGRESSING.
    pub started_at: Option<OffsetDateTime>,
    /// When it reached a terminal status.
    pub finished_at: Option<OffsetDateTime>,
    /// Set when it failed.
    pub failure: Option<JobFailure>,
    /// Set when it completed.
    pub results: Option<Vec<GroupResult>>,
    /// What it does.
    pub plan: Arc<JobPlan>,
    /// Live progress while PROGRESSING.
    pub progress: Arc<JobProgress>,
    /// Cancelled by `CancelJob` or shutdown.
    pub cancel: CancellationToken,
}

impl JobRecord {
    /// The `Job` structure of the REST API.
    pub fn to_json(&self) -> Value {
        let mut job = Map::new();
        job.insert("arn".into(), json!(self.arn));
        job.insert("id".into(), json!(self.id));
        job.insert("createdAt".into(), json!(self.created_at.unix_timestamp()));
        job.insert("role".into(), json!(self.role));
        job.insert("settings".into(), self.settings.clone());
        job.insert("status".into(), json!(self.status.as_str()));
        job.insert("userMetadata".into(), json!(self.user_metadata));
        job.insert("queue".into(), json!(self.queue_arn));
        job.insert("priority".into(), json!(self.priority));
        job.insert(
            "statusUpdateInterval".into(),
            json!(self.status_update_interval),
        );
        if let Some(token) = &self.client_request_token {
            job.insert("clientRequestToken".into(), json!(token));
        }
        job.insert("accelerationStatus".into(), json!("NOT_APPLICABLE"));
        job.insert("simulateReservedQueue".into(), json!("DISABLED"));
        job.insert("retryCount".into(), json!(0));
        job.insert("messages".into(), json!({"info": [], "warning": []}));
        let mut timing = Map::new();
        timing.insert("submitTime".into(), json!(self.created_at.unix_timestamp()));
        if let Some(started) = self.started_at {
            timing.insert("startTime".into(), json!(started.unix_timestamp()));
        }
        if let Some(finished) = self.finished_at {
            timing.insert("finishTime".into(), json!(finished.unix_timestamp()));
        }
        job.insert("timing".into(), Value::Object(timing));
        if self.status == JobStatus::Progressing {
            job.insert("currentPhase".into(), json!(self.progress.phase().as_str()));
            job.insert("jobPercentComplete".into(), json!(self.progress.percent()));
        }
        if let Some(failure) = &self.failure {
            job.insert("errorCode".into(), json!(failure.code));
            job.insert("errorMessage".into(), json!(failure.message));
        }
        if let Some(results) = &self.results {
            let groups: Vec<Value> = results
                .iter()
                .map(|group| {
                    let outputs: Vec<Value> = group
                        .outputs
                        .iter()
                        .map(|o| {
                            json!({
                                "durationInMs": o.duration_ms,
                                "videoDetails": {"widthInPx": o.width, "heightInPx": o.height},
                            })
                        })
                        .collect();
                    json!({"outputDetails": outputs})
                })
                .collect();
            job.insert("outputGroupDetails".into(), Value::Array(groups));
        }
        Value::Object(job)
    }
}

/// A fresh job id: creation time in epoch milliseconds, a dash and six lowercase letters or
/// digits (`1515368087458-qnoxtd`).
pub fn new_job_id(now: OffsetDateTime) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let millis = now.unix_timestamp_nanos() / 1_000_000;
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..6]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{millis}-{suffix}")
}

/// `ListJobs` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Page size, 1..=20.
    pub max_results: usize,
    /// Offset from a previous page.
    pub offset: usize,
    /// Oldest first instead of newest first.
    pub ascending: bool,
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs on this queue (ARN).
    pub queue_arn: Option<String>,
}

/// The in-memory job table.
#[derive(Debug, Default)]
pub struct JobStore {
    jobs: HashMap<String, JobRecord>,
    order: Vec<String>,
    tokens: HashMap<String, (String, Instant)>,
}

impl JobStore {
    /// The job created with `token` within the idempotency window, if any.
    pub fn by_token(&mut self, token: &str, now: Instant) -> Option<&JobRecord> {
        self.tokens
            .retain(|_, (_, at)| now.duration_since(*at) < IDEMPOTENCY_WINDOW);
        let (id, _) = self.tokens.get(token)?;
        self.jobs.get(id)
    }

    /// Adds a job, remembering its token from `now`.
    pub fn insert(&mut self, record: JobRecord, now: Instant) {
        if let Some(token) = &record.client_request_token {
            self.tokens.insert(token.clone(), (record.id.clone(), now));
        }
        self.order.push(record.id.clone());
        self.jobs.insert(record.id.clone(), record);
    }

    /// The job `id`.
    pub fn get(&self, id: &str) -> Option<&JobRecord> {
        self.jobs.get(id)
    }

    /// SUBMITTED → PROGRESSING; false if the job is gone or no longer SUBMITTED.
    pub fn start(&mut self, id: &str, now: OffsetDateTime) -> bool {
        match self.jobs.get_mut(id) {
            Some(job) if job.status == JobStatus::Submitted => {
                job.status = JobStatus::Progressing;
                job.started_at = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Moves a SUBMITTED or PROGRESSING job to its terminal status; false if it had already
    /// ended (so only the first outcome is reported).
    pub fn finish(&mut self, id: &str, outcome: Outcome, now: OffsetDateTime) -> bool {
        let Some(job) = self.jobs.get_mut(id) else {
            return false;
        };
        if job.status.is_terminal() {
            return false;
        }
        job.finished_at = Some(now);
        match outcome {
            Outcome::Complete(results) => {
                job.status = JobStatus::Complete;
                job.results = Some(results);
            }
            Outcome::Error(failure) => {
                job.status = JobStatus::Error;
                job.failure = Some(failure);
            }
            Outcome::Canceled => job.status = JobStatus::Canceled,
        }
        true
    }

    /// One page of jobs and the token of the next page.
    pub fn list(&self, query: &ListQuery) -> (Vec<Value>, Option<String>) {
        let matching: Vec<&JobRecord> = {
            let ids: Box<dyn Iterator<Item = &String>> = if query.ascending {
                Box::new(self.order.iter())
            } else {
                Box::new(self.order.iter().rev())
            };
            ids.filter_map(|id| self.jobs.get(id))
                .filter(|job| query.status.is_none_or(|s| job.status == s))
                .filter(|job| {
                    query
                        .queue_arn
                        .as_deref()
                        .is_none_or(|q| job.queue_arn == q)
                })
                .collect()
        };
        let page: Vec<Value> = matching
            .iter()
            .skip(query.offset)
            .take(query.max_results)
            .map(|job| job.to_json())
            .collect();
        let next = query.offset + page.len();
        let next_token = (next < matching.len()).then(|| next.to_string());
        (page, next_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{InputPlan, JobPlan};

    fn record(id: &str, token: Option<&str>) -> JobRecord {
        JobRecord {
            id: id.into(),
            arn: format!("arn:aws:mediaconvert:us-east-1:000000000000:jobs/{id}"),
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            role: "role".into(),
            settings: json!({"inputs": []}),
            user_metadata: BTreeMap::from([("videoId".into(), "vid-1".into())]),
            queue_arn: "arn:aws:mediaconvert:us-east-1:000000000000:queues/Default".into(),
            client_request_token: token.map(String::from),
            status_update_interval: "SECONDS_60".into(),
            priority: 0,
            status: JobStatus::Submitted,
            started_at: None,
            finished_at: None,
            failure: None,
            results: None,
            plan: Arc::new(JobPlan {
                input: InputPlan {
                    url: "s3://in/a.mp4".into(),
                    bucket: "in".into(),
                    key: "a.mp4".into(),
                    auto_rotate: false,
                    audio_selectors: Default::default(),
                    clip: None,
                    timecode_source: crate::timecode::TimecodeSource::ZeroBased,
                },
                groups: vec![],
                status_update_interval: Duration::from_secs(60),
            }),
            progress: Arc::default(),
            cancel: CancellationToken::new(),
        }
    }

    #[test]
    fn job_ids_look_like_mediaconvert() {
        let now = OffsetDateTime::from_unix_timestamp(1_515_368_087).unwrap();
        let id = new_job_id(now);
        let (millis, suffix) = id.split_once('-').unwrap();
        assert_eq!(millis, "1515368087000");
        assert_eq!(suffix.len(), 6);
        assert!(suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }

    #[test]
    fn tokens_are_idempotent_within_the_window() {
        let mut store = JobStore::default();
        let t0 = Instant::now();
        store.insert(record("1-aaaaaa", Some("tok")), t0);
        assert_eq!(store.by_token("tok", t0).unwrap().id, "1-aaaaaa");
        assert!(store.by_token("other", t0).is_none());
        assert!(store
            .by_token("tok", t0 + IDEMPOTENCY_WINDOW + Duration::from_secs(1))
            .is_none());
    }

    #[test]
    fn status_moves_forward_once() {
        let mut store = JobStore::default();
        let now = OffsetDateTime::now_utc();
        store.insert(record("1-aaaaaa", None), Instant::now());
        assert!(store.start("1-aaaaaa", now));
        assert!(!store.start("1-aaaaaa", now));
        assert!(store.finish("1-aaaaaa", Outcome::Canceled, now));
        let failure = JobFailure {
            code: 1010,
            message: "x".into(),
        };
        assert!(!store.finish("1-aaaaaa", Outcome::Error(failure), now));
        assert_eq!(store.get("1-aaaaaa").unwrap().status, JobStatus::Canceled);
    }

    #[test]
    fn job_json_uses_sdk_member_names() {
        let mut job = record("1-aaaaaa", Some("tok"));
        job.status = JobStatus::Complete;
        job.results = Some(vec![GroupResult {
            outputs: vec![OutputResult {
                path: "s3://f/v/a.0000009.jpg".into(),
                captures: 10,
                duration_ms: 2000,
                width: 160,
                height: 120,
            }],
        }]);
        let value = job.to_json();
        assert_eq!(value["status"], "COMPLETE");
        assert_eq!(value["createdAt"], 1_700_000_000);
        assert_eq!(value["clientRequestToken"], "tok");
        assert_eq!(value["userMetadata"]["videoId"], "vid-1");
        assert_eq!(
            value["outputGroupDetails"][0]["outputDetails"][0]["videoDetails"]["widthInPx"],
            160
        );
        assert!(value.get("currentPhase").is_none());
    }

    #[test]
    fn list_pages_newest_first() {
        let mut store = JobStore::default();
        for i in 0..25 {
            store.insert(record(&format!("{i}-aaaaaa"), None), Instant::now());
        }
        let query = ListQuery {
            max_results: 20,
            ..ListQuery::default()
        };
        let (page, next) = store.list(&query);
        assert_eq!(page.len(), 20);
        assert_eq!(page[0]["id"], "24-aaaaaa");
        let (page, next) = store.list(&ListQuery {
            offset: next.unwrap().parse().unwrap(),
            ..query.clone()
        });
        assert_eq!(page.len(), 5);
        assert_eq!(page[4]["id"], "0-aaaaaa");
        assert!(next.is_none());
        let (page, _) = store.list(&ListQuery {
            status: Some(JobStatus::Complete),
            ..query
        });
        assert!(page.is_empty());
    }

    #[test]
    fn progress_percent_tracks_phases() {
        let progress = JobProgress::default();
        assert_eq!(progress.percent(), 0);
        progress.set_phase(Phase::Transcoding);
        progress.outputs_total.store(1, Ordering::Relaxed);
        progress.duration_us.store(2_000_000, Ordering::Relaxed);
        progress.position_us.store(1_000_000, Ordering::Relaxed);
        progress.input_fps_milli.store(10_000, Ordering::Relaxed);
        assert_eq!(progress.percent(), 47);
        assert_eq!(progress.frames_decoded(), Some(10));
        progress.set_phase(Phase::Uploading);
        progress.to_upload.store(10, Ordering::Relaxed);
        progress.uploaded.store(5, Ordering::Relaxed);
        assert_eq!(progress.percent(), 95);
    }
}
