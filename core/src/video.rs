//! The video id: deterministic from (bucket, key, content tag) so duplicate notifications land
//! on one job and new content under the same key on a new one, and readable because it starts
//! with a slug of the key's file name.
//!
//! The content tag is the object's S3 version id on a versioned bucket and its eTag otherwise
//! ([`VideoId::of_upload`]). Every part that names an upload goes through that one function:
//! the dispatcher (from the notification's `versionId` and `eTag`), `framefleet submit` (from
//! PutObject's or CompleteMultipartUpload's `x-amz-version-id` and `ETag`) and the reconciler
//! (from the version the job recorded), so they all arrive at the same id. On a versioned
//! bucket every ObjectCreated record carries the `versionId` ("Event message structure", Amazon
//! S3 User Guide,
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>),
//! so uploading the same bytes again makes a new version and therefore a new job, where an
//! unversioned bucket (same key, same eTag) maps it to the job that exists.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Identifies one upload of one video: `<slug of the file stem>-<12 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VideoId(String);

/// Longest slug kept from the key, so ids stay short enough for S3 prefixes and logs.
const MAX_SLUG: usize = 40;
/// Hex digits of the content hash at the end of every id.
const DIGEST_HEX: usize = 12;

/// Longest possible video id: a full slug, `-`, the hash.
pub const MAX_VIDEO_ID_LEN: usize = MAX_SLUG + 1 + DIGEST_HEX;

/// Most characters MediaConvert accepts in a `ClientRequestToken` ("Preventing duplicate
/// jobs", MediaConvert API Reference,
/// <https://docs.aws.amazon.com/mediaconvert/latest/apireference/idempotency.html>; CreateJob
/// refuses a longer one).
pub const MAX_CLIENT_REQUEST_TOKEN: usize = 64;

/// The `ClientRequestToken` of a capture job: `ff-<32 hex of sha256(video id)>`, then
/// `-s<segment>` for one segment of a segmented capture, then `-a<attempt>` (0 for the first
/// CreateJob, n for the n-th job the reconciler creates after MediaConvert lost the previous).
///
/// The video id is hashed, not embedded, because an id can be [`MAX_VIDEO_ID_LEN`] characters
/// and MediaConvert refuses tokens over [`MAX_CLIENT_REQUEST_TOKEN`]: `framefleet-<id>-r<n>`
/// was 67 for a long file name, and the re-created job could never start. 128 bits of hash
/// keep distinct videos' tokens distinct. The longest token, for every `segment` and `attempt`
/// a `u32` holds, is `3 + 32 + 2 + 10 + 2 + 10 = 59` ASCII characters.
pub fn capture_token(video_id: &VideoId, segment: Option<u32>, attempt: u32) -> String {
    let digest = hex::encode(&Sha256::digest(video_id.as_str().as_bytes())[..16]);
    match segment {
        Some(segment) => format!("ff-{digest}-s{segment:04}-a{attempt:02}"),
        None => format!("ff-{digest}-a{attempt:02}"),
    }
}

impl VideoId {
    /// Derives the id of the object `bucket/key` with content tag `etag` (or a version id).
    pub fn derive(bucket: &str, key: &str, etag: &str) -> Self {
        let etag = etag.trim_matches('"');
        let mut hasher = Sha256::new();
        for part in [bucket, key, etag] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let digest = hex::encode(&hasher.finalize()[..DIGEST_HEX / 2]);
        let slug = slug(file_stem(key));
        if slug.is_empty() {
            Self(format!("video-{digest}"))
        } else {
            Self(format!("{slug}-{digest}"))
        }
    }

    /// The id of an upload as S3 reports it: derived from `version_id` when the bucket is
    /// versioned (S3 answers `null` for an object written while versioning was off or
    /// suspended, which names no version), from `etag` otherwise.
    pub fn of_upload(bucket: &str, key: &str, etag: &str, version_id: Option<&str>) -> Self {
        let content_tag = version_id
            .filter(|version| !version.is_empty() && *version != "null")
            .unwrap_or(etag);
        Self::derive(bucket, key, content_tag)
    }

    /// Wraps an id read back from a message or a record.
    pub fn from_raw(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VideoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The file name of `key` without its last extension: what MediaConvert calls the input
/// basename and puts in front of every frame name.
pub fn file_stem(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_SLUG));
    let mut dash = false;
    for ch in text.chars().flat_map(char::to_lowercase) {
        if out.len() >= MAX_SLUG {
            break;
        }
        if ch.is_ascii_alphanumeric() {
            out.push(ch);
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_object_same_id_and_readable() {
        let a = VideoId::derive("in", "uploads/My Holiday Clip.mp4", "\"abc\"");
        let b = VideoId::derive("in", "uploads/My Holiday Clip.mp4", "abc");
        assert_eq!(a, b);
        assert!(a.as_str().starts_with("my-holiday-clip-"), "{a}");
        assert_eq!(a.as_str().len(), "my-holiday-clip-".len() + 12);
    }

    #[test]
    fn new_content_or_other_key_gives_new_id() {
        let a = VideoId::derive("in", "a.mp4", "e1");
        assert_ne!(a, VideoId::derive("in", "a.mp4", "e2"));
        assert_ne!(a, VideoId::derive("in", "b.mp4", "e1"));
        assert_ne!(a, VideoId::derive("other", "a.mp4", "e1"));
    }

    #[test]
    fn a_version_names_the_content_when_there_is_one() {
        let by_etag = VideoId::of_upload("in", "a.mp4", "e1", None);
        assert_eq!(by_etag, VideoId::derive("in", "a.mp4", "e1"));
        assert_eq!(
            by_etag,
            VideoId::of_upload("in", "a.mp4", "e1", Some("null"))
        );
        assert_eq!(by_etag, VideoId::of_upload("in", "a.mp4", "e1", Some("")));
        // Same bytes (same eTag), two versions: two jobs.
        let v1 = VideoId::of_upload("in", "a.mp4", "e1", Some("v1"));
        let v2 = VideoId::of_upload("in", "a.mp4", "e1", Some("v2"));
        assert_ne!(v1, v2);
        assert_ne!(v1, by_etag);
        assert_eq!(v1, VideoId::derive("in", "a.mp4", "v1"));
    }

    #[test]
    fn capture_tokens_fit_mediaconvert_for_every_id_segment_and_attempt() {
        let longest = VideoId::derive("in", &format!("{}.mp4", "x".repeat(300)), "e");
        assert_eq!(longest.as_str().len(), MAX_VIDEO_ID_LEN);
        assert_eq!(MAX_VIDEO_ID_LEN, 53);
        for (segment, attempt) in [
            (None, 0),
            (None, 99),
            (Some(9999), 99),
            (Some(u32::MAX), u32::MAX),
        ] {
            let token = capture_token(&longest, segment, attempt);
            assert!(token.len() <= MAX_CLIENT_REQUEST_TOKEN, "{token}");
            assert!(token.is_ascii(), "{token}");
        }
        assert_eq!(
            capture_token(&longest, Some(9999), 99).len(),
            3 + 32 + 6 + 4
        );
        // Distinct per video, segment and attempt; the same for the same ones.
        let other = VideoId::from_raw("clip-0123456789ab");
        let a = capture_token(&longest, None, 1);
        assert_eq!(a, capture_token(&longest, None, 1));
        assert!(a.ends_with("-a01"), "{a}");
        assert_ne!(a, capture_token(&longest, None, 2));
        assert_ne!(a, capture_token(&other, None, 1));
        assert_ne!(
            capture_token(&longest, Some(1), 0),
            capture_token(&longest, Some(2), 0)
        );
        assert!(capture_token(&longest, Some(7), 3).ends_with("-s0007-a03"));
    }

    #[test]
    fn unicode_and_symbols_slug_safely() {
        let id = VideoId::derive("in", "dir/ünï cødé+%.mov", "e");
        assert!(id
            .as_str()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let id = VideoId::derive("in", "dir/日本.mp4", "e");
        assert!(id.as_str().starts_with("video-"), "{id}");
    }

    #[test]
    fn stem_drops_only_last_extension() {
        assert_eq!(file_stem("a/b/clip.final.mp4"), "clip.final");
        assert_eq!(file_stem("clip"), "clip");
        assert_eq!(file_stem(".hidden"), ".hidden");
    }
}
