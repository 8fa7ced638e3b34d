//! The offline subcommands of the `worker` binary: `edges` (edge maps of local files) and
//! `bench` (the kernel timed against its baselines). Neither touches AWS.
//!
//! - [`edges`]: one edge map per input file, per-file errors reported without stopping.
//! - [`bench`]: loads a folder of JPEG frames and times every pipeline on them.
//! - [`seed`]: a faithful port of the original system's per-frame code, the baseline.

pub mod bench;
pub mod edges;
pub mod seed;

use std::path::PathBuf;
use std::process::ExitCode;

use framefleet_edge::{Blur, EdgeParams, OutputFormat};

/// `worker edges INPUT... --out DIR`: write one edge map per input image.
#[derive(Debug, clap::Args)]
pub struct EdgesArgs {
    /// Input images (JPEG or PNG).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Folder for the edge maps (created if missing); each keeps its input's file stem.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Edgy's blur modifier: sigma = width·height / 3,630,000 × M (default 1).
    #[arg(long, value_name = "M", conflicts_with = "sigma")]
    pub blur_modifier: Option<f32>,
    /// Absolute blur sigma in pixels; 0 turns the blur off.
    #[arg(long, value_name = "S")]
    pub sigma: Option<f32>,
    /// Output encoding.
    #[arg(long, value_enum, default_value_t = FormatArg::Jpeg)]
    pub format: FormatArg,
    /// JPEG quality (1-100).
    #[arg(long, value_name = "Q", default_value_t = framefleet_edge::DEFAULT_QUALITY,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Downscale (aspect kept) to at most this width first.
    #[arg(long, value_name = "W")]
    pub max_width: Option<u32>,
    /// Downscale (aspect kept) to at most this height first.
    #[arg(long, value_name = "H")]
    pub max_height: Option<u32>,
}

impl EdgesArgs {
    /// The kernel parameters these flags ask for.
    pub fn params(&self) -> EdgeParams {
        let blur = match (self.sigma, self.blur_modifier) {
            (Some(sigma), _) => Blur::Sigma(sigma),
            (None, Some(modifier)) => Blur::Modifier(modifier),
            (None, None) => Blur::default(),
        };
        EdgeParams {
            blur,
            format: self.format.into(),
            quality: self.quality,
            max_width: self.max_width,
            max_height: self.max_height,
            ..EdgeParams::default()
        }
    }
}

/// Output encoding as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Greyscale JPEG.
    Jpeg,
    /// Greyscale PNG.
    Png,
}

impl From<FormatArg> for OutputFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Jpeg => OutputFormat::Jpeg,
            FormatArg::Png => OutputFormat::Png,
        }
    }
}

/// `worker bench --frames DIR`: time the pipelines on the same in-memory frames.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Folder whose `.jpg`/`.jpeg` files are the frames (all loaded into memory first).
    #[arg(long, value_name = "DIR")]
    pub frames: PathBuf,
    /// One JSON object per pipeline per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Most timed passes over the frames per pipeline; the fastest pass is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub passes: u32,
    /// Stop the rounds of passes once this many seconds per pipeline were spent.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Only these pipelines (comma-separated): edge, edge-parallel, seed, codec-floor,
    /// codec-floor-edges.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<bench::Pipeline>,
}

/// Runs `worker edges`; the exit code is non-zero if any input failed.
pub fn run_edges(args: EdgesArgs) -> anyhow::Result<ExitCode> {
    edges::run(&args)
}

/// Runs `worker bench`, printing the results on stdout.
pub fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    bench::run(&args)
}
