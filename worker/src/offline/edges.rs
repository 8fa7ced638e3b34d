//! `worker edges`: edge maps of local files, in parallel, one failure never stopping the rest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use framefleet_edge::EdgeParams;
use rayon::prelude::*;

use super::EdgesArgs;

/// What happened to one input.
#[derive(Debug)]
pub struct FileOutcome {
    /// The input as given.
    pub input: PathBuf,
    /// Where its edge map went, or why there is none.
    pub result: Result<PathBuf, String>,
}

/// Validates the flags, processes every input and prints one line per failure.
pub fn run(args: &EdgesArgs) -> anyhow::Result<ExitCode> {
    let params = args.params();
    params.validate().context("invalid options")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let outcomes = process_files(&args.inputs, &args.out, &params);
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    for outcome in &outcomes {
        if let Err(reason) = &outcome.result {
            eprintln!("{}: {reason}", outcome.input.display());
        }
    }
    eprintln!(
        "wrote {} edge map(s) to {}, {failed} failed",
        outcomes.len() - failed,
        args.out.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes `out/<stem>.<ext>` for each input (in parallel), in input order.
pub fn process_files(inputs: &[PathBuf], out: &Path, params: &EdgeParams) -> Vec<FileOutcome> {
    // Two inputs with the same stem would overwrite each other's output: refuse the later ones.
    let mut first_with_stem: HashMap<&std::ffi::OsStr, &Path> = HashMap::new();
    let clashes: Vec<Option<String>> = inputs
        .iter()
        .map(|input| {
            let stem = input.file_stem()?;
            match first_with_stem.get(stem) {
                Some(first) => Some(format!("same file stem as {}, skipped", first.display())),
                None => {
                    first_with_stem.insert(stem, input);
                    None
                }
            }
        })
        .collect();
    inputs
        .par_iter()
        .zip(clashes)
        .map(|(input, clash)| FileOutcome {
            input: input.clone(),
            result: match clash {
                Some(reason) => Err(reason),
                None => process_file(input, out, params),
            },
        })
        .collect()
}

fn process_file(input: &Path, out: &Path, params: &EdgeParams) -> Result<PathBuf, String> {
    let stem = input.file_stem().ok_or("no file name")?;
    let bytes = std::fs::read(input).map_err(|e| format!("reading: {e}"))?;
    let map = framefleet_edge::process(&bytes, params).map_err(|e| e.to_string())?;
    let target = out.join(stem).with_extension(map.format.extension());
    std::fs::write(&target, &map.bytes)
        .map_err(|e| format!("writing {}: {e}", target.display()))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use framefleet_edge::{LumaImage, OutputFormat};

    fn tiny_png() -> Vec<u8> {
        let pixels = (0..32 * 24)
            .map(|i| if i % 32 < 16 { 20 } else { 220 })
            .collect();
        let plane = LumaImage {
            width: 32,
            height: 24,
            pixels,
        };
        framefleet_edge::encode(&plane, OutputFormat::Png, 90)
            .unwrap()
            .bytes
    }

    #[test]
    fn writes_good_inputs_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("frame-001.png");
        std::fs::write(&good, tiny_png()).unwrap();
        let corrupt = dir.path().join("broken.jpg");
        std::fs::write(&corrupt, b"\xFF\xD8\xFF\xE0 definitely not a jpeg").unwrap();
        let missing = dir.path().join("missing.jpg");
        let clash = dir.path().join("sub").join("frame-001.jpg");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();

        let outcomes = process_files(
            &[good.clone(), corrupt.clone(), missing, clash],
            &out,
            &EdgeParams::default(),
        );
        let written = outcomes[0].result.as_ref().unwrap();
        assert_eq!(written, &out.join("frame-001.jpg"));
        let map = std::fs::read(written).unwrap();
        let info = framefleet_edge::probe(&map).unwrap();
        assert_eq!((info.width, info.height), (32, 24));
        assert!(
            outcomes[1]
                .result
                .as_ref()
                .unwrap_err()
                .starts_with("input is"),
            "{outcomes:?}"
        );
        assert!(
            outcomes[2].result.as_ref().unwrap_err().contains("reading"),
            "{outcomes:?}"
        );
        assert!(
            outcomes[3]
                .result
                .as_ref()
                .unwrap_err()
                .contains("same file stem"),
            "{outcomes:?}"
        );
    }

    #[test]
    fn run_exits_non_zero_when_any_input_fails() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a.png");
        std::fs::write(&good, tiny_png()).unwrap();
        let bad = dir.path().join("b.png");
        std::fs::write(&bad, b"").unwrap();
        let out = dir.path().join("maps");
        let args = |inputs: Vec<PathBuf>| EdgesArgs {
            inputs,
            out: out.clone(),
            blur_modifier: None,
            sigma: Some(1.0),
            format: super::super::FormatArg::Png,
            quality: 90,
            max_width: Some(16),
            max_height: None,
        };
        assert_eq!(run(&args(vec![good.clone()])).unwrap(), ExitCode::SUCCESS);
        let info = framefleet_edge::probe(&std::fs::read(out.join("a.png")).unwrap()).unwrap();
        assert_eq!((info.width, info.height), (16, 12));
        assert_eq!(run(&args(vec![good, bad])).unwrap(), ExitCode::FAILURE);
    }
}
