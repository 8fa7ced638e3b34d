//! The index of a pack (the packed output layout): written by the worker that makes the pack,
//! stored in its batch marker, listed in the manifest, read by `framefleet fetch` and by anyone
//! who wants one frame with a ranged GET.
//!
//! No format is written by hand here: the index is serde JSON, and the tar it describes is
//! written and read by the `tar` crate (the worker's `tar` module). The one string built here
//! is the HTTP `Range` value, a single `format!` of RFC 9110's `bytes=first-last`.

use serde::{Deserialize, Serialize};

/// One pack, `<video id>/packs/<batch index>.tar`, and where each edge map lies in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pack {
    /// Key of the tar in the processed bucket.
    pub key: String,
    /// The members, in frame order.
    pub frames: Vec<PackedFrame>,
}

/// One edge map inside a pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedFrame {
    /// Member name: the file name the per-frame layout gives the object.
    pub name: String,
    /// Byte offset of the edge map's first byte in the tar.
    pub offset: u64,
    /// Its length in bytes.
    pub length: u64,
}

impl PackedFrame {
    /// The HTTP `Range` header value that reads exactly this edge map ("Range", RFC 9110
    /// §14.1.2: `bytes=first-last`, both inclusive; S3 GetObject honours it).
    pub fn range(&self) -> String {
        format!(
            "bytes={}-{}",
            self.offset,
            (self.offset + self.length).saturating_sub(1)
        )
    }

    /// One past the member's last byte: the pack is at least this long.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

/// `<video id>/packs/<batch index, six digits>.tar`.
pub fn pack_key(video_id: &str, batch_index: u32) -> String {
    format!("{video_id}/packs/{batch_index:06}.tar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ranges() {
        assert_eq!(pack_key("v-1", 12), "v-1/packs/000012.tar");
        let frame = PackedFrame {
            name: "a.0000000.jpg".into(),
            offset: 512,
            length: 5,
        };
        assert_eq!(frame.range(), "bytes=512-516");
        assert_eq!(frame.end(), 517);
    }
}
