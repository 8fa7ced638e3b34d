//! Exit codes, so scripts can tell a failed job from a failed command. Job outcomes use small
//! numbers; command errors use the BSD `sysexits.h` values.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success; the job (every job, for `submit --wait`) is COMPLETE |
//! | 1 | a job FAILED |
//! | 2 | the command line is wrong (clap) |
//! | 3 | a job was CANCELED |
//! | 4 | `status`: the job is not finished yet |
//! | 64 | a flag's value is out of range |
//! | 65 | the job cannot do that (wrong status), or fetched files disagree with the manifest |
//! | 66 | a video file or a job does not exist |
//! | 69 | an AWS resource does not exist (NoSuchBucket, table) or refused the request |
//! | 74 | a downloaded file cannot be written |
//! | 75 | AWS was unavailable or throttled: try again |
//! | 77 | no credentials, or access denied |

use framefleet_core::jobs::JobStatus;

/// Success, or the job is COMPLETE.
pub const OK: u8 = 0;
/// A job FAILED.
pub const FAILED: u8 = 1;
/// A job was CANCELED.
pub const CANCELED: u8 = 3;
/// The job is still running (`status` only).
pub const RUNNING: u8 = 4;
/// `EX_USAGE`.
pub const USAGE: u8 = 64;
/// `EX_DATAERR`.
pub const DATA: u8 = 65;
/// `EX_NOINPUT`.
pub const NO_INPUT: u8 = 66;
/// `EX_UNAVAILABLE`.
pub const UNAVAILABLE: u8 = 69;
/// `EX_IOERR`.
pub const IO: u8 = 74;
/// `EX_TEMPFAIL`.
pub const TEMPORARY: u8 = 75;
/// `EX_NOPERM`.
pub const NO_PERMISSION: u8 = 77;

/// The exit code a job's status maps to.
pub fn for_status(status: JobStatus) -> u8 {
    match status {
        JobStatus::Complete => OK,
        JobStatus::Failed => FAILED,
        JobStatus::Canceled => CANCELED,
        _ => RUNNING,
    }
}

/// The worst of several jobs' codes: any FAILED wins over CANCELED, which wins over COMPLETE.
pub fn worst(codes: impl IntoIterator<Item = u8>) -> u8 {
    codes
        .into_iter()
        .fold(OK, |worst, code| match (worst, code) {
            (FAILED, _) | (_, FAILED) => FAILED,
            (RUNNING, _) | (_, RUNNING) => RUNNING,
            (CANCELED, _) | (_, CANCELED) => CANCELED,
            _ => OK,
        })
}
