//! Bytes → a `.nii` / `.nii.gz` file → the three public NIfTI readers.
//! None of them may panic; errors are the expected outcome for most inputs.
//!
//! Byte 0 is a control byte: bit 0 gzip-wraps the rest (the `.nii.gz` path,
//! where the file length cannot bound the header's claims), bit 1 selects
//! `FourD::Refuse`, bit 2 a small `max_voxels` (the size-limit error path).
#![no_main]

use std::io::Write;

use flate2::{Compression, write::GzEncoder};
use imaging::nifti::{self, FourD, ReadOptions};
use imaging_fuzz::scratch_dir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else { return };
    let gz = control & 1 == 1;
    let path = scratch_dir().join(if gz { "input.nii.gz" } else { "input.nii" });
    let bytes = if gz {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(body).expect("gzip into memory");
        enc.finish().expect("gzip into memory")
    } else {
        body.to_vec()
    };
    std::fs::write(&path, &bytes).expect("write the fuzz input");

    let mut opts = ReadOptions::default();
    if control & 2 != 0 {
        opts.four_d = FourD::Refuse;
    }
    if control & 4 != 0 {
        opts.max_voxels = 4096;
    }
    let _ = nifti::read_header_info(&path);
    if let Ok(v) = nifti::read(&path, &opts) {
        // A volume that was returned has as many voxels as its shape says.
        assert_eq!(v.data().len(), v.dims().iter().product::<usize>());
    }
    let _ = nifti::read_labels(&path, &opts);
});
