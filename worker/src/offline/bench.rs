//! `worker bench`: every pipeline timed on the same in-memory frames with default parameters.
//!
//! Each pipeline first runs once on one frame (so codec instances and buffers exist). Then
//! come up to `--passes` rounds, each one timed pass over all frames per pipeline, in turn, so
//! that a slow spell of the machine falls on every pipeline alike instead of on whichever
//! happened to be running; rounds stop early once `--seconds` per pipeline were spent. The
//! fastest pass of each pipeline is reported, which filters out a noisy neighbour better than
//! a mean would.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use framefleet_edge::{EdgeError, EdgeParams, LumaImage};
use rayon::prelude::*;
use serde::Serialize;

use super::{seed, BenchArgs};

/// A timed pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pipeline {
    /// `framefleet_edge::process`, one thread.
    Edge,
    /// `framefleet_edge::process` on every core, one frame per task.
    EdgeParallel,
    /// The original system's code (see [`seed`]), one thread.
    Seed,
    /// Our luma decode and JPEG encode alone, no blur or Sobel, one thread.
    CodecFloor,
    /// The codecs of `edge` alone, one thread: decode the frame, encode its edge map computed
    /// before timing. `edge` minus this is what the blur and Sobel cost.
    CodecFloorEdges,
}

impl Pipeline {
    const ALL: [Pipeline; 5] = [
        Pipeline::Edge,
        Pipeline::EdgeParallel,
        Pipeline::Seed,
        Pipeline::CodecFloor,
        Pipeline::CodecFloorEdges,
    ];

    /// The name used in the JSON output and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Pipeline::Edge => "edge",
            Pipeline::EdgeParallel => "edge-parallel",
            Pipeline::Seed => "seed",
            Pipeline::CodecFloor => "codec-floor",
            Pipeline::CodecFloorEdges => "codec-floor-edges",
        }
    }

    fn threads(self) -> usize {
        match self {
            Pipeline::EdgeParallel => rayon::current_num_threads(),
            _ => 1,
        }
    }

    /// Runs one frame; returns the output size so the work cannot be optimised away.
    fn run_one(self, frame: &Frame) -> anyhow::Result<usize> {
        let params = EdgeParams::default();
        let bytes = match self {
            Pipeline::Edge | Pipeline::EdgeParallel => {
                framefleet_edge::process(&frame.bytes, &params)?.bytes.len()
            }
            Pipeline::CodecFloor => framefleet_edge::transcode_luma(&frame.bytes, &params)?
                .bytes
                .len(),
            Pipeline::Seed => seed::edges(&frame.bytes)?.len(),
            Pipeline::CodecFloorEdges => {
                framefleet_edge::transcode_precomputed(&frame.bytes, frame.edge_map()?, &params)?
                    .bytes
                    .len()
            }
        };
        Ok(bytes)
    }

    fn run_pass(self, frames: &[Frame]) -> anyhow::Result<usize> {
        let total = |r: anyhow::Result<Vec<usize>>| r.map(|v| v.iter().sum());
        let tagged = |f: &Frame| {
            self.run_one(f)
                .with_context(|| format!("{}: {}", self.name(), f.path.display()))
        };
        match self {
            Pipeline::EdgeParallel => total(frames.par_iter().map(tagged).collect()),
            _ => total(frames.iter().map(tagged).collect()),
        }
    }
}

/// One line of `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// Pipeline name.
    pub pipeline: &'static str,
    /// Frames per pass.
    pub frames: usize,
    /// Width of the first frame.
    pub width: u32,
    /// Height of the first frame.
    pub height: u32,
    /// Threads the pipeline used.
    pub threads: usize,
    /// Wall time of the fastest pass divided by the frames.
    pub ms_per_frame: f64,
    /// Frames per second of the fastest pass.
    pub fps: f64,
}

struct Frame {
    path: PathBuf,
    bytes: Vec<u8>,
    /// The frame's edge map (not encoded) for `codec-floor-edges`, computed before timing.
    edges: OnceLock<LumaImage>,
}

impl Frame {
    /// The frame's edge map with default parameters, computed on first use.
    fn edge_map(&self) -> Result<&LumaImage, EdgeError> {
        if let Some(plane) = self.edges.get() {
            return Ok(plane);
        }
        let params = EdgeParams::default();
        let luma = framefleet_edge::decode_luma(&self.bytes, &params)?;
        let sigma = params.blur.sigma(luma.width, luma.height);
        Ok(self
            .edges
            .get_or_init(|| framefleet_edge::edge_plane(&luma, sigma)))
    }
}

/// Loads every `.jpg`/`.jpeg` in `dir`, sorted by name.
fn load_frames(dir: &Path) -> anyhow::Result<Vec<Frame>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("no .jpg or .jpeg files in {}", dir.display());
    }
    paths
        .into_iter()
        .map(|path| {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(Frame {
                path,
                bytes,
                edges: OnceLock::new(),
            })
        })
        .collect()
}

/// Times each pipeline over all frames: the fastest of its passes, in `pipelines` order.
fn measure(
    pipelines: &[Pipeline],
    frames: &[Frame],
    passes: u32,
    budget_per_pipeline: Duration,
) -> anyhow::Result<Vec<Duration>> {
    for &pipeline in pipelines {
        if pipeline == Pipeline::CodecFloorEdges {
            for frame in frames {
                frame.edge_map()?;
            }
        }
        pipeline.run_one(&frames[0])?;
    }
    let budget = budget_per_pipeline.saturating_mul(pipelines.len() as u32);
    let started = Instant::now();
    let mut best = vec![Duration::MAX; pipelines.len()];
    for _ in 0..passes {
        for (best, &pipeline) in best.iter_mut().zip(pipelines) {
            let t = Instant::now();
            std::hint::black_box(pipeline.run_pass(frames)?);
            *best = (*best).min(t.elapsed());
        }
        if started.elapsed() >= budget {
            break;
        }
    }
    Ok(best)
}

/// Runs the benchmark and prints one JSON line per pipeline, or a table.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let frames = load_frames(&args.frames)?;
    let first = framefleet_edge::probe(&frames[0].bytes)
        .with_context(|| format!("reading {}", frames[0].path.display()))?;
    let pipelines: Vec<Pipeline> = if args.only.is_empty() {
        Pipeline::ALL.to_vec()
    } else {
        args.only.clone()
    };
    let budget = Duration::from_secs_f64(args.seconds.max(0.0));
    let timings = measure(&pipelines, &frames, args.passes, budget)?;
    let mut results = Vec::new();
    for (pipeline, best) in pipelines.into_iter().zip(timings) {
        let seconds = best.as_secs_f64();
        let m = Measurement {
            pipeline: pipeline.name(),
            frames: frames.len(),
            width: first.width,
            height: first.height,
            threads: pipeline.threads(),
            ms_per_frame: round3(seconds * 1000.0 / frames.len() as f64),
            fps: round3(frames.len() as f64 / seconds),
        };
        if args.json {
            println!("{}", serde_json::to_string(&m)?);
        }
        results.push(m);
    }
    if !args.json {
        print_table(&results);
    }
    Ok(())
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn print_table(results: &[Measurement]) {
    let find = |name: &str| {
        results
            .iter()
            .find(|m| m.pipeline == name)
            .map(|m| m.ms_per_frame)
    };
    let (seed, floor, edge) = (find("seed"), find("codec-floor"), find("edge"));
    if let Some(m) = results.first() {
        println!(
            "{} frames, {}x{} (first frame)",
            m.frames, m.width, m.height
        );
    }
    println!(
        "{:<17} {:>7} {:>10} {:>9} {:>10} {:>12} {:>9}",
        "pipeline", "threads", "ms/frame", "fps", "vs seed", "vs floor", "vs edge"
    );
    for m in results {
        let ratio = |base: Option<f64>| {
            base.map_or("-".to_string(), |b| format!("{:.2}x", b / m.ms_per_frame))
        };
        let over = floor.map_or("-".to_string(), |f| format!("{:.2}x", m.ms_per_frame / f));
        println!(
            "{:<17} {:>7} {:>10.3} {:>9.1} {:>10} {:>12} {:>9}",
            m.pipeline,
            m.threads,
            m.ms_per_frame,
            m.fps,
            ratio(seed),
            over,
            ratio(edge),
        );
    }
    println!("vs seed / vs edge: how many times faster; vs floor: time relative to codec-floor");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pipeline_runs_on_a_folder_of_frames() {
        let dir = tempfile::tempdir().unwrap();
        let plane = framefleet_edge::LumaImage {
            width: 48,
            height: 32,
            pixels: (0..48 * 32).map(|i| (i * 7 % 251) as u8).collect(),
        };
        let jpeg =
            framefleet_edge::encode(&plane, framefleet_edge::OutputFormat::Jpeg, 90).unwrap();
        std::fs::write(dir.path().join("a.jpg"), &jpeg.bytes).unwrap();
        std::fs::write(dir.path().join("b.JPEG"), &jpeg.bytes).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        let frames = load_frames(dir.path()).unwrap();
        assert_eq!(frames.len(), 2);
        let best = measure(&Pipeline::ALL, &frames, 2, Duration::from_secs(1)).unwrap();
        assert_eq!(best.len(), Pipeline::ALL.len());
        for (p, best) in Pipeline::ALL.iter().zip(best) {
            assert!(
                best > Duration::ZERO && best < Duration::MAX,
                "{}",
                p.name()
            );
        }
        let empty = tempfile::tempdir().unwrap();
        assert!(load_frames(empty.path()).is_err());
    }
}
