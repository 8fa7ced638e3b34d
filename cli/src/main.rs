//! `framefleet`: parses the command line and runs it; everything else is in the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = framefleet_cli::Cli::parse();
    match framefleet_cli::run(cli).await {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("framefleet: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
