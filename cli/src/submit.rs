//! `framefleet submit`: uploads each video to the ingress bucket and prints the video id the
//! dispatcher will derive from the S3 notification: from (bucket, key, version id) on a
//! versioned bucket, (bucket, key, eTag) otherwise, by the one rule both use
//! ([`VideoId::of_upload`]). The version id comes back from PutObject and
//! CompleteMultipartUpload as `x-amz-version-id` ("PutObject", "CompleteMultipartUpload",
//! Amazon S3 API Reference,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html>), the
//! same value the ObjectCreated notification carries as `versionId`. Uploading the same file
//! again to a versioned bucket makes a new version, so a new job.
//!
//! Large files go up as a multipart upload with parts sent in parallel. S3's limits ("Amazon
//! S3 multipart upload limits",
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html>): parts of 5 MiB to
//! 5 GiB except the last, at most 10,000 parts, objects up to 5 TiB. The eTag of a multipart
//! object is not the MD5 of its content but `<md5 of the parts' md5s>-<parts>` ("Checking
//! object integrity",
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html>);
//! the notification carries that eTag, so the id is derived from the eTag S3 returns from
//! `CompleteMultipartUpload` (or `PutObject`), never computed locally.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use framefleet_core::video::VideoId;

use crate::{exit, progress, CliError, Context, Output};

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (except the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// S3's most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// `framefleet submit` options.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Video files to upload.
    #[arg(required = true)]
    pub videos: Vec<PathBuf>,
    /// Follow the jobs to their end; the exit code follows their statuses.
    #[arg(long)]
    pub wait: bool,
    /// Prefix of the object keys (the key is the prefix and the file name).
    #[arg(long, default_value = "")]
    pub key_prefix: String,
    /// Files of at least this many bytes go up as multipart uploads.
    #[arg(long, default_value_t = 16 * MIB)]
    pub multipart_threshold: u64,
    /// Bytes per part (at least 5 MiB; raised when the file would need more than 10,000 parts).
    #[arg(long, default_value_t = 8 * MIB)]
    pub part_size: u64,
    /// Parts uploaded at once.
    #[arg(long, default_value_t = 4)]
    pub parallel_parts: usize,
}

/// One upload's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Submitted {
    /// The local file.
    pub file: String,
    /// The ingress bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The eTag S3 returned (multipart: `…-N`).
    pub etag: String,
    /// The version S3 returned, on a versioned ingress bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Bytes uploaded.
    pub size: u64,
    /// The id the dispatcher derives.
    pub video_id: VideoId,
}

/// Part size for a file of `size` bytes: the requested one, raised to fit 10,000 parts.
pub fn part_size_for(size: u64, requested: u64) -> u64 {
    requested
        .max(MIN_PART_SIZE)
        .max(size.div_ceil(MAX_PARTS))
        .min(MAX_PART_SIZE)
}

/// Uploads every video (checked to be readable first), prints ids, and with `--wait` follows.
pub async fn run(context: &Context, args: &SubmitArgs, interval: Duration) -> Result<u8, CliError> {
    if args.part_size < MIN_PART_SIZE || args.part_size > MAX_PART_SIZE {
        return Err(CliError::Usage {
            flag: "--part-size",
            message: format!("{} bytes is outside S3's 5 MiB to 5 GiB", args.part_size),
        });
    }
    let mut files = Vec::new();
    for path in &args.videos {
        let metadata = tokio::fs::metadata(path)
            .await
            .map_err(|source| CliError::InputFile {
                path: path.clone(),
                source,
            })?;
        if !metadata.is_file() {
            return Err(CliError::InputFile {
                path: path.clone(),
                source: std::io::Error::other("not a regular file"),
            });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push((
            path.clone(),
            format!("{}{name}", args.key_prefix),
            metadata.len(),
        ));
    }
    let bars = MultiProgress::with_draw_target(context.draw_target());
    let mut submitted = Vec::new();
    for (path, key, size) in files {
        let bar = bars.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(key.clone());
        let Stored { etag, version_id } = if size >= args.multipart_threshold && size > 0 {
            upload_multipart(context, args, &path, &key, size, &bar).await?
        } else {
            upload_single(context, &path, &key, &bar).await?
        };
        bar.finish_and_clear();
        let video_id = VideoId::of_upload(
            &context.resources.ingress_bucket,
            &key,
            &etag,
            version_id.as_deref(),
        );
        let done = Submitted {
            file: path.display().to_string(),
            bucket: context.resources.ingress_bucket.clone(),
            key,
            etag,
            version_id,
            size,
            video_id,
        };
        match context.output {
            Output::Json => crate::out!("{}", serde_json::to_string(&done).unwrap_or_default()),
            _ => bars
                .println(format!(
                    "{}  s3://{}/{} ({} bytes)",
                    done.video_id, done.bucket, done.key, done.size
                ))
                .unwrap_or_default(),
        }
        submitted.push(done);
    }
    if !args.wait {
        return Ok(exit::OK);
    }
    let ids: Vec<VideoId> = submitted.into_iter().map(|s| s.video_id).collect();
    progress::follow(context, &ids, interval).await
}

fn s3_error<E, R>(
    context: &Context,
    key: &str,
    error: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> CliError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + framefleet_core::aws::HasStatus,
{
    let bucket = &context.resources.ingress_bucket;
    if error
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "NoSuchBucket")
    {
        return CliError::NoSuchBucket {
            bucket: bucket.clone(),
            flag: "ingress-bucket",
            env: "INGRESS_BUCKET",
        };
    }
    CliError::aws(format!("s3://{bucket}/{key}"), error)
}

/// What S3 answered for a stored object: the two values the video id may come from.
struct Stored {
    etag: String,
    version_id: Option<String>,
}

impl Stored {
    fn new(etag: Option<&str>, version_id: Option<&str>) -> Self {
        Self {
            etag: etag.unwrap_or_default().trim_matches('"').to_string(),
            version_id: version_id.map(ToString::to_string),
        }
    }
}

async fn upload_single(
    context: &Context,
    path: &Path,
    key: &str,
    bar: &ProgressBar,
) -> Result<Stored, CliError> {
    let body = ByteStream::from_path(path)
        .await
        .map_err(|e| CliError::InputFile {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
    let out = context
        .clients
        .s3
        .put_object()
        .bucket(&context.resources.ingress_bucket)
        .key(key)
        .body(body)
        .send()
        .await
        .map_err(|e| s3_error(context, key, e))?;
    bar.inc(bar.length().unwrap_or_default());
    Ok(Stored::new(out.e_tag(), out.version_id()))
}

async fn upload_multipart(
    context: &Context,
    args: &SubmitArgs,
    path: &Path,
    key: &str,
    size: u64,
    bar: &ProgressBar,
) -> Result<Stored, CliError> {
    let bucket = &context.resources.ingress_bucket;
    let part_size = part_size_for(size, args.part_size);
    let parts = size.div_ceil(part_size);
    let s3 = &context.clients.s3;
    let created = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3_error(context, key, e))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    let uploads = futures::stream::iter(1..=parts)
        .map(|number| {
            let upload_id = upload_id.clone();
            async move {
                let offset = (number - 1) * part_size;
                let length = part_size.min(size - offset);
                let body = read_part(path, offset, length).await?;
                let out = s3
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(i32::try_from(number).unwrap_or(i32::MAX))
                    .content_length(i64::try_from(length).unwrap_or(i64::MAX))
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .map_err(|e| s3_error(context, key, e))?;
                bar.inc(length);
                Ok::<_, CliError>(
                    CompletedPart::builder()
                        .part_number(i32::try_from(number).unwrap_or(i32::MAX))
                        .set_e_tag(out.e_tag().map(ToString::to_string))
                        .build(),
                )
            }
        })
        .buffer_unordered(args.parallel_parts.max(1))
        .try_collect::<Vec<_>>()
        .await;
    let mut completed = match uploads {
        Ok(parts) => parts,
        Err(error) => {
            // Parts of an unfinished upload are billed until aborted.
            let _ = s3
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            return Err(error);
        }
    };
    completed.sort_by_key(|part| part.part_number());
    let out = s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .map_err(|e| s3_error(context, key, e))?;
    Ok(Stored::new(out.e_tag(), out.version_id()))
}

async fn read_part(path: &Path, offset: u64, length: u64) -> Result<Vec<u8>, CliError> {
    let io = |source| CliError::InputFile {
        path: path.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(io)?;
    let mut body = vec![0; usize::try_from(length).unwrap_or(usize::MAX)];
    file.read_exact(&mut body).await.map_err(io)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_fit_s3_limits() {
        assert_eq!(part_size_for(100 * MIB, 8 * MIB), 8 * MIB);
        assert_eq!(part_size_for(100 * MIB, MIB), MIN_PART_SIZE);
        let huge = 1024 * 1024 * MIB; // 1 TiB
        let part = part_size_for(huge, 8 * MIB);
        assert!(huge.div_ceil(part) <= MAX_PARTS);
        assert!(part <= MAX_PART_SIZE);
    }
}
