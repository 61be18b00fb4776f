//! The inference engine of neurobatch (first pieces; see issue 3).
//!
//! - [`runtime`]: ONNX Runtime loaded at run time (`ort` with `load-dynamic`)
//!   from the library the PyPI `onnxruntime` wheel ships, and sessions on it;
//! - [`manifest`]: a model folder (`manifest.toml` + ONNX members) checked
//!   at load time;
//! - [`inference`]: the ensemble engine: sliding windows (MONAI's placement
//!   and Gaussian weighting) × mirror flips × members × MC-dropout passes,
//!   each pass handed to a consumer as it finishes;
//! - [`uncertainty`]: streaming accumulation of member/pass probabilities
//!   into mean probabilities, labels, entropy and mutual information;
//! - [`ood`]: out-of-distribution indicators (image statistics against the
//!   training distribution);
//! - [`quality`]: the learned quality estimate (each structure's Dice
//!   predicted from the study's figures by a small model the folder ships);
//! - [`routing`]: the accept/review decision with its reasons, from the
//!   manifest's thresholds and the config's overrides;
//! - [`pipeline`]: one study end to end (model grid, harmonization, the
//!   engine, uncertainty, OOD, routing, back to the scan's grid) and its outputs.
//!
//! Everything here is synchronous; the daemon calls it from blocking threads.

pub mod daemon;
pub mod dicom_results;
pub mod inference;
pub mod manifest;
pub mod ood;
pub mod pipeline;
pub mod quality;
pub mod routing;
pub mod runtime;
pub mod uncertainty;
