//! Streaming reads of `.nii` / `.nii.gz`: open (sniffing gzip), parse the
//! header from the decoding stream, validate everything and refuse absurd
//! sizes *before* allocating, skip extensions up to `vox_offset`, then read
//! exactly the bytes of the first 3-D volume through one fixed scratch
//! buffer into the pre-sized output. Writing is in `writer`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;

use flate2::bufread::MultiGzDecoder;
use rayon::prelude::*;

use super::datatype::Datatype;
use super::decode::{Scaling, f32_converter, f64_converter};
use super::error::{NiftiError, read_error};
use super::header::{Header, read_header};
use super::xform::best_affine;
use super::{FourD, HeaderInfo, ReadOptions};
use crate::{Affine, SourceMeta, Volume};

/// Voxel bytes are read in chunks of this size: large enough that per-call
/// overhead vanishes, small enough to stay in L2 between the two stages.
const CHUNK_BYTES: usize = 1 << 18;

/// Chunks in flight between the reading thread and the converting one.
const PIPELINE_DEPTH: usize = 4;

/// Volumes of at most this many chunks are read on the calling thread alone.
const PIPELINE_MIN_CHUNKS: usize = 4;

/// An open file positioned right after its header.
struct Opened {
    reader: Box<dyn Read + Send>,
    gz: bool,
    file_len: u64,
    header: Header,
}

fn open(path: &Path) -> Result<Opened, NiftiError> {
    let file = File::open(path).map_err(|source| NiftiError::Open { path: path.to_path_buf(), source })?;
    let io_err = |source| NiftiError::Io { path: path.to_path_buf(), source };
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut buffered = BufReader::with_capacity(1 << 16, file);
    // Sniff rather than trust the extension: gzip members start with 1f 8b.
    let gz = buffered.fill_buf().map_err(io_err)?.starts_with(&[0x1f, 0x8b]);
    // MultiGzDecoder: concatenated members (bgzip, `cat a.gz b.gz`) are one
    // stream for Python's gzip module too, so nibabel reads them whole.
    let mut reader: Box<dyn Read + Send> =
        if gz { Box::new(MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    let header = read_header(&mut reader, path, gz)?;
    Ok(Opened { reader, gz, file_len, header })
}

/// Everything validated from the header: what to allocate and how to decode.
struct Plan {
    dims: Vec<usize>,
    spatial: [usize; 3],
    nvox: usize,
    datatype: Datatype,
    elem: usize,
    scaling: Scaling,
    offset: u64,
    affine: Affine,
    warnings: Vec<String>,
    /// [`ReadOptions::exact`].
    exact: bool,
}

fn plan(h: &Header, path: &Path, opts: &ReadOptions) -> Result<Plan, NiftiError> {
    let dims = h.dims(path)?;
    let spatial = [0, 1, 2].map(|i| dims.get(i).copied().unwrap_or(1));
    let mut warnings = Vec::new();
    // Trailing singleton dims (x, y, z, 1, 1) are a 3-D volume.
    let extra = dims.iter().skip(3).try_fold(1u128, |acc, &d| acc.checked_mul(d as u128)).unwrap_or(u128::MAX);
    if extra > 1 && opts.exact {
        return Err(NiftiError::TrailingData {
            path: path.to_path_buf(),
            reason: format!("dims {dims:?} hold {extra} volumes where one is expected"),
        });
    }
    if extra > 1 {
        match opts.four_d {
            FourD::Refuse => {
                return Err(NiftiError::NotThreeD {
                    path: path.to_path_buf(),
                    ndim: dims.len(),
                    dims: dims.iter().map(|&d| d as i64).collect(),
                });
            }
            FourD::FirstVolume => {
                warnings.push(format!("{}-d input with dims {dims:?}: read volume 0 of {extra}", dims.len()))
            }
        }
    }
    // NIfTI-2 dims are i64: three of them can overflow even u128.
    let voxels = spatial.iter().try_fold(1u128, |acc, &d| acc.checked_mul(d as u128)).unwrap_or(u128::MAX);
    if voxels > u128::from(opts.max_voxels) {
        return Err(NiftiError::TooLarge { path: path.to_path_buf(), voxels, max: opts.max_voxels });
    }
    let (datatype, elem) = h.supported_datatype(path)?;
    let nvox = usize::try_from(voxels).ok().filter(|n| n.checked_mul(elem).is_some()).ok_or(NiftiError::TooLarge {
        path: path.to_path_buf(),
        voxels,
        max: opts.max_voxels,
    })?;
    let scaling = h.scaling(path)?;
    let offset = h.data_offset(path)?;
    let (m, _) = best_affine(h).map_err(|reason| NiftiError::BadHeader { path: path.to_path_buf(), reason })?;
    let affine = Affine::from_matrix(m);
    Ok(Plan { dims, spatial, nvox, datatype, elem, scaling, offset, affine, warnings, exact: opts.exact })
}

/// Skips extensions up to `vox_offset`; for uncompressed files also checks
/// that the voxel bytes lie inside the file before anything is allocated.
fn seek_to_data(o: &mut Opened, p: &Plan, path: &Path) -> Result<(), NiftiError> {
    let here = o.header.format.header_size();
    let beyond =
        |what: String| NiftiError::VoxOffset { path: path.to_path_buf(), offset: p.offset as f64, reason: what };
    if !o.gz {
        let need = p.offset.checked_add((p.nvox * p.elem) as u64);
        if p.offset > o.file_len {
            return Err(beyond(format!("beyond the end of the file ({} bytes)", o.file_len)));
        }
        if let Some(n) = need.filter(|&n| p.exact && n < o.file_len) {
            return Err(NiftiError::TrailingData {
                path: path.to_path_buf(),
                reason: format!("{} bytes after the voxels end at byte {n}", o.file_len - n),
            });
        }
        if need.is_none_or(|n| n > o.file_len) {
            return Err(NiftiError::Truncated {
                path: path.to_path_buf(),
                reason: format!(
                    "file has {} bytes but {} voxels of {} from offset {} need {}",
                    o.file_len,
                    p.nvox,
                    p.datatype.name(),
                    p.offset,
                    need.map_or_else(|| "more".to_string(), |n| n.to_string())
                ),
            });
        }
    }
    let skip = p.offset.saturating_sub(here);
    let skipped = io::copy(&mut (&mut o.reader).take(skip), &mut io::sink())
        .map_err(|e| read_error(path, o.gz, "header extensions", e))?;
    if skipped < skip {
        return Err(beyond(format!("beyond the end of the decompressed data ({} bytes)", here + skipped)));
    }
    Ok(())
}

/// Reads `out.len()` voxels chunk by chunk, handing each chunk's bytes to `convert`
/// with the index of its first voxel.
///
/// Large volumes are read in a two-stage pipeline: a scoped thread inflates
/// (or reads) chunks into a few recycled buffers while this thread converts
/// the previous ones and takes the page faults of the fresh output buffer,
/// so a `.nii.gz` load costs about its inflate time.
fn read_voxels<O>(
    o: &mut Opened,
    p: &Plan,
    path: &Path,
    out: &mut [O],
    mut convert: impl FnMut(&[u8], &mut [O], usize) -> Result<(), NiftiError>,
) -> Result<(), NiftiError> {
    let chunk_vox = (CHUNK_BYTES / p.elem).max(1);
    let gz = o.gz;
    // A 3-D gzip file is read to its end so flate2 checks the CRC32 and length
    // trailer: silent corruption of the voxels just read becomes an error.
    // (Skipped for 4-D input, where it would inflate every other volume.)
    let drain = gz && p.dims.iter().skip(3).all(|&d| d == 1);
    let reader = &mut o.reader;
    let read_chunk = |reader: &mut Box<dyn Read + Send>, buf: &mut [u8]| {
        reader.read_exact(buf).map_err(|e| read_error(path, gz, "voxel data", e))
    };
    let exact = p.exact;
    let finish = |reader: &mut Box<dyn Read + Send>| -> Result<(), NiftiError> {
        // One byte past the volume is enough to refuse: a stream that goes on
        // (a gzip bomb behind a valid volume) is never inflated further.
        let mut one = [0u8; 1];
        if exact && reader.read(&mut one).map_err(|e| read_error(path, gz, "the end of the data", e))? > 0 {
            return Err(NiftiError::TrailingData {
                path: path.to_path_buf(),
                reason: "the stream goes on after the volume's last voxel".to_string(),
            });
        }
        if drain {
            io::copy(reader, &mut io::sink()).map_err(|e| read_error(path, gz, "gzip trailer", e))?;
        }
        Ok(())
    };

    if out.len() <= PIPELINE_MIN_CHUNKS * chunk_vox {
        let mut scratch = vec![0u8; chunk_vox.min(out.len()) * p.elem];
        for (n, out_chunk) in out.chunks_mut(chunk_vox).enumerate() {
            let bytes = &mut scratch[..out_chunk.len() * p.elem];
            read_chunk(reader, bytes)?;
            convert(bytes, out_chunk, n * chunk_vox)?;
        }
        return finish(reader);
    }

    let total = out.len();
    let elem = p.elem;
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..PIPELINE_DEPTH + 1 {
        // Cannot fail: the receiver is alive.
        let _ = empty_tx.send(Vec::with_capacity(chunk_vox * elem));
    }
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || -> Result<(), NiftiError> {
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk_vox);
                // A closed channel means the consumer stopped with its own error.
                let Ok(mut buf) = empty_rx.recv() else { return Ok(()) };
                buf.resize(n * elem, 0);
                read_chunk(reader, &mut buf)?;
                if full_tx.send(buf).is_err() {
                    return Ok(());
                }
                left -= n;
            }
            finish(reader)
        });
        let mut converted = Ok(());
        for (n, out_chunk) in out.chunks_mut(chunk_vox).enumerate() {
            // A closed channel means the producer stopped with an error, reported by join below.
            let Ok(buf) = full_rx.recv() else { break };
            if let Err(e) = convert(&buf, out_chunk, n * chunk_vox) {
                converted = Err(e);
                break;
            }
            let _ = empty_tx.send(buf);
        }
        drop(full_rx);
        drop(empty_tx);
        let produced = producer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        produced.and(converted)
    })
}

fn meta(h: &Header, p: &Plan, path: &Path) -> SourceMeta {
    SourceMeta {
        source: path.display().to_string(),
        format: h.format.as_str().to_string(),
        datatype: p.datatype.name().to_string(),
        description: h.description(),
        warnings: p.warnings.clone(),
        ..SourceMeta::default()
    }
}

fn volume<T>(data: Vec<T>, h: &Header, p: &Plan, path: &Path) -> Result<Volume<T>, NiftiError> {
    Volume::new(p.spatial, data, p.affine, meta(h, p, path))
        .map_err(|e| NiftiError::BadDims { path: path.to_path_buf(), reason: e.to_string() })
}

/// See [`super::read`].
pub(crate) fn read(path: &Path, opts: &ReadOptions) -> Result<Volume<f32>, NiftiError> {
    let mut o = open(path)?;
    let p = plan(&o.header, path, opts)?;
    seek_to_data(&mut o, &p, path)?;
    let convert = f32_converter(p.datatype, o.header.big_endian).ok_or_else(|| NiftiError::UnsupportedDatatype {
        path: path.to_path_buf(),
        code: p.datatype.code(),
        name: p.datatype.name(),
    })?;
    let mut data = vec![0f32; p.nvox];
    read_voxels(&mut o, &p, path, &mut data, |bytes, out, _| {
        convert(bytes, out, p.scaling);
        Ok(())
    })?;
    let mut vol = volume(data, &o.header, &p, path)?;
    // Integers can only become non-finite through a huge slope; floats can hold NaN/Inf.
    if p.datatype.is_float() || p.scaling.is_some() {
        let bad = vol.data().par_iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            vol.meta.warnings.push(format!("{bad} non-finite voxels (NaN/Inf) kept as read"));
        }
    }
    Ok(vol)
}

/// See [`super::read_labels`].
pub(crate) fn read_labels(path: &Path, opts: &ReadOptions) -> Result<Volume<u16>, NiftiError> {
    let mut o = open(path)?;
    let p = plan(&o.header, path, opts)?;
    seek_to_data(&mut o, &p, path)?;
    let convert = f64_converter(p.datatype, o.header.big_endian).ok_or_else(|| NiftiError::UnsupportedDatatype {
        path: path.to_path_buf(),
        code: p.datatype.code(),
        name: p.datatype.name(),
    })?;
    let mut data = vec![0u16; p.nvox];
    let mut values = vec![0f64; (CHUNK_BYTES / p.elem).max(1).min(p.nvox)];
    read_voxels(&mut o, &p, path, &mut data, |bytes, out, first| {
        let values = &mut values[..out.len()];
        convert(bytes, values, p.scaling);
        for (i, (o, &v)) in out.iter_mut().zip(values.iter()).enumerate() {
            if !(0.0..=f64::from(u16::MAX)).contains(&v) || v.fract() != 0.0 {
                return Err(NiftiError::NotLabels {
                    path: path.to_path_buf(),
                    reason: format!("voxel {} is {v}, not an integer in 0..=65535", first + i),
                });
            }
            *o = v as u16;
        }
        Ok(())
    })?;
    volume(data, &o.header, &p, path)
}

/// See [`super::read_header_info`].
pub(crate) fn read_header_info(path: &Path) -> Result<HeaderInfo, NiftiError> {
    let o = open(path)?;
    let h = &o.header;
    let dims = h.dims(path)?;
    let (m, xform) = best_affine(h).map_err(|reason| NiftiError::BadHeader { path: path.to_path_buf(), reason })?;
    let ndim = dims.len();
    Ok(HeaderInfo {
        format: h.format,
        big_endian: h.big_endian,
        dims,
        datatype: h.datatype,
        pixdim: h.pixdim.iter().skip(1).take(ndim).copied().collect(),
        affine: Affine::from_matrix(m),
        xform,
        qform_code: h.qform_code,
        sform_code: h.sform_code,
        scl_slope: h.scl_slope,
        scl_inter: h.scl_inter,
        vox_offset: h.vox_offset,
        description: h.description(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nifti::Format;

    fn nifti2_header(dim: [i64; 8]) -> Header {
        Header {
            format: Format::Nifti2,
            big_endian: false,
            dim,
            datatype: Datatype::Int16,
            pixdim: [1.0; 8],
            vox_offset: 544.0,
            scl_slope: 1.0,
            scl_inter: 0.0,
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
            descrip: Vec::new(),
        }
    }

    // Found while fuzzing (fuzz/fuzz_targets/nifti_header.rs): three NIfTI-2
    // dims near i64::MAX overflowed the u128 voxel count (a panic in debug).
    #[test]
    fn huge_nifti2_dims_are_too_large_not_an_overflow() {
        let path = Path::new("huge.nii");
        let h = nifti2_header([3, i64::MAX, i64::MAX, i64::MAX, 1, 1, 1, 1]);
        let err = plan(&h, path, &ReadOptions::default()).err();
        assert!(matches!(err, Some(NiftiError::TooLarge { voxels: u128::MAX, .. })), "{err:?}");
        let h = nifti2_header([3, 4, 5, 6, 1, 1, 1, 1]);
        assert_eq!(plan(&h, path, &ReadOptions::default()).map(|p| p.nvox).ok(), Some(120));
    }
}
