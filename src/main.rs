//! The `neurobatch` binary: parses the command line, sets up logging and
//! dispatches to one subcommand. Everything else lives in the libraries;
//! this is the only place that uses `anyhow` and decides exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod telemetry;

// A worker processes study after study: mimalloc keeps freed volume buffers
// mapped, so the next study's 30–100 MB allocations do not page-fault again
// (see docs/benchmarks.md for the measured difference).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "neurobatch", version, about = "Batch processing of brain MRI studies")]
struct Cli {
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every series/volume in a NIfTI file or a DICOM folder.
    Inspect(commands::inspect::Args),
    /// Write one volume of a NIfTI file or DICOM folder as NIfTI.
    Convert(commands::convert::Args),
    /// Foreground masks and intensity harmonization.
    #[command(subcommand)]
    Harmonize(commands::harmonize::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.log_level, cli.log_json);
    let result = match cli.command {
        Command::Inspect(args) => commands::inspect::run(&args),
        Command::Convert(args) => commands::convert::run(&args),
        Command::Harmonize(cmd) => commands::harmonize::run(&cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, as users and log scrapers expect.
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace(['\n', '\r'], " ")
}
