//! Criterion benchmarks for intensity (written with the module).
fn main() {}
