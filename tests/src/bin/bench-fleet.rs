//! `bench-fleet`: one worker process's frames/s and CPU per frame against the kernel alone, at
//! AWS-like and at no added S3 latency; see `scripts/bench-fleet`, which installs what it needs
//! and passes every argument.

use std::time::Duration;

use anyhow::{bail, Context as _};
use framefleet_e2e::fleet_bench::{self, FleetBenchArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = FleetBenchArgs {
        worker: "target/release/worker".into(),
        s3s_fs: "s3s-fs".into(),
        frames: "frames".into(),
        copies: 20,
        batch_size: 50,
        get: Duration::from_millis(20),
        put: Duration::from_millis(40),
        tail: Duration::from_millis(100),
        tail_probability: 0.05,
        rounds: 1,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let ms = |v: &str| v.parse().map(Duration::from_millis);
        match flag.as_str() {
            "--worker" => args.worker = value.into(),
            "--s3s-fs" => args.s3s_fs = value.into(),
            "--frames" => args.frames = value.into(),
            "--copies" => args.copies = value.parse()?,
            "--batch-size" => args.batch_size = value.parse()?,
            "--get-ms" => args.get = ms(&value)?,
            "--put-ms" => args.put = ms(&value)?,
            "--tail-ms" => args.tail = ms(&value)?,
            "--tail-probability" => args.tail_probability = value.parse()?,
            "--rounds" => args.rounds = value.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if args.copies == 0 || args.batch_size == 0 || args.rounds == 0 {
        bail!("--copies, --batch-size and --rounds must be at least 1");
    }
    fleet_bench::run(args).await
}
