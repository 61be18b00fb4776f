//! Criterion benchmarks for nifti (written with the module).
fn main() {}
