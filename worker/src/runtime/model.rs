//! One ONNX model as a session created once and reused: its signature, the
//! provider it got, and running it on an `f32` NCDHW tensor.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ndarray::{ArrayD, ArrayView5};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::{Outlet, TensorElementType, TensorRef};
use tracing::{info, warn};

use super::provider::{self, Provider};
use super::{RuntimeConfig, RuntimeError, library, one_line};

/// Protobuf cannot encode a model larger than 2 GiB in one file; anything
/// bigger is not an ONNX model we can load, and is refused before reading.
const MAX_MODEL_BYTES: u64 = 2 << 30;

/// A graph input or output: its name, element type (`"float32"`, `"int64"` …)
/// and shape (`None` for a dynamic dimension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub element_type: String,
    pub shape: Vec<Option<usize>>,
}

impl fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> =
            self.shape.iter().map(|d| d.map_or_else(|| "?".to_string(), |d| d.to_string())).collect();
        write!(f, "[{}]", dims.join(", "))
    }
}

/// An ONNX model with its session. The session is created once and reused by
/// every [`Model::run`]; runs are serialized (ONNX Runtime's `Run` is not safe
/// to call concurrently through `ort`), so parallel inference loads one `Model`
/// per lane ([`crate::runtime::RuntimeConfig::lane_plan`]).
#[derive(Debug)]
pub struct Model {
    path: PathBuf,
    session: Mutex<Session>,
    input: TensorInfo,
    gate: Option<TensorInfo>,
    outputs: Vec<TensorInfo>,
    provider: Provider,
}

impl Model {
    /// Reads `path` and creates its session (loading the library first if needed).
    pub fn load(path: &Path, config: &RuntimeConfig) -> Result<Model, RuntimeError> {
        let read_err = |reason: String| RuntimeError::ModelRead { path: path.to_path_buf(), reason };
        let len = std::fs::metadata(path).map_err(|e| read_err(one_line(e)))?.len();
        if len > MAX_MODEL_BYTES {
            return Err(read_err(format!("{len} bytes is more than an onnx file can hold")));
        }
        let bytes = std::fs::read(path).map_err(|e| read_err(one_line(e)))?;
        Model::from_bytes(&bytes, path, config)
    }

    /// Creates the session from the bytes of an ONNX file; `path` is where they
    /// came from, for messages (a model folder hashes the bytes it then loads).
    pub fn from_bytes(bytes: &[u8], path: &Path, config: &RuntimeConfig) -> Result<Model, RuntimeError> {
        let env = library::environment(config)?;
        let (session, provider) = build_session(&env, bytes, path, config)?;
        let signature_err = |reason: String| RuntimeError::Signature { path: path.to_path_buf(), reason };
        let (input, gate) = split_inputs(session.inputs()).map_err(signature_err)?;
        let outputs =
            session.outputs().iter().map(tensor_info).collect::<Result<Vec<_>, _>>().map_err(signature_err)?;
        match outputs.first() {
            None => return Err(signature_err("it has no outputs".into())),
            Some((o, ty)) if *ty != TensorElementType::Float32 => {
                return Err(signature_err(format!("output `{}` is {}, float32 is expected", o.name, o.element_type)));
            }
            Some(_) => {}
        }
        let outputs = outputs.into_iter().map(|(o, _)| o).collect();
        info!(model = %path.display(), %provider, input = %input.name, "onnx session ready");
        Ok(Model { path: path.to_path_buf(), session: Mutex::new(session), input, gate, outputs, provider })
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The execution provider the session got (the CPU when the configured ones failed).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The image input.
    pub fn input(&self) -> &TensorInfo {
        &self.input
    }

    /// The optional MC-dropout gate: a float32 `[1]` input, 0 for a
    /// deterministic run and 1 for dropout active (see [`Model::run_gated`]).
    pub fn gate(&self) -> Option<&TensorInfo> {
        self.gate.as_ref()
    }

    /// The outputs, in graph order; [`Model::run`] returns the first.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// Runs the model on `input` (`[N, C, D, H, W]`, any memory layout) and
    /// returns its first output. A model with a gate input runs with the gate
    /// at 0 (deterministic).
    pub fn run(&self, input: ArrayView5<'_, f32>) -> Result<ArrayD<f32>, RuntimeError> {
        self.run_gated(input, None)
    }

    /// [`Model::run`] with the gate input set to `gate` (`None`: 0 when the
    /// model has a gate). Asking for a gate value on a model without a gate
    /// input is an error, not a silent deterministic run.
    pub fn run_gated(&self, input: ArrayView5<'_, f32>, gate: Option<f32>) -> Result<ArrayD<f32>, RuntimeError> {
        let first = self.outputs.first().map(|o| o.name.as_str()).unwrap_or_default();
        let [output] = self.run_outputs(input, gate, [first])?;
        Ok(output)
    }

    /// [`Model::run_gated`] returning the first output and the output named
    /// `features` of the same run (a segmentation member's bottleneck,
    /// `output.features` of its manifest).
    pub fn run_with_features(
        &self,
        input: ArrayView5<'_, f32>,
        gate: Option<f32>,
        features: &str,
    ) -> Result<(ArrayD<f32>, ArrayD<f32>), RuntimeError> {
        let first = self.outputs.first().map(|o| o.name.as_str()).unwrap_or_default();
        let [output, features] = self.run_outputs(input, gate, [first, features])?;
        Ok((output, features))
    }

    /// One run of the session on `input`, returning the outputs `names` in that order.
    fn run_outputs<const N: usize>(
        &self,
        input: ArrayView5<'_, f32>,
        gate: Option<f32>,
        names: [&str; N],
    ) -> Result<[ArrayD<f32>; N], RuntimeError> {
        let shape_ok = input.shape().iter().all(|&d| d > 0)
            && self.input.shape.iter().zip(input.shape()).all(|(want, &got)| want.is_none_or(|w| w == got));
        if !shape_ok {
            return Err(RuntimeError::InputShape {
                path: self.path.clone(),
                input: self.input.name.clone(),
                expected: self.input.to_string(),
                actual: input.shape().to_vec(),
            });
        }
        let run_err = |reason: String| RuntimeError::Run { path: self.path.clone(), reason };
        let gate_value = match (&self.gate, gate) {
            (Some(_), g) => Some(ndarray::arr1(&[g.unwrap_or(0.0)])),
            (None, None) => None,
            (None, Some(g)) => {
                return Err(RuntimeError::NoGate { path: self.path.clone(), value: g });
            }
        };
        let input = input.as_standard_layout();
        let tensor = TensorRef::from_array_view(&input).map_err(|e| run_err(one_line(e)))?;
        let mut inputs = ort::inputs![self.input.name.as_str() => tensor];
        if let (Some(info), Some(value)) = (&self.gate, &gate_value) {
            let gate_tensor = TensorRef::from_array_view(value).map_err(|e| run_err(one_line(e)))?;
            inputs.push((info.name.as_str().into(), gate_tensor.into()));
        }
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let outputs = session.run(inputs).map_err(|e| run_err(one_line(e)))?;
        let mut arrays = Vec::with_capacity(N);
        for name in names {
            let output = outputs.get(name).ok_or_else(|| run_err(format!("output `{name}` is missing")))?;
            let array = output.try_extract_array::<f32>().map_err(|e| run_err(one_line(e)))?;
            arrays.push(array.to_owned());
        }
        arrays.try_into().map_err(|_| run_err("the outputs did not come back".into()))
    }
}

/// The image input (float32, rank 5) and the optional gate (float32 `[1]`);
/// any other input, or a second one of another kind, is refused.
fn split_inputs(inputs: &[Outlet]) -> Result<(TensorInfo, Option<TensorInfo>), String> {
    let infos = inputs.iter().map(tensor_info).collect::<Result<Vec<_>, _>>()?;
    let is_image = |(t, ty): &(TensorInfo, TensorElementType)| *ty == TensorElementType::Float32 && t.shape.len() == 5;
    let is_gate = |(t, ty): &(TensorInfo, TensorElementType)| *ty == TensorElementType::Float32 && t.shape == [Some(1)];
    let describe = |(t, _): &(TensorInfo, TensorElementType)| format!("`{}` {} {}", t.name, t.element_type, t);
    match infos.as_slice() {
        [one] if is_image(one) => Ok((one.0.clone(), None)),
        [a, b] if is_image(a) && is_gate(b) => Ok((a.0.clone(), Some(b.0.clone()))),
        [a, b] if is_gate(a) && is_image(b) => Ok((b.0.clone(), Some(a.0.clone()))),
        [] => Err("it has no inputs, a float32 [N, C, D, H, W] image input is expected".into()),
        many => Err(format!(
            "its inputs are {}; a float32 [N, C, D, H, W] image input and optionally a float32 [1] \
             MC-dropout gate are expected",
            many.iter().map(describe).collect::<Vec<_>>().join(", ")
        )),
    }
}

pub(super) fn tensor_info(outlet: &Outlet) -> Result<(TensorInfo, TensorElementType), String> {
    let (Some(ty), Some(shape)) = (outlet.dtype().tensor_type(), outlet.dtype().tensor_shape()) else {
        return Err(format!("`{}` is not a tensor", outlet.name()));
    };
    let info = TensorInfo {
        name: outlet.name().to_string(),
        element_type: format!("{ty:?}").to_lowercase(),
        shape: shape.iter().map(|&d| usize::try_from(d).ok()).collect(),
    };
    Ok((info, ty))
}

/// Tries the configured providers in order and ends on the CPU. A provider is
/// skipped, with a warning naming it and the reason, when the library was not
/// built with it or the machine cannot run it; the CPU's error is the model's.
pub(super) fn build_session(
    env: &Environment,
    bytes: &[u8],
    path: &Path,
    config: &RuntimeConfig,
) -> Result<(Session, Provider), RuntimeError> {
    let candidates = provider::candidates(&config.providers);
    for &p in &candidates {
        // A malformed model can reach `expect`s inside `ort`; contain them.
        let attempt = catch_unwind(AssertUnwindSafe(|| try_session(env, bytes, config, p)))
            .unwrap_or_else(|_| Err("onnx runtime panicked while creating the session".into()));
        match attempt {
            Ok(session) => {
                if let Some(&wanted) = candidates.first().filter(|&&w| w != p) {
                    warn!(model = %path.display(), requested = %wanted, using = %p, "execution provider fallback");
                }
                return Ok((session, p));
            }
            Err(reason) if p != Provider::Cpu => {
                warn!(model = %path.display(), provider = %p, %reason, "execution provider unavailable, trying the next");
            }
            Err(reason) => return Err(RuntimeError::Session { path: path.to_path_buf(), reason }),
        }
    }
    // `candidates` always ends with the CPU, whose failure returns above.
    Err(RuntimeError::Session { path: path.to_path_buf(), reason: "no execution provider to try".into() })
}

fn try_session(env: &Environment, bytes: &[u8], config: &RuntimeConfig, p: Provider) -> Result<Session, String> {
    let mut builder: SessionBuilder = Session::builder(env).map_err(one_line)?;
    if let Some(ep) = provider::dispatch(p)? {
        builder = builder.with_execution_providers([ep]).map_err(one_line)?;
    }
    if config.intra_op_threads > 0 {
        builder = builder.with_intra_threads(config.intra_op_threads).map_err(one_line)?;
    }
    builder.commit_from_memory(bytes).map_err(one_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_info_displays_dynamic_dims() {
        let t = TensorInfo { name: "image".into(), element_type: "float32".into(), shape: vec![None, Some(1), None] };
        assert_eq!(t.to_string(), "[?, 1, ?]");
    }
}
