//! Criterion benchmarks for `imaging::harmonize` and `imaging::mask` on the
//! MNI152 T1 (197 × 233 × 189) from `$NEUROBATCH_TESTDATA` (default
//! `<repo>/.testdata`, written by scripts/testdata/intensity.py). The same
//! operations of intensity-normalization 3.0.1 / scipy are timed by
//! `.venv/bin/python scripts/testdata/intensity.py bench`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use imaging::Volume;
use imaging::harmonize::{self, HarmonizeMethod, NyulParams};
use imaging::mask::foreground_mask;

// The neurobatch binary's allocator (src/main.rs): without it a bench times the
// system allocator's page faults on every fresh 30–100 MB buffer instead of
// what the daemon runs (both measured in docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The tests' helpers: where `.testdata/` is, and the raw-volume loader.
#[path = "../tests/common/mod.rs"]
mod common;

/// A raw volume written by `scripts/testdata/intensity.py`.
fn raw(name: &str) -> Volume<f32> {
    common::load_raw_f32(&common::testdata_dir().join("intensity").join(name))
}

fn as_mask(v: Volume<f32>) -> Volume<u8> {
    v.map(|&x| u8::from(x != 0.0))
}

fn intensity(c: &mut Criterion) {
    let t1 = raw("mni_t1");
    let brain = as_mask(raw("brain_mask"));
    let train: Vec<_> =
        (0..4).map(|i| (raw(&format!("nyul_{i}")), Some(as_mask(raw(&format!("nyul_{i}_mask")))))).collect();
    let scale = harmonize::nyul::fit(&train, &NyulParams::default()).expect("nyul fit");

    let mut g = c.benchmark_group("intensity_mni_t1");
    g.sample_size(20);
    g.bench_function("zscore_apply_brain_mask", |b| {
        b.iter(|| harmonize::apply(black_box(&t1), &HarmonizeMethod::ZScore, Some(&brain)).expect("zscore"))
    });
    g.bench_function("nyul_apply_brain_mask", |b| b.iter(|| scale.apply(black_box(&t1), Some(&brain)).expect("nyul")));
    g.bench_function("foreground_mask", |b| b.iter(|| foreground_mask(black_box(&t1)).expect("mask")));
    g.bench_function("whitestripe_t1_apply_brain_mask", |b| {
        let ws = HarmonizeMethod::WhiteStripe { contrast: harmonize::Contrast::T1, width: 0.05 };
        b.iter(|| harmonize::apply(black_box(&t1), &ws, Some(&brain)).expect("whitestripe"))
    });
    g.finish();
}

criterion_group!(benches, intensity);
criterion_main!(benches);
