//! Criterion benchmarks for `imaging::orientation` and `imaging::resample` on
//! the MNI152 T1 (197×233×189, 1 mm) and its variants, read as raw volumes
//! from `$NEUROBATCH_TESTDATA/geometry/` (default `<repo>/.testdata`, written
//! by `scripts/testdata/geometry.py data`).
//!
//! The Python side of the comparison (same operations): nibabel
//! `as_closest_canonical` materialized with `np.asfortranarray`, and
//! `scipy.ndimage.affine_transform(order=1|0, mode="constant")` with the full
//! 3×3 matrix.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use imaging::orientation::{from_canonical, into_canonical, to_canonical};
use imaging::resample::{self, GridLimits, TargetGrid};
use imaging::{Affine, Volume};

// The neurobatch binary's allocator (src/main.rs): without it a bench times the
// system allocator's page faults on every fresh 30–100 MB buffer instead of
// what the daemon runs (both measured in docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The tests' helpers: where `.testdata/` is, and the raw-volume loader.
#[path = "../tests/common/mod.rs"]
mod common;

/// A raw volume written by `scripts/testdata/geometry.py`.
fn raw(name: &str) -> Volume<f32> {
    common::load_raw_f32(&common::testdata_dir().join("geometry").join(name))
}

fn reorient(c: &mut Criterion) {
    let mut g = c.benchmark_group("reorient");
    g.sample_size(20);
    for name in ["t1_lps", "t1_pir"] {
        let v = raw(name);
        g.bench_function(format!("{name}_to_canonical"), |b| b.iter(|| to_canonical(black_box(&v)).expect("valid")));
        // Owned input (the daemon's case: the freshly read scan is not needed again);
        // the clone is outside the timing.
        g.bench_function(format!("{name}_into_canonical"), |b| {
            b.iter_batched(|| v.clone(), |v| into_canonical(v).expect("valid"), BatchSize::LargeInput)
        });
        let (can, record) = to_canonical(&v).expect("valid");
        g.bench_function(format!("{name}_from_canonical"), |b| {
            b.iter(|| from_canonical(black_box(&can), &record).expect("fits"))
        });
        // Labels (u8) move four times fewer bytes.
        let mask = can.map(|&x| u8::from(x > 100.0));
        g.bench_function(format!("{name}_from_canonical_u8"), |b| {
            b.iter(|| from_canonical(black_box(&mask), &record).expect("fits"))
        });
    }
    g.finish();
}

fn resampling(c: &mut Criterion) {
    let limits = GridLimits::default();
    let t1 = raw("mni_t1");
    let t1_2mm = raw("mni_t1_2mm");
    let labels_2mm = raw("mni_labels_2mm").map(|&x| x as u8);
    let to_2mm = TargetGrid::with_spacing(t1.dims(), t1.affine(), [2.0; 3], &limits).expect("grid");
    let to_1mm = TargetGrid::with_spacing(t1_2mm.dims(), t1_2mm.affine(), [1.0; 3], &limits).expect("grid");
    let (cz, sz) = (0.3f64.cos(), 0.3f64.sin());
    let oblique = TargetGrid::new(
        [120, 140, 110],
        Affine::from_rows([
            [1.5 * cz, -1.5 * sz, 0.0, -60.0],
            [1.5 * sz, 1.5 * cz, 0.0, -120.0],
            [0.0, 0.0, 1.5, -70.0],
            [0.0, 0.0, 0.0, 1.0],
        ]),
        &limits,
    )
    .expect("grid");

    let mut g = c.benchmark_group("resample");
    g.sample_size(20);
    g.bench_function("linear_1mm_to_2mm", |b| b.iter(|| resample::linear(black_box(&t1), &to_2mm, 0.0).expect("ok")));
    g.bench_function("linear_2mm_to_1mm", |b| {
        b.iter(|| resample::linear(black_box(&t1_2mm), &to_1mm, 0.0).expect("ok"))
    });
    g.bench_function("nearest_u8_2mm_to_1mm", |b| {
        b.iter(|| resample::nearest(black_box(&labels_2mm), &to_1mm, 0u8).expect("ok"))
    });
    g.bench_function("linear_oblique_1p5mm", |b| {
        b.iter(|| resample::linear(black_box(&t1), &oblique, 0.0).expect("ok"))
    });
    g.finish();
}

criterion_group!(benches, reorient, resampling);
criterion_main!(benches);
