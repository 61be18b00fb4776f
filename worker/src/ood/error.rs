//! Errors fitting or using an out-of-distribution reference.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OodError {
    #[error("volume {source_name:?}: foreground mask shape {mask:?} differs from the volume's {volume:?}")]
    ShapeMismatch { source_name: String, volume: [usize; 3], mask: [usize; 3] },
    #[error("volume {0:?} has no finite foreground voxel")]
    EmptyForeground(String),
    #[error("ood reference: {0}")]
    InvalidReference(String),
    #[error("ood reference fit: no training volume given")]
    NoTrainingVolumes,
}
