//! `neurobatch convert`: one volume of a file or folder → NIfTI.

use std::path::PathBuf;

use anyhow::Context;

use super::ReadArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A NIfTI file or a folder of DICOM instances.
    pub input: PathBuf,
    /// Output `.nii.gz` (or `.nii`).
    pub output: PathBuf,
    /// The SeriesInstanceUID to convert when the input holds several volumes.
    #[arg(long)]
    pub series: Option<String>,
    /// The echo (EchoNumbers) to take from a multi-echo series.
    #[arg(long)]
    pub echo: Option<i32>,
    /// Reorient to the closest canonical RAS orientation (no interpolation) before writing.
    #[arg(long)]
    pub canonical: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut volume = super::open_one(&args.input, args.series.as_deref(), args.echo, &args.read)?;
    if args.canonical {
        volume = imaging::orientation::to_canonical(&volume)?.0;
    }
    imaging::nifti::write_f32(&args.output, &volume).with_context(|| format!("converting {}", args.input.display()))?;
    tracing::info!(output = %args.output.display(), shape = ?volume.dims(), "written");
    Ok(())
}
