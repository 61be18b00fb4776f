//! Checks a parsed manifest for values that parse but make no sense, before
//! any member is read. Each failure names the field and the reason.

use std::collections::HashSet;
use std::path::Component;

use super::schema::{Activation, Manifest, Profile, RoutingThresholds, SCHEMA_VERSION, Task};

/// Patch edges above this are a typo (a 1 mm brain is under 256 voxels a side).
const MAX_PATCH_EDGE: usize = 1024;
/// MC-dropout passes above this are a typo (the literature uses 10–50).
const MAX_MC_PASSES: u32 = 1000;

impl Manifest {
    /// The first problem found, as `field: reason`.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema != SCHEMA_VERSION {
            return Err(format!("schema: version {} is not supported (expected {SCHEMA_VERSION})", self.schema));
        }
        non_empty("name", &self.name)?;
        non_empty("version", &self.version)?;
        self.validate_input()?;
        self.harmonization.validate().map_err(|e| format!("harmonization: {e}"))?;
        if let Some(bias) = &self.bias_correction {
            bias.validate().map_err(|e| format!("bias_correction: {e}"))?;
        }
        non_empty("output.tensor", &self.output.tensor)?;
        if let Some(features) = &self.output.features {
            non_empty("output.features", features)?;
            if self.task != Task::Segmentation {
                return Err(format!("output.features: a {} model has no bottleneck features to pool", self.task));
            }
            if *features == self.output.tensor {
                return Err(format!("output.features: `{features}` is output.tensor itself"));
            }
        }
        self.validate_labels()?;
        self.validate_inference()?;
        validate_routing(&self.routing)?;
        match (&self.ood, self.routing.ood_score_max) {
            (Some(reference), _) => reference.validate().map_err(|e| format!("ood: {e}"))?,
            (None, Some(_)) => {
                return Err("ood: routing.ood_score_max is set but there is no [ood] training reference".into());
            }
            (None, None) => {}
        }
        non_empty("provenance.script", &self.provenance.script)?;
        non_empty("provenance.data", &self.provenance.data)?;
        non_empty("evaluation.report", &self.evaluation.report)?;
        if let Some((k, v)) = self.evaluation.figures.iter().find(|(_, v)| !v.is_finite()) {
            return Err(format!("evaluation.figures.{k}: {v} is not a finite number"));
        }
        self.validate_members()?;
        self.validate_quality_estimators()?;
        self.validate_calibration()
    }

    fn validate_quality_estimators(&self) -> Result<(), String> {
        let names: Vec<String> = self.labels.iter().map(|l| l.name.clone()).collect();
        let catalog = crate::quality::feature_names(&names);
        let mut sets = HashSet::new();
        for e in &self.quality_estimators {
            let field = format!("quality_estimators[members = {}]", e.members);
            if e.members == 0 || e.members > self.members.len() {
                return Err(format!(
                    "{field}.members: {} is not in 1..={} (the members listed)",
                    e.members,
                    self.members.len()
                ));
            }
            if !sets.insert(e.members) {
                return Err(format!("{field}.members: a second estimator for the same base pass set"));
            }
            check_relative_file(&format!("{field}.file"), &e.file)?;
            check_sha256(&format!("{field}.sha256"), &e.sha256)?;
            if e.features.is_empty() {
                return Err(format!("{field}.features: at least one feature is needed"));
            }
            if let Some(f) = e.features.iter().find(|f| !catalog.contains(f)) {
                return Err(format!("{field}.features: `{f}` is not a feature of worker::quality's catalog"));
            }
            if e.structures.is_empty() {
                return Err(format!("{field}.structures: at least one structure is needed"));
            }
            let mut seen = HashSet::new();
            if let Some(l) =
                e.structures.iter().find(|&&l| l == 0 || usize::from(l) >= self.labels.len() || !seen.insert(l))
            {
                return Err(format!("{field}.structures: label {l} is background, unknown or listed twice"));
            }
        }
        Ok(())
    }

    fn validate_calibration(&self) -> Result<(), String> {
        let Some(c) = &self.calibration else { return Ok(()) };
        if c.class_weights.len() != self.labels.len() {
            return Err(format!(
                "calibration.class_weights: {} weights for {} labels",
                c.class_weights.len(),
                self.labels.len()
            ));
        }
        if let Some(w) = c.class_weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
            return Err(format!("calibration.class_weights: {w} is not a positive number"));
        }
        if let Some(t) = c.temperature.filter(|t| !(t.is_finite() && *t > 0.0)) {
            return Err(format!("calibration.temperature: {t} is not a positive number"));
        }
        non_empty("calibration.source", &c.source)
    }

    /// Channels the network's output must have for these labels and this activation.
    pub fn expected_output_channels(&self) -> usize {
        match self.output.activation {
            Activation::Softmax | Activation::Identity => self.labels.len(),
            Activation::Sigmoid => self.labels.len().saturating_sub(1),
        }
    }

    fn validate_input(&self) -> Result<(), String> {
        non_empty("input.contrast", &self.input.contrast)?;
        non_empty("input.tensor", &self.input.tensor)?;
        if let Some(s) = self.input.spacing_mm.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("input.spacing_mm: {s} is not a positive spacing"));
        }
        if self.input.channels == 0 {
            return Err("input.channels: must be at least 1".into());
        }
        validate_orientation(&self.input.orientation)
    }

    fn validate_labels(&self) -> Result<(), String> {
        if self.labels.len() < 2 {
            return Err(format!("labels: {} listed, at least 2 are needed (label 0 and one more)", self.labels.len()));
        }
        let mut names = HashSet::new();
        for (i, label) in self.labels.iter().enumerate() {
            // Masks store label values as voxel values and the engine takes the
            // argmax channel as the value: values must be 0..n in channel order.
            if usize::try_from(label.value).ok() != Some(i) {
                return Err(format!(
                    "labels: value {} is listed at position {i}; values must be 0, 1, 2 … in order",
                    label.value
                ));
            }
            non_empty("labels.name", &label.name)?;
            if !names.insert(label.name.as_str()) {
                return Err(format!("labels: name `{}` is used twice", label.name));
            }
            match (&label.category, &label.property) {
                (Some(category), Some(property)) => {
                    validate_code(&format!("labels.{}.category", label.name), category)?;
                    validate_code(&format!("labels.{}.type", label.name), property)?;
                }
                (None, None) => {}
                _ => return Err(format!("labels.{}: give both category and type, or neither", label.name)),
            }
        }
        Ok(())
    }

    fn validate_inference(&self) -> Result<(), String> {
        let inf = &self.inference;
        if let Some(p) = inf.patch_size.iter().find(|&&p| p == 0 || p > MAX_PATCH_EDGE) {
            return Err(format!("inference.patch_size: {p} is not in 1..={MAX_PATCH_EDGE}"));
        }
        if !(inf.overlap.is_finite() && (0.0..1.0).contains(&inf.overlap)) {
            return Err(format!("inference.overlap: {} is not in [0, 1)", inf.overlap));
        }
        validate_tta_axes("inference.tta_axes", &inf.tta_axes)?;
        validate_mc_passes("inference.mc_dropout_passes", inf.mc_dropout_passes)?;
        match (inf.size_multiple, inf.tiles_whole()) {
            (Some(m), _) if m == 0 || m > MAX_PATCH_EDGE => {
                return Err(format!("inference.size_multiple: {m} is not in 1..={MAX_PATCH_EDGE}"));
            }
            (None, Some(who)) => {
                return Err(format!(
                    "inference.size_multiple: {who} tiles `whole`, so the members' downsampling factor must be given"
                ));
            }
            _ => {}
        }
        if inf.whole_max_voxels == 0 {
            return Err("inference.whole_max_voxels: 0 voxels".into());
        }
        for (name, p) in &inf.profiles {
            let field = format!("inference.profiles.{name}");
            non_empty("inference.profiles", name)?;
            if p.members == 0 || p.members > self.members.len() {
                return Err(format!(
                    "{field}.members: {} is not in 1..={} (the members listed)",
                    p.members,
                    self.members.len()
                ));
            }
            validate_tta_axes(&format!("{field}.tta_axes"), &p.tta_axes)?;
            validate_mc_passes(&format!("{field}.mc_dropout_passes"), p.mc_dropout_passes)?;
            // A profile's own bounds replace [routing]'s when it runs: same ranges, same cited source.
            for (key, bound, range) in [
                ("study_uncertainty_max", p.study_uncertainty_max, (0.0, f64::INFINITY)),
                ("predicted_dice_min", p.predicted_dice_min, (0.0, 1.0)),
            ] {
                let Some(v) = bound else { continue };
                if !(v.is_finite() && (range.0..=range.1).contains(&v)) {
                    let want = if range.1.is_finite() { "in [0, 1]" } else { "a non-negative number" };
                    return Err(format!("{field}.{key}: {v} is not {want}"));
                }
                if self.routing.source.as_deref().is_none_or(str::is_empty) {
                    return Err(format!("{field}.{key}: routing.source must say where it comes from"));
                }
            }
        }
        match &inf.mc_dropout_input {
            Some(gate) => {
                non_empty("inference.mc_dropout_input", gate)?;
                if *gate == self.input.tensor {
                    return Err(format!("inference.mc_dropout_input: `{gate}` is the image input's name"));
                }
            }
            None => {
                let passes = |p: Option<&Profile>| p.map_or(inf.mc_dropout_passes, |p| p.mc_dropout_passes);
                if let Some((who, passes)) = inf.first_asking(|p| Some(passes(p)).filter(|&n| n > 0)) {
                    return Err(format!(
                        "inference.mc_dropout_input: {who} asks for {passes} MC-dropout passes but no gate input is named"
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_members(&self) -> Result<(), String> {
        if self.members.is_empty() {
            return Err("members: at least one member is needed".into());
        }
        let mut files = HashSet::new();
        for m in &self.members {
            let shown = m.file.display();
            check_relative_file("members.file", &m.file)?;
            if !files.insert(&m.file) {
                return Err(format!("members.file: `{shown}` is listed twice"));
            }
            check_sha256(&format!("members.sha256 of `{shown}`"), &m.sha256)?;
        }
        Ok(())
    }
}

fn validate_tta_axes(field: &str, axes: &[usize]) -> Result<(), String> {
    let mut seen = [false; 3];
    for &a in axes {
        match seen.get_mut(a) {
            Some(s) if !*s => *s = true,
            Some(_) => return Err(format!("{field}: axis {a} is listed twice")),
            None => return Err(format!("{field}: axis {a} is not 0, 1 or 2")),
        }
    }
    Ok(())
}

fn validate_mc_passes(field: &str, passes: u32) -> Result<(), String> {
    if passes > MAX_MC_PASSES {
        return Err(format!("{field}: {passes} is more than {MAX_MC_PASSES}"));
    }
    Ok(())
}

fn non_empty(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() { Err(format!("{field}: must not be empty")) } else { Ok(()) }
}

/// Three axis codes, one from each of L/R, P/A and I/S (nibabel's `aff2axcodes`).
fn validate_orientation(code: &str) -> Result<(), String> {
    let pair = |c: char| match c {
        'L' | 'R' => Some(0),
        'P' | 'A' => Some(1),
        'I' | 'S' => Some(2),
        _ => None,
    };
    let mut seen = [false; 3];
    let ok = code.chars().count() == 3
        && code.chars().all(|c| match pair(c).and_then(|p| seen.get_mut(p)) {
            Some(s) if !*s => {
                *s = true;
                true
            }
            _ => false,
        });
    if ok { Ok(()) } else { Err(format!("input.orientation: `{code}` is not three axis codes like \"RAS\"")) }
}

/// Files a manifest lists live inside the folder: the checksums vouch for the folder, nothing outside it.
fn check_relative_file(field: &str, file: &std::path::Path) -> Result<(), String> {
    let inside = !file.as_os_str().is_empty() && file.components().all(|c| matches!(c, Component::Normal(_)));
    if inside {
        Ok(())
    } else {
        Err(format!("{field}: `{}` is not a relative path inside the model folder", file.display()))
    }
}

fn check_sha256(field: &str, sha256: &str) -> Result<(), String> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(format!("{field}: `{sha256}` is not 64 lowercase hex digits"))
    }
}

fn validate_routing(r: &RoutingThresholds) -> Result<(), String> {
    let non_negative = [
        ("study_uncertainty_max", r.study_uncertainty_max),
        ("volume_cv_max", r.volume_cv_max),
        ("ood_score_max", r.ood_score_max),
    ];
    for (name, v) in non_negative {
        if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(format!("routing.{name}: {v} is not a non-negative number"));
        }
    }
    let unit = [
        ("structure_agreement_min", r.structure_agreement_min),
        ("predicted_dice_min", r.predicted_dice_min),
        ("probability_min", r.probability_min),
        ("flag_probability_max", r.flag_probability_max),
    ];
    for (name, v) in unit {
        if let Some(v) = v.filter(|v| !(0.0..=1.0).contains(v)) {
            return Err(format!("routing.{name}: {v} is not in [0, 1]"));
        }
    }
    if r.any_set() && r.source.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return Err("routing.source: thresholds must say which evaluation they come from".into());
    }
    Ok(())
}

/// A code as DICOM carries it: Code Value and Coding Scheme Designator are SH
/// (at most 16 characters), Code Meaning LO (at most 64), none empty, no backslash.
fn validate_code(field: &str, code: &imaging::dicom::derived::Code) -> Result<(), String> {
    for (part, value, max) in [("value", &code.value, 16), ("scheme", &code.scheme, 16), ("meaning", &code.meaning, 64)]
    {
        if value.trim().is_empty()
            || value.chars().count() > max
            || value.contains('\\')
            || value.chars().any(char::is_control)
        {
            return Err(format!("{field}.{part}: `{value}` must be 1 to {max} characters, without a backslash"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientation_codes() {
        for ok in ["RAS", "LPS", "SAR", "ILA"] {
            assert!(validate_orientation(ok).is_ok(), "{ok}");
        }
        for bad in ["", "RA", "RRS", "RASX", "ras", "XYZ", "RLS"] {
            assert!(validate_orientation(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routing_needs_a_source_and_ranges() {
        let mut r = RoutingThresholds { structure_agreement_min: Some(0.8), ..Default::default() };
        assert!(validate_routing(&r).unwrap_err().contains("routing.source"));
        r.source = Some("training/EVALUATION.md#routing".into());
        assert!(validate_routing(&r).is_ok());
        r.structure_agreement_min = Some(1.5);
        assert!(validate_routing(&r).unwrap_err().contains("structure_agreement_min"));
        r.structure_agreement_min = None;
        r.volume_cv_max = Some(f64::NAN);
        assert!(validate_routing(&r).unwrap_err().contains("volume_cv_max"));
        assert!(validate_routing(&RoutingThresholds::default()).is_ok());
    }
}
