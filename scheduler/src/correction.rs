//! Corrected masks from reviewers: is this upload a label map of the study's
//! grid, and what exactly gets stored.
//!
//! Owns the checks and their order, cheapest first, so an upload costs
//! memory in proportion to the study's grid and never to what it claims:
//! the header alone (dimensions, affine, one volume, a small extension area)
//! is compared with the study's mask before any voxel is decoded; the voxels
//! are then read with the study's voxel count as the limit and nothing may
//! follow them (a gzip stream that goes on is refused after one byte, not
//! inflated); the labels must be the pipeline's. What is stored is always
//! re-encoded from the validated volume, never the upload as sent. No HTTP
//! types here: the route (`review.rs`) maps [`CorrectionError`] to a status.

use std::collections::BTreeSet;
use std::path::Path;

use imaging::Affine;
use imaging::nifti::{self, FourD, HeaderInfo, NiftiError, ReadOptions};

/// Largest header plus extensions a corrected mask may carry before its voxels.
pub(crate) const MAX_VOX_OFFSET: f64 = 64.0 * 1024.0;

/// Largest difference (mm) between the upload's affine and the study's.
const AFFINE_TOLERANCE_MM: f64 = 1e-3;

/// Why a corrected mask was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CorrectionError {
    /// The upload is not a readable NIfTI label volume (or carries more than one).
    #[error("not a readable NIfTI label volume: {0}")]
    Unreadable(String),
    /// Another grid than the study's mask.
    #[error("{0}")]
    OtherGrid(String),
    /// Values that are not among the pipeline's labels.
    #[error("labels {found} are not among the pipeline's ({known})")]
    UnknownLabels { found: String, known: String },
    /// The study's own mask (from the store) cannot be read: the server's fault.
    #[error("the study's mask cannot be read: {0}")]
    Reference(String),
    /// A temporary file could not be written or read: the server's fault.
    #[error("temporary file: {0}")]
    Io(String),
}

impl CorrectionError {
    /// Whether the fault lies with the upload (a 422) rather than the server.
    pub(crate) fn is_the_uploads(&self) -> bool {
        matches!(self, Self::Unreadable(_) | Self::OtherGrid(_) | Self::UnknownLabels { .. })
    }
}

/// The grid a correction must have: the study's mask header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grid {
    pub dims: [usize; 3],
    pub affine: Affine,
}

impl Grid {
    fn voxels(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }
}

/// The study mask's grid, from its header alone.
pub(crate) fn grid_of_mask(mask: &[u8]) -> Result<Grid, CorrectionError> {
    let dir = tempfile::tempdir().map_err(|e| CorrectionError::Io(e.to_string()))?;
    let path = dir.path().join("mask.nii.gz");
    std::fs::write(&path, mask).map_err(|e| CorrectionError::Io(e.to_string()))?;
    let info = nifti::read_header_info(&path).map_err(|e| CorrectionError::Reference(strip(&e, &path)))?;
    match info.dims.as_slice() {
        [x, y, z, rest @ ..] if rest.iter().all(|&d| d == 1) => Ok(Grid { dims: [*x, *y, *z], affine: info.affine }),
        other => Err(CorrectionError::Reference(format!("dims {other:?} are not one 3-d volume"))),
    }
}

/// Checks an upload against `grid` and `labels`; returns the `.nii.gz` bytes to store.
pub(crate) fn validate(upload: &[u8], grid: &Grid, labels: &BTreeSet<u32>) -> Result<Vec<u8>, CorrectionError> {
    let dir = tempfile::tempdir().map_err(|e| CorrectionError::Io(e.to_string()))?;
    let gz = upload.starts_with(&[0x1f, 0x8b]);
    let path = dir.path().join(if gz { "upload.nii.gz" } else { "upload.nii" });
    std::fs::write(&path, upload).map_err(|e| CorrectionError::Io(e.to_string()))?;
    let unreadable = |e: NiftiError| CorrectionError::Unreadable(strip(&e, &path));

    let header = nifti::read_header_info(&path).map_err(unreadable)?;
    check_header(&header, grid)?;
    let opts = ReadOptions { four_d: FourD::Refuse, max_voxels: grid.voxels(), exact: true };
    let corrected = nifti::read_labels(&path, &opts).map_err(unreadable)?;

    let found: BTreeSet<u32> = corrected.data().iter().map(|&v| u32::from(v)).collect();
    let unknown: Vec<String> = found.difference(labels).map(u32::to_string).collect();
    if !unknown.is_empty() {
        let known: Vec<String> = labels.iter().map(u32::to_string).collect();
        return Err(CorrectionError::UnknownLabels { found: unknown.join(", "), known: known.join(", ") });
    }
    let out = dir.path().join("stored.nii.gz");
    nifti::write_u16(&out, &corrected).map_err(|e| CorrectionError::Io(strip(&e, &out)))?;
    std::fs::read(&out).map_err(|e| CorrectionError::Io(e.to_string()))
}

/// The header's grid against the study's: nothing decoded yet.
fn check_header(h: &HeaderInfo, grid: &Grid) -> Result<(), CorrectionError> {
    let spatial: Vec<usize> = (0..3).map(|i| h.dims.get(i).copied().unwrap_or(1)).collect();
    if spatial != grid.dims || h.dims.iter().skip(3).any(|&d| d != 1) {
        return Err(CorrectionError::OtherGrid(format!(
            "dimensions {:?} differ from the study's {:?}",
            h.dims, grid.dims
        )));
    }
    let (a, b) = (h.affine.to_rows(), grid.affine.to_rows());
    let worst = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0f64, f64::max);
    if worst.is_nan() || worst > AFFINE_TOLERANCE_MM {
        return Err(CorrectionError::OtherGrid(format!(
            "its affine differs from the study's by {worst:.4} mm: not the study's grid"
        )));
    }
    if h.vox_offset.is_nan() || h.vox_offset > MAX_VOX_OFFSET {
        return Err(CorrectionError::Unreadable(format!(
            "voxels start at byte {}; a mask's header and extensions fit in {MAX_VOX_OFFSET}",
            h.vox_offset
        )));
    }
    Ok(())
}

/// A reader's message without the temporary file's path.
fn strip(e: &NiftiError, path: &Path) -> String {
    let message = e.to_string();
    message.replace(&format!("{}: ", path.display()), "").replace(&path.display().to_string(), "upload")
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use imaging::{SourceMeta, Volume};

    use super::*;

    fn labels() -> BTreeSet<u32> {
        [0, 1, 2].into()
    }

    fn mask(dims: [usize; 3], value: u16) -> Volume<u16> {
        let data = vec![value; dims.iter().product()];
        Volume::new(dims, data, Affine::identity(), SourceMeta::default()).expect("volume")
    }

    fn encode(vol: &Volume<u16>) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("m.nii.gz");
        nifti::write_u16(&p, vol).expect("write");
        std::fs::read(&p).expect("read")
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out).expect("gunzip");
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).expect("gzip");
        enc.finish().expect("gzip")
    }

    /// A NIfTI-1 header (no voxels) of a small mask whose dims are rewritten to 512³.
    fn header_claiming_512_cubed() -> Vec<u8> {
        let mut header = gunzip(&encode(&mask([8, 9, 10], 0)));
        for (i, d) in [512i16, 512, 512].iter().enumerate() {
            header[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        header.truncate(352);
        header
    }

    fn grid(dims: [usize; 3]) -> Grid {
        grid_of_mask(&encode(&mask(dims, 0))).expect("grid")
    }

    #[test]
    fn a_mask_of_the_grid_is_stored_re_encoded() {
        let g = grid([8, 9, 10]);
        assert_eq!(g.dims, [8, 9, 10]);
        let upload = encode(&mask([8, 9, 10], 2));
        // Uncompressed uploads are stored compressed; both decode to the same voxels.
        for body in [upload.clone(), gunzip(&upload)] {
            let stored = validate(&body, &g, &labels()).expect("valid");
            assert!(stored.starts_with(&[0x1f, 0x8b]));
            let dir = tempfile::tempdir().expect("tmp");
            let p = dir.path().join("s.nii.gz");
            std::fs::write(&p, &stored).expect("write");
            let back = nifti::read_labels(&p, &ReadOptions::default()).expect("read back");
            assert_eq!(back.dims(), [8, 9, 10]);
            assert!(back.data().iter().all(|&v| v == 2));
        }
    }

    #[test]
    fn a_gzip_bomb_behind_a_valid_mask_is_refused_and_never_stored() {
        let g = grid([8, 9, 10]);
        let mut raw = gunzip(&encode(&mask([8, 9, 10], 1)));
        raw.resize(raw.len() + (64 << 20), 0);
        let bomb = gzip(&raw);
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let err = validate(&bomb, &g, &labels()).expect_err("trailing data");
        assert!(err.is_the_uploads() && err.to_string().contains("after the volume"), "{err}");
    }

    #[test]
    fn another_grid_is_refused_from_the_header_before_any_voxel() {
        let g = grid([8, 9, 10]);
        // A header claiming 512³ voxels with no voxel data at all: the header
        // check refuses it; decoding first would have allocated 256 MiB.
        let err = validate(&gzip(&header_claiming_512_cubed()), &g, &labels()).expect_err("other grid");
        assert!(matches!(err, CorrectionError::OtherGrid(_)), "{err}");
        assert!(err.to_string().contains("[512, 512, 512]"), "{err}");

        let mut shifted = mask([8, 9, 10], 0);
        let mut rows = shifted.affine().to_rows();
        rows[0][3] += 0.5;
        shifted = Volume::new([8, 9, 10], shifted.data().to_vec(), Affine::from_rows(rows), SourceMeta::default())
            .expect("volume");
        let err = validate(&encode(&shifted), &g, &labels()).expect_err("shifted");
        assert!(err.to_string().contains("affine differs"), "{err}");
    }

    /// Eight uploads at once, each about 1 MB of gzip claiming 512³ voxels
    /// and inflating to 1 GiB: all refused from their headers. (Run alone,
    /// `cargo test -p neurobatch-scheduler --lib eight_lying`, under
    /// `/usr/bin/time -v` for the memory figure in docs/security.md.)
    #[test]
    fn eight_lying_headers_at_once_are_refused_unread() {
        let g = grid([182, 218, 182]);
        let raw = header_claiming_512_cubed();
        // Streamed into the encoder, so the test itself never holds the gigabyte.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&raw).expect("gzip");
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            enc.write_all(&zeros).expect("gzip");
        }
        let bomb = std::sync::Arc::new(enc.finish().expect("gzip"));
        assert!(bomb.len() < 1100 << 10, "{} bytes", bomb.len());
        let refused: Vec<CorrectionError> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..8)
                .map(|_| {
                    let (bomb, g) = (bomb.clone(), g.clone());
                    scope.spawn(move || validate(&bomb, &g, &labels()).expect_err("lying header"))
                })
                .collect();
            runs.into_iter().map(|r| r.join().expect("no panic")).collect()
        });
        for err in refused {
            assert!(matches!(err, CorrectionError::OtherGrid(_)), "{err}");
        }
    }

    #[test]
    fn unknown_labels_and_non_nifti_are_the_uploads_fault() {
        let g = grid([4, 4, 4]);
        let err = validate(&encode(&mask([4, 4, 4], 7)), &g, &labels()).expect_err("label 7");
        assert!(matches!(err, CorrectionError::UnknownLabels { .. }) && err.is_the_uploads(), "{err}");
        let err = validate(b"not a nifti file at all", &g, &labels()).expect_err("text");
        assert!(matches!(err, CorrectionError::Unreadable(_)), "{err}");
        assert!(!err.to_string().contains("upload.nii"), "no temporary path: {err}");
        assert!(!CorrectionError::Reference("x".into()).is_the_uploads());
    }
}
