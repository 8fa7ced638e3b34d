//! A POSIX ustar writer (IEEE Std 1003.1, "pax" utility, ustar interchange format), just
//! enough for packs of edge maps: regular files only, written in one go, deterministic (fixed
//! mode, owner and time), so the same members always make the same bytes and a redelivered
//! batch rewrites its pack identically. Names longer than the 100-byte ustar field get a pax
//! extended header (`path=` record) before their member, which every current `tar` reads.
//!
//! Each member's data starts on a 512-byte block; [`Tar::finish`] says where, so one member is
//! read from the archive with a ranged GET and no tar parsing.

/// Size of a tar block: headers and padded data are whole blocks.
const BLOCK: usize = 512;
/// Largest member the 11 octal digits of the size field can state.
const MAX_SIZE: u64 = 0o77_777_777_777;

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

/// A member that cannot be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TarError {
    /// An empty name, or one with a NUL byte, which no tar header can carry.
    #[error("tar member name {0:?} is empty or contains NUL")]
    BadName(String),
    /// Larger than the ustar size field (8 GiB).
    #[error("tar member {name:?} is {size} bytes, more than ustar's 8 GiB")]
    TooLarge {
        /// The member.
        name: String,
        /// Its size.
        size: u64,
    },
}

/// An archive being written in memory.
#[derive(Debug, Default)]
pub struct Tar {
    bytes: Vec<u8>,
    spans: Vec<MemberSpan>,
}

impl Tar {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a regular file `name` (mode 0644, owner 0:0, time 0) holding `data`.
    pub fn append(&mut self, name: &str, data: &[u8]) -> Result<(), TarError> {
        if name.is_empty() || name.contains('\0') {
            return Err(TarError::BadName(name.to_string()));
        }
        let size = data.len() as u64;
        if size > MAX_SIZE {
            return Err(TarError::TooLarge {
                name: name.to_string(),
                size,
            });
        }
        let short = if name.len() <= 100 {
            name
        } else {
            let record = pax_record("path", name);
            let header = header(b"PaxHeaders/member", record.len() as u64, b'x');
            self.bytes.extend_from_slice(&header);
            self.push_data(&record);
            truncate(name, 100)
        };
        self.bytes
            .extend_from_slice(&header(short.as_bytes(), size, b'0'));
        self.spans.push(MemberSpan {
            name: name.to_string(),
            offset: self.bytes.len() as u64,
            length: size,
        });
        self.push_data(data);
        Ok(())
    }

    fn push_data(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        let padding = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.bytes.resize(self.bytes.len() + padding, 0);
    }

    /// The archive (closed by two zero blocks) and where each member's data is.
    pub fn finish(mut self) -> (Vec<u8>, Vec<MemberSpan>) {
        self.bytes.resize(self.bytes.len() + 2 * BLOCK, 0);
        (self.bytes, self.spans)
    }
}

/// The longest prefix of `name` of at most `max` bytes that ends on a character boundary.
fn truncate(name: &str, max: usize) -> &str {
    let mut end = max.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A pax extended header record, `"<length> <key>=<value>\n"`, where the length counts the
/// whole record including its own digits.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut length = body + 1;
    while length != body + length.to_string().len() {
        length = body + length.to_string().len();
    }
    format!("{length} {key}={value}\n").into_bytes()
}

/// A ustar header block for a member of `size` bytes and type `kind` (`'0'` file, `'x'` pax).
fn header(name: &[u8], size: u64, kind: u8) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[..name.len()].copy_from_slice(name);
    octal(&mut block[100..108], 0o644);
    octal(&mut block[108..116], 0);
    octal(&mut block[116..124], 0);
    octal(&mut block[124..136], size);
    octal(&mut block[136..148], 0);
    block[156] = kind;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    // The checksum is the sum of the header's bytes with its own field read as spaces.
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    octal(&mut block[148..155], u64::from(sum));
    block[155] = b' ';
    block
}

/// `value` in octal, zero-padded to fill `field` but its last byte, which is NUL.
fn octal(field: &mut [u8], value: u64) {
    let last = field.len() - 1;
    let digits = format!("{value:0last$o}");
    field[..last].copy_from_slice(digits.as_bytes());
    field[last] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn header_fields_and_checksum_follow_ustar() {
        let mut tar = Tar::new();
        tar.append("clip.0000001.jpg", &[1u8; 1234]).unwrap();
        let (bytes, _) = tar.finish();
        let block = &bytes[..BLOCK];
        assert_eq!(field(block, 0..100), "clip.0000001.jpg");
        assert_eq!(field(block, 100..108), "0000644");
        assert_eq!(field(block, 124..136), format!("{:011o}", 1234));
        assert_eq!(field(block, 136..148), "00000000000");
        assert_eq!(block[156], b'0');
        assert_eq!(&block[257..265], b"ustar\x0000");
        let stored = u32::from_str_radix(&field(block, 148..156), 8).unwrap();
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
    fn long_names_get_a_pax_path_record() {
        let name = format!("{}é.jpg", "a".repeat(99));
        let mut tar = Tar::new();
        tar.append(&name, b"data").unwrap();
        let (bytes, spans) = tar.finish();
        assert_eq!(bytes[156], b'x');
        let record = pax_record("path", &name);
        assert_eq!(&bytes[BLOCK..BLOCK + record.len()], &record[..]);
        // The member's own header follows the pax data block, its name cut on a char boundary.
        let member = &bytes[2 * BLOCK..3 * BLOCK];
        assert_eq!(member[156], b'0');
        assert_eq!(field(member, 0..100), "a".repeat(99));
        assert_eq!(spans[0].offset, 3 * BLOCK as u64);
        assert_eq!(spans[0].name, name);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for value in ["x", &"y".repeat(90), &"z".repeat(95), &"w".repeat(994)] {
            let record = pax_record("path", value);
            let text = String::from_utf8(record.clone()).unwrap();
            let (length, _) = text.split_once(' ').unwrap();
            assert_eq!(length.parse::<usize>().unwrap(), record.len(), "{text}");
            assert!(text.ends_with('\n'));
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let mut tar = Tar::new();
        assert!(matches!(tar.append("", b""), Err(TarError::BadName(_))));
        assert!(matches!(tar.append("a\0b", b""), Err(TarError::BadName(_))));
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
