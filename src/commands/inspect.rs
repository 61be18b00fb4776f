//! `neurobatch inspect`: what is in a file or folder, as a table or JSON.

use std::path::PathBuf;

use imaging::{Volume, stats};
use serde::Serialize;

use super::ReadArgs;

const PERCENTILES: [f64; 3] = [1.0, 50.0, 99.0];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A NIfTI file or a folder of DICOM instances.
    pub path: PathBuf,
    /// Print a JSON array (one object per volume) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// One volume as `inspect --json` prints it. The affine is 4×4 row-major RAS+ mm.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    series_uid: Option<&'a str>,
    shape: [usize; 3],
    spacing: [f64; 3],
    affine: [[f64; 4]; 4],
    orientation: String,
    /// Finite-voxel statistics with percentiles 1, 50 and 99; `null` when no voxel is finite.
    statistics: Option<stats::Summary>,
    #[serde(flatten)]
    meta: &'a imaging::SourceMeta,
}

fn entry(v: &Volume<f32>) -> Entry<'_> {
    Entry {
        series_uid: v.meta.series_uid.as_deref(),
        shape: v.dims(),
        spacing: v.spacing(),
        affine: v.affine().to_rows(),
        orientation: v.affine().orientation_code(),
        statistics: stats::summarize(v, &PERCENTILES).ok(),
        meta: &v.meta,
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let volumes = super::open_all(&args.path, &args.read)?;
    let entries: Vec<Entry<'_>> = volumes.iter().map(entry).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    println!("{}: {} volume(s)", args.path.display(), entries.len());
    for e in &entries {
        println!(
            "- series {} [{}] {}\n  shape {:?}  spacing {:.4?} mm  orientation {}",
            e.series_uid.unwrap_or("-"),
            e.meta.format,
            e.meta.series_description.as_deref().unwrap_or(""),
            e.shape,
            e.spacing,
            e.orientation,
        );
        match &e.statistics {
            Some(s) => {
                let p = |i: usize| s.percentiles.get(i).map_or(f64::NAN, |&(_, v)| v);
                let non_finite = s.nan + s.pos_inf + s.neg_inf;
                println!(
                    "  intensity min {} max {} mean {:.3} std {:.3} p1 {} p50 {} p99 {}{}",
                    s.min,
                    s.max,
                    s.mean,
                    s.std,
                    p(0),
                    p(1),
                    p(2),
                    if non_finite > 0 { format!("  ({non_finite} non-finite voxels)") } else { String::new() },
                );
            }
            None => println!("  intensity: no finite voxels"),
        }
        for row in e.affine {
            println!("  [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]", row[0], row[1], row[2], row[3]);
        }
    }
    Ok(())
}
