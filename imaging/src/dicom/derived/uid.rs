//! Deterministic UIDs: the same inputs always give the same UID, so a result
//! sent twice replaces itself in the PACS instead of appearing twice.
//!
//! A UID is `2.25.` followed by the decimal value of a 128-bit UUID (PS3.5
//! B.2): here a version-8 (custom) UUID whose bits are the first 16 bytes of
//! SHA-256 over the parts, each part length-prefixed so that ("ab", "c") and
//! ("a", "bc") differ. At most 44 characters, within the 64 a UI allows.

use sha2::{Digest, Sha256};

/// The UID of `parts` (e.g. `["seg", study_key, model, version, "v2"]`).
pub fn derived_uid(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for p in parts {
        hash.update((p.len() as u64).to_be_bytes());
        hash.update(p.as_bytes());
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // RFC 9562: version 8 in the high nibble of byte 6, variant 0b10 in the top bits of byte 8.
    bytes[6] = (bytes[6] & 0x0F) | 0x80;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    format!("2.25.{}", u128::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_deterministic_distinct_and_valid() {
        let a = derived_uid(&["seg", "study-1", "brain-tissue", "0.4.0", "v1"]);
        assert_eq!(a, derived_uid(&["seg", "study-1", "brain-tissue", "0.4.0", "v1"]));
        assert_ne!(a, derived_uid(&["seg", "study-1", "brain-tissue", "0.4.0", "v2"]));
        // Length prefixes keep part boundaries.
        assert_ne!(derived_uid(&["ab", "c"]), derived_uid(&["a", "bc"]));
        for uid in [a, derived_uid(&[]), derived_uid(&[""])] {
            assert!(uid.len() <= 64, "{uid}");
            assert!(uid.starts_with("2.25."));
            let n: u128 = uid["2.25.".len()..].parse().expect("decimal");
            assert_eq!((n >> 76) & 0xF, 8, "UUID version 8: {uid}");
            assert_eq!((n >> 62) & 0b11, 0b10, "RFC variant: {uid}");
            assert!(!uid["2.25.".len()..].starts_with('0'), "no leading zero: {uid}");
        }
    }

    #[test]
    fn implementation_class_uid_is_the_derived_one() {
        assert_eq!(super::super::IMPLEMENTATION_CLASS_UID, derived_uid(&["neurobatch implementation class"]));
    }
}
