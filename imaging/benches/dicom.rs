//! Criterion benchmarks for dicom (written with the module).
fn main() {}
