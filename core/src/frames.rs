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
}
