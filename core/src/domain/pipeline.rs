//! What every job of a deployment runs: the pipeline's name and the model and
//! harmonizer versions in its job key, with the segmentation's labels. The
//! worker builds it from a model manifest (`worker::manifest::Manifest::pipeline_spec`);
//! the scheduler keys and checks jobs with it.

/// What every job of this scheduler runs: the pipeline and the versions in its job key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSpec {
    pub name: String,
    /// The model's name (the job message's `model.name`).
    pub model_name: String,
    pub model_version: String,
    pub harmonizer_version: String,
    /// The segmentation's labels (value, name, display colour): what a
    /// corrected mask may contain and what the viewer colours.
    pub labels: Vec<PipelineLabel>,
}

/// One label of the pipeline's segmentation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PipelineLabel {
    pub value: u32,
    pub name: String,
    pub color: [u8; 3],
}
