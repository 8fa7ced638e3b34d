//! A fallback fuzzer on stable Rust, for when libFuzzer cannot be built: random mutations
//! (bit flips, byte and 64-bit-size overwrites, inserts, deletes, splices) of the seeds and
//! regressions, run through the same target function, without coverage guidance. A panicking
//! input is written to `fuzz/regressions/<target>/`.
//!
//! Usage: `fuzz-mutate SECONDS TARGET` (run from the repository root).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use framefleet_fuzz_entry::TARGETS;

/// xorshift64*: a tiny deterministic generator, seeded from the clock.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(u64::MAX)).unwrap_or(0)
    }
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect()
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    const INTERESTING: [u64; 8] = [
        0,
        1,
        0x7f,
        0xff,
        0xffff_ffff,
        u64::MAX,
        u64::MAX / 1000 + 1,
        1 << 63,
    ];
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => input[rng.below(len)] ^= 1 << rng.below(8),
            1 if len > 0 => input[rng.below(len)] = rng.next() as u8,
            2 if len >= 8 => {
                let at = rng.below(len - 7);
                let value = INTERESTING[rng.below(INTERESTING.len())];
                input[at..at + 8].copy_from_slice(&value.to_be_bytes());
            }
            3 => {
                let at = rng.below(len + 1);
                input.insert(at, rng.next() as u8);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = rng.below(len - at).min(64) + 1;
                input.drain(at..(at + n).min(len));
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = rng.below(other.len() - from) + 1;
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[from..from + n].iter().copied());
                }
            }
            _ => {
                // Repeat a chunk: many small boxes or elements.
                if len > 0 {
                    let from = rng.below(len);
                    let n = rng.below(len - from).min(16) + 1;
                    let chunk = input[from..from + n].to_vec();
                    for _ in 0..rng.below(100) {
                        input.extend_from_slice(&chunk);
                    }
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(seconds), Some(name)) = (args.get(1).and_then(|s| s.parse().ok()), args.get(2))
    else {
        eprintln!("usage: fuzz-mutate SECONDS TARGET");
        std::process::exit(64);
    };
    let Some(target) = TARGETS.iter().find(|t| t.name == name) else {
        eprintln!("unknown target {name}");
        std::process::exit(64);
    };
    let fuzz = PathBuf::from("fuzz");
    let mut corpus = files(&fuzz.join("seeds").join(name));
    corpus.extend(files(&fuzz.join("regressions").join(name)));
    corpus.extend(files(&fuzz.join("corpus").join(name)));
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut rng = Rng(clock | 1);
    std::panic::set_hook(Box::new(|_| {}));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut runs, mut crashes) = (0u64, 0u32);
    while Instant::now() < deadline {
        let mut input = corpus[rng.below(corpus.len())].clone();
        mutate(&mut rng, &mut input, &corpus);
        runs += 1;
        if std::panic::catch_unwind(|| (target.run)(&input)).is_err() {
            crashes += 1;
            let dir = fuzz.join("regressions").join(name);
            std::fs::create_dir_all(&dir).expect("regressions folder");
            let file = dir.join(format!("mutate-{runs}-{:016x}", rng.next()));
            std::fs::write(&file, &input).expect("write the crashing input");
            eprintln!("{name}: panic, input saved to {}", file.display());
        }
    }
    println!("{name}: {runs} inputs in {seconds}s, {crashes} panics");
    if crashes > 0 {
        std::process::exit(1);
    }
}
