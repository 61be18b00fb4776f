//! Loading a model folder: the manifest, the harmonizer it names, and every
//! member checked by sha256 and turned into sessions once (one per inference
//! lane for a segmentation model, [`RuntimeConfig::lane_plan`]), with the ONNX
//! signature checked against the manifest.

use std::path::{Path, PathBuf};

use imaging::harmonize::{HarmonizeMethod, Harmonizer};
use sha2::{Digest, Sha256};
use tracing::info;

use super::schema::{Manifest, SelectedProfile, Task};
use super::{MANIFEST_FILE, ManifestError, parse_manifest};
use crate::quality::QualityEstimator;
use crate::runtime::{Model, Provider, RuntimeConfig, available_cores, one_line};

/// A manifest is a page of text; anything this large is not one.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Protobuf's limit for one ONNX file.
const MAX_MEMBER_BYTES: u64 = 2 << 30;

/// A model folder ready for inference: its manifest, the prepared harmonizer
/// and one session per member, all checked.
#[derive(Debug)]
pub struct LoadedModel {
    dir: PathBuf,
    manifest: Manifest,
    harmonizer: Harmonizer,
    members: Vec<LoadedMember>,
    estimators: Vec<QualityEstimator>,
}

/// One ensemble member with its sessions.
#[derive(Debug)]
pub struct LoadedMember {
    /// The member's file (the folder joined with the manifest's `file`).
    pub file: PathBuf,
    /// Its sha256, checked at load; results record it.
    pub sha256: String,
    pub seed: Option<u64>,
    /// One session per inference lane, all from the same bytes; at least one.
    pub sessions: Vec<Model>,
}

impl LoadedMember {
    /// The first lane's session: signature, provider, and whole-volume runs.
    pub fn model(&self) -> &Model {
        &self.sessions[0]
    }
}

impl LoadedModel {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest, with a Nyúl `scale_file` resolved against the folder.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn harmonizer(&self) -> &Harmonizer {
        &self.harmonizer
    }

    /// Spacing, bias correction and harmonizer: what `pipeline::to_model_grid` needs.
    pub fn input_prep(&self) -> crate::pipeline::InputPrep<'_> {
        crate::pipeline::InputPrep {
            spacing_mm: self.manifest.input.spacing_mm,
            anti_aliasing: self.manifest.input.anti_aliasing,
            bias_correction: self.manifest.bias_correction.as_ref(),
            harmonizer: &self.harmonizer,
        }
    }

    pub fn members(&self) -> &[LoadedMember] {
        &self.members
    }

    /// The quality estimator fitted on the base passes of the first `members` members.
    pub fn quality_estimator(&self, members: usize) -> Option<&QualityEstimator> {
        self.estimators.iter().find(|e| e.members() == members)
    }

    /// The execution provider the sessions got (the first member's; all are
    /// built with the same configuration).
    pub fn provider(&self) -> Provider {
        self.members.first().map_or(Provider::Cpu, |m| m.model().provider())
    }

    /// Inference lanes: sessions per member (the same for every member, 1 for a classifier).
    pub fn lanes(&self) -> usize {
        self.members.iter().map(|m| m.sessions.len()).min().unwrap_or(1)
    }

    /// The inference profile to run ([`Manifest::select_profile`]): `requested`
    /// if given, else by the execution provider the sessions got.
    pub fn select_profile(&self, requested: Option<&str>) -> Result<SelectedProfile, ManifestError> {
        self.manifest
            .select_profile(requested, self.provider())
            .map_err(|reason| ManifestError::Profile { path: self.dir.clone(), reason })
    }
}

/// Loads `dir/manifest.toml` and every member it lists. Fails, before any
/// study is processed, on a manifest that does not parse or validate, a
/// missing or altered member, or a member whose ONNX inputs and outputs
/// disagree with the manifest.
pub fn load_model_folder(dir: &Path, config: &RuntimeConfig) -> Result<LoadedModel, ManifestError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = read_capped(&manifest_path, MAX_MANIFEST_BYTES)
        .map_err(|reason| ManifestError::ManifestRead { path: manifest_path.clone(), reason })?;
    let text = String::from_utf8(text)
        .map_err(|_| ManifestError::ManifestRead { path: manifest_path.clone(), reason: "not UTF-8 text".into() })?;
    let mut manifest = parse_manifest(&text, &manifest_path)?;

    if let HarmonizeMethod::Nyul { scale_file } = &mut manifest.harmonization {
        *scale_file = dir.join(&*scale_file);
    }
    let harmonizer = manifest
        .harmonization
        .prepare()
        .map_err(|e| ManifestError::Harmonization { path: manifest_path.clone(), reason: one_line(e) })?;

    // Every checksum (members and quality estimators) before any session: a tampered folder fails fast and whole.
    let mut verified = Vec::with_capacity(manifest.members.len());
    for member in &manifest.members {
        let file = dir.join(&member.file);
        if !file.is_file() {
            return Err(ManifestError::MissingMember { path: file, manifest: manifest_path });
        }
        let bytes = read_verified(&file, &member.sha256).map_err(|e| match e {
            Unverified::Read(reason) => ManifestError::MemberRead { path: file.clone(), reason },
            Unverified::Mismatch { actual } => {
                ManifestError::ChecksumMismatch { path: file.clone(), expected: member.sha256.clone(), actual }
            }
        })?;
        verified.push((file, bytes, member));
    }
    let mut verified_estimators = Vec::with_capacity(manifest.quality_estimators.len());
    for spec in &manifest.quality_estimators {
        let file = dir.join(&spec.file);
        let bytes = read_verified(&file, &spec.sha256).map_err(|e| ManifestError::Estimator {
            path: file.clone(),
            reason: match e {
                Unverified::Read(reason) => reason,
                Unverified::Mismatch { actual } => format!("sha256 is {actual} but the manifest says {}", spec.sha256),
            },
        })?;
        verified_estimators.push((file, bytes, spec));
    }

    // Lanes run the windows of a segmentation; a classifier runs whole volumes one pass at a time.
    let (lanes, session_config) = match manifest.task {
        Task::Segmentation => {
            let plan = config.lane_plan(available_cores());
            (plan.lanes, RuntimeConfig { intra_op_threads: plan.intra_op_threads, ..config.clone() })
        }
        Task::Classification => (1, config.clone()),
    };
    let mut members = Vec::with_capacity(verified.len());
    for (file, bytes, member) in verified {
        // Sessions are built from the bytes just hashed, not from a second read.
        let first = Model::from_bytes(&bytes, &file, &session_config)?;
        check_signature(&manifest, &first).map_err(|reason| ManifestError::Signature { path: file.clone(), reason })?;
        let mut sessions = vec![first];
        for _ in 1..lanes {
            sessions.push(Model::from_bytes(&bytes, &file, &session_config)?);
        }
        members.push(LoadedMember { file, sha256: member.sha256.clone(), seed: member.seed, sessions });
    }
    let mut estimators = Vec::with_capacity(verified_estimators.len());
    for (file, bytes, spec) in verified_estimators {
        let estimator = QualityEstimator::from_bytes(spec.clone(), &bytes, &file, config)
            .map_err(|e| ManifestError::Estimator { path: file.clone(), reason: e.to_string() })?;
        estimators.push(estimator);
    }
    info!(
        model = %manifest.name,
        version = %manifest.version,
        members = members.len(),
        lanes,
        intra_op_threads = session_config.intra_op_threads,
        "model folder loaded"
    );
    Ok(LoadedModel { dir: dir.to_path_buf(), manifest, harmonizer, members, estimators })
}

/// Why a file the manifest lists could not be used.
enum Unverified {
    Read(String),
    Mismatch { actual: String },
}

/// The bytes of a file the manifest lists (at most an ONNX file's size), checked against its sha256.
fn read_verified(path: &Path, expected: &str) -> Result<Vec<u8>, Unverified> {
    let bytes = read_capped(path, MAX_MEMBER_BYTES).map_err(Unverified::Read)?;
    let actual = format!("{:x}", Sha256::digest(&bytes));
    if actual == expected { Ok(bytes) } else { Err(Unverified::Mismatch { actual }) }
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path).map_err(one_line)?.len();
    if len > max {
        return Err(format!("{len} bytes is more than the {max} allowed"));
    }
    std::fs::read(path).map_err(one_line)
}

/// The member's graph against the manifest: input name and channels, static
/// spatial dimensions against the patch size, output name, rank and channels.
fn check_signature(manifest: &Manifest, model: &Model) -> Result<(), String> {
    let input = model.input();
    if input.name != manifest.input.tensor {
        return Err(format!("its input is `{}` but input.tensor is `{}`", input.name, manifest.input.tensor));
    }
    match input.shape.get(1).copied().flatten() {
        Some(c) if c == manifest.input.channels => {}
        Some(c) => {
            return Err(format!(
                "input `{}` has {c} channels but input.channels is {}",
                input.name, manifest.input.channels
            ));
        }
        None => return Err(format!("input `{}` has a dynamic channel dimension; export it static", input.name)),
    }
    let spatial = input.shape.iter().skip(2).zip(manifest.inference.patch_size);
    if let Some((axis, (d, p))) = spatial.enumerate().find_map(|(a, (d, p))| d.filter(|&d| d != p).map(|d| (a, (d, p))))
    {
        return Err(format!(
            "input `{}` is fixed at {d} voxels on axis {axis} but inference.patch_size is {p}",
            input.name
        ));
    }
    if let Some(who) = manifest.inference.tiles_whole().filter(|_| input.shape.iter().skip(2).any(Option::is_some)) {
        return Err(format!(
            "input `{}` has fixed spatial axes {:?} but {who} tiles `whole` (it needs them dynamic)",
            input.name,
            &input.shape[2..]
        ));
    }
    match (&manifest.inference.mc_dropout_input, model.gate()) {
        (Some(want), Some(gate)) if gate.name == *want => {}
        (Some(want), Some(gate)) => {
            return Err(format!("its gate input is `{}` but inference.mc_dropout_input is `{want}`", gate.name));
        }
        (Some(want), None) => {
            return Err(format!("inference.mc_dropout_input is `{want}` but it has no float32 [1] input of that name"));
        }
        (None, Some(gate)) => {
            return Err(format!("it has a gate input `{}` but inference.mc_dropout_input does not name it", gate.name));
        }
        (None, None) => {}
    }

    let Some(output) = model.outputs().first() else {
        return Err("it has no outputs".into());
    };
    if output.name != manifest.output.tensor {
        return Err(format!("its first output is `{}` but output.tensor is `{}`", output.name, manifest.output.tensor));
    }
    let rank = match manifest.task {
        Task::Segmentation => 5,
        Task::Classification => 2,
    };
    if output.shape.len() != rank {
        return Err(format!(
            "output `{}` has rank {} but a {} model returns rank {rank}",
            output.name,
            output.shape.len(),
            manifest.task
        ));
    }
    if let Some(name) = &manifest.output.features {
        check_features_output(model, name)?;
    }
    let want = manifest.expected_output_channels();
    match output.shape.get(1).copied().flatten() {
        Some(c) if c == want => Ok(()),
        Some(c) => Err(format!(
            "output `{}` has {c} channels but the manifest's {} labels with {} activation need {want}",
            output.name,
            manifest.labels.len(),
            manifest.output.activation
        )),
        None => Err(format!("output `{}` has a dynamic channel dimension; export it static", output.name)),
    }
}

/// The bottleneck output `output.features` names: float32, rank 5, a static channel count.
fn check_features_output(model: &Model, name: &str) -> Result<(), String> {
    let Some(features) = model.outputs().iter().skip(1).find(|o| o.name == name) else {
        let others: Vec<&str> = model.outputs().iter().skip(1).map(|o| o.name.as_str()).collect();
        return Err(format!("output.features is `{name}` but its other outputs are {others:?}"));
    };
    if features.element_type != "float32" || features.shape.len() != 5 {
        return Err(format!(
            "output `{name}` is {} of rank {}; float32 [N, F, d, h, w] features are expected",
            features.element_type,
            features.shape.len()
        ));
    }
    match features.shape[1] {
        Some(_) => Ok(()),
        None => Err(format!("output `{name}` has a dynamic channel dimension; export it static")),
    }
}
