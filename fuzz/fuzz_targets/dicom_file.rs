//! Bytes → one file in a folder → `imaging::dicom::read_folder`: parsing,
//! grouping, geometry and pixel decoding of a single (possibly multi-frame)
//! instance must never panic. Byte 0 bit 0 turns on `allow_missing_geometry`.
//!
//! `imaging::dicom` runs dicom-pixeldata's decoders under `catch_unwind`
//! (their panics on corrupt data become `DicomError::Decode`), but
//! libfuzzer-sys's panic hook aborts on *any* panic, caught or not. So this
//! target puts a hook back that only prints: a panic that escapes `read_folder`
//! still aborts (libfuzzer-sys catches it at the top and aborts), a contained
//! one does not.
#![no_main]

use imaging::dicom::{ScanOptions, read_folder};
use imaging_fuzz::scratch_dir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        std::panic::set_hook(Box::new(|info| eprintln!("panic (aborts only if it escapes read_folder): {info}")));
    },
    |data: &[u8]| {
        let Some((&control, body)) = data.split_first() else { return };
        let dir = scratch_dir().join("study");
        std::fs::create_dir_all(&dir).expect("create the study folder");
        std::fs::write(dir.join("input.dcm"), body).expect("write the fuzz input");
        let opts = ScanOptions { allow_missing_geometry: control & 1 == 1, ..ScanOptions::default() };
        if let Ok(volumes) = read_folder(&dir, &opts) {
            for v in &volumes {
                assert_eq!(v.data().len(), v.dims().iter().product::<usize>());
            }
        }
    }
);
