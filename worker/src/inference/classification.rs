//! Classification passes: the whole model-grid volume (no windows) through
//! every member × flip × MC pass, each output vector one "member" of
//! [`ClassificationUncertainty`].

use super::error::InferenceError;
use super::segmentation::extract;
use super::{Ensemble, ImageRef, Progress, gate_for, softmax_strided};
use crate::manifest::{Activation, Task};
use crate::uncertainty::ClassificationUncertainty;

impl Ensemble<'_> {
    /// Runs every pass on the whole `image` (harmonized, on the model grid)
    /// and summarizes the passes' probability vectors (`[1, classes]` each).
    pub fn classify(
        &self,
        image: ImageRef<'_>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<ClassificationUncertainty, InferenceError> {
        let plan = self.plan();
        if plan.task != Task::Classification {
            return Err(InferenceError::Plan { reason: format!("classify called on a {} model", plan.task) });
        }
        let order = self.pass_order();
        let mut runs = Vec::with_capacity(order.len());
        for pass in &order {
            let member = self.members()[pass.member];
            let input = extract(image.voxels(), image.dims(), &[[0; 3]], image.dims(), pass.flip);
            let output = member.run_gated(input.view(), gate_for(pass))?;
            let expected = vec![1, plan.classes];
            if output.shape() != expected.as_slice() {
                return Err(InferenceError::OutputShape {
                    path: member.path().to_path_buf(),
                    expected,
                    actual: output.shape().to_vec(),
                });
            }
            let mut probs: Vec<f32> = output.iter().copied().collect();
            if let Some(&value) = probs.iter().find(|v| !v.is_finite()) {
                return Err(InferenceError::NonFinite { path: member.path().to_path_buf(), pass: pass.index, value });
            }
            if plan.activation == Activation::Identity {
                softmax_strided(&mut probs, plan.classes, 1, 0);
            }
            runs.push(probs);
            progress(&Progress { pass: pass.index, passes: order.len(), windows_done: 1, windows: 1 });
        }
        Ok(ClassificationUncertainty::from_member_probs(&runs)?)
    }
}
