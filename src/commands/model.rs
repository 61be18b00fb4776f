//! `neurobatch model`: maintenance of model folders. `fit-ood` fits the
//! out-of-distribution reference (`worker::ood`) on in-domain scans, through
//! exactly the stages a study goes through before inference (model grid,
//! foreground, harmonization), and prints it as the manifest's `[ood]` table.

use std::path::PathBuf;

use anyhow::Context;
use worker::manifest::load_model_folder;
use worker::ood::{FitOptions, OodReference};
use worker::pipeline::to_model_grid;
use worker::runtime::RuntimeConfig;

use super::ReadArgs;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Fit the [ood] reference of a model folder on in-domain scans and print it as TOML.
    FitOod(FitOodArgs),
}

#[derive(Debug, clap::Args)]
pub struct FitOodArgs {
    /// The model folder (its spacing and harmonization are used).
    #[arg(long)]
    pub model: PathBuf,
    /// Histogram range and bins, in harmonized intensity units.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub lo: f64,
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub hi: f64,
    #[arg(long, default_value_t = 20)]
    pub bins: usize,
    /// Write the table here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// In-domain scans (NIfTI files or single-series DICOM folders).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub read: ReadArgs,
}

pub fn run(cmd: &Command) -> anyhow::Result<()> {
    match cmd {
        Command::FitOod(args) => fit_ood(args),
    }
}

fn fit_ood(args: &FitOodArgs) -> anyhow::Result<()> {
    let model = load_model_folder(&args.model, &RuntimeConfig::default())?;
    let mut prepared = Vec::with_capacity(args.inputs.len());
    for input in &args.inputs {
        let native = super::open_one(input, None, None, &args.read)?;
        let grid = to_model_grid(&native, &model.input_prep(), &Default::default())
            .with_context(|| format!("preparing {}", input.display()))?;
        prepared.push(grid);
    }
    let samples: Vec<_> = prepared.iter().map(|g| (&g.full_image, &g.foreground)).collect();
    let reference = OodReference::fit(&samples, &FitOptions::new(args.lo, args.hi, args.bins))?;
    #[derive(serde::Serialize)]
    struct Table<'a> {
        ood: &'a OodReference,
    }
    let text = toml::to_string(&Table { ood: &reference })?;
    match &args.out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
