//! Element constructors for the derived objects: one function per value
//! representation the builders use, so that `seg` and `sr` read as lists of
//! attributes. DS values are formatted within the 16 characters DS allows.

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Length, Tag, VR, dicom_value};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use super::Code;

pub(super) type Obj = InMemDicomObject;

/// A text element (CS, LO, SH, UI, DA, TM, PN, LT, UT, IS, …).
pub(super) fn text(tag: Tag, vr: VR, value: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// A multi-valued text element (`DERIVED\PRIMARY`).
pub(super) fn texts(tag: Tag, vr: VR, values: &[&str]) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::Strs(values.iter().map(|s| s.to_string()).collect()))
}

/// A type 2 element present with no value.
pub(super) fn empty(tag: Tag, vr: VR) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::Empty)
}

pub(super) fn us(tag: Tag, value: u16) -> InMemElement {
    DataElement::new(tag, VR::US, dicom_value!(U16, [value]))
}

pub(super) fn ul_pair(tag: Tag, a: u32, b: u32) -> InMemElement {
    DataElement::new(tag, VR::UL, dicom_value!(U32, [a, b]))
}

pub(super) fn at(tag: Tag, value: Tag) -> InMemElement {
    DataElement::new(tag, VR::AT, dicom_value!(Tags, [value]))
}

/// A decimal string of one or more numbers.
pub(super) fn ds(tag: Tag, values: &[f64]) -> InMemElement {
    DataElement::new(tag, VR::DS, PrimitiveValue::Strs(values.iter().map(|&v| decimal_string(v)).collect()))
}

/// An integer string.
pub(super) fn is(tag: Tag, value: u32) -> InMemElement {
    text(tag, VR::IS, &value.to_string())
}

/// A sequence of items (undefined length, as most writers use).
pub(super) fn seq(tag: Tag, items: Vec<Obj>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::new(items, Length::UNDEFINED))
}

/// An object from a list of elements.
pub(super) fn item(elements: impl IntoIterator<Item = InMemElement>) -> Obj {
    InMemDicomObject::from_element_iter(elements)
}

/// A Code Sequence Macro item (PS3.3 8.8): value, scheme, meaning.
pub(super) fn code_item(code: &Code) -> Obj {
    use dicom_dictionary_std::tags;
    item([
        text(tags::CODE_VALUE, VR::SH, &code.value),
        text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, &code.scheme),
        text(tags::CODE_MEANING, VR::LO, &code.meaning),
    ])
}

/// A sequence holding one code.
pub(super) fn code_seq(tag: Tag, code: &Code) -> InMemElement {
    seq(tag, vec![code_item(code)])
}

/// `v` as a DS: at most 16 characters, as many significant digits as fit
/// (Rust's shortest round-trip form when it fits).
pub(super) fn decimal_string(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return "0".to_string();
    }
    let plain = format!("{v}");
    if plain.len() <= 16 {
        return plain;
    }
    for significant in (1..=15).rev() {
        if let Some(fixed) = fixed_if_short(v, significant) {
            return fixed;
        }
        let exp = format!("{:.*e}", significant - 1, v);
        if exp.len() <= 16 {
            return exp;
        }
    }
    "0".to_string()
}

/// `v` in fixed notation with up to `significant` significant digits, if that fits in 16 characters.
fn fixed_if_short(v: f64, significant: usize) -> Option<String> {
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (significant as i32 - 1 - magnitude).max(0) as usize;
    if decimals > 15 {
        return None;
    }
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    (s.len() <= 16).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit_and_round_trip_closely() {
        for v in [
            0.0,
            1.0,
            -90.0,
            2.5,
            -126.00000000000001,
            0.123_456_789_012_345_68,
            -72.63274383544922,
            1_234_567.891_011_121_3,
            1e-12,
            -3.3e300,
            0.5,
        ] {
            let s = decimal_string(v);
            assert!(s.len() <= 16, "{v} -> {s}");
            assert!(s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)), "{s}");
            let back: f64 = s.parse().expect("parses");
            assert!((back - v).abs() <= v.abs() * 1e-9, "{v} -> {s}");
        }
        assert_eq!(decimal_string(-90.0), "-90");
        assert_eq!(decimal_string(2.5), "2.5");
    }
}
