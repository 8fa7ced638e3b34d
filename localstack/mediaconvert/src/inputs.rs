//! Downloaded inputs, kept per (bucket, key, ETag): the N segment jobs of one video read the
//! same pinned object, and N downloads of a long video would make the stand-in, not
//! MediaConvert's model, the bottleneck of a segmented run. A HEAD names the version; the
//! first job to want it downloads it while the others wait for the same download; a changed
//! object (another ETag) is another entry. At most `capacity` entries are kept; an evicted
//! file is deleted once the last job using it lets go.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::error::ProvideErrorMetadata;
use tokio::sync::OnceCell;

use crate::transfer::{self, TransferError};

/// One downloaded input; its file is removed when the last holder drops it.
#[derive(Debug)]
pub(crate) struct CachedInput {
    path: PathBuf,
}

impl CachedInput {
    /// The local copy.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CachedInput {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

type Key = (String, String, String);
type Slot = Arc<OnceCell<Arc<CachedInput>>>;

/// The cache.
#[derive(Debug)]
pub(crate) struct InputCache {
    dir: tempfile::TempDir,
    capacity: usize,
    /// Oldest first.
    entries: Mutex<Vec<(Key, Slot)>>,
    downloads: Arc<AtomicU64>,
    next: AtomicU64,
}

impl InputCache {
    /// An empty cache in a fresh temporary directory.
    pub(crate) fn new(capacity: usize) -> std::io::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new()
                .prefix("mediaconvert-standin-inputs-")
                .tempdir()?,
            capacity: capacity.max(1),
            entries: Mutex::new(Vec::new()),
            downloads: Arc::new(AtomicU64::new(0)),
            next: AtomicU64::new(0),
        })
    }

    /// Completed downloads so far (a counter tests read).
    pub(crate) fn downloads(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.downloads)
    }

    /// The local copy of `s3://bucket/key` as it is now, downloading it unless this version is
    /// cached; `extension` (with its dot) is kept so ffprobe sees the name a user would.
    pub(crate) async fn fetch(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        extension: &str,
    ) -> Result<Arc<CachedInput>, TransferError> {
        let etag = head_etag(s3, bucket, key).await?;
        let slot = self.slot((bucket.to_string(), key.to_string(), etag));
        slot.get_or_try_init(|| async {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let path = self.dir.path().join(format!("input-{n}{extension}"));
            let input = CachedInput { path };
            transfer::download(s3, bucket, key, input.path()).await?;
            self.downloads.fetch_add(1, Ordering::Relaxed);
            Ok(Arc::new(input))
        })
        .await
        .cloned()
    }

    /// The entry for `key`, made (and the oldest unused ones evicted) if there is none.
    fn slot(&self, key: Key) -> Slot {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, slot)) = entries.iter().find(|(k, _)| *k == key) {
            return Arc::clone(slot);
        }
        let slot = Slot::default();
        entries.push((key, Arc::clone(&slot)));
        while entries.len() > self.capacity {
            // The oldest entry nobody is waiting on; in-use files live on in their holders'
            // Arc until the job ends.
            let Some(at) = entries
                .iter()
                .position(|(_, slot)| Arc::strong_count(slot) == 1)
            else {
                break;
            };
            entries.remove(at);
        }
        slot
    }
}

/// The object's ETag, from a HEAD (allowed by `s3:GetObject`, which the MediaConvert role has
/// on the pinned sources).
async fn head_etag(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<String, TransferError> {
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            // A HEAD has no body, so a missing key is a bare 404 (`NotFound`).
            let code = e
                .as_service_error()
                .and_then(|s| s.code().map(String::from))
                .or_else(|| {
                    (e.raw_response().map(|r| r.status().as_u16()) == Some(404))
                        .then(|| "NotFound".to_string())
                });
            TransferError::Download {
                bucket: bucket.to_string(),
                key: key.to_string(),
                code,
                message: framefleet_core::aws::describe(&e),
                source: e.into(),
            }
        })?;
    Ok(head.e_tag().unwrap_or_default().to_string())
}
