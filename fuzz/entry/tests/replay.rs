//! Replays every input under `fuzz/regressions/<target>/` (crashes the fuzzers found, and the
//! hand-made inputs of the defects fixed before fuzzing) and `fuzz/seeds/<target>/` (the
//! checked-in seed corpus) through the same function the fuzz target calls. Runs on stable
//! Rust with the rest of the workspace's tests, so a fixed crash cannot come back unnoticed.

use std::path::{Path, PathBuf};

use framefleet_fuzz_entry::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the entry crate lives in fuzz/")
        .to_path_buf()
}

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every file of `fuzz/<kind>/<target>/` through its target; returns how many ran.
fn replay(kind: &str) -> usize {
    let mut ran = 0;
    let mut failed = Vec::new();
    for target in TARGETS {
        for file in inputs(&fuzz_dir().join(kind).join(target.name)) {
            let data = std::fs::read(&file).expect("readable input");
            if std::panic::catch_unwind(|| (target.run)(&data)).is_err() {
                failed.push(file.display().to_string());
            }
            ran += 1;
        }
    }
    assert!(failed.is_empty(), "inputs that panic: {failed:#?}");
    ran
}

#[test]
fn regressions_do_not_panic() {
    let ran = replay("regressions");
    assert!(ran > 0, "fuzz/regressions is empty");
}

#[test]
fn seeds_do_not_panic() {
    let ran = replay("seeds");
    assert!(ran > 0, "fuzz/seeds is empty");
}

#[test]
fn every_target_has_seeds() {
    for target in TARGETS {
        assert!(
            !inputs(&fuzz_dir().join("seeds").join(target.name)).is_empty(),
            "no seeds for {}",
            target.name
        );
    }
}

#[test]
fn frame_batch_seeds_are_real_batches() {
    // A seed that does not parse would only exercise serde's error paths.
    for file in inputs(&fuzz_dir().join("seeds").join("frame_batch")) {
        let body = std::fs::read_to_string(&file).expect("UTF-8 seed");
        framefleet_core::message::FrameBatch::parse(&body)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}
