//! Where the workspace's binaries are: the services the chaos suite runs as processes, the
//! `framefleet` command, the worker the local fleet supervisor starts. Its own module so the
//! stack and the process fleet both find them without importing each other.

use std::path::PathBuf;

use anyhow::Context;

/// The directory holding the workspace's binaries: the test binary runs from
/// `<target>/<profile>/deps/`.
pub(crate) fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test binary is not in a target directory")?;
    Ok(profile.to_path_buf())
}
