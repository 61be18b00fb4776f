//! Turning on-disk voxel bytes into `f32` intensities or `u16` labels, one
//! chunk at a time, with nibabel's scaling arithmetic.
//!
//! nibabel's `get_fdata(dtype=np.float32)` keeps the float64 `scl_slope` and
//! `scl_inter` (they cannot be cast safely to float32), computes
//! `raw * slope + inter` in float64 and casts the result to float32; without
//! scaling it casts raw → float64 (for int64/uint64 and float64 data) →
//! float32. Going through `f64` here reproduces both bit for bit: every other
//! type converts to f64 exactly. This module does no I/O.

use super::datatype::Datatype;

/// Scale factors to apply, `None` for identity.
pub(crate) type Scaling = Option<(f64, f64)>;

/// Converts whole elements of `bytes` into `out` (as many as both hold).
pub(crate) type ToF32 = fn(&[u8], &mut [f32], Scaling);
/// Converts whole elements of `bytes` into `out` as f64 values after scaling.
pub(crate) type ToF64 = fn(&[u8], &mut [f64], Scaling);

/// One concrete function per (type, byte order, output): `as_chunks` gives
/// fixed-size arrays, so the loops compile to straight vector code with no
/// per-voxel bounds checks or length tests.
macro_rules! converters {
    ($($t:ty, $n:literal, $from:ident => $f32:ident, $f64:ident;)*) => {$(
        fn $f32(bytes: &[u8], out: &mut [f32], scaling: Scaling) {
            let (chunks, _) = bytes.as_chunks::<$n>();
            let pairs = chunks.iter().zip(out.iter_mut());
            match scaling {
                None => pairs.for_each(|(b, o)| *o = <$t>::$from(*b) as f64 as f32),
                Some((slope, inter)) => {
                    pairs.for_each(|(b, o)| *o = (<$t>::$from(*b) as f64 * slope + inter) as f32)
                }
            }
        }
        fn $f64(bytes: &[u8], out: &mut [f64], scaling: Scaling) {
            let (chunks, _) = bytes.as_chunks::<$n>();
            let pairs = chunks.iter().zip(out.iter_mut());
            match scaling {
                None => pairs.for_each(|(b, o)| *o = <$t>::$from(*b) as f64),
                Some((slope, inter)) => pairs.for_each(|(b, o)| *o = <$t>::$from(*b) as f64 * slope + inter),
            }
        }
    )*};
}

converters! {
    u8, 1, from_le_bytes => u8_f32, u8_f64;
    i8, 1, from_le_bytes => i8_f32, i8_f64;
    i16, 2, from_le_bytes => i16le_f32, i16le_f64;
    i16, 2, from_be_bytes => i16be_f32, i16be_f64;
    u16, 2, from_le_bytes => u16le_f32, u16le_f64;
    u16, 2, from_be_bytes => u16be_f32, u16be_f64;
    i32, 4, from_le_bytes => i32le_f32, i32le_f64;
    i32, 4, from_be_bytes => i32be_f32, i32be_f64;
    u32, 4, from_le_bytes => u32le_f32, u32le_f64;
    u32, 4, from_be_bytes => u32be_f32, u32be_f64;
    i64, 8, from_le_bytes => i64le_f32, i64le_f64;
    i64, 8, from_be_bytes => i64be_f32, i64be_f64;
    u64, 8, from_le_bytes => u64le_f32, u64le_f64;
    u64, 8, from_be_bytes => u64be_f32, u64be_f64;
    f32, 4, from_le_bytes => f32le_f32, f32le_f64;
    f32, 4, from_be_bytes => f32be_f32, f32be_f64;
    f64, 8, from_le_bytes => f64le_f32, f64le_f64;
    f64, 8, from_be_bytes => f64be_f32, f64be_f64;
}

macro_rules! pick {
    ($dt:expr, $be:expr, $idx:tt) => {
        match ($dt, $be) {
            (Datatype::Uint8, _) => Some((u8_f32 as ToF32, u8_f64 as ToF64).$idx),
            (Datatype::Int8, _) => Some((i8_f32 as ToF32, i8_f64 as ToF64).$idx),
            (Datatype::Int16, false) => Some((i16le_f32 as ToF32, i16le_f64 as ToF64).$idx),
            (Datatype::Int16, true) => Some((i16be_f32 as ToF32, i16be_f64 as ToF64).$idx),
            (Datatype::Uint16, false) => Some((u16le_f32 as ToF32, u16le_f64 as ToF64).$idx),
            (Datatype::Uint16, true) => Some((u16be_f32 as ToF32, u16be_f64 as ToF64).$idx),
            (Datatype::Int32, false) => Some((i32le_f32 as ToF32, i32le_f64 as ToF64).$idx),
            (Datatype::Int32, true) => Some((i32be_f32 as ToF32, i32be_f64 as ToF64).$idx),
            (Datatype::Uint32, false) => Some((u32le_f32 as ToF32, u32le_f64 as ToF64).$idx),
            (Datatype::Uint32, true) => Some((u32be_f32 as ToF32, u32be_f64 as ToF64).$idx),
            (Datatype::Int64, false) => Some((i64le_f32 as ToF32, i64le_f64 as ToF64).$idx),
            (Datatype::Int64, true) => Some((i64be_f32 as ToF32, i64be_f64 as ToF64).$idx),
            (Datatype::Uint64, false) => Some((u64le_f32 as ToF32, u64le_f64 as ToF64).$idx),
            (Datatype::Uint64, true) => Some((u64be_f32 as ToF32, u64be_f64 as ToF64).$idx),
            (Datatype::Float32, false) => Some((f32le_f32 as ToF32, f32le_f64 as ToF64).$idx),
            (Datatype::Float32, true) => Some((f32be_f32 as ToF32, f32be_f64 as ToF64).$idx),
            (Datatype::Float64, false) => Some((f64le_f32 as ToF32, f64le_f64 as ToF64).$idx),
            (Datatype::Float64, true) => Some((f64be_f32 as ToF32, f64be_f64 as ToF64).$idx),
            (Datatype::Unsupported(_) | Datatype::Unknown(_), _) => None,
        }
    };
}

/// The f32 converter for a datatype and byte order; `None` for unsupported types.
pub(crate) fn f32_converter(dt: Datatype, big_endian: bool) -> Option<ToF32> {
    pick!(dt, big_endian, 0)
}

/// The f64 converter (used for label checks); `None` for unsupported types.
pub(crate) fn f64_converter(dt: Datatype, big_endian: bool) -> Option<ToF64> {
    pick!(dt, big_endian, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_and_little_endian_int16_decode_with_scaling() {
        let values = [-2i16, 300, i16::MAX];
        let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let be: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut a = [0f32; 3];
        let mut b = [0f32; 3];
        f32_converter(Datatype::Int16, false).expect("supported")(&le, &mut a, Some((0.5, 10.0)));
        f32_converter(Datatype::Int16, true).expect("supported")(&be, &mut b, Some((0.5, 10.0)));
        assert_eq!(a, [9.0, 160.0, 16393.5]);
        assert_eq!(a, b);
    }

    #[test]
    fn int64_goes_through_f64_like_numpy() {
        // 2^53 + 2^29 + 1: direct i64→f32 rounds up, i64→f64→f32 (numpy's path) rounds to even.
        let v: i64 = (1 << 53) + (1 << 29) + 1;
        let mut out = [0f32; 1];
        f32_converter(Datatype::Int64, false).expect("supported")(&v.to_le_bytes(), &mut out, None);
        assert_ne!(v as f32, v as f64 as f32, "the value must tell the two paths apart");
        assert_eq!(out[0], v as f64 as f32);
        assert!(f32_converter(Datatype::Unsupported(32), false).is_none());
    }
}
