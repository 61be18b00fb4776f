//! Writing one study's outputs into a folder: `mask.nii.gz` (u8 labels),
//! `entropy.nii.gz` and `mutual_information.nii.gz` (f32, nats), all on the
//! input scan's grid, on request `probability_<label>.nii.gz` (f32, the
//! calibrated probability of each label value on the scan's grid),
//! `report.json`, and on request `model_grid/` (the
//! harmonized model-grid input and the ensemble-mean probability per class).
//! The report is written last ([`write_report`], through a temporary name), so
//! a folder with a `report.json` is always complete.

use std::path::{Path, PathBuf};

use super::{PipelineError, StudyReport, StudyResult};

/// Writes `result`'s maps into `dir` (created if needed); returns the files written.
/// The report goes last, with [`write_report`], once the caller has its final timings.
pub fn write_maps(dir: &Path, result: &StudyResult) -> Result<Vec<PathBuf>, PipelineError> {
    let io = |path: &Path, e: &dyn std::fmt::Display| PipelineError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
    let mut written = Vec::new();
    let mask = dir.join("mask.nii.gz");
    imaging::nifti::write_u8(&mask, &result.maps.labels).map_err(|e| io(&mask, &e))?;
    written.push(mask);
    for (name, vol) in
        [("entropy.nii.gz", &result.maps.entropy), ("mutual_information.nii.gz", &result.maps.mutual_information)]
    {
        let path = dir.join(name);
        imaging::nifti::write_f32(&path, vol).map_err(|e| io(&path, &e))?;
        written.push(path);
    }
    for (c, p) in result.maps.probabilities.iter().flatten().enumerate() {
        let path = dir.join(format!("probability_{c}.nii.gz"));
        imaging::nifti::write_f32(&path, p).map_err(|e| io(&path, &e))?;
        written.push(path);
    }
    if let Some(grid) = &result.model_grid {
        let sub = dir.join("model_grid");
        std::fs::create_dir_all(&sub).map_err(|e| io(&sub, &e))?;
        let path = sub.join("image.nii.gz");
        imaging::nifti::write_f32(&path, &grid.image).map_err(|e| io(&path, &e))?;
        written.push(path);
        for (c, p) in grid.probabilities.iter().enumerate() {
            let path = sub.join(format!("probability_{c}.nii.gz"));
            imaging::nifti::write_f32(&path, p).map_err(|e| io(&path, &e))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Writes `report.json` into `dir` atomically (a temporary name, then a rename).
pub fn write_report(dir: &Path, report: &StudyReport) -> Result<PathBuf, PipelineError> {
    let io = |path: &Path, e: &dyn std::fmt::Display| PipelineError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let path = dir.join("report.json");
    let tmp = dir.join(".report.json.partial");
    let json = serde_json::to_string_pretty(report).map_err(|e| io(&path, &e))?;
    std::fs::write(&tmp, json + "\n").map_err(|e| io(&tmp, &e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, &e))?;
    Ok(path)
}

/// Writes every pass of a run as it arrives, for offline evaluation: one
/// `pass_<index>.f32` per pass (little-endian f32, channel-major `[C][V]`,
/// voxels in Fortran order on the inference grid), then `passes.json` (grid
/// dims, row-major affine, and each pass's member, flip and MC pass) when
/// [`PassDump::finish`] is called. About `4·C·V` bytes per pass (13 MB for a
/// 2 mm brain and 3 classes): an evaluation tool, not a production output.
#[derive(Debug)]
pub struct PassDump {
    dir: std::path::PathBuf,
    passes: Vec<serde_json::Value>,
}

impl PassDump {
    pub fn new(dir: &Path) -> Result<Self, PipelineError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PipelineError::Output { path: dir.to_path_buf(), reason: e.to_string() })?;
        Ok(PassDump { dir: dir.to_path_buf(), passes: Vec::new() })
    }

    pub fn finish(self, grid: &imaging::resample::TargetGrid) -> Result<(), PipelineError> {
        let path = self.dir.join("passes.json");
        let doc = serde_json::json!({
            "dims": grid.dims(),
            "affine": grid.affine().to_rows(),
            "passes": self.passes,
        });
        std::fs::write(&path, doc.to_string())
            .map_err(|e| PipelineError::Output { path: path.clone(), reason: e.to_string() })
    }
}

impl crate::inference::PassSink for PassDump {
    fn add_pass(
        &mut self,
        pass: &crate::inference::PassInfo,
        probabilities: &[f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let file = format!("pass_{}.f32", pass.index);
        let bytes: Vec<u8> = probabilities.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(self.dir.join(&file), bytes)?;
        self.passes.push(serde_json::json!({
            "index": pass.index,
            "member": pass.member,
            "flip": pass.flip.0,
            "mc_pass": pass.mc_pass,
            "file": file,
        }));
        Ok(())
    }
}
