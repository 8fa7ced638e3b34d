//! The video id: deterministic from (bucket, key, eTag) so duplicate notifications land on one
//! job and new content under the same key on a new one, and readable because it starts with a
//! slug of the key's file name.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Identifies one upload of one video: `<slug of the file stem>-<12 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VideoId(String);

/// Longest slug kept from the key, so ids stay short enough for S3 prefixes and logs.
const MAX_SLUG: usize = 40;

impl VideoId {
    /// Derives the id of the object `bucket/key` with content tag `etag` (or a version id).
    pub fn derive(bucket: &str, key: &str, etag: &str) -> Self {
        let etag = etag.trim_matches('"');
        let mut hasher = Sha256::new();
        for part in [bucket, key, etag] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let digest = hex::encode(&hasher.finalize()[..6]);
        let slug = slug(file_stem(key));
        if slug.is_empty() {
            Self(format!("video-{digest}"))
        } else {
            Self(format!("{slug}-{digest}"))
        }
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
