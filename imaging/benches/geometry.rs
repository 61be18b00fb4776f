//! Criterion benchmarks for geometry (written with the module).
fn main() {}
