//! One module per subcommand. Each has an `Args` (clap) and a `run`.

pub mod backfill;
pub mod convert;
pub mod daemon;
pub mod export;
pub mod harmonize;
pub mod inspect;
pub mod migrate;
pub mod model;
pub mod process;
pub mod pull;
pub mod queue;
pub mod scheduler;
pub mod serve;
pub mod token;
pub mod worker;

use std::path::Path;

use imaging::Volume;
use imaging::source::{self, OpenOptions};

/// Configuration files for the daemon's roles (`migrate`, and later `serve`,
/// `scheduler`, `worker`): read after `config/neurobatch.toml`, before the
/// `NEUROBATCH__…` environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// A configuration file; repeat for several, later ones override earlier ones.
    #[arg(long = "config", value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,
}

impl ConfigArgs {
    /// The validated configuration.
    pub fn load(&self) -> anyhow::Result<neurobatch_core::config::Config> {
        Ok(neurobatch_core::config::Config::load(&self.files)?)
    }
}

/// How inputs are read, shared by the subcommands that read volumes.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// Refuse inputs with more voxels than this (checked before allocating).
    #[arg(long, default_value_t = 512 * 512 * 512)]
    pub max_voxels: u64,
    /// Refuse 4-D NIfTI files instead of taking their first volume with a warning.
    #[arg(long)]
    pub refuse_4d: bool,
}

impl ReadArgs {
    pub fn options(&self) -> OpenOptions {
        OpenOptions { max_voxels: self.max_voxels, refuse_4d: self.refuse_4d }
    }
}

/// Which volume of a multi-volume input a command works on, and how inputs are read.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// The SeriesInstanceUID to use when the input holds several volumes.
    #[arg(long)]
    pub series: Option<String>,
    /// The echo (EchoNumbers) to take from a multi-echo series.
    #[arg(long)]
    pub echo: Option<i32>,
    #[command(flatten)]
    pub read: ReadArgs,
}

impl SelectArgs {
    /// The one volume of `path` these arguments select.
    pub fn open(&self, path: &Path) -> anyhow::Result<Volume<f32>> {
        open_one(path, self.series.as_deref(), self.echo, &self.read)
    }
}

/// Every volume in a file or folder, with read warnings logged.
pub fn open_all(path: &Path, read: &ReadArgs) -> anyhow::Result<Vec<Volume<f32>>> {
    let volumes = source::open(path, &read.options())?;
    for v in &volumes {
        for w in &v.meta.warnings {
            tracing::warn!(source = %v.meta.source, "{w}");
        }
    }
    Ok(volumes)
}

/// The one volume a command works on: the only one, or the series (and
/// echo, for multi-echo series) asked for.
pub fn open_one(path: &Path, series: Option<&str>, echo: Option<i32>, read: &ReadArgs) -> anyhow::Result<Volume<f32>> {
    let volumes = open_all(path, read)?;
    let mut chosen: Vec<Volume<f32>> = volumes
        .into_iter()
        .filter(|v| series.is_none_or(|uid| v.meta.series_uid.as_deref() == Some(uid)))
        .filter(|v| echo.is_none_or(|e| v.meta.echo_number == Some(e)))
        .collect();
    match chosen.len() {
        1 => Ok(chosen.remove(0)),
        0 => anyhow::bail!("{}: no volume matches{}{}", path.display(), describe_series(series), describe_echo(echo)),
        n => {
            let choices: Vec<String> = chosen
                .iter()
                .map(|v| {
                    let uid = v.meta.series_uid.as_deref().unwrap_or("?");
                    v.meta.echo_number.map_or(uid.to_string(), |e| format!("{uid} echo {e}"))
                })
                .collect();
            anyhow::bail!(
                "{}: {n} volumes found, choose one with --series/--echo ({})",
                path.display(),
                choices.join(", ")
            )
        }
    }
}

fn describe_series(series: Option<&str>) -> String {
    series.map_or(String::new(), |s| format!(" series {s}"))
}

fn describe_echo(echo: Option<i32>) -> String {
    echo.map_or(String::new(), |e| format!(" echo {e}"))
}
