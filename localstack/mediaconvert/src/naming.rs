//! Where MediaConvert writes outputs: frame captures as `<base><NameModifier>.<7-digit 0-based
//! index>.<extension>`, other file outputs as `<base><NameModifier>.<extension>`, under the
//! output group's destination. The base is the input file's name
//! without its extension, unless the destination ends in a file name instead of `/`, in which
//! case that name is the base (as MediaConvert documents for `FileGroupSettings.Destination`).

use framefleet_core::frames::parse_s3_url;

/// The names one frame-capture output writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputNaming {
    /// Destination bucket.
    pub bucket: String,
    /// Key prefix, empty or ending with `/`.
    pub prefix: String,
    /// Base name plus name modifier, e.g. `my clip` or `my clip_thumb`.
    pub stem: String,
    /// File extension without the dot (`jpg` unless the output sets `Extension`).
    pub extension: String,
}

impl OutputNaming {
    /// Names for an output of `input` (an `s3://` URL) written to `destination` (an `s3://`
    /// URL), with an optional name modifier and extension. `None` when `destination` is not an
    /// S3 URL.
    pub fn new(
        destination: &str,
        input: &str,
        name_modifier: Option<&str>,
        extension: Option<&str>,
    ) -> Option<Self> {
        let (bucket, key) = parse_s3_url(destination)?;
        let (prefix, base) = match key.rfind('/') {
            _ if key.is_empty() => (String::new(), input_basename(input)),
            Some(slash) if slash + 1 == key.len() => (key.to_string(), input_basename(input)),
            Some(slash) => (key[..=slash].to_string(), key[slash + 1..].to_string()),
            None => (String::new(), key.to_string()),
        };
        Some(Self {
            bucket: bucket.to_string(),
            prefix,
            stem: format!("{base}{}", name_modifier.unwrap_or_default()),
            extension: extension.unwrap_or("jpg").to_string(),
        })
    }

    /// The object key of capture `index`.
    pub fn key(&self, index: u64) -> String {
        format!("{}{}.{index:07}.{}", self.prefix, self.stem, self.extension)
    }

    /// The `s3://` URL of capture `index`, as events and job details report it.
    pub fn url(&self, index: u64) -> String {
        format!("s3://{}/{}", self.bucket, self.key(index))
    }

    /// The object key of a single-file output (an MP4).
    pub fn file_key(&self) -> String {
        format!("{}{}.{}", self.prefix, self.stem, self.extension)
    }

    /// The `s3://` URL of a single-file output.
    pub fn file_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.file_key())
    }
}

/// The input's file name without its last extension: `s3://in/dir/my clip.mp4` → `my clip`.
pub fn input_basename(input: &str) -> String {
    let name = input.rsplit('/').next().unwrap_or(input);
    match name.rfind('.') {
        Some(dot) if dot > 0 => name[..dot].to_string(),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_prefix_uses_input_basename() {
        let naming =
            OutputNaming::new("s3://frames/vid-1/", "s3://in/dir/my clip.mp4", None, None).unwrap();
        assert_eq!(naming.key(0), "vid-1/my clip.0000000.jpg");
        assert_eq!(naming.url(949), "s3://frames/vid-1/my clip.0000949.jpg");
        assert_eq!(
            framefleet_core::frames::frame_index(&naming.url(949)),
            Some(949)
        );
    }

    #[test]
    fn name_modifier_and_extension_apply() {
        let naming = OutputNaming::new(
            "s3://frames/a/b/",
            "s3://in/x.y.mov",
            Some("_thumb"),
            Some("jpeg"),
        )
        .unwrap();
        assert_eq!(naming.key(12), "a/b/x.y_thumb.0000012.jpeg");
    }

    #[test]
    fn destination_file_name_replaces_basename() {
        let naming =
            OutputNaming::new("s3://frames/vid-2/poster", "s3://in/clip.mp4", None, None).unwrap();
        assert_eq!(naming.key(3), "vid-2/poster.0000003.jpg");
        let root = OutputNaming::new("s3://frames", "s3://in/clip.mp4", None, None).unwrap();
        assert_eq!(root.key(0), "clip.0000000.jpg");
        let root = OutputNaming::new("s3://frames/", "s3://in/clip.mp4", None, None).unwrap();
        assert_eq!(root.key(0), "clip.0000000.jpg");
    }

    #[test]
    fn single_files_take_the_destination_base_and_extension() {
        let naming = OutputNaming::new(
            "s3://processed/vid-1/preview",
            "s3://in/clip.mov",
            None,
            Some("mp4"),
        )
        .unwrap();
        assert_eq!(naming.file_key(), "vid-1/preview.mp4");
        assert_eq!(naming.file_url(), "s3://processed/vid-1/preview.mp4");
        let naming =
            OutputNaming::new("s3://p/a/", "s3://in/clip.mov", Some("_small"), Some("mp4"))
                .unwrap();
        assert_eq!(naming.file_key(), "a/clip_small.mp4");
    }

    #[test]
    fn indexes_beyond_seven_digits_widen() {
        let naming = OutputNaming::new("s3://f/", "s3://in/c.mp4", None, None).unwrap();
        assert_eq!(naming.key(10_000_000), "c.10000000.jpg");
    }

    #[test]
    fn basenames() {
        assert_eq!(input_basename("s3://in/dir/my clip.mp4"), "my clip");
        assert_eq!(input_basename("s3://in/noext"), "noext");
        assert_eq!(input_basename("s3://in/.hidden"), ".hidden");
        assert!(OutputNaming::new("https://x/", "s3://in/a.mp4", None, None).is_none());
    }
}
