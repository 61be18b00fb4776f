//! `neurobatch process`: one scan through the shipped (or a given) model
//! folder, outputs into a folder. Owns the command line, finding the default
//! models, the terminal progress line and the one-line summary; the work is
//! `worker::pipeline`'s.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use worker::manifest::{Tiling, load_model_folder};
use worker::pipeline::{self, Event, ModelRunner, ProfileChoice, StudyOptions};
use worker::runtime::{Provider, RuntimeConfig};

use super::SelectArgs;

/// Model folders looked for, in this order, when `--model` is not given.
pub(crate) const DEFAULT_SEGMENTATION: &str = "brain-tissue";
/// Overrides where the shipped model folders are.
const MODELS_ENV: &str = "NEUROBATCH_MODELS";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A NIfTI file or a DICOM folder.
    pub input: PathBuf,
    /// Folder for mask.nii.gz, entropy.nii.gz, mutual_information.nii.gz and report.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Segmentation model folder (default: the shipped models/brain-tissue).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Scan-quality classifier folder to run as well (e.g. models/scan-quality); none by default,
    /// since its p(degraded) does not rank segmentation failures (docs/routing.md).
    #[arg(long, conflicts_with = "no_quality")]
    pub quality_model: Option<PathBuf>,
    /// Do not run the scan-quality classifier (the default; kept for scripts that pass it).
    #[arg(long)]
    pub no_quality: bool,
    /// Inference profile from the manifest (`cpu`, `full`); default: by execution provider.
    #[arg(long)]
    pub profile: Option<String>,
    /// Run only the first N ensemble members (overrides the profile).
    #[arg(long)]
    pub members: Option<usize>,
    /// Mirror axes for test-time augmentation, e.g. `0,1,2` (overrides the profile).
    #[arg(long, value_delimiter = ',', conflicts_with = "no_tta")]
    pub tta_axes: Option<Vec<usize>>,
    /// No test-time flips (overrides the profile).
    #[arg(long)]
    pub no_tta: bool,
    /// MC-dropout passes per member and flip (overrides the profile; 0 = deterministic).
    #[arg(long)]
    pub mc_passes: Option<u32>,
    /// How each pass covers the model grid: `windows` (MONAI's sliding windows) or
    /// `whole` (one call over the padded grid); overrides the profile.
    #[arg(long)]
    pub tiling: Option<Tiling>,
    /// Sliding windows per model call (0: 1 on the CPU, 4 on a GPU).
    #[arg(long, default_value_t = 0)]
    pub batch_size: usize,
    /// Threads ONNX Runtime uses per operator in each session (0: the cores divided between the lanes).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Inference lanes: sessions per member running windows side by side (0: one per core on the CPU, 1 on a GPU).
    #[arg(long, default_value_t = 0)]
    pub lanes: usize,
    /// Execution providers in order of preference (cpu, cuda, tensorrt); the CPU is always the fallback.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    pub providers: Vec<String>,
    /// Also write model_grid/: the harmonized input and the ensemble-mean probabilities on the model grid.
    #[arg(long)]
    pub keep_model_grid: bool,
    /// Also write probability_<label>.nii.gz: each label's calibrated probability on the scan's grid
    /// (the manifest's [calibration]; f32, one file per label value, background included).
    #[arg(long)]
    pub probabilities: bool,
    /// Write every segmentation pass (raw f32 on the inference grid) into this folder, for evaluation.
    #[arg(long)]
    pub save_passes: Option<PathBuf>,
    #[command(flatten)]
    pub select: SelectArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let providers = args
        .providers
        .iter()
        .map(|p| p.parse::<Provider>().map_err(|e| anyhow::anyhow!("--providers: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runtime = RuntimeConfig { dylib_path: None, intra_op_threads: args.threads, providers, lanes: args.lanes };
    let choice = ProfileChoice {
        name: args.profile.clone(),
        members: args.members,
        tta_axes: if args.no_tta { Some(Vec::new()) } else { args.tta_axes.clone() },
        mc_dropout_passes: args.mc_passes,
        tiling: args.tiling,
    };
    let seg_dir = match &args.model {
        Some(dir) => dir.clone(),
        None => default_model(DEFAULT_SEGMENTATION)?,
    };
    let quality_dir = match (&args.quality_model, args.no_quality) {
        (Some(dir), false) => Some(dir.clone()),
        _ => None,
    };

    // Models first: a broken model folder fails before the scan is read.
    let seg = load(&seg_dir, &runtime, &choice, args.batch_size)?;
    // The classifier runs whole volumes with its own manifest's plan (profile by provider); the
    // segmentation overrides (--members, --tta-axes, --mc-passes) are not meant for it.
    let quality = quality_dir.map(|dir| load(&dir, &runtime, &ProfileChoice::default(), 1)).transpose()?;

    let t0 = Instant::now();
    let native = args.select.open(&args.input)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let options = StudyOptions {
        keep_model_grid: args.keep_model_grid,
        probabilities: args.probabilities,
        save_passes: args.save_passes.clone(),
        ..StudyOptions::default()
    };
    let mut display = ProgressLine::new();
    let result = pipeline::process_study(&native, load_ms, &seg, quality.as_ref(), &options, &mut |e| display.show(e))
        .with_context(|| format!("processing {}", args.input.display()));
    display.clear();
    let mut result = result?;
    let t1 = Instant::now();
    pipeline::write_maps(&args.out, &result)?;
    result.report.timings_ms.push(worker::pipeline::Timing { stage: "write", ms: t1.elapsed().as_secs_f64() * 1e3 });
    pipeline::write_report(&args.out, &result.report)?;

    let r = &result.report;
    let reasons: Vec<String> = r
        .routing
        .reasons()
        .iter()
        .map(|x| {
            let code = serde_json::to_value(x.code).ok().and_then(|v| v.as_str().map(str::to_string));
            code.unwrap_or_default()
        })
        .collect();
    println!(
        "{}: {} ({}), {} passes on {}, outputs in {}",
        args.input.display(),
        serde_json::to_value(r.routing.decision())?.as_str().unwrap_or("?"),
        if reasons.is_empty() { "no reasons".to_string() } else { reasons.join(", ") },
        r.model.passes,
        r.model.provider,
        args.out.display()
    );
    Ok(())
}

pub(crate) fn load(
    dir: &Path,
    runtime: &RuntimeConfig,
    choice: &ProfileChoice,
    batch: usize,
) -> anyhow::Result<ModelRunner> {
    let model = load_model_folder(dir, runtime)?;
    Ok(ModelRunner::new(model, choice, None, batch)?)
}

/// `$NEUROBATCH_MODELS/<name>`, else `models/<name>` under the working
/// directory or any folder above the executable (a cargo `target/` build or
/// an installed `bin/` next to `models/`).
pub(crate) fn default_model(name: &str) -> anyhow::Result<PathBuf> {
    let from_env = std::env::var_os(MODELS_ENV).map(|dir| PathBuf::from(dir).join(name));
    let shipped = || neurobatch_core::install::find_shipped(&Path::new("models").join(name), pipeline::is_model_folder);
    from_env.filter(|c| pipeline::is_model_folder(c)).or_else(shipped).with_context(|| {
        format!(
            "no shipped model `{name}` found (looked in ${MODELS_ENV}, ./models and above the executable): pass --model"
        )
    })
}

/// One self-rewriting line on stderr when it is a terminal; nothing otherwise.
struct ProgressLine {
    tty: bool,
    last: Option<Instant>,
}

impl ProgressLine {
    fn new() -> Self {
        ProgressLine { tty: std::io::stderr().is_terminal(), last: None }
    }

    fn show(&mut self, event: Event<'_>) {
        if !self.tty {
            return;
        }
        let text = match event {
            Event::Stage(stage) => format!("{stage}…"),
            Event::Inference(model, p) => {
                // At most ten updates a second.
                if self.last.is_some_and(|t| t.elapsed().as_millis() < 100) && p.windows_done < p.windows {
                    return;
                }
                format!("{model}: pass {}/{}, window {}/{}", p.pass + 1, p.passes, p.windows_done, p.windows)
            }
        };
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
    }

    fn clear(&mut self) {
        if self.tty && self.last.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}
