//! `neurobatch convert`: one volume of a file or folder → NIfTI.

use std::path::PathBuf;

use anyhow::Context;

use super::SelectArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A NIfTI file or a folder of DICOM instances.
    pub input: PathBuf,
    /// Output `.nii.gz` (or `.nii`).
    pub output: PathBuf,
    /// Reorient to the closest canonical RAS orientation (no interpolation) before writing.
    #[arg(long)]
    pub canonical: bool,
    #[command(flatten)]
    pub select: SelectArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut volume = args.select.open(&args.input)?;
    if args.canonical {
        volume = imaging::orientation::to_canonical(&volume)?.0;
    }
    imaging::nifti::write_f32(&args.output, &volume).with_context(|| format!("converting {}", args.input.display()))?;
    tracing::info!(output = %args.output.display(), shape = ?volume.dims(), "written");
    Ok(())
}
