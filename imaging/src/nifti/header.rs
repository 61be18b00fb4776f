//! Reading the NIfTI header from the start of a (decoded) byte stream into
//! one format-neutral [`Header`], and validating the fields every later step
//! relies on (dimensions, datatype, scaling, data offset).
//!
//! NIfTI-1 (348 bytes) is parsed by the `nifti` crate; NIfTI-2 (540 bytes,
//! magic `n+2\0`, 64-bit fields) is not supported by nifti 0.18 and is
//! parsed here. Both byte orders are detected from `sizeof_hdr`. Everything
//! after the header (skipping extensions, voxel decoding) is shared. This
//! module does not choose the affine (see `xform`) nor read voxels.

use std::io::Read;
use std::path::Path;

use super::datatype::Datatype;
use super::error::{NiftiError, read_error};

/// Which NIfTI version a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Format {
    Nifti1,
    Nifti2,
}

impl Format {
    /// `"nifti1"` or `"nifti2"`, as stored in `SourceMeta::format`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Nifti1 => "nifti1",
            Format::Nifti2 => "nifti2",
        }
    }

    /// `sizeof_hdr`: bytes of the fixed header.
    pub fn header_size(self) -> u64 {
        match self {
            Format::Nifti1 => 348,
            Format::Nifti2 => 540,
        }
    }

    /// The smallest `vox_offset` of a single file: header plus the 4-byte extension flag.
    fn min_vox_offset(self) -> u64 {
        self.header_size() + 4
    }
}

/// The header fields the reader uses, widened to the NIfTI-2 types.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    pub format: Format,
    pub big_endian: bool,
    pub dim: [i64; 8],
    pub datatype: Datatype,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub descrip: Vec<u8>,
}

const NIFTI1_SIZE: usize = 348;
const NIFTI2_SIZE: usize = 540;

/// Reads and parses the header at the current position of `input`
/// (the start of the file, after gzip decoding).
pub(crate) fn read_header<R: Read>(input: &mut R, path: &Path, gz: bool) -> Result<Header, NiftiError> {
    let mut first = [0u8; 4];
    input.read_exact(&mut first).map_err(|e| read_error(path, gz, "header", e))?;
    let (le, be) = (i32::from_le_bytes(first), i32::from_be_bytes(first));
    match (le, be) {
        (348, _) | (_, 348) => {
            let mut buf = [0u8; NIFTI1_SIZE];
            buf[..4].copy_from_slice(&first);
            input.read_exact(&mut buf[4..]).map_err(|e| read_error(path, gz, "nifti1 header", e))?;
            parse_nifti1(&buf, be == 348, path)
        }
        (540, _) | (_, 540) => {
            let mut buf = [0u8; NIFTI2_SIZE];
            buf[..4].copy_from_slice(&first);
            input.read_exact(&mut buf[4..]).map_err(|e| read_error(path, gz, "nifti2 header", e))?;
            parse_nifti2(&buf, be == 540, path)
        }
        _ => Err(NiftiError::NotNifti {
            path: path.to_path_buf(),
            reason: format!("sizeof_hdr is {le}, expected 348 (nifti1) or 540 (nifti2)"),
        }),
    }
}

fn check_magic(magic: &[u8], single: &[u8; 4], pair: &[u8; 4], path: &Path) -> Result<(), NiftiError> {
    if magic == single {
        return Ok(());
    }
    let reason = if magic == pair {
        format!("magic {} marks a .hdr/.img pair, only single-file .nii is read", pair.escape_ascii())
    } else {
        format!("magic is \"{}\", expected \"{}\"", magic.escape_ascii(), single.escape_ascii())
    };
    Err(NiftiError::NotNifti { path: path.to_path_buf(), reason })
}

fn parse_nifti1(buf: &[u8; NIFTI1_SIZE], big_endian: bool, path: &Path) -> Result<Header, NiftiError> {
    check_magic(&buf[344..348], b"n+1\0", b"ni1\0", path)?;
    let dim0_bytes = [buf[40], buf[41]];
    let dim0 = if big_endian { i16::from_be_bytes(dim0_bytes) } else { i16::from_le_bytes(dim0_bytes) };
    let h = ::nifti::NiftiHeader::from_reader(&buf[..])
        .map_err(|e| NiftiError::NotNifti { path: path.to_path_buf(), reason: e.to_string() })?;
    // The crate guesses byte order from dim[0] (> 7 means swapped); sizeof_hdr
    // is the reliable witness, so a disagreement means dim[0] itself is invalid.
    let crate_big = h.endianness == ::nifti::Endianness::Big;
    if crate_big != big_endian || !(1..=7).contains(&dim0) {
        return Err(NiftiError::BadDims {
            path: path.to_path_buf(),
            reason: format!("dim[0] is {dim0}, expected 1..=7"),
        });
    }
    // dim is int16 on disk; the crate stores it as u16, so negative values come back as large ones.
    let mut dim = [0i64; 8];
    for (d, &raw) in dim.iter_mut().zip(&h.dim) {
        *d = i64::from(raw as i16);
    }
    Ok(Header {
        format: Format::Nifti1,
        big_endian,
        dim,
        datatype: Datatype::from_code(h.datatype),
        pixdim: h.pixdim.map(f64::from),
        vox_offset: f64::from(h.vox_offset),
        scl_slope: f64::from(h.scl_slope),
        scl_inter: f64::from(h.scl_inter),
        qform_code: i32::from(h.qform_code),
        sform_code: i32::from(h.sform_code),
        quatern: [h.quatern_b, h.quatern_c, h.quatern_d].map(f64::from),
        qoffset: [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from),
        srow: [h.srow_x.map(f64::from), h.srow_y.map(f64::from), h.srow_z.map(f64::from)],
        descrip: h.descrip,
    })
}

/// Fixed-offset field access into the NIfTI-2 header (offsets from nifti2.h,
/// checked against nibabel's `nifti2.header_dtype`).
struct Fields<'a> {
    buf: &'a [u8; NIFTI2_SIZE],
    big_endian: bool,
}

impl Fields<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[off..off + N]);
        a
    }
    fn i16(&self, off: usize) -> i16 {
        let b = self.bytes::<2>(off);
        if self.big_endian { i16::from_be_bytes(b) } else { i16::from_le_bytes(b) }
    }
    fn i32(&self, off: usize) -> i32 {
        let b = self.bytes::<4>(off);
        if self.big_endian { i32::from_be_bytes(b) } else { i32::from_le_bytes(b) }
    }
    fn i64(&self, off: usize) -> i64 {
        let b = self.bytes::<8>(off);
        if self.big_endian { i64::from_be_bytes(b) } else { i64::from_le_bytes(b) }
    }
    fn f64(&self, off: usize) -> f64 {
        let b = self.bytes::<8>(off);
        if self.big_endian { f64::from_be_bytes(b) } else { f64::from_le_bytes(b) }
    }
    fn f64s<const N: usize>(&self, off: usize) -> [f64; N] {
        std::array::from_fn(|i| self.f64(off + 8 * i))
    }
}

fn parse_nifti2(buf: &[u8; NIFTI2_SIZE], big_endian: bool, path: &Path) -> Result<Header, NiftiError> {
    check_magic(&buf[4..8], b"n+2\0", b"ni2\0", path)?;
    let f = Fields { buf, big_endian };
    let dim: [i64; 8] = std::array::from_fn(|i| f.i64(16 + 8 * i));
    if !(1..=7).contains(&dim[0]) {
        return Err(NiftiError::BadDims {
            path: path.to_path_buf(),
            reason: format!("dim[0] is {}, expected 1..=7", dim[0]),
        });
    }
    Ok(Header {
        format: Format::Nifti2,
        big_endian,
        dim,
        datatype: Datatype::from_code(f.i16(12)),
        pixdim: f.f64s::<8>(104),
        // vox_offset is int64 in NIfTI-2; widened to the float NIfTI-1 uses.
        vox_offset: f.i64(168) as f64,
        scl_slope: f.f64(176),
        scl_inter: f.f64(184),
        qform_code: f.i32(344),
        sform_code: f.i32(348),
        quatern: f.f64s::<3>(352),
        qoffset: f.f64s::<3>(376),
        srow: [f.f64s::<4>(400), f.f64s::<4>(432), f.f64s::<4>(464)],
        descrip: buf[240..320].to_vec(),
    })
}

impl Header {
    /// `dim[1..=dim[0]]`, each checked to be at least 1 (dim[0] was checked while parsing).
    pub fn dims(&self, path: &Path) -> Result<Vec<usize>, NiftiError> {
        let ndim = usize::try_from(self.dim[0]).unwrap_or(0).min(7);
        self.dim
            .iter()
            .enumerate()
            .skip(1)
            .take(ndim)
            .map(|(i, &d)| {
                usize::try_from(d).ok().filter(|&d| d >= 1).ok_or_else(|| NiftiError::BadDims {
                    path: path.to_path_buf(),
                    reason: format!("dim[{i}] is {d}, expected at least 1"),
                })
            })
            .collect()
    }

    /// The datatype if we read it, else the typed refusal.
    pub fn supported_datatype(&self, path: &Path) -> Result<(Datatype, usize), NiftiError> {
        match self.datatype.size() {
            Some(size) => Ok((self.datatype, size)),
            None => Err(NiftiError::UnsupportedDatatype {
                path: path.to_path_buf(),
                code: self.datatype.code(),
                name: self.datatype.name(),
            }),
        }
    }

    /// `(slope, inter)` to apply, following nibabel's `get_slope_inter` and
    /// `apply_read_scaling`: slope 0 or non-finite means no scaling; a valid
    /// slope with a non-finite intercept is an error; (1, 0) is skipped.
    pub fn scaling(&self, path: &Path) -> Result<Option<(f64, f64)>, NiftiError> {
        let (slope, inter) = (self.scl_slope, self.scl_inter);
        if slope == 0.0 || !slope.is_finite() {
            return Ok(None);
        }
        if !inter.is_finite() {
            return Err(NiftiError::BadHeader {
                path: path.to_path_buf(),
                reason: format!("valid scl_slope {slope} but invalid scl_inter {inter}"),
            });
        }
        Ok(if slope == 1.0 && inter == 0.0 { None } else { Some((slope, inter)) })
    }

    /// Byte offset of the voxels in the decoded stream. nibabel refuses a
    /// single-file offset below 352 (nifti1) / 544 (nifti2) and truncates
    /// fractional offsets with `int()`.
    pub fn data_offset(&self, path: &Path) -> Result<u64, NiftiError> {
        let min = self.format.min_vox_offset();
        let off = self.vox_offset;
        let bad = |reason: String| NiftiError::VoxOffset { path: path.to_path_buf(), offset: off, reason };
        if !off.is_finite() {
            return Err(bad("not a finite number".into()));
        }
        if off < min as f64 {
            return Err(bad(format!("below the minimum of {min} for a single-file {}", self.format.as_str())));
        }
        // Saturating float-to-int cast: an absurd offset then fails as "beyond the end".
        Ok(off.trunc() as u64)
    }

    /// `descrip` as text: a C string (up to the first NUL, as nifticlib reads
    /// it), UTF-8-lossy and trimmed; `None` when empty.
    pub fn description(&self) -> Option<String> {
        let end = self.descrip.iter().position(|&b| b == 0).unwrap_or(self.descrip.len());
        let text = String::from_utf8_lossy(self.descrip.get(..end).unwrap_or_default());
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nifti2_bytes(big: bool) -> Vec<u8> {
        let mut b = vec![0u8; NIFTI2_SIZE];
        let put = |b: &mut Vec<u8>, off: usize, bytes: &[u8]| b[off..off + bytes.len()].copy_from_slice(bytes);
        let i32b = |v: i32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let i64b = |v: i64| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let f64b = |v: f64| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        put(&mut b, 0, &i32b(540));
        put(&mut b, 4, b"n+2\0\r\n\x1a\n");
        put(&mut b, 12, &if big { 4i16.to_be_bytes() } else { 4i16.to_le_bytes() });
        for (i, d) in [3i64, 4, 5, 6, 1, 1, 1, 1].iter().enumerate() {
            put(&mut b, 16 + 8 * i, &i64b(*d));
        }
        put(&mut b, 104 + 8, &f64b(2.5));
        put(&mut b, 168, &i64b(544));
        put(&mut b, 176, &f64b(2.0));
        put(&mut b, 348, &i32b(4));
        put(&mut b, 400 + 24, &f64b(-90.0));
        put(&mut b, 240, b"hello\0world");
        b
    }

    #[test]
    fn nifti2_fields_parse_in_both_byte_orders() {
        for big in [false, true] {
            let bytes = nifti2_bytes(big);
            let h = read_header(&mut &bytes[..], Path::new("x.nii"), false).expect("valid header");
            assert_eq!(h.format, Format::Nifti2);
            assert_eq!(h.big_endian, big);
            assert_eq!(h.dim[..4], [3, 4, 5, 6]);
            assert_eq!(h.datatype, Datatype::Int16);
            assert_eq!(h.pixdim[1], 2.5);
            assert_eq!(h.vox_offset, 544.0);
            assert_eq!(h.scl_slope, 2.0);
            assert_eq!(h.sform_code, 4);
            assert_eq!(h.srow[0][3], -90.0);
            assert_eq!(h.description().as_deref(), Some("hello"));
        }
    }

    #[test]
    fn unknown_sizeof_hdr_and_short_input_are_typed_errors() {
        let err = read_header(&mut &[1u8, 2, 3, 4, 5][..], Path::new("a.nii"), false).unwrap_err();
        assert!(matches!(err, NiftiError::NotNifti { .. }), "{err}");
        let bytes = nifti2_bytes(false);
        let err = read_header(&mut &bytes[..300], Path::new("a.nii"), false).unwrap_err();
        assert!(matches!(err, NiftiError::Truncated { .. }), "{err}");
    }

    #[test]
    fn scaling_follows_nibabel_get_slope_inter() {
        let bytes = nifti2_bytes(false);
        let mut h = read_header(&mut &bytes[..], Path::new("x.nii"), false).expect("valid header");
        let p = Path::new("x.nii");
        assert_eq!(h.scaling(p).expect("ok"), Some((2.0, 0.0)));
        h.scl_slope = f64::NAN;
        assert_eq!(h.scaling(p).expect("ok"), None);
        h.scl_slope = 1.0;
        assert_eq!(h.scaling(p).expect("ok"), None);
        h.scl_inter = f64::INFINITY;
        assert!(h.scaling(p).is_err());
    }
}
