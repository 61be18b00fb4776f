//! One module per subcommand. Each has an `Args` (clap) and a `run`.

pub mod convert;
pub mod harmonize;
pub mod inspect;

use std::path::Path;

use anyhow::Context;
use imaging::Volume;
use imaging::source::{self, OpenOptions};

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

/// The one volume a command works on: the only one, or the series asked for.
pub fn open_one(path: &Path, series: Option<&str>, read: &ReadArgs) -> anyhow::Result<Volume<f32>> {
    let mut volumes = open_all(path, read)?;
    match series {
        Some(uid) => {
            let pos = volumes
                .iter()
                .position(|v| v.meta.series_uid.as_deref() == Some(uid))
                .with_context(|| format!("{}: no series {uid}", path.display()))?;
            Ok(volumes.swap_remove(pos))
        }
        None if volumes.len() == 1 => Ok(volumes.remove(0)),
        None => {
            let uids: Vec<String> =
                volumes.iter().map(|v| v.meta.series_uid.clone().unwrap_or_else(|| "?".into())).collect();
            anyhow::bail!(
                "{}: {} volumes found, choose one with --series ({})",
                path.display(),
                uids.len(),
                uids.join(", ")
            )
        }
    }
}
