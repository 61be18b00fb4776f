//! `neurobatch harmonize`: foreground masks, intensity harmonization, and
//! fitting a Nyúl standard scale. The method and its parameters come from a
//! TOML file (`--config`, see `config/harmonization.toml`) or from
//! `--method` plus `--set key=value` pairs, validated the same way.

use std::path::{Path, PathBuf};

use anyhow::Context;
use imaging::Volume;
use imaging::harmonize::{self, HarmonizeMethod, nyul};
use serde::Deserialize as _;

use super::{ReadArgs, SelectArgs};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Harmonize one volume's intensities.
    Apply(ApplyArgs),
    /// Learn a Nyúl–Udupa standard scale from several volumes and write it as JSON.
    FitNyul(FitArgs),
    /// Write the foreground mask used for harmonization statistics.
    Mask(MaskArgs),
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    pub input: PathBuf,
    pub output: PathBuf,
    /// TOML file with the method and its parameters (a `[harmonize]` table or top-level keys).
    #[arg(long, conflicts_with = "method")]
    pub config: Option<PathBuf>,
    /// Method name: zscore, percentile, whitestripe or nyul.
    #[arg(long)]
    pub method: Option<String>,
    /// A method parameter, `key=value` (TOML value syntax), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "method")]
    pub set: Vec<String>,
    /// A mask (NIfTI, non-zero = inside) instead of the computed foreground mask.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    #[command(flatten)]
    pub select: SelectArgs,
}

#[derive(Debug, clap::Args)]
pub struct FitArgs {
    /// Where to write the scale (JSON).
    pub scale: PathBuf,
    /// The volumes to learn from (NIfTI files or single-series DICOM folders).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, clap::Args)]
pub struct MaskArgs {
    pub input: PathBuf,
    pub output: PathBuf,
    #[command(flatten)]
    pub select: SelectArgs,
}

pub fn run(cmd: &Command) -> anyhow::Result<()> {
    match cmd {
        Command::Apply(a) => apply(a),
        Command::FitNyul(a) => fit(a),
        Command::Mask(a) => mask(a),
    }
}

fn apply(args: &ApplyArgs) -> anyhow::Result<()> {
    let method = method_from_args(args)?;
    let volume = args.select.open(&args.input)?;
    let mask = args.mask.as_deref().map(|p| read_mask(p, &args.select.read)).transpose()?;
    let out = harmonize::apply(&volume, &method, mask.as_ref())
        .with_context(|| format!("harmonizing {}", args.input.display()))?;
    imaging::nifti::write_f32(&args.output, &out)?;
    Ok(())
}

fn fit(args: &FitArgs) -> anyhow::Result<()> {
    let mut volumes = Vec::with_capacity(args.inputs.len());
    for input in &args.inputs {
        volumes.push((super::open_one(input, None, None, &args.read)?, None));
    }
    let scale = nyul::fit(&volumes, &nyul::NyulParams::default()).context("fitting the Nyúl scale")?;
    scale.save(&args.scale)?;
    Ok(())
}

fn mask(args: &MaskArgs) -> anyhow::Result<()> {
    let volume = args.select.open(&args.input)?;
    let mask = imaging::mask::foreground_mask(&volume).with_context(|| format!("masking {}", args.input.display()))?;
    imaging::nifti::write_u8(&args.output, &mask)?;
    Ok(())
}

fn read_mask(path: &Path, read: &ReadArgs) -> anyhow::Result<Volume<u8>> {
    let labels = imaging::nifti::read_labels(path, &read.options().nifti())?;
    Ok(labels.map(|&v| u8::from(v != 0)))
}

/// The method from `--config` or from `--method` + `--set`.
fn method_from_args(args: &ApplyArgs) -> anyhow::Result<HarmonizeMethod> {
    let table = match (&args.config, &args.method) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let mut table: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            match table.remove("harmonize") {
                Some(toml::Value::Table(t)) => t,
                Some(_) => anyhow::bail!("{}: `harmonize` must be a table", path.display()),
                None => table,
            }
        }
        (None, Some(name)) => method_table(name, &args.set)?,
        (None, None) => anyhow::bail!("give the method with --config FILE or --method NAME"),
    };
    HarmonizeMethod::deserialize(toml::Value::Table(table)).context("invalid harmonization settings")
}

/// `--method NAME --set k=v …` as the TOML table the config file would hold.
fn method_table(name: &str, set: &[String]) -> anyhow::Result<toml::Table> {
    let mut table = toml::Table::new();
    table.insert("method".into(), toml::Value::String(name.into()));
    for kv in set {
        let (key, value) = kv.split_once('=').with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
        // Parse the value as TOML (numbers, booleans, quoted strings); a bare word is a string.
        let parsed: toml::Table = toml::from_str(&format!("v = {value}"))
            .unwrap_or_else(|_| toml::Table::from_iter([("v".to_string(), toml::Value::String(value.into()))]));
        let value = parsed.get("v").cloned().unwrap_or(toml::Value::String(value.into()));
        table.insert(key.trim().into(), value);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_typed_like_toml() {
        let t = method_table("percentile", &["lower=1".into(), "upper=99.0".into(), "label=\"x\"".into()])
            .expect("valid pairs");
        assert_eq!(t["method"].as_str(), Some("percentile"));
        assert_eq!(t["lower"].as_integer(), Some(1));
        assert_eq!(t["upper"].as_float(), Some(99.0));
        assert_eq!(t["label"].as_str(), Some("x"));
        assert!(method_table("zscore", &["novalue".into()]).is_err());
    }
}
