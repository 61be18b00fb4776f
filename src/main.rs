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
    /// Segment one scan with the ensemble, with uncertainty maps, a report and a routing decision.
    Process(Box<commands::process::Args>),
    /// Model folder maintenance (fitting the out-of-distribution reference).
    #[command(subcommand)]
    Model(commands::model::Command),
    /// Apply the job store's database migrations (PostgreSQL or SQLite, from the configuration).
    Migrate(commands::migrate::Args),
    /// The whole daemon in one process (scheduler, workers, API); embedded backends by default.
    Serve(commands::serve::Args),
    /// The scheduler: ingest (inbox, S3 prefix, HTTP), dispatch, reaper, status API.
    Scheduler(commands::scheduler::Args),
    /// A worker: consume jobs, run the models, store results.
    Worker(commands::worker::Args),
    /// Submit every study under a folder or S3 prefix.
    Backfill(commands::backfill::Args),
    /// Pull studies of a date range from the PACS's DICOMweb service into the inbox.
    Pull(commands::pull::Args),
    /// API tokens for reviewers, admins and services.
    #[command(subcommand)]
    Token(commands::token::Command),
    /// Broker maintenance: delete a prefix's queues and exchanges.
    #[command(subcommand)]
    Queue(commands::queue::Command),
    /// Approved and corrected review cases as an nnU-Net v2 raw dataset.
    ExportDataset(commands::export::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.log_level, cli.log_json);
    let result = match cli.command {
        Command::Inspect(args) => commands::inspect::run(&args),
        Command::Convert(args) => commands::convert::run(&args),
        Command::Harmonize(cmd) => commands::harmonize::run(&cmd),
        Command::Process(args) => commands::process::run(&args),
        Command::Model(cmd) => commands::model::run(&cmd),
        Command::Migrate(args) => commands::migrate::run(&args),
        Command::Serve(args) => commands::serve::run(&args),
        Command::Scheduler(args) => commands::scheduler::run(&args),
        Command::Worker(args) => commands::worker::run(&args),
        Command::Backfill(args) => commands::backfill::run(&args),
        Command::Pull(args) => commands::pull::run(&args),
        Command::Token(cmd) => commands::token::run(&cmd),
        Command::Queue(cmd) => commands::queue::run(&cmd),
        Command::ExportDataset(args) => commands::export::run(&args),
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
/// Library errors already put their reason in their message, so a cause
/// whose text is already there is not repeated.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("series 7: {source}")]
    struct Outer {
        source: std::io::Error,
    }

    #[test]
    fn causes_are_joined_once_on_one_line() {
        let inner = std::io::Error::other("gap at\n12 mm");
        let err = anyhow::Error::new(Outer { source: inner }).context("reading study");
        assert_eq!(one_line(&err), "reading study: series 7: gap at 12 mm");
        let plain = anyhow::anyhow!("no such file").context("opening x.nii");
        assert_eq!(one_line(&plain), "opening x.nii: no such file");
    }
}
