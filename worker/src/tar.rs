//! Packs as tar archives, written and read with the `tar` crate (the crate cargo itself builds
//! and unpacks every `.crate` file with).
//!
//! Why the crate serves, and how we hold it to what a pack needs:
//!
//! - **Deterministic bytes.** Every header is built here from fixed fields (ustar, regular
//!   file, mode 0644, owner 0:0, no user or group names, mtime 0): nothing comes from a file
//!   system or a clock, so the same members always make the same archive, byte for byte
//!   (`same_members_same_bytes`).
//! - **Offsets from header sizes.** A member's data starts on a 512-byte block right after its
//!   header(s): the archive's length after appending it, less its data padded to a block. The
//!   crate writes into a `Vec` we can measure after each member, so [`Tar::finish`] says where
//!   each member's data lies and one edge map is one ranged GET, no tar parsing. [`read_index`]
//!   gets the same spans back from stored bytes with the crate's reader (its
//!   `raw_file_position`), for a pack an earlier delivery wrote.
//! - **Long names.** A name longer than ustar's 100-byte field gets a GNU long-name entry
//!   (`././@LongLink`, type `L`) before its member, which GNU tar, bsdtar and Python's
//!   `tarfile` read. (Our own writer used a pax `path` record; both are standard practice.)
//!
//! Replaced: a hand-written ustar writer of about 140 lines (headers, checksums, pax records)
//! that would also have needed a reader of its own for [`read_index`].

use std::io;

/// Size of a tar block: headers and padded data are whole blocks.
const BLOCK: u64 = 512;

/// Where one member's data lies in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpan {
    /// The member's path in the archive.
    pub name: String,
    /// Byte offset of its first data byte.
    pub offset: u64,
    /// Its length in bytes.
    pub length: u64,
}

/// A member that cannot be written, or an archive that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// An empty name, or one with a NUL byte, which no tar header can carry.
    #[error("tar member name {0:?} is empty or contains NUL")]
    BadName(String),
    /// The crate refused the member (a name it cannot encode, a size over ustar's 8 GiB).
    #[error("tar member {name:?}: {source}")]
    Refused {
        /// The member.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Stored bytes that are not a pack: not a tar, or a member that is not a regular file
    /// with a UTF-8 name.
    #[error("not a pack: {0}")]
    NotAPack(String),
}

/// An archive being written in memory.
pub struct Tar {
    builder: tar::Builder<Vec<u8>>,
    spans: Vec<MemberSpan>,
}

impl std::fmt::Debug for Tar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tar")
            .field("bytes", &self.builder.get_ref().len())
            .field("spans", &self.spans)
            .finish()
    }
}

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    /// An empty archive.
    pub fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
            spans: Vec::new(),
        }
    }

    /// Appends a regular file `name` (mode 0644, owner 0:0, time 0) holding `data`.
    pub fn append(&mut self, name: &str, data: &[u8]) -> Result<(), TarError> {
        if name.is_empty() || name.contains('\0') {
            return Err(TarError::BadName(name.to_string()));
        }
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        self.builder
            .append_data(&mut header, name, data)
            .map_err(|source| TarError::Refused {
                name: name.to_string(),
                source,
            })?;
        let length = data.len() as u64;
        let end = self.builder.get_ref().len() as u64;
        self.spans.push(MemberSpan {
            name: name.to_string(),
            offset: end - length.div_ceil(BLOCK) * BLOCK,
            length,
        });
        Ok(())
    }

    /// The archive (closed by two zero blocks) and where each member's data is.
    pub fn finish(self) -> (Vec<u8>, Vec<MemberSpan>) {
        // Writing into a Vec cannot fail.
        let bytes = self.builder.into_inner().unwrap_or_default();
        (bytes, self.spans)
    }
}

/// Where each member's data lies in a stored pack, read with the crate's reader (long names
/// resolved): what [`Tar::finish`] said when the pack was written.
pub fn read_index(bytes: &[u8]) -> Result<Vec<MemberSpan>, TarError> {
    let bad = |error: io::Error| TarError::NotAPack(error.to_string());
    let mut archive = tar::Archive::new(bytes);
    let mut spans = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(TarError::NotAPack(format!(
                "a member of type {:?}",
                entry.header().entry_type()
            )));
        }
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| TarError::NotAPack("a member name that is not UTF-8".into()))?;
        let span = MemberSpan {
            name,
            offset: entry.raw_file_position(),
            length: entry.size(),
        };
        if span.offset.saturating_add(span.length) > bytes.len() as u64 {
            return Err(TarError::NotAPack(format!("{} is cut short", span.name)));
        }
        spans.push(span);
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: usize = 512;

    fn field(block: &[u8], range: std::ops::Range<usize>) -> String {
        String::from_utf8_lossy(&block[range])
            .trim_end_matches(['\0', ' '])
            .to_string()
    }

    #[test]
    fn members_start_on_blocks_and_spans_point_at_their_data() {
        let mut tar = Tar::new();
        tar.append("a.jpg", b"hello").unwrap();
        tar.append("b.jpg", &[7u8; 600]).unwrap();
        let (bytes, spans) = tar.finish();
        // header, 1 data block, header, 2 data blocks, 2 end blocks
        assert_eq!(bytes.len(), 7 * BLOCK);
        assert_eq!(spans[0].offset, 512);
        assert_eq!(spans[0].length, 5);
        assert_eq!(spans[1].offset, 3 * 512);
        assert_eq!(spans[1].length, 600);
        for span in &spans {
            let start = span.offset as usize;
            let data = &bytes[start..start + span.length as usize];
            assert!(data == b"hello" || data == [7u8; 600]);
        }
        assert!(bytes[5 * BLOCK..].iter().all(|&b| b == 0));
        assert_eq!(read_index(&bytes).unwrap(), spans);
    }

    #[test]
    fn header_fields_and_checksum_follow_ustar() {
        let mut tar = Tar::new();
        tar.append("clip.0000001.jpg", &[1u8; 1234]).unwrap();
        let (bytes, _) = tar.finish();
        let block = &bytes[..BLOCK];
        assert_eq!(field(block, 0..100), "clip.0000001.jpg");
        assert_eq!(field(block, 100..108), "0000644");
        assert_eq!(field(block, 108..116), "0000000");
        assert_eq!(field(block, 116..124), "0000000");
        assert_eq!(field(block, 124..136), format!("{:011o}", 1234));
        assert_eq!(field(block, 136..148), "00000000000");
        assert_eq!(block[156], b'0');
        assert_eq!(&block[257..265], b"ustar\x0000");
        assert_eq!(field(block, 265..297), "", "no user name");
        let stored = u32::from_str_radix(field(block, 148..156).trim(), 8).unwrap();
        let mut copy = block.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
    }

    #[test]
    fn same_members_same_bytes() {
        let build = || {
            let mut tar = Tar::new();
            tar.append("x.png", b"1").unwrap();
            tar.append(&"n".repeat(150), b"22").unwrap();
            tar.finish()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn long_names_get_a_gnu_long_name_entry() {
        let name = format!("{}é.jpg", "a".repeat(99));
        let mut tar = Tar::new();
        tar.append(&name, b"data").unwrap();
        let (bytes, spans) = tar.finish();
        assert_eq!(bytes[156], b'L');
        assert_eq!(field(&bytes[..BLOCK], 0..100), "././@LongLink");
        assert_eq!(&bytes[BLOCK..BLOCK + name.len()], name.as_bytes());
        // The member's own header follows the long name's data block.
        let member = &bytes[2 * BLOCK..3 * BLOCK];
        assert_eq!(member[156], b'0');
        assert_eq!(spans[0].offset, 3 * BLOCK as u64);
        assert_eq!(spans[0].name, name);
        assert_eq!(read_index(&bytes).unwrap(), spans);
    }

    #[test]
    fn bad_names_are_refused() {
        let mut tar = Tar::new();
        assert!(matches!(tar.append("", b""), Err(TarError::BadName(_))));
        assert!(matches!(tar.append("a\0b", b""), Err(TarError::BadName(_))));
        // A refused member leaves the archive as it was.
        let (bytes, spans) = tar.finish();
        assert!(spans.is_empty());
        assert_eq!(bytes.len(), 2 * BLOCK);
    }

    #[test]
    fn what_is_not_a_pack_is_refused_not_read() {
        let mut tar = Tar::new();
        tar.append("a.jpg", &[1u8; 2000]).unwrap();
        let (bytes, _) = tar.finish();
        assert!(matches!(
            read_index(&bytes[..BLOCK + 100]),
            Err(TarError::NotAPack(_))
        ));
        let mut garbage = bytes.clone();
        garbage[148] = b'9';
        assert!(matches!(read_index(&garbage), Err(TarError::NotAPack(_))));
    }

    /// The system `tar` lists and extracts what we write, byte for byte.
    #[test]
    fn system_tar_extracts_the_pack() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("{}.0000001.jpg", "long name ".repeat(12));
        let members: Vec<(String, Vec<u8>)> = vec![
            ("clip.0000000.jpg".into(), (0..=255u8).collect()),
            (long, vec![9u8; 1500]),
            ("empty.png".into(), Vec::new()),
        ];
        let mut tar = Tar::new();
        for (name, data) in &members {
            tar.append(name, data).unwrap();
        }
        let (bytes, _) = tar.finish();
        let archive = dir.path().join("pack.tar");
        std::fs::write(&archive, &bytes).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let status = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&out)
            .status()
            .expect("the system tar runs");
        assert!(status.success());
        for (name, data) in &members {
            assert_eq!(&std::fs::read(out.join(name)).unwrap(), data, "{name}");
        }
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), members.len());
        let listing = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(listing.status.success());
        assert!(
            listing.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
    }
}
