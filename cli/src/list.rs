//! `framefleet list`: recent jobs (the recent-jobs index, day by day backwards) and every open
//! job (the open-jobs index), newest first. Two sets of Queries, never a scan; each job found
//! is then read consistently for its status and counts.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::{exit, CliError, Context, Output};

/// Days looked back by default.
pub const DEFAULT_DAYS: u32 = 7;

/// `framefleet list` options.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Most recent jobs to show (open jobs are always shown).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// UTC days to look back, today included.
    #[arg(long, default_value_t = DEFAULT_DAYS)]
    pub days: u32,
}

/// One row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The job.
    pub video_id: String,
    /// Its status.
    pub status: String,
    /// The uploaded key.
    pub source_key: String,
    /// Frames captured, once known.
    pub total_frames: Option<u64>,
    /// Edge maps written.
    pub processed_frames: u64,
    /// Frames failed.
    pub failed_frames: u64,
    /// Registration time (RFC 3339).
    pub created_at: String,
    /// Seconds since registration.
    pub age_seconds: i64,
}

/// "3m", "2h", "4d": how long ago, short.
pub fn short_age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Lists the jobs.
pub async fn run(context: &Context, args: &ListArgs) -> Result<u8, CliError> {
    let mut keys = context.jobs.recent_jobs(args.days, args.limit).await?;
    keys.extend(context.jobs.open_jobs().await?);
    let ids: BTreeMap<_, _> = keys.into_iter().map(|k| (k.video_id.clone(), ())).collect();
    let records: Vec<_> = futures::stream::iter(ids.into_keys())
        .map(|id| async move { context.jobs.get(&id).await })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let now = time::OffsetDateTime::now_utc();
    let mut rows: Vec<Row> = records
        .into_iter()
        .flatten()
        .map(|record| {
            let created = time::OffsetDateTime::parse(
                &record.created_at,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap_or(now);
            Row {
                video_id: record.video_id.to_string(),
                status: record.status.to_string(),
                source_key: record.source_key,
                total_frames: record.total_frames,
                processed_frames: record.processed_frames,
                failed_frames: record.failed_frames,
                created_at: record.created_at,
                age_seconds: (now - created).whole_seconds(),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    match context.output {
        Output::Json => {
            for row in &rows {
                crate::out!("{}", serde_json::to_string(row).unwrap_or_default());
            }
        }
        _ => {
            let width = rows
                .iter()
                .map(|r| r.video_id.len())
                .max()
                .unwrap_or(8)
                .max(8);
            crate::out!(
                "{:width$}  {:10}  {:>11}  {:>6}  {:>5}  KEY",
                "VIDEO ID",
                "STATUS",
                "FRAMES",
                "FAILED",
                "AGE"
            );
            for row in &rows {
                let frames = format!(
                    "{}/{}",
                    row.processed_frames + row.failed_frames,
                    row.total_frames.map_or("?".into(), |t| t.to_string())
                );
                crate::out!(
                    "{:width$}  {:10}  {:>11}  {:>6}  {:>5}  {}",
                    row.video_id,
                    row.status,
                    frames,
                    row.failed_frames,
                    short_age(row.age_seconds),
                    row.source_key
                );
            }
        }
    }
    Ok(exit::OK)
}
