//! Pixel decoding and rescale.
//!
//! Owns turning one instance's PixelData into stored values (via
//! dicom-pixeldata, for every transfer syntax its enabled features decode)
//! and one frame of stored values into rescaled `f32`. It refuses transfer
//! syntaxes it cannot decode by name, contains decoder panics, and checks the
//! decoded length against Rows × Columns × frames before touching a sample.
//! Slice placement is `geometry.rs`; this module only fills planes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use dicom_pixeldata::{PixelDecoder, PixelRepresentation};

use super::scan::{Instance, parse, read_dicom_bytes};
use super::{DicomError, ScanOptions, guard};

/// Transfer syntaxes the pinned dicom-pixeldata features (native, rle, jpeg,
/// openjp2) and dicom-object's deflate decode.
/// The transfer syntaxes whose pixel data this reader decodes (what the
/// Storage SCP accepts, so nothing is received that cannot be read).
pub const DECODABLE: &[&str] = &[
    guard::IMPLICIT_LE,
    "1.2.840.10008.1.2.1",
    guard::EXPLICIT_BE,
    guard::DEFLATED,
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
];

/// Human name of a transfer syntax, for error messages.
pub(crate) fn transfer_syntax_name(uid: &str) -> &'static str {
    match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended",
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "JPEG Lossless",
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Near-Lossless",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 Lossless",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "High-Throughput JPEG 2000"
        }
        u if u.starts_with("1.2.840.10008.1.2.4.10") => "MPEG / HEVC video",
        _ => "unknown",
    }
}

/// Stored sample values of every frame, native endian, as decoded.
pub(crate) struct Decoded {
    data: Vec<u8>,
    plane: usize,
    bytes_per_sample: usize,
    bits_stored: u16,
    signed: bool,
}

/// Decodes all frames of one instance.
pub(crate) fn decode(inst: &Instance, opts: &ScanOptions) -> Result<Decoded, DicomError> {
    let path = inst.path.as_path();
    let ts = inst.transfer_syntax.as_str();
    if !DECODABLE.contains(&ts) {
        return Err(DicomError::UnsupportedTransferSyntax {
            path: path.to_path_buf(),
            uid: ts.to_string(),
            name: transfer_syntax_name(ts),
        });
    }
    let bytes = read_dicom_bytes(path, opts)
        .map_err(|s| DicomError::Corrupt { path: path.to_path_buf(), reason: s.reason.to_string() })?;
    let corrupt = |reason: String| DicomError::Corrupt { path: path.to_path_buf(), reason };
    // The file is read again for its pixels: check it again rather than trust the scan.
    guard::check_lengths(&bytes).map_err(corrupt)?;
    let obj = parse(&bytes, false).map_err(corrupt)?;
    drop(bytes);
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        obj.decode_pixel_data().map(|d| {
            (
                d.rows(),
                d.columns(),
                d.number_of_frames(),
                d.bits_allocated(),
                d.bits_stored(),
                d.pixel_representation(),
                d.samples_per_pixel(),
                d.into_data(),
            )
        })
    }));
    let (rows, cols, frames, bits, bits_stored, repr, spp, data) = match decoded {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Err(decode_error(path, &error_chain(&e))),
        Err(_) => return Err(decode_error(path, "the pixel decoder panicked on corrupt data")),
    };
    if (rows, cols) != (u32::from(inst.rows), u32::from(inst.cols)) || spp != 1 || bits != inst.bits_allocated {
        return Err(decode_error(path, "decoded image properties differ from the header"));
    }
    let bytes_per_sample = usize::from(bits / 8);
    let plane = usize::from(inst.rows) * usize::from(inst.cols);
    let n_frames = inst.frames.len();
    let expected = plane
        .checked_mul(bytes_per_sample)
        .and_then(|v| v.checked_mul(n_frames))
        .ok_or_else(|| decode_error(path, "pixel data size overflows"))?;
    if data.len() < expected || (frames as usize) < n_frames {
        return Err(DicomError::PixelDataTooShort {
            path: path.to_path_buf(),
            actual: data.len(),
            expected,
            rows: inst.rows,
            cols: inst.cols,
            frames: n_frames,
        });
    }
    Ok(Decoded {
        data,
        plane,
        bytes_per_sample,
        bits_stored: bits_stored.clamp(1, bits),
        signed: repr == PixelRepresentation::Signed,
    })
}

/// The error and its sources on one line: the top-level message alone ("could not decode") says too little.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

fn decode_error(path: &Path, reason: &str) -> DicomError {
    DicomError::Decode { path: path.to_path_buf(), reason: reason.to_string() }
}

impl Decoded {
    /// Writes frame `frame` as `slope * stored + intercept` into `out` (one plane).
    ///
    /// Stored values are masked to BitsStored and sign-extended from its top
    /// bit when PixelRepresentation is signed, as dicom-pixeldata's rescale
    /// LUT and pydicom's `pixel_array` do.
    pub(crate) fn write_frame(&self, frame: usize, slope: f64, intercept: f64, out: &mut [f32]) {
        let n = self.plane * self.bytes_per_sample;
        let Some(src) = self.data.get(frame * n..(frame + 1) * n) else { return };
        let bits = u32::from(self.bits_stored);
        let mask: u64 = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let sign_bit = 1u64 << (bits - 1);
        let signed = self.signed;
        let convert = move |raw: u64| -> f32 {
            let v = raw & mask;
            let v = if signed && v & sign_bit != 0 { v as i64 - (mask as i64 + 1) } else { v as i64 };
            (v as f64 * slope + intercept) as f32
        };
        match self.bytes_per_sample {
            1 => out.iter_mut().zip(src).for_each(|(o, &b)| *o = convert(u64::from(b))),
            2 => out
                .iter_mut()
                .zip(src.chunks_exact(2))
                .for_each(|(o, b)| *o = convert(u64::from(u16::from_ne_bytes([b[0], b[1]])))),
            _ => out
                .iter_mut()
                .zip(src.chunks_exact(4))
                .for_each(|(o, b)| *o = convert(u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_stored_masking_and_sign_extension() {
        // 12 bits stored in 16: 0xF800 has garbage above bit 11; 0x0FFF is -1 when signed.
        let raw: Vec<u8> = [0x0FFFu16, 0xF800, 0x0001, 0x0800].iter().flat_map(|v| v.to_ne_bytes()).collect();
        let mut d = Decoded { data: raw, plane: 4, bytes_per_sample: 2, bits_stored: 12, signed: true };
        let mut out = [0f32; 4];
        d.write_frame(0, 2.0, 10.0, &mut out);
        assert_eq!(out, [8.0, -4086.0, 12.0, -4086.0]);
        d.signed = false;
        d.write_frame(0, 1.0, 0.0, &mut out);
        assert_eq!(out, [4095.0, 2048.0, 1.0, 2048.0]);
    }

    #[test]
    fn unsupported_syntaxes_are_named() {
        assert_eq!(transfer_syntax_name("1.2.840.10008.1.2.4.80"), "JPEG-LS Lossless");
        assert!(!DECODABLE.contains(&"1.2.840.10008.1.2.4.80"));
    }
}
