//! A small ONNX model on a feature vector (a tabular model, such as the
//! learned quality estimator's gradient-boosted trees): one float32 input
//! `[N, F]`, one float32 output `[N, K]`, always on the CPU.
//!
//! Separate from [`super::Model`], whose contract is an image tensor
//! `[N, C, D, H, W]`: the two are checked against different signatures. A
//! tabular model runs once per study on a few dozen numbers, so it gets the
//! CPU provider whatever the worker's configuration (tree ensembles have no
//! GPU kernels in ONNX Runtime, and the copy would cost more than the trees).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ndarray::Array2;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};

use super::model::{build_session, tensor_info};
use super::provider::Provider;
use super::{RuntimeConfig, RuntimeError, library, one_line};

/// A tabular model with its session; runs are serialized like [`super::Model`]'s.
#[derive(Debug)]
pub struct TabularModel {
    path: PathBuf,
    session: Mutex<Session>,
    input: String,
    output: String,
    features: usize,
    outputs: usize,
}

impl TabularModel {
    /// Creates the session from the bytes of an ONNX file (`path` names it in
    /// messages) and checks the signature: one float32 input of rank 2 with
    /// `features` columns (or a dynamic second dimension), and a first output
    /// of rank 2 with `outputs` columns.
    pub fn from_bytes(
        bytes: &[u8],
        path: &Path,
        config: &RuntimeConfig,
        features: usize,
        outputs: usize,
    ) -> Result<Self, RuntimeError> {
        let env = library::environment(config)?;
        let cpu_only = RuntimeConfig { providers: vec![Provider::Cpu], intra_op_threads: 1, ..config.clone() };
        let (session, _) = build_session(&env, bytes, path, &cpu_only)?;
        let signature_err = |reason: String| RuntimeError::Signature { path: path.to_path_buf(), reason };
        let inputs = session.inputs().iter().map(tensor_info).collect::<Result<Vec<_>, _>>().map_err(signature_err)?;
        let input = match inputs.as_slice() {
            [(t, TensorElementType::Float32)] if t.shape.len() == 2 && t.shape[1].is_none_or(|f| f == features) => {
                t.name.clone()
            }
            _ => {
                let seen: Vec<String> =
                    inputs.iter().map(|(t, _)| format!("`{}` {} {}", t.name, t.element_type, t)).collect();
                return Err(signature_err(format!(
                    "its inputs are {}; one float32 [N, {features}] input is expected",
                    seen.join(", ")
                )));
            }
        };
        let first = session.outputs().first().map(tensor_info).transpose().map_err(signature_err)?;
        let output = match first {
            Some((t, TensorElementType::Float32)) if t.shape.len() == 2 && t.shape[1].is_none_or(|k| k == outputs) => {
                t.name
            }
            Some((t, _)) => {
                return Err(signature_err(format!(
                    "its first output `{}` is {} {}; float32 [N, {outputs}] is expected",
                    t.name, t.element_type, t
                )));
            }
            None => return Err(signature_err("it has no outputs".into())),
        };
        Ok(TabularModel { path: path.to_path_buf(), session: Mutex::new(session), input, output, features, outputs })
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs the model on one row of `features` values and returns its `outputs` values.
    pub fn run(&self, row: &[f32]) -> Result<Vec<f32>, RuntimeError> {
        if row.len() != self.features {
            return Err(RuntimeError::InputShape {
                path: self.path.clone(),
                input: self.input.clone(),
                expected: format!("[1, {}]", self.features),
                actual: vec![1, row.len()],
            });
        }
        let run_err = |reason: String| RuntimeError::Run { path: self.path.clone(), reason };
        let array = Array2::from_shape_vec((1, row.len()), row.to_vec()).map_err(|e| run_err(one_line(e)))?;
        let tensor = TensorRef::from_array_view(&array).map_err(|e| run_err(one_line(e)))?;
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        // A malformed graph can reach `expect`s inside `ort`; contain them like session creation does.
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<f32>, String> {
            let outputs = session.run(ort::inputs![self.input.as_str() => tensor]).map_err(one_line)?;
            let output =
                outputs.get(self.output.as_str()).ok_or_else(|| format!("output `{}` is missing", self.output))?;
            let values = output.try_extract_array::<f32>().map_err(one_line)?;
            Ok(values.iter().copied().collect())
        }))
        .unwrap_or_else(|_| Err("onnx runtime panicked while running the model".into()))
        .map_err(run_err)?;
        if result.len() != self.outputs {
            return Err(run_err(format!("it returned {} values, {} expected", result.len(), self.outputs)));
        }
        Ok(result)
    }
}
