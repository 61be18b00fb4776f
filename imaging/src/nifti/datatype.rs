//! NIfTI datatype codes: which ones exist, which ones we read, their sizes
//! and the numpy-style names nibabel reports (`img.get_data_dtype()`).

use serde::Serialize;

/// A NIfTI `datatype` code (NIfTI-1 and NIfTI-2 share the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Datatype {
    Uint8,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Float32,
    Float64,
    /// Known to the standard but not read here (binary, complex, RGB, float128).
    Unsupported(i16),
    /// Not in the NIfTI table at all.
    Unknown(i16),
}

impl Datatype {
    /// From the header's `datatype` field (nifti1.h `NIFTI_TYPE_*`).
    pub fn from_code(code: i16) -> Self {
        match code {
            2 => Datatype::Uint8,
            256 => Datatype::Int8,
            4 => Datatype::Int16,
            512 => Datatype::Uint16,
            8 => Datatype::Int32,
            768 => Datatype::Uint32,
            1024 => Datatype::Int64,
            1280 => Datatype::Uint64,
            16 => Datatype::Float32,
            64 => Datatype::Float64,
            // binary, complex64, rgb24, float128, complex128, complex256, rgba32
            1 | 32 | 128 | 1536 | 1792 | 2048 | 2304 => Datatype::Unsupported(code),
            _ => Datatype::Unknown(code),
        }
    }

    /// The header code.
    pub fn code(self) -> i16 {
        match self {
            Datatype::Uint8 => 2,
            Datatype::Int8 => 256,
            Datatype::Int16 => 4,
            Datatype::Uint16 => 512,
            Datatype::Int32 => 8,
            Datatype::Uint32 => 768,
            Datatype::Int64 => 1024,
            Datatype::Uint64 => 1280,
            Datatype::Float32 => 16,
            Datatype::Float64 => 64,
            Datatype::Unsupported(c) | Datatype::Unknown(c) => c,
        }
    }

    /// numpy's name for the type, as nibabel reports it (`"int16"`, `"float32"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Uint8 => "uint8",
            Datatype::Int8 => "int8",
            Datatype::Int16 => "int16",
            Datatype::Uint16 => "uint16",
            Datatype::Int32 => "int32",
            Datatype::Uint32 => "uint32",
            Datatype::Int64 => "int64",
            Datatype::Uint64 => "uint64",
            Datatype::Float32 => "float32",
            Datatype::Float64 => "float64",
            Datatype::Unsupported(1) => "binary",
            Datatype::Unsupported(32) => "complex64",
            Datatype::Unsupported(128) => "rgb24",
            Datatype::Unsupported(1536) => "float128",
            Datatype::Unsupported(1792) => "complex128",
            Datatype::Unsupported(2048) => "complex256",
            Datatype::Unsupported(2304) => "rgba32",
            Datatype::Unsupported(_) | Datatype::Unknown(_) => "unknown",
        }
    }

    /// Bytes per voxel for the types we read; `None` for the others.
    pub fn size(self) -> Option<usize> {
        match self {
            Datatype::Uint8 | Datatype::Int8 => Some(1),
            Datatype::Int16 | Datatype::Uint16 => Some(2),
            Datatype::Int32 | Datatype::Uint32 | Datatype::Float32 => Some(4),
            Datatype::Int64 | Datatype::Uint64 | Datatype::Float64 => Some(8),
            Datatype::Unsupported(_) | Datatype::Unknown(_) => None,
        }
    }

    /// Whether voxels are floating point (and so may hold NaN/Inf).
    pub fn is_float(self) -> bool {
        matches!(self, Datatype::Float32 | Datatype::Float64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_sizes_match_bitpix() {
        for code in [2i16, 256, 4, 512, 8, 768, 1024, 1280, 16, 64] {
            let t = Datatype::from_code(code);
            assert_eq!(t.code(), code);
            assert!(t.size().is_some(), "{code}");
        }
        assert_eq!(Datatype::from_code(4).size(), Some(2));
        assert_eq!(Datatype::from_code(64).name(), "float64");
        assert_eq!(Datatype::from_code(32), Datatype::Unsupported(32));
        assert_eq!(Datatype::from_code(32).name(), "complex64");
        assert_eq!(Datatype::from_code(7).size(), None);
    }
}
