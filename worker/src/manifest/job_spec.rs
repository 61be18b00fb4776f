//! What a manifest contributes to job keys: the harmonizer version and the
//! pipeline spec the scheduler keys and checks jobs with. Owns no I/O; the
//! binary reads the manifest and calls [`Manifest::pipeline_spec`].

use neurobatch_core::domain::{PipelineLabel, PipelineSpec};
use sha2::{Digest, Sha256};

use super::Manifest;

impl Manifest {
    /// The harmonizer version in job keys: the method and a digest of its
    /// parameters (and of the bias correction's, when the model has one), so a
    /// changed harmonization makes new jobs for old studies.
    pub fn harmonizer_version(&self) -> String {
        // Without bias correction the digest is that of the harmonization table alone (as before
        // bias correction existed), so existing results keep their version.
        let table = match &self.bias_correction {
            None => serde_json::to_vec(&self.harmonization),
            Some(bias) => serde_json::to_vec(&(&self.harmonization, bias)),
        }
        .unwrap_or_default();
        let digest = Sha256::digest(&table);
        let hex = hex::encode(&digest[..6]);
        let method = serde_json::to_value(&self.harmonization)
            .ok()
            .and_then(|v| v.get("method").and_then(|m| m.as_str().map(str::to_owned)))
            .unwrap_or_else(|| "harmonizer".into());
        match self.bias_correction {
            None => format!("{method}-{hex}"),
            Some(_) => format!("{method}+bias-{hex}"),
        }
    }

    /// The spec of pipeline `pipeline` running this model: its name and
    /// version, the harmonizer version and the labels.
    pub fn pipeline_spec(&self, pipeline: &str) -> PipelineSpec {
        PipelineSpec {
            name: pipeline.to_string(),
            model_name: self.name.clone(),
            model_version: self.version.clone(),
            harmonizer_version: self.harmonizer_version(),
            labels: self
                .labels
                .iter()
                .map(|l| PipelineLabel { value: l.value, name: l.name.clone(), color: l.colour })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest::parse_manifest;

    fn shipped() -> (String, Manifest) {
        let text = include_str!("../../../models/brain-tissue/manifest.toml").to_string();
        let m = parse_manifest(&text, Path::new("models/brain-tissue/manifest.toml")).expect("shipped manifest");
        (text, m)
    }

    #[test]
    fn the_spec_carries_the_models_identity_and_labels() {
        let (_, m) = shipped();
        let spec = m.pipeline_spec("brain");
        assert_eq!((spec.name.as_str(), spec.model_name.as_str()), ("brain", m.name.as_str()));
        assert_eq!(spec.model_version, m.version);
        let labels: Vec<(u32, &str)> = spec.labels.iter().map(|l| (l.value, l.name.as_str())).collect();
        assert_eq!(labels, m.labels.iter().map(|l| (l.value, l.name.as_str())).collect::<Vec<_>>());
        assert_eq!(spec.harmonizer_version, m.harmonizer_version());
    }

    #[test]
    fn the_harmonizer_version_follows_the_harmonization_and_bias_correction() {
        let (text, m) = shipped();
        let v = m.harmonizer_version();
        let (method, digest) = v.rsplit_once('-').expect("method-digest");
        assert_eq!(digest.len(), 12, "{v}");
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{v}");
        assert_eq!(method.ends_with("+bias"), m.bias_correction.is_some(), "{v}");
        let reparsed = parse_manifest(&text, Path::new("m.toml")).expect("manifest");
        assert_eq!(reparsed.harmonizer_version(), v, "deterministic");
        let mut without_bias = m.clone();
        without_bias.bias_correction = None;
        assert!(!without_bias.harmonizer_version().contains("+bias"));
        assert_ne!(without_bias.harmonizer_version().rsplit_once('-').map(|x| x.1), Some(digest));
        let mut other = m.clone();
        other.harmonization = imaging::harmonize::HarmonizeMethod::Percentile { lower: 1.0, upper: 99.0 };
        assert_ne!(other.harmonizer_version(), v, "other parameters, other version");
    }
}
