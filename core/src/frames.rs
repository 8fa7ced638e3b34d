//! MediaConvert's frame naming contract: `<input basename><NameModifier>.<7-digit 0-based
//! index>.jpg` under the destination prefix. Processed frames keep the name under
//! `<video id>/` in the processed bucket.

/// The key of frame `index` under `prefix` (which ends with `/`) for frames named `base`.
pub fn frame_key(prefix: &str, base: &str, index: u64) -> String {
    format!("{prefix}{base}.{index:07}.jpg")
}

/// The 0-based index of a frame from its key or path, if it follows the contract.
pub fn frame_index(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    let without_ext = name.strip_suffix(".jpg")?;
    let (_, digits) = without_ext.rsplit_once('.')?;
    if digits.len() < 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The frame name without its directory: what the processed copy is called.
pub fn frame_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Splits `s3://bucket/key` into its parts.
pub fn parse_s3_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, key))
}

/// A run of captured frames named by the contract above: frame `i` of the run (`0..count`) is
/// `{prefix}{base}.{first_name + i:07}.jpg`. It names any frame in O(1) without holding the
/// keys, so a fan-out of millions of frames needs no list of them. `first_name` is the number in
/// the first frame's name (0 for a whole capture; a segment of a segmented capture numbers its
/// own frames under its own prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSeries {
    /// Everything before the base name, ending with `/` (or empty).
    pub prefix: String,
    /// The input's base name (plus any name modifier).
    pub base: String,
    /// The number in the name of the run's first frame.
    pub first_name: u64,
    /// How many frames the run holds.
    pub count: u64,
}

impl FrameSeries {
    /// Every frame of a capture whose last frame is `last_key` (numbered from 0 through the
    /// number in its name), or `None` when the key does not follow the contract.
    pub fn through(last_key: &str) -> Option<Self> {
        let last = frame_index(last_key)?;
        let name = key_name(last_key);
        let stem = name.strip_suffix(&format!(".{last:07}.jpg"))?;
        let dir_len = last_key.len() - name.len();
        Some(Self {
            prefix: last_key[..dir_len].to_string(),
            base: stem.to_string(),
            first_name: 0,
            count: last.checked_add(1)?,
        })
    }

    /// The key of frame `i` of the run.
    pub fn key(&self, i: u64) -> String {
        self.name(i).to_string()
    }

    /// Frame `i`'s key as something to write (no allocation of its own).
    pub fn name(&self, i: u64) -> FrameName<'_> {
        FrameName {
            prefix: &self.prefix,
            base: &self.base,
            index: self.first_name + i,
        }
    }

    /// The last frame's key (the longest: names are zero-padded to at least seven digits).
    pub fn last_key(&self) -> Option<String> {
        self.count.checked_sub(1).map(|last| self.key(last))
    }
}

fn key_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// One frame key, written on demand by [`std::fmt::Display`], exactly as [`frame_key`] builds it.
#[derive(Debug, Clone, Copy)]
pub struct FrameName<'a> {
    prefix: &'a str,
    base: &'a str,
    index: u64,
}

impl std::fmt::Display for FrameName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}.{:07}.jpg", self.prefix, self.base, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_index() {
        let key = frame_key("vid-1/", "my clip", 949);
        assert_eq!(key, "vid-1/my clip.0000949.jpg");
        assert_eq!(frame_index(&key), Some(949));
        assert_eq!(frame_index("s3://b/v/x.y.0012345.jpg"), Some(12345));
        assert_eq!(frame_name(&key), "my clip.0000949.jpg");
    }

    #[test]
    fn non_frames_have_no_index() {
        assert_eq!(frame_index("v/clip.jpg"), None);
        assert_eq!(frame_index("v/clip.12.jpg"), None);
        assert_eq!(frame_index("v/clip.00000a1.jpg"), None);
        assert_eq!(frame_index("v/clip.0000001.png"), None);
    }

    #[test]
    fn s3_urls_split() {
        assert_eq!(parse_s3_url("s3://b/k/x.jpg"), Some(("b", "k/x.jpg")));
        assert_eq!(parse_s3_url("s3://b"), Some(("b", "")));
        assert_eq!(parse_s3_url("http://b/k"), None);
    }

    #[test]
    fn a_series_names_every_frame_through_the_last() {
        let series = FrameSeries::through("v/my clip.0000002.jpg").unwrap();
        let keys: Vec<String> = (0..series.count).map(|i| series.key(i)).collect();
        assert_eq!(
            keys,
            [
                "v/my clip.0000000.jpg",
                "v/my clip.0000001.jpg",
                "v/my clip.0000002.jpg"
            ]
        );
        assert_eq!(series.key(1), frame_key("v/", "my clip", 1));
        assert_eq!(series.last_key().as_deref(), Some("v/my clip.0000002.jpg"));
        let bare = FrameSeries::through("clip.0000000.jpg").unwrap();
        assert_eq!((bare.prefix.as_str(), bare.count), ("", 1));
        assert_eq!(bare.key(0), "clip.0000000.jpg");
        assert_eq!(FrameSeries::through("v/clip.jpg"), None);
        // Dots in the directory stay in the prefix.
        let dotted = FrameSeries::through("a.b/c.d.0000010.jpg").unwrap();
        assert_eq!(
            (dotted.prefix.as_str(), dotted.base.as_str()),
            ("a.b/", "c.d")
        );
        assert_eq!(dotted.count, 11);
    }
}
