//! `framefleet`, the command a user runs against a deployed (or local) framefleet.
//!
//! - [`Cli`] and [`run`]: the command line and what each subcommand does, here.
//! - [`context`]: AWS clients (profile, region, `AWS_ENDPOINT_URL…`) and resource names.
//! - [`submit`]: uploading videos (multipart with parallel parts for large files).
//! - [`progress`]: following jobs: live bars on a terminal, plain or JSON lines otherwise.
//! - [`list`]: recent and open jobs from the job table's two sparse indexes.
//! - [`fetch`]: resumable, parallel download of a job's outputs, checked against its manifest.
//! - [`cancel`]: marking a job CANCELED and canceling its MediaConvert job.
//! - [`error`] and [`exit`]: one-line errors and documented exit codes.

/// `println!` for the command's results, except that a reader that has gone away (`framefleet
/// list | head`, EPIPE) ends the command quietly with success, as Unix tools do, instead of
/// the panic `println!` gives.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}
pub(crate) use out;

/// Writes one line to stdout; see [`out!`].
pub(crate) fn write_stdout(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("framefleet: cannot write to stdout: {error}");
        std::process::exit(i32::from(exit::IO));
    }
}

pub mod cancel;
pub mod context;
pub mod error;
pub mod exit;
pub mod fetch;
pub mod list;
pub mod progress;
pub mod submit;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use framefleet_core::video::VideoId;

pub use context::{Context, Output};
pub use error::CliError;

/// Submit videos to framefleet and follow, list, fetch or cancel their jobs.
#[derive(Debug, Parser)]
#[command(name = "framefleet", version, about)]
pub struct Cli {
    /// AWS, resource and output options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// One JSON object per line instead of human output (and no progress bars).
    #[arg(long, global = true)]
    pub json: bool,
    /// AWS profile (default: `AWS_PROFILE`, then `default`).
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// AWS region (default: `AWS_REGION` or the profile's).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Bucket videos are uploaded to.
    #[arg(
        long,
        global = true,
        env = "FRAMEFLEET__RESOURCES__INGRESS_BUCKET",
        default_value = "framefleet-ingress"
    )]
    pub ingress_bucket: String,
    /// Bucket edge maps and manifests are read from.
    #[arg(
        long,
        global = true,
        env = "FRAMEFLEET__RESOURCES__PROCESSED_BUCKET",
        default_value = "framefleet-processed"
    )]
    pub processed_bucket: String,
    /// DynamoDB table of jobs.
    #[arg(
        long,
        global = true,
        env = "FRAMEFLEET__RESOURCES__JOBS_TABLE",
        default_value = "framefleet-jobs"
    )]
    pub jobs_table: String,
    /// ECS cluster of the worker service: with `--worker-service`, `status` and `watch` show
    /// how many workers run (`DescribeServices`; needs `ecs:DescribeServices` on it).
    #[arg(long, global = true, env = "FRAMEFLEET__SCALING__CLUSTER")]
    pub cluster: Option<String>,
    /// The worker service in `--cluster`.
    #[arg(long, global = true, env = "FRAMEFLEET__SCALING__SERVICE")]
    pub worker_service: Option<String>,
    /// How often `watch` and `--wait` re-read a job, in milliseconds.
    #[arg(long, global = true, default_value_t = 1000)]
    pub interval_ms: u64,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload videos to the ingress bucket and print each one's video id.
    Submit(submit::SubmitArgs),
    /// Show a job once (default: the newest job); the exit code follows its status.
    Status {
        /// The video id `submit` printed.
        video_id: Option<String>,
    },
    /// Follow a job to its end (default: the newest job); the exit code follows its status.
    Watch {
        /// The video id `submit` printed.
        video_id: Option<String>,
    },
    /// Recent and open jobs, newest first.
    List(list::ListArgs),
    /// Download a COMPLETE job's edge maps, preview and manifest; skips files already complete.
    Fetch(fetch::FetchArgs),
    /// Cancel a job: its MediaConvert capture stops and workers skip its remaining batches.
    Cancel {
        /// The video id.
        video_id: String,
    },
}

/// Runs a parsed command line; `Ok` holds the exit code (a job's status, or 0).
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    let context = Context::load(&cli.global).await;
    let interval = Duration::from_millis(cli.global.interval_ms.max(50));
    match cli.command {
        Command::Submit(args) => submit::run(&context, &args, interval).await,
        Command::Status { video_id } => {
            let id = resolve(&context, video_id).await?;
            progress::status(&context, &id).await
        }
        Command::Watch { video_id } => {
            let id = resolve(&context, video_id).await?;
            progress::follow(&context, &[id], interval).await
        }
        Command::List(args) => list::run(&context, &args).await,
        Command::Fetch(args) => fetch::run(&context, &args).await,
        Command::Cancel { video_id } => cancel::run(&context, &VideoId::from_raw(video_id)).await,
    }
}

/// The given id, or the newest job's.
async fn resolve(context: &Context, video_id: Option<String>) -> Result<VideoId, CliError> {
    if let Some(id) = video_id {
        return Ok(VideoId::from_raw(id));
    }
    let newest = context.jobs.recent_jobs(list::DEFAULT_DAYS, 1).await?;
    newest
        .into_iter()
        .next()
        .map(|key| key.video_id)
        .ok_or_else(|| CliError::JobNotFound {
            video_id: "(newest)".into(),
            table: context.resources.jobs_table.clone(),
        })
}

/// Where a downloaded file goes: `dir` joined with the part of `key` after the job's prefix,
/// refusing anything that would leave `dir`.
pub fn local_path(dir: &std::path::Path, prefix: &str, key: &str) -> Option<PathBuf> {
    let relative = key.strip_prefix(prefix)?;
    let mut path = dir.to_path_buf();
    let mut parts = 0;
    for part in relative.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\\') {
            return None;
        }
        path.push(part);
        parts += 1;
    }
    (parts > 0).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_stay_inside_the_directory() {
        let dir = std::path::Path::new("/out");
        assert_eq!(
            local_path(dir, "v-1/", "v-1/clip.0000001.jpg"),
            Some(PathBuf::from("/out/clip.0000001.jpg"))
        );
        assert_eq!(local_path(dir, "v-1/", "v-1/../../etc/passwd"), None);
        assert_eq!(local_path(dir, "v-1/", "v-1/"), None);
        assert_eq!(local_path(dir, "v-1/", "v-2/a.jpg"), None);
    }

    #[test]
    fn the_worst_status_wins() {
        assert_eq!(exit::worst([exit::OK, exit::CANCELED]), exit::CANCELED);
        assert_eq!(exit::worst([exit::CANCELED, exit::FAILED]), exit::FAILED);
        assert_eq!(exit::worst([]), exit::OK);
    }
}
