//! Model folders: `manifest.toml` plus the ONNX members it lists, checked in
//! full at load time so a broken model fails before any study is processed.
//!
//! Owns the manifest format ([`Manifest`], strict: unknown keys are errors),
//! its validation, member checksums, and loading every member's session once
//! ([`load_model_folder`]), with each member's ONNX input and output checked
//! against the manifest. Does not own running the members (patches, flips,
//! passes and accumulation live elsewhere in the engine) nor ONNX Runtime
//! itself ([`crate::runtime`]).
//!
//! # The format
//!
//! A complete manifest (this block is parsed and validated by a unit test):
//!
//! ```toml
//! schema = 1                        # format version
//! name = "brain-tissue"
//! version = "1.0.0"
//! task = "segmentation"             # or "classification"
//! description = "grey and white matter from a T1w scan"
//!
//! [input]
//! contrast = "T1w"                  # the contrast the members were trained on
//! spacing_mm = [1.0, 1.0, 1.0]      # model grid spacing, mm
//! orientation = "RAS"               # model grid axis codes (nibabel aff2axcodes)
//! channels = 1                      # C of the [N, C, D, H, W] input
//! tensor = "image"                  # ONNX input name
//!
//! [harmonization]                   # imaging::harmonize::HarmonizeMethod
//! method = "percentile"             # zscore | percentile | whitestripe | nyul
//! lower = 0.5
//! upper = 99.5                      # (nyul: scale_file, relative to this folder)
//!
//! [bias_correction]                 # optional: imaging::bias, before harmonization
//! degree = 3                        # Legendre degree of ln(field)
//! classes = 3                       # tissue classes of the fit
//! max_iterations = 50
//! tolerance = 1e-3
//!
//! [output]
//! tensor = "probabilities"          # ONNX output name (the graph's first output)
//! activation = "softmax"            # softmax | sigmoid | none (logits)
//!
//! [[labels]]                        # values 0, 1, 2 … in channel order
//! value = 0
//! name = "background"
//! colour = [0, 0, 0]
//!
//! [[labels]]
//! value = 1
//! name = "grey_matter"
//! colour = [205, 62, 78]
//! # optional, both or neither: the DICOM SEG segment's category and type, the SR finding
//! category = { value = "85756007", scheme = "SCT", meaning = "Tissue" }
//! type = { value = "389081007", scheme = "SCT", meaning = "Gray Matter" }
//!
//! [[labels]]
//! value = 2
//! name = "white_matter"
//! colour = [245, 245, 245]
//!
//! [inference]
//! patch_size = [96, 96, 96]         # sliding-window patch, voxels
//! overlap = 0.5                     # default 0.5
//! tta_axes = [0, 1, 2]              # mirrored axes: 2^3 = 8 flips
//! mc_dropout_passes = 4             # per member and flip; 0 = dropout off
//! mc_dropout_input = "mc_dropout"   # the members' float32 [1] gate input (0 off, 1 on)
//! tiling = "windows"                # default; "whole": one call per pass over the padded grid
//! size_multiple = 8                 # whole-grid padding multiple (2^poolings); needed for "whole"
//! whole_max_voxels = 4194304        # default; larger padded grids fall back to windows
//!
//! [inference.profiles.full]         # optional named profiles; `full` on CUDA/TensorRT,
//! members = 2                       # `cpu` on the CPU, else the defaults above
//! tta_axes = [0, 1, 2]
//! mc_dropout_passes = 4
//! study_uncertainty_max = 0.35      # optional: this profile's own bound (its passes disagree more)
//!
//! [inference.profiles.cpu]
//! members = 1                       # the first 1..=len(members) members
//! tta_axes = [0]
//! mc_dropout_passes = 0
//! tiling = "whole"                  # optional: replaces inference.tiling
//!
//! [routing]                         # all optional; overridable in the worker config
//! study_uncertainty_max = 0.21
//! structure_agreement_min = 0.86
//! volume_cv_max = 0.04
//! ood_score_max = 3.0
//! predicted_dice_min = 0.85         # needs a quality estimator for the profile that runs
//! source = "training/EVALUATION.md, routing: 90% of Dice < 0.8 cases at a 12% review rate"
//!
//! [ood]                             # worker::ood's training reference; required with ood_score_max
//! volumes = 40                      # fitted by OodReference::fit on harmonized training volumes
//! [ood.histogram]                   # foreground intensities, equal-width bins on [lo, hi]
//! lo = -5.0
//! hi = 5.0
//! probabilities = [0.1, 0.4, 0.4, 0.1]
//! spread = 0.02
//! [ood.foreground_volume_ml]        # the foreground's volume, mL
//! mean = 1450.0
//! spread = 145.0
//! [ood.noise_ratio]
//! mean = 0.12
//! spread = 0.03
//!
//! [provenance]
//! script = "training/train_segmentation.py"
//! data = "nilearn 0.14.1 MNI152 2009 T1 + GM/WM maps, SynthSeg-style randomization"
//! commit = "0123abc"                # optional, like trained and notes
//! trained = "2026-11-27, 2 CPU cores, 41 min per member"
//!
//! [evaluation]
//! report = "training/EVALUATION.md"
//! figures = { dice_gm_ensemble_tta = 0.91, dice_wm_ensemble_tta = 0.94, aurc = 0.031 }
//!
//! [[members]]                       # at least one; paths relative to this folder
//! file = "member_0.onnx"
//! sha256 = "5f0c7e6a2b9d4c1e8f3a6b5d4c3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e"
//! seed = 0
//!
//! [[members]]
//! file = "member_1.onnx"
//! sha256 = "8e2d4c6b1a3f5e7d9c0b2a4f6e8d0c1b3a5f7e9d2c4b6a8f0e1d3c5b7a9f2e4d"
//! seed = 1
//!
//! [calibration]                     # optional: mask = argmax of class_weights × mean probability
//! class_weights = [1.0, 0.95, 1.05]
//! temperature = 1.5                 # optional: reported probabilities ∝ (w × mean)^(1/T)
//! source = "training/EVALUATION.md, volumes"
//!
//! [[quality_estimators]]            # optional: worker::quality, one per base pass set
//! members = 1                       # fitted on the first 1 member's unflipped deterministic pass
//! file = "quality_cpu.onnx"         # float32 [N, features] -> predicted Dice [N, structures]
//! sha256 = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
//! features = ["study.score", "grey_matter.pairwise_dice", "ood.noise_ratio"]
//! structures = [1, 2]
//! ```
//!
//! Rules beyond the types: labels are 0, 1, 2 … in order with unique names (at
//! least two), with both codes or neither (values and schemes of 1 to 16
//! characters, meanings of 1 to 64, no backslash); spacing > 0; patch edges in 1..=1024; overlap in [0, 1); TTA axes
//! distinct and in 0..3; `mc_dropout_input` named whenever the defaults or a
//! profile ask for MC-dropout passes; profile members in 1..=len(members); routing bounds non-negative, `*_min` in [0, 1], and a
//! `source` whenever a threshold is set; members are relative paths inside the
//! folder with lowercase hex sha256; quality estimators name a member count
//! (1..=len(members), one estimator each), catalog features and structure labels; calibration weights are
//! positive, one per label. The output must have as many channels as
//! there are labels (`softmax`, `none`) or one fewer (`sigmoid`: label 0 is the
//! negative class), rank 5 for segmentation and rank 2 for classification.

mod folder;
mod job_spec;
mod schema;
mod validate;

use std::path::{Path, PathBuf};

pub use folder::{LoadedMember, LoadedModel, load_model_folder};
pub use schema::{
    Activation, Calibration, Evaluation, InferenceSpec, InputSpec, Label, Manifest, Member, OutputSpec, Profile,
    Provenance, RoutingThresholds, SCHEMA_VERSION, SelectedProfile, Task, Tiling,
};

use crate::runtime::RuntimeError;

/// The manifest's file name inside a model folder.
pub const MANIFEST_FILE: &str = "manifest.toml";

/// Errors loading a model folder.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read model manifest {path}: {reason}")]
    ManifestRead { path: PathBuf, reason: String },
    #[error("invalid model manifest {path} (line {line}): {reason}")]
    Parse { path: PathBuf, line: usize, reason: String },
    #[error("invalid model manifest {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("model manifest {path}: harmonization cannot be prepared: {reason}")]
    Harmonization { path: PathBuf, reason: String },
    #[error("model member {path} listed in {manifest} does not exist")]
    MissingMember { path: PathBuf, manifest: PathBuf },
    #[error("cannot read model member {path}: {reason}")]
    MemberRead { path: PathBuf, reason: String },
    #[error("model member {path} has sha256 {actual} but the manifest says {expected}")]
    ChecksumMismatch { path: PathBuf, expected: String, actual: String },
    #[error("model member {path} disagrees with the manifest: {reason}")]
    Signature { path: PathBuf, reason: String },
    #[error("model {path}: {reason}")]
    Profile { path: PathBuf, reason: String },
    #[error("quality estimator {path}: {reason}")]
    Estimator { path: PathBuf, reason: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Parses and validates manifest text; `path` is named in errors.
pub fn parse_manifest(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
    let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
        path: path.to_path_buf(),
        line: e.span().map_or(0, |s| text.get(..s.start).map_or(0, |t| t.matches('\n').count()) + 1),
        reason: crate::runtime::one_line(e.message()),
    })?;
    manifest.validate().map_err(|reason| ManifestError::Invalid { path: path.to_path_buf(), reason })?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The ```toml block of this module's docs.
    fn documented_example() -> String {
        let docs: Vec<&str> = include_str!("mod.rs")
            .lines()
            .map_while(|l| l.strip_prefix("//!"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        let start = docs.iter().position(|l| *l == "```toml").unwrap() + 1;
        let len = docs[start..].iter().position(|l| *l == "```").unwrap();
        docs[start..start + len].join("\n")
    }

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        parse_manifest(text, Path::new("models/x/manifest.toml"))
    }

    #[test]
    fn documented_example_is_valid() {
        let m = parse(&documented_example()).unwrap();
        assert_eq!(m.task, Task::Segmentation);
        assert_eq!(m.labels.len(), 3);
        assert_eq!(m.expected_output_channels(), 3);
        assert_eq!(m.members.len(), 2);
        assert_eq!(m.inference.tta_axes, vec![0, 1, 2]);
        assert_eq!(m.harmonization, imaging::harmonize::HarmonizeMethod::Percentile { lower: 0.5, upper: 99.5 });
        assert_eq!(m.evaluation.figures.get("aurc"), Some(&0.031));
        assert_eq!(m.bias_correction, Some(imaging::bias::BiasFieldParams::default()));
        assert_eq!(m.routing.predicted_dice_min, Some(0.85));
        assert_eq!(m.calibration.as_ref().map(|c| c.class_weights.clone()), Some(vec![1.0, 0.95, 1.05]));
        assert_eq!(m.calibration.as_ref().and_then(|c| c.temperature), Some(1.5));
        assert_eq!(m.quality_estimators.len(), 1);
        assert_eq!(
            (m.quality_estimators[0].members, m.quality_estimators[0].structures.as_slice()),
            (1, &[1u8, 2][..])
        );
        // The table is optional: no correction without it.
        let start = documented_example().find("[bias_correction]").unwrap();
        let end = documented_example().find("[output]").unwrap();
        let without = format!("{}{}", &documented_example()[..start], &documented_example()[end..]);
        assert_eq!(parse(&without).unwrap().bias_correction, None);
    }

    #[test]
    fn unknown_fields_are_errors_everywhere() {
        let base = documented_example();
        let cases = [
            ("schema = 1", "schema = 1\ncolor_map = \"jet\""),
            ("channels = 1", "channels = 1\nchannel = 1"),
            ("upper = 99.5", "upper = 99.5\nwidth = 0.05"),
            ("mc_dropout_passes = 4", "mc_dropout_passes = 4\nmc_passes = 4"),
            ("seed = 1", "seed = 1\nsize = 10"),
            ("ood_score_max = 3.0", "ood_score_max = 3.0\nentropy_max = 1.0"),
            ("tolerance = 1e-3", "tolerance = 1e-3\nsmoothing = 2.0"),
            ("study_uncertainty_max = 0.35", "study_uncertainty_max = 0.35\nvolume_cv_max = 0.1"),
        ];
        for (from, to) in cases {
            let text = base.replacen(from, to, 1);
            let err = parse(&text).unwrap_err();
            let unknown = format!("`{}`", to.lines().nth(1).unwrap().split(' ').next().unwrap());
            assert!(matches!(err, ManifestError::Parse { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&unknown) && msg.contains("models/x/manifest.toml"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn invalid_values_name_the_field() {
        let base = documented_example();
        let cases = [
            ("schema = 1", "schema = 2", "schema"),
            ("spacing_mm = [1.0, 1.0, 1.0]", "spacing_mm = [1.0, 0.0, 1.0]", "input.spacing_mm"),
            ("orientation = \"RAS\"", "orientation = \"RAR\"", "input.orientation"),
            ("value = 2", "value = 3", "labels"),
            ("name = \"white_matter\"", "name = \"grey_matter\"", "labels"),
            ("patch_size = [96, 96, 96]", "patch_size = [96, 0, 96]", "inference.patch_size"),
            ("overlap = 0.5", "overlap = 1.0", "inference.overlap"),
            ("tta_axes = [0, 1, 2]", "tta_axes = [0, 3]", "inference.tta_axes"),
            ("tta_axes = [0, 1, 2]", "tta_axes = [1, 1]", "inference.tta_axes"),
            ("size_multiple = 8", "size_multiple = 0", "inference.size_multiple"),
            ("size_multiple = 8", "# size_multiple = 8", "inference.size_multiple"),
            ("whole_max_voxels = 4194304", "whole_max_voxels = 0", "inference.whole_max_voxels"),
            ("structure_agreement_min = 0.86", "structure_agreement_min = 1.86", "routing.structure_agreement_min"),
            ("file = \"member_1.onnx\"", "file = \"../member_1.onnx\"", "members.file"),
            ("file = \"member_1.onnx\"", "file = \"member_0.onnx\"", "members.file"),
            ("sha256 = \"8e2d", "sha256 = \"8E2D", "members.sha256"),
            ("upper = 99.5", "upper = 0.1", "harmonization"),
            ("degree = 3", "degree = 9", "bias_correction"),
            ("classes = 3", "classes = 0", "bias_correction"),
            (
                "study_uncertainty_max = 0.35",
                "study_uncertainty_max = -0.35",
                "inference.profiles.full.study_uncertainty_max",
            ),
            ("probabilities = [0.1, 0.4, 0.4, 0.1]", "probabilities = [0.1, 0.4, 0.4, 0.2]", "ood"),
            ("spread = 0.03", "spread = 0.0", "ood"),
            ("predicted_dice_min = 0.85", "predicted_dice_min = 1.5", "routing.predicted_dice_min"),
            ("class_weights = [1.0, 0.95, 1.05]", "class_weights = [1.0, 0.95]", "calibration.class_weights"),
            ("class_weights = [1.0, 0.95, 1.05]", "class_weights = [1.0, 0.0, 1.05]", "calibration.class_weights"),
            ("temperature = 1.5", "temperature = 0.0", "calibration.temperature"),
            ("temperature = 1.5", "temperature = -2.0", "calibration.temperature"),
            (
                "members = 1                       # fitted",
                "members = 3                       # fitted",
                "quality_estimators",
            ),
            ("\"ood.noise_ratio\"]", "\"ood.foreground_fraction\"]", "ood.foreground_fraction"),
            ("structures = [1, 2]", "structures = [0, 2]", "quality_estimators"),
            ("structures = [1, 2]", "structures = [2, 2]", "quality_estimators"),
            ("file = \"quality_cpu.onnx\"", "file = \"/etc/quality.onnx\"", "quality_estimators"),
        ];
        for (from, to, field) in cases {
            assert!(base.contains(from), "{from}");
            let err = parse(&base.replacen(from, to, 1)).unwrap_err();
            assert!(matches!(err, ManifestError::Invalid { .. }), "{to}: {err}");
            assert!(err.to_string().contains(field), "{to}: {err}");
        }
        let no_members = base.split("[[members]]").next().unwrap().to_string() + "members = []\n";
        assert!(parse(&no_members).unwrap_err().to_string().contains("members"));
    }

    #[test]
    fn an_ood_bound_needs_a_training_reference() {
        let base = documented_example();
        let start = base.find("[ood]").unwrap();
        let end = base.find("[provenance]").unwrap();
        let without_reference = format!("{}{}", &base[..start], &base[end..]);
        let err = parse(&without_reference).unwrap_err();
        assert!(matches!(err, ManifestError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("ood"), "{err}");
        // Without the bound, the reference is optional.
        let no_bound = without_reference.replacen("ood_score_max = 3.0\n", "", 1);
        assert!(parse(&no_bound).unwrap().ood.is_none());
        assert!(parse(&base).unwrap().ood.is_some_and(|r| r.volumes == 40));
    }

    #[test]
    fn profiles_and_the_gate_input_are_validated() {
        let base = documented_example();
        let m = parse(&base).unwrap();
        assert_eq!(m.inference.mc_dropout_input.as_deref(), Some("mc_dropout"));
        assert_eq!(m.inference.profiles.len(), 2);
        let cases = [
            // MC passes with no gate input named, from the defaults or from a profile.
            ("mc_dropout_input = \"mc_dropout\"", "", "inference.mc_dropout_input"),
            ("mc_dropout_input = \"mc_dropout\"", "mc_dropout_input = \"\"", "inference.mc_dropout_input"),
            ("mc_dropout_input = \"mc_dropout\"", "mc_dropout_input = \"image\"", "inference.mc_dropout_input"),
            ("members = 2 ", "members = 3 ", "inference.profiles.full.members"),
            ("members = 1 ", "members = 0 ", "inference.profiles.cpu.members"),
            ("tta_axes = [0]", "tta_axes = [0, 0]", "inference.profiles.cpu.tta_axes"),
            ("mc_dropout_passes = 0\n", "mc_dropout_passes = 1001\n", "inference.profiles.cpu.mc_dropout_passes"),
        ];
        for (from, to, field) in cases {
            assert!(base.contains(from), "{from}");
            let err = parse(&base.replacen(from, to, 1)).unwrap_err();
            assert!(matches!(err, ManifestError::Invalid { .. }), "{to}: {err}");
            assert!(err.to_string().contains(field), "{to}: {err}");
        }
        // The profile asking for passes is named when the defaults ask for none.
        let only_profile = base.replacen("mc_dropout_input = \"mc_dropout\"", "", 1).replacen(
            "mc_dropout_passes = 4             #",
            "mc_dropout_passes = 0             #",
            1,
        );
        assert!(parse(&only_profile).unwrap_err().to_string().contains("profile `full`"));
        // Without any MC pass, no gate input is needed.
        let deterministic = only_profile.replacen("mc_dropout_passes = 4", "mc_dropout_passes = 0", 1);
        assert!(parse(&deterministic).unwrap().inference.mc_dropout_input.is_none());
        let unknown = base.replacen("members = 1 ", "members = 1\npasses = 2 ", 1);
        assert!(matches!(parse(&unknown).unwrap_err(), ManifestError::Parse { .. }));
    }

    #[test]
    fn profile_selection_follows_the_request_then_the_provider() {
        use crate::runtime::Provider;
        let m = parse(&documented_example()).unwrap();
        let cpu = m.select_profile(None, Provider::Cpu).unwrap();
        assert_eq!((cpu.label(), cpu.members, cpu.tta_axes.as_slice(), cpu.mc_dropout_passes), ("cpu", 1, &[0][..], 0));
        for gpu in [Provider::Cuda, Provider::TensorRt] {
            let full = m.select_profile(None, gpu).unwrap();
            assert_eq!((full.label(), full.members, full.mc_dropout_passes), ("full", 2, 4));
            assert_eq!(full.tiling, Tiling::Windows, "a profile without tiling keeps inference.tiling");
        }
        assert_eq!(cpu.tiling, Tiling::Whole, "the profile's own tiling");
        for t in [Tiling::Windows, Tiling::Whole] {
            assert_eq!(t.to_string().parse::<Tiling>(), Ok(t));
        }
        assert!("tiles".parse::<Tiling>().unwrap_err().contains("`tiles`"));
        assert_eq!(m.select_profile(Some("full"), Provider::Cpu).unwrap().label(), "full");
        let err = m.select_profile(Some("fast"), Provider::Cpu).unwrap_err();
        assert!(err.contains("`fast`") && err.contains("cpu, full"), "{err}");
        // No profiles: the [inference] defaults with every member.
        let mut bare = m.clone();
        bare.inference.profiles.clear();
        let d = bare.select_profile(None, Provider::Cuda).unwrap();
        assert_eq!((d.name, d.members, d.tta_axes, d.mc_dropout_passes), (None, 2, vec![0, 1, 2], 4));
        assert!(bare.select_profile(Some("cpu"), Provider::Cpu).unwrap_err().contains("none"));
    }

    #[test]
    fn sigmoid_needs_one_channel_fewer_than_labels() {
        let m = parse(&documented_example().replace("activation = \"softmax\"", "activation = \"sigmoid\"")).unwrap();
        assert_eq!(m.expected_output_channels(), 2);
    }

    #[test]
    fn label_codes_are_both_or_neither_and_fit_dicom() {
        let m = parse(&documented_example()).unwrap();
        let grey = &m.labels[1];
        assert_eq!(grey.property.as_ref().map(|c| c.value.as_str()), Some("389081007"));
        assert_eq!(grey.category.as_ref().map(|c| c.meaning.as_str()), Some("Tissue"));
        let only_category = documented_example().replacen(
            "type = { value = \"389081007\", scheme = \"SCT\", meaning = \"Gray Matter\" }\n",
            "",
            1,
        );
        let err = parse(&only_category).unwrap_err().to_string();
        assert!(err.contains("labels.grey_matter") && err.contains("both"), "{err}");
        for (bad, what) in [
            ("value = \"389081007\"", "value = \"38908100712345678\""),
            ("meaning = \"Gray Matter\"", "meaning = \"Gray\\\\Matter\""),
            ("scheme = \"SCT\", meaning = \"Gray", "scheme = \"\", meaning = \"Gray"),
        ] {
            let text = documented_example().replacen(bad, what, 1);
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("labels.grey_matter.type"), "{what}: {err}");
        }
        let unknown = documented_example().replacen("meaning = \"Tissue\"", "meaning = \"Tissue\", extra = 1", 1);
        assert!(parse(&unknown).is_err());
    }

    #[test]
    fn parse_errors_report_the_line() {
        let text = documented_example().replacen("channels = 1", "channels = \"one\"", 1);
        let line = text.lines().position(|l| l.starts_with("channels")).unwrap() + 1;
        match parse(&text).unwrap_err() {
            ManifestError::Parse { line: l, .. } => assert_eq!(l, line),
            e => panic!("{e}"),
        }
    }

    proptest! {
        /// Labels are accepted exactly when their values are 0..n in order.
        #[test]
        fn labels_accepted_iff_contiguous(values in proptest::collection::vec(0u32..6, 2..6)) {
            let base = documented_example();
            let head = base.split("[[labels]]").next().unwrap();
            // Without the tables that name the labels (the estimator's features, the class weights).
            let tail = base[base.find("[inference]").unwrap()..base.find("[calibration]").unwrap()]
                .replacen("predicted_dice_min = 0.85", "", 1);
            let labels: String = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("[[labels]]\nvalue = {v}\nname = \"l{i}\"\ncolour = [1, 2, 3]\n\n"))
                .collect();
            let contiguous = values.iter().enumerate().all(|(i, &v)| v as usize == i);
            prop_assert_eq!(parse(&format!("{head}{labels}{tail}")).is_ok(), contiguous);
        }

        /// Arbitrary text is an error or a manifest, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = parse(&text);
        }

        /// Truncating a valid manifest anywhere never panics.
        #[test]
        fn truncated_manifests_never_panic(cut in 0usize..2500) {
            let base = documented_example();
            let cut = (0..=cut.min(base.len())).rev().find(|&c| base.is_char_boundary(c)).unwrap_or(0);
            let _ = parse(&base[..cut]);
        }
    }
}
