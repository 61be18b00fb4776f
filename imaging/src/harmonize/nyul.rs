//! Nyúl–Udupa histogram standardization (Nyúl & Udupa, "On standardizing the
//! MR image intensity scale", MRM 42, 1999; Nyúl, Udupa & Zhang, IEEE TMI 19,
//! 2000), as **intensity-normalization 3.0.1**'s `NyulNormalizer` does it:
//!
//! - landmarks: the percentiles 1, 10, 20, …, 90, 99 of the masked voxels
//!   (numpy "linear"), i.e. `[min_percentile] + arange(after_min, before_max + step, step) + [max_percentile]`;
//! - [`fit`]: each training volume's landmarks are mapped linearly so that its
//!   1st percentile goes to `output_min` (1) and its 99th to `output_max` (100);
//!   the standard scale is their mean over the volumes;
//! - apply: voxels map piecewise-linearly from the volume's own landmarks onto
//!   the standard scale, extrapolating the first and last segments beyond the
//!   end landmarks (`scipy.interpolate.interp1d(..., fill_value="extrapolate")`).
//!
//! The scale is stored as versioned JSON (`{"format": "neurobatch-nyul",
//! "version": 1, ...}`) instead of the package's `.npy`. Where 3.0.1 would
//! divide by zero (tied landmarks give inf/NaN), this module returns
//! [`HarmonizeError::DegenerateLandmarks`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{HarmonizeError, masked_values};
use crate::stats::percentiles_in_place;
use crate::volume::Volume;

const FORMAT: &str = "neurobatch-nyul";
const VERSION: u32 = 1;
/// More landmarks than this is a mistake, not a configuration.
const MAX_LANDMARKS: usize = 1000;

/// Landmark and output-range parameters (intensity-normalization 3.0.1 defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NyulParams {
    pub output_min: f64,
    pub output_max: f64,
    pub min_percentile: f64,
    pub max_percentile: f64,
    pub percentile_after_min: f64,
    pub percentile_before_max: f64,
    pub percentile_step: f64,
}

impl Default for NyulParams {
    fn default() -> Self {
        NyulParams {
            output_min: 1.0,
            output_max: 100.0,
            min_percentile: 1.0,
            max_percentile: 99.0,
            percentile_after_min: 10.0,
            percentile_before_max: 90.0,
            percentile_step: 10.0,
        }
    }
}

impl NyulParams {
    /// The landmark percentiles, after checking the parameters.
    pub fn percentiles(&self) -> Result<Vec<f64>, HarmonizeError> {
        let bad = |why: String| Err(HarmonizeError::BadParameter(why));
        let p = *self;
        let all = [p.min_percentile, p.max_percentile, p.percentile_after_min, p.percentile_before_max];
        if all.iter().any(|x| !(0.0..=100.0).contains(x)) {
            return bad(format!("nyul percentiles {all:?} must lie in 0..=100"));
        }
        // Written as positive comparisons so that NaN parameters fail them.
        let increasing = p.percentile_step > 0.0
            && p.min_percentile < p.percentile_after_min
            && p.percentile_after_min <= p.percentile_before_max
            && p.percentile_before_max < p.max_percentile;
        if !increasing {
            return bad(format!("nyul percentiles {all:?} with step {} are not increasing", p.percentile_step));
        }
        let range_ok = p.output_min < p.output_max && p.output_min.is_finite() && p.output_max.is_finite();
        if !range_ok {
            return bad(format!("nyul output range {}..{} is empty", p.output_min, p.output_max));
        }
        // np.arange(after_min, before_max + step, step): ceil((stop - start) / step) values start + i * step.
        let count = ((p.percentile_before_max + p.percentile_step - p.percentile_after_min) / p.percentile_step).ceil();
        if !(count >= 1.0 && count <= MAX_LANDMARKS as f64) {
            return bad(format!("nyul percentile step {} gives {count} landmarks", p.percentile_step));
        }
        let mut out = vec![p.min_percentile];
        out.extend((0..count as usize).map(|i| p.percentile_after_min + i as f64 * p.percentile_step));
        out.push(p.max_percentile);
        if out.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!("nyul landmark percentiles {out:?} are not strictly increasing"));
        }
        Ok(out)
    }
}

/// A learned standard scale: landmark percentiles and their standard intensities.
#[derive(Debug, Clone, PartialEq)]
pub struct NyulScale {
    pub percentiles: Vec<f64>,
    pub standard_scale: Vec<f64>,
    /// Number of volumes the scale was learned from.
    pub fitted_on: usize,
}

/// The on-disk form.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleFile {
    format: String,
    version: u32,
    percentiles: Vec<f64>,
    standard_scale: Vec<f64>,
    fitted_on: usize,
}

/// Learns the standard scale from `volumes`, each with its mask (the foreground
/// mask when `None`).
pub fn fit(volumes: &[(Volume<f32>, Option<Volume<u8>>)], params: &NyulParams) -> Result<NyulScale, HarmonizeError> {
    let percentiles = params.percentiles()?;
    if volumes.is_empty() {
        return Err(HarmonizeError::NoTrainingVolumes);
    }
    let mut sum = vec![0.0; percentiles.len()];
    for (vol, mask) in volumes {
        let mut values = masked_values(vol, mask.as_ref())?;
        let landmarks =
            percentiles_in_place(&mut values, &percentiles).map_err(|e| HarmonizeError::BadParameter(e.to_string()))?;
        let (Some(&lo), Some(&hi)) = (landmarks.first(), landmarks.last()) else {
            return Err(HarmonizeError::NoTrainingVolumes);
        };
        if lo == hi {
            return Err(HarmonizeError::ConstantIntensities(vol.meta.source.clone()));
        }
        let to_output = PiecewiseLinear::new(vec![lo, hi], vec![params.output_min, params.output_max]);
        sum.iter_mut().zip(&landmarks).for_each(|(s, &l)| *s += to_output.apply(l));
    }
    let n = volumes.len() as f64;
    let scale =
        NyulScale { percentiles, standard_scale: sum.into_iter().map(|s| s / n).collect(), fitted_on: volumes.len() };
    scale.check().map_err(|reason| HarmonizeError::BadParameter(format!("learned nyul scale {reason}")))?;
    Ok(scale)
}

impl NyulScale {
    /// Writes the versioned JSON scale file.
    pub fn save(&self, path: &Path) -> Result<(), HarmonizeError> {
        let file = ScaleFile {
            format: FORMAT.to_string(),
            version: VERSION,
            percentiles: self.percentiles.clone(),
            standard_scale: self.standard_scale.clone(),
            fitted_on: self.fitted_on,
        };
        let io = |reason: String| HarmonizeError::ScaleFileIo { path: path.to_path_buf(), reason };
        let text = serde_json::to_string_pretty(&file).map_err(|e| io(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|e| io(e.to_string()))
    }

    /// Reads and checks a scale file written by [`NyulScale::save`].
    pub fn load(path: &Path) -> Result<NyulScale, HarmonizeError> {
        let invalid = |reason: String| HarmonizeError::InvalidScaleFile { path: path.to_path_buf(), reason };
        let text = super::read_file(path)?;
        let file: ScaleFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if file.format != FORMAT {
            return Err(invalid(format!("format is {:?}, expected {FORMAT:?}", file.format)));
        }
        if file.version != VERSION {
            return Err(invalid(format!("version {} is not supported (expected {VERSION})", file.version)));
        }
        let scale =
            NyulScale { percentiles: file.percentiles, standard_scale: file.standard_scale, fitted_on: file.fitted_on };
        scale.check().map_err(invalid)?;
        Ok(scale)
    }

    fn check(&self) -> Result<(), String> {
        let (p, s) = (&self.percentiles, &self.standard_scale);
        if p.len() != s.len() || p.len() < 2 || p.len() > MAX_LANDMARKS {
            return Err(format!(
                "has {} percentiles and {} scale values (need 2..={MAX_LANDMARKS}, equal)",
                p.len(),
                s.len()
            ));
        }
        if p.iter().any(|x| !(0.0..=100.0).contains(x)) || p.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("percentiles {p:?} are not strictly increasing within 0..=100"));
        }
        if s.iter().any(|x| !x.is_finite()) || s.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("standard scale {s:?} is not strictly increasing and finite"));
        }
        Ok(())
    }

    /// The piecewise-linear map from a volume's landmarks (of its finite masked
    /// voxels `values`, reordered in place) onto the standard scale.
    pub fn mapping_for(&self, values: &mut [f32], source: &str) -> Result<PiecewiseLinear, HarmonizeError> {
        let landmarks =
            percentiles_in_place(values, &self.percentiles).map_err(|e| HarmonizeError::BadParameter(e.to_string()))?;
        let strictly_increasing = landmarks.windows(2).all(|w| w[0] < w[1]);
        if !strictly_increasing {
            return Err(HarmonizeError::DegenerateLandmarks { source_name: source.to_string(), landmarks });
        }
        Ok(PiecewiseLinear::new(landmarks, self.standard_scale.clone()))
    }

    /// Harmonizes one volume (statistics within `mask`, the foreground mask when `None`).
    pub fn apply(&self, vol: &Volume<f32>, mask: Option<&Volume<u8>>) -> Result<Volume<f32>, HarmonizeError> {
        let mut values = masked_values(vol, mask)?;
        let map = self.mapping_for(&mut values, &vol.meta.source)?;
        super::map_finite(vol, |x| map.apply(x))
    }
}

/// `scipy.interpolate.interp1d(x, y, fill_value="extrapolate")` for strictly
/// increasing `x` with at least two points.
#[derive(Debug, Clone, PartialEq)]
pub struct PiecewiseLinear {
    x: Vec<f64>,
    y: Vec<f64>,
    /// `(y[i+1] - y[i]) / (x[i+1] - x[i])`, the value interp1d computes per call.
    slopes: Vec<f64>,
}

impl PiecewiseLinear {
    fn new(x: Vec<f64>, y: Vec<f64>) -> PiecewiseLinear {
        let slopes = x.windows(2).zip(y.windows(2)).map(|(x, y)| (y[1] - y[0]) / (x[1] - x[0])).collect();
        PiecewiseLinear { x, y, slopes }
    }

    /// The landmarks this map starts from.
    pub fn landmarks(&self) -> &[f64] {
        &self.x
    }

    #[inline]
    pub fn apply(&self, v: f64) -> f64 {
        // interp1d: i = searchsorted(x, v) clipped to [1, len - 1]; segment i - 1 .. i,
        // so values beyond either end extrapolate the end segment.
        let last = self.x.len().saturating_sub(1).max(1);
        let i = self.x.partition_point(|&x| x < v).clamp(1, last) - 1;
        match (self.slopes.get(i), self.x.get(i), self.y.get(i)) {
            (Some(&slope), Some(&x0), Some(&y0)) => slope * (v - x0) + y0,
            _ => f64::NAN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Affine, SourceMeta};

    #[test]
    fn default_landmarks_are_1_10_to_90_99() {
        let p = NyulParams::default().percentiles().expect("valid defaults");
        assert_eq!(p, vec![1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0]);
        let bad = NyulParams { percentile_step: 0.0, ..NyulParams::default() };
        assert!(matches!(bad.percentiles(), Err(HarmonizeError::BadParameter(_))));
        let bad = NyulParams { max_percentile: 120.0, ..NyulParams::default() };
        assert!(matches!(bad.percentiles(), Err(HarmonizeError::BadParameter(_))));
    }

    #[test]
    fn interpolation_extrapolates_the_end_segments() {
        let f = PiecewiseLinear::new(vec![0.0, 10.0, 20.0], vec![0.0, 100.0, 110.0]);
        assert_eq!(f.apply(5.0), 50.0);
        assert_eq!(f.apply(10.0), 100.0);
        assert_eq!(f.apply(15.0), 105.0);
        assert_eq!(f.apply(-1.0), -10.0);
        assert_eq!(f.apply(30.0), 120.0);
    }

    #[test]
    fn fitting_one_uniform_volume_gives_its_own_scaled_landmarks() {
        // 0..=1000: percentile p is 10 p; 1 → 10 and 99 → 990 map to 1 and 100.
        let v = Volume::new(
            [1001, 1, 1],
            (0..=1000).map(|i| i as f32).collect(),
            Affine::identity(),
            SourceMeta::default(),
        )
        .expect("shape");
        let m = v.with_data(vec![1u8; 1001]).expect("shape");
        let scale = fit(&[(v.clone(), Some(m.clone()))], &NyulParams::default()).expect("fits");
        for (p, s) in scale.percentiles.iter().zip(&scale.standard_scale) {
            let want = 1.0 + (10.0 * p - 10.0) * 99.0 / 980.0;
            assert!((s - want).abs() < 1e-9, "{p}: {s} vs {want}");
        }
        let out = scale.apply(&v, Some(&m)).expect("applies");
        assert!((out.data()[500] - (1.0 + 490.0 * 99.0 / 980.0) as f32).abs() < 1e-4);
    }

    #[test]
    fn scale_files_round_trip_and_bad_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("nyul-scale-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("scale.json");
        let scale =
            NyulScale { percentiles: vec![1.0, 50.0, 99.0], standard_scale: vec![1.0, 40.0, 100.0], fitted_on: 3 };
        scale.save(&path).expect("saves");
        assert_eq!(NyulScale::load(&path).expect("loads"), scale);

        let cases = [
            r#"{"format": "other", "version": 1, "percentiles": [1, 99], "standard_scale": [1, 100], "fitted_on": 1}"#,
            r#"{"format": "neurobatch-nyul", "version": 2, "percentiles": [1, 99], "standard_scale": [1, 100], "fitted_on": 1}"#,
            r#"{"format": "neurobatch-nyul", "version": 1, "percentiles": [1, 99], "standard_scale": [100, 1], "fitted_on": 1}"#,
            r#"{"format": "neurobatch-nyul", "version": 1, "percentiles": [1], "standard_scale": [1], "fitted_on": 1}"#,
            "not json",
        ];
        for text in cases {
            std::fs::write(&path, text).expect("writes");
            assert!(matches!(NyulScale::load(&path), Err(HarmonizeError::InvalidScaleFile { .. })), "{text}");
        }
        let missing = dir.join("missing.json");
        let err = NyulScale::load(&missing).expect_err("missing file");
        assert!(err.to_string().contains("missing.json"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
