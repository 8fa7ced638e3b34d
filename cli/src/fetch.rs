//! `framefleet fetch`: downloads a COMPLETE job's outputs (edge maps, preview if any, the
//! manifest) in parallel into a directory, resumably: each finished file is recorded with the
//! object's ETag and size in `.framefleet-fetch.json`, and a file is skipped when the record,
//! the object and the file on disk agree. Files are written to `*.part` and renamed, so an
//! interrupted download never looks complete. The number of edge maps must equal the
//! manifest's `counts.processed`.
//!
//! A packed job (manifest `output.layout = "packed"`) is fetched the same way (its packs are
//! objects under `packs/`, downloaded and resumed like any other), then each pack's members are
//! extracted beside them under the names the per-frame layout would give, using the manifest's
//! index (offset and length of each member's data) rather than a tar parser, so the directory
//! looks like a per-frame job's with the packs kept in `packs/` (they are the resume record;
//! delete them once done). The manifest's index must name `counts.processed` edge maps, every
//! pack it names must be listed and long enough, and a member already extracted with its
//! length is not written again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use framefleet_core::jobs::JobStatus;
use framefleet_core::message::OutputLayout;
use framefleet_core::pack::Pack;
use framefleet_core::video::VideoId;

use crate::progress::read_manifest;
use crate::{exit, local_path, CliError, Context, Output};

/// The record of finished downloads in the output directory.
pub const STATE_FILE: &str = ".framefleet-fetch.json";

/// `framefleet fetch` options.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The video id.
    pub video_id: String,
    /// Directory to download into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Files downloaded at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
}

/// One finished file, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    /// The object's ETag when it was downloaded.
    pub etag: String,
    /// Its size.
    pub size: u64,
}

/// What a fetch did.
#[derive(Debug, Clone, Serialize)]
pub struct FetchReport {
    /// The job.
    pub video_id: String,
    /// The directory.
    pub out: String,
    /// Files downloaded now.
    pub downloaded: usize,
    /// Files already complete.
    pub skipped: usize,
    /// Edge maps in the job (equal to the manifest's `counts.processed`).
    pub edge_maps: u64,
    /// Bytes downloaded now.
    pub bytes: u64,
    /// Packed layout: edge maps extracted from the packs now (the others were on disk).
    pub extracted: usize,
}

struct Object {
    key: String,
    etag: String,
    size: u64,
}

/// An edge map is named like its frame: `<stem>.NNNNNNN.<ext>` (seven or more digits).
pub fn is_edge_map(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    let Some((stem, _extension)) = name.rsplit_once('.') else {
        return false;
    };
    stem.rsplit_once('.')
        .is_some_and(|(_, digits)| digits.len() >= 7 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Fetches the job.
pub async fn run(context: &Context, args: &FetchArgs) -> Result<u8, CliError> {
    let video_id = VideoId::from_raw(args.video_id.clone());
    let record = context
        .jobs
        .get(&video_id)
        .await?
        .ok_or_else(|| CliError::JobNotFound {
            video_id: video_id.to_string(),
            table: context.resources.jobs_table.clone(),
        })?;
    if record.status != JobStatus::Complete {
        return Err(CliError::WrongStatus {
            video_id: video_id.to_string(),
            status: record.status,
            message: "only a COMPLETE job has outputs to fetch".into(),
        });
    }
    let (_, manifest) = read_manifest(context, &record).await?;
    let bucket = manifest.output.bucket.clone();
    let prefix = manifest.output.prefix.clone();
    let objects = list(context, &bucket, &prefix).await?;
    let packed = manifest.output.layout == OutputLayout::Packed;
    let edge_maps = if packed {
        check_packs(&video_id, &manifest.output.packs, &objects)?;
        manifest
            .output
            .packs
            .iter()
            .map(|p| p.frames.len())
            .sum::<usize>() as u64
    } else {
        objects.iter().filter(|o| is_edge_map(&o.key)).count() as u64
    };
    if edge_maps != manifest.counts.processed {
        return Err(CliError::Mismatch {
            video_id: video_id.to_string(),
            message: format!(
                "s3://{bucket}/{prefix} holds {edge_maps} edge maps but the manifest counts {} processed",
                manifest.counts.processed
            ),
        });
    }
    tokio::fs::create_dir_all(&args.out)
        .await
        .map_err(|source| CliError::Output {
            path: args.out.clone(),
            source,
        })?;
    let state_path = args.out.join(STATE_FILE);
    let state: BTreeMap<String, Fetched> = tokio::fs::read(&state_path)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let mut todo = Vec::new();
    let mut skipped = 0;
    for object in objects {
        let path =
            local_path(&args.out, &prefix, &object.key).ok_or_else(|| CliError::Mismatch {
                video_id: video_id.to_string(),
                message: format!(
                    "object key `{}` cannot be a file under the output directory",
                    object.key
                ),
            })?;
        let on_disk = tokio::fs::metadata(&path).await.ok().map(|m| m.len());
        let recorded = state.get(&object.key);
        if on_disk == Some(object.size)
            && recorded.is_some_and(|r| r.etag == object.etag && r.size == object.size)
        {
            skipped += 1;
        } else {
            todo.push((object, path));
        }
    }
    let total: u64 = todo.iter().map(|(o, _)| o.size).sum();
    let bar = ProgressBar::with_draw_target(Some(total), context.draw_target());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!("{video_id}: {} files", todo.len()));
    let downloaded = todo.len();
    let state = tokio::sync::Mutex::new(state);
    let s3 = &context.clients.s3;
    futures::stream::iter(todo)
        .map(|(object, path)| {
            let (bar, state, state_path, bucket) = (&bar, &state, &state_path, &bucket);
            async move {
                download(s3, bucket, &object, &path, bar).await?;
                // Held across the write: one writer of the state file at a time.
                let mut state = state.lock().await;
                state.insert(
                    object.key.clone(),
                    Fetched {
                        etag: object.etag.clone(),
                        size: object.size,
                    },
                );
                let snapshot = serde_json::to_vec_pretty(&*state).unwrap_or_default();
                write_atomically(state_path, &snapshot).await
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    bar.finish_and_clear();
    let mut extracted = 0;
    if packed {
        for pack in &manifest.output.packs {
            extracted += extract(&video_id, &args.out, &prefix, pack).await?;
        }
    }
    let report = FetchReport {
        video_id: video_id.to_string(),
        out: args.out.display().to_string(),
        downloaded,
        skipped,
        edge_maps,
        bytes: total,
        extracted,
    };
    match context.output {
        Output::Json => crate::out!("{}", serde_json::to_string(&report).unwrap_or_default()),
        _ if packed => crate::out!(
            "{} fetched into {}: {} downloaded ({} bytes), {} already complete; {} edge maps extracted from the packs ({} were there), matching the manifest",
            report.video_id, report.out, report.downloaded, report.bytes, report.skipped, report.extracted, report.edge_maps - report.extracted as u64
        ),
        _ => crate::out!(
            "{} fetched into {}: {} downloaded ({} bytes), {} already complete; {} edge maps match the manifest",
            report.video_id, report.out, report.downloaded, report.bytes, report.skipped, report.edge_maps
        ),
    }
    Ok(exit::OK)
}

/// Every pack the manifest names is listed and holds its last member.
fn check_packs(video_id: &VideoId, packs: &[Pack], objects: &[Object]) -> Result<(), CliError> {
    for pack in packs {
        let listed = objects.iter().find(|o| o.key == pack.key);
        let needed = pack.frames.iter().map(|f| f.end()).max().unwrap_or(0);
        match listed {
            Some(object) if object.size >= needed => {}
            Some(object) => {
                return Err(CliError::Mismatch {
                    video_id: video_id.to_string(),
                    message: format!(
                        "pack `{}` is {} bytes but the manifest's index reaches byte {needed}",
                        pack.key, object.size
                    ),
                })
            }
            None => {
                return Err(CliError::Mismatch {
                    video_id: video_id.to_string(),
                    message: format!("the manifest names pack `{}`, which is not there", pack.key),
                })
            }
        }
    }
    Ok(())
}

/// Writes each member of the downloaded `pack` not already on disk with its length; returns
/// how many were written.
async fn extract(
    video_id: &VideoId,
    out: &Path,
    prefix: &str,
    pack: &Pack,
) -> Result<usize, CliError> {
    let mismatch = |message: String| CliError::Mismatch {
        video_id: video_id.to_string(),
        message,
    };
    let pack_path = local_path(out, prefix, &pack.key)
        .ok_or_else(|| mismatch(format!("pack key `{}` is not under {prefix}", pack.key)))?;
    let mut bytes = None;
    let mut written = 0;
    for frame in &pack.frames {
        let path = local_path(out, "", &frame.name).ok_or_else(|| {
            mismatch(format!(
                "pack member `{}` cannot be a file in the output directory",
                frame.name
            ))
        })?;
        let on_disk = tokio::fs::metadata(&path).await.ok().map(|m| m.len());
        if on_disk == Some(frame.length) {
            continue;
        }
        if bytes.is_none() {
            bytes = Some(
                tokio::fs::read(&pack_path)
                    .await
                    .map_err(|source| CliError::Output {
                        path: pack_path.clone(),
                        source,
                    })?,
            );
        }
        let data = bytes
            .as_deref()
            .and_then(|b| b.get(frame.offset as usize..frame.end() as usize))
            .ok_or_else(|| {
                mismatch(format!(
                    "`{}` ends before member `{}` (bytes {}..{})",
                    pack.key,
                    frame.name,
                    frame.offset,
                    frame.end()
                ))
            })?;
        let part = path.with_file_name(format!("{}.part", frame.name));
        tokio::fs::write(&part, data)
            .await
            .map_err(|source| CliError::Output {
                path: part.clone(),
                source,
            })?;
        tokio::fs::rename(&part, &path)
            .await
            .map_err(|source| CliError::Output {
                path: path.clone(),
                source,
            })?;
        written += 1;
    }
    Ok(written)
}

async fn list(context: &Context, bucket: &str, prefix: &str) -> Result<Vec<Object>, CliError> {
    let mut objects = Vec::new();
    let mut pages = context
        .clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_no_such_bucket()) {
                CliError::NoSuchBucket {
                    bucket: bucket.to_string(),
                    flag: "processed-bucket",
                    env: "PROCESSED_BUCKET",
                }
            } else {
                CliError::aws(format!("s3://{bucket}/{prefix}"), e)
            }
        })?;
        for object in page.contents() {
            objects.push(Object {
                key: object.key().unwrap_or_default().to_string(),
                etag: object
                    .e_tag()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string(),
                size: object.size().map_or(0, |s| u64::try_from(s).unwrap_or(0)),
            });
        }
    }
    Ok(objects)
}

async fn download(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    object: &Object,
    path: &Path,
    bar: &ProgressBar,
) -> Result<(), CliError> {
    let resource = || format!("s3://{bucket}/{}", object.key);
    // Only the version listed: a rewritten object fails with 412 rather than mixing versions.
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(&object.key)
        .if_match(format!("\"{}\"", object.etag))
        .send()
        .await
        .map_err(|e| CliError::aws(resource(), e))?;
    let part = path.with_extension(format!(
        "{}part",
        path.extension()
            .map(|e| format!("{}.", e.to_string_lossy()))
            .unwrap_or_default()
    ));
    let output = |source| CliError::Output {
        path: part.clone(),
        source,
    };
    if let Some(parent) = part.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(output)?;
    }
    let mut file = tokio::fs::File::create(&part).await.map_err(output)?;
    let mut body = out.body;
    while let Some(chunk) = body.try_next().await.map_err(|e| CliError::Aws {
        resource: resource(),
        message: e.to_string(),
        retryable: true,
    })? {
        file.write_all(&chunk).await.map_err(output)?;
        bar.inc(chunk.len() as u64);
    }
    file.flush().await.map_err(output)?;
    file.sync_all().await.map_err(output)?;
    drop(file);
    tokio::fs::rename(&part, path)
        .await
        .map_err(|source| CliError::Output {
            path: path.to_path_buf(),
            source,
        })
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let temporary = path.with_extension("json.part");
    let output = |source| CliError::Output {
        path: path.to_path_buf(),
        source,
    };
    tokio::fs::write(&temporary, bytes).await.map_err(output)?;
    tokio::fs::rename(&temporary, path).await.map_err(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(key: &str, end: u64) -> Pack {
        Pack {
            key: key.into(),
            frames: vec![framefleet_core::pack::PackedFrame {
                name: "a.0000000.jpg".into(),
                offset: 512,
                length: end - 512,
            }],
        }
    }

    #[test]
    fn packs_must_be_listed_and_long_enough() {
        let id = VideoId::from_raw("v-1");
        let listed = vec![Object {
            key: "v-1/packs/000000.tar".into(),
            etag: "e".into(),
            size: 2048,
        }];
        check_packs(&id, &[pack("v-1/packs/000000.tar", 1000)], &listed).unwrap();
        let short = check_packs(&id, &[pack("v-1/packs/000000.tar", 4000)], &listed)
            .unwrap_err()
            .to_string();
        assert!(short.contains("reaches byte 4000"), "{short}");
        let missing = check_packs(&id, &[pack("v-1/packs/000001.tar", 1000)], &listed)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("000001.tar"), "{missing}");
    }

    #[test]
    fn edge_maps_are_named_like_frames() {
        assert!(is_edge_map("v-1/my clip.0000003.jpg"));
        assert!(is_edge_map("v-1/clip.0000003.png"));
        assert!(!is_edge_map("v-1/manifest.json"));
        assert!(!is_edge_map("v-1/preview.mp4"));
        // A segmented capture's preview parts.
        assert!(!is_edge_map("v-1/preview-s0000.mp4"));
        assert!(!is_edge_map("v-1/preview-s0015.mp4"));
    }
}
