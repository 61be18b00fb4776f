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

/// A fixed-size on-disk element.
trait Raw: Copy {
    const SIZE: usize;
    fn read<const BE: bool>(b: &[u8]) -> f64;
}

macro_rules! raw {
    ($($t:ty),*) => {$(
        impl Raw for $t {
            const SIZE: usize = size_of::<$t>();
            #[inline(always)]
            fn read<const BE: bool>(b: &[u8]) -> f64 {
                let mut a = [0u8; size_of::<$t>()];
                a.copy_from_slice(b);
                (if BE { <$t>::from_be_bytes(a) } else { <$t>::from_le_bytes(a) }) as f64
            }
        }
    )*};
}
raw!(u8, i8, i16, u16, i32, u32, i64, u64, f32, f64);

/// Scale factors to apply, `None` for identity.
pub(crate) type Scaling = Option<(f64, f64)>;

/// Converts whole elements of `bytes` into `out` (as many as both hold).
pub(crate) type ToF32 = fn(&[u8], &mut [f32], Scaling);
/// Converts whole elements of `bytes` into `out` as f64 values after scaling.
pub(crate) type ToF64 = fn(&[u8], &mut [f64], Scaling);

fn to_f32<T: Raw, const BE: bool>(bytes: &[u8], out: &mut [f32], scaling: Scaling) {
    let pairs = bytes.chunks_exact(T::SIZE).zip(out.iter_mut());
    match scaling {
        None => pairs.for_each(|(b, o)| *o = T::read::<BE>(b) as f32),
        Some((slope, inter)) => pairs.for_each(|(b, o)| *o = (T::read::<BE>(b) * slope + inter) as f32),
    }
}

fn to_f64<T: Raw, const BE: bool>(bytes: &[u8], out: &mut [f64], scaling: Scaling) {
    let pairs = bytes.chunks_exact(T::SIZE).zip(out.iter_mut());
    match scaling {
        None => pairs.for_each(|(b, o)| *o = T::read::<BE>(b)),
        Some((slope, inter)) => pairs.for_each(|(b, o)| *o = T::read::<BE>(b) * slope + inter),
    }
}

macro_rules! pick {
    ($f:ident, $dt:expr, $be:expr) => {
        match ($dt, $be) {
            (Datatype::Uint8, _) => Some($f::<u8, false> as _),
            (Datatype::Int8, _) => Some($f::<i8, false> as _),
            (Datatype::Int16, false) => Some($f::<i16, false> as _),
            (Datatype::Int16, true) => Some($f::<i16, true> as _),
            (Datatype::Uint16, false) => Some($f::<u16, false> as _),
            (Datatype::Uint16, true) => Some($f::<u16, true> as _),
            (Datatype::Int32, false) => Some($f::<i32, false> as _),
            (Datatype::Int32, true) => Some($f::<i32, true> as _),
            (Datatype::Uint32, false) => Some($f::<u32, false> as _),
            (Datatype::Uint32, true) => Some($f::<u32, true> as _),
            (Datatype::Int64, false) => Some($f::<i64, false> as _),
            (Datatype::Int64, true) => Some($f::<i64, true> as _),
            (Datatype::Uint64, false) => Some($f::<u64, false> as _),
            (Datatype::Uint64, true) => Some($f::<u64, true> as _),
            (Datatype::Float32, false) => Some($f::<f32, false> as _),
            (Datatype::Float32, true) => Some($f::<f32, true> as _),
            (Datatype::Float64, false) => Some($f::<f64, false> as _),
            (Datatype::Float64, true) => Some($f::<f64, true> as _),
            (Datatype::Unsupported(_) | Datatype::Unknown(_), _) => None,
        }
    };
}

/// The f32 converter for a datatype and byte order; `None` for unsupported types.
pub(crate) fn f32_converter(dt: Datatype, big_endian: bool) -> Option<ToF32> {
    pick!(to_f32, dt, big_endian)
}

/// The f64 converter (used for label checks); `None` for unsupported types.
pub(crate) fn f64_converter(dt: Datatype, big_endian: bool) -> Option<ToF64> {
    pick!(to_f64, dt, big_endian)
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
