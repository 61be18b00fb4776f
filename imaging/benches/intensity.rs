//! Criterion benchmarks for `imaging::harmonize` and `imaging::mask` on the
//! MNI152 T1 (197 × 233 × 189) from `$NEUROBATCH_TESTDATA` (default
//! `<repo>/.testdata`, written by scripts/testdata/intensity.py). The same
//! operations of intensity-normalization 3.0.1 / scipy are timed by
//! `.venv/bin/python scripts/testdata/intensity.py bench`.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use imaging::harmonize::{self, HarmonizeMethod, NyulParams};
use imaging::mask::foreground_mask;
use imaging::{Affine, SourceMeta, Volume};

// The neurobatch binary's allocator (src/main.rs): without it a bench times the
// system allocator's page faults on every fresh 30–100 MB buffer instead of
// what the daemon runs (both measured in docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn testdata() -> PathBuf {
    std::env::var_os("NEUROBATCH_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.testdata"))
        .join("intensity")
}

/// A raw volume (`<name>.json` + `<name>.f32`) as the generator writes it.
fn raw(name: &str) -> Volume<f32> {
    let dir = testdata();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("run scripts/setup.sh"))
            .expect("raw volume json");
    let shape: Vec<usize> = serde_json::from_value(meta["shape"].clone()).expect("shape");
    let rows: [[f64; 4]; 4] = serde_json::from_value(meta["affine"].clone()).expect("affine");
    let bytes = std::fs::read(dir.join(format!("{name}.f32"))).expect("raw volume data");
    let data = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Volume::new([shape[0], shape[1], shape[2]], data, Affine::from_rows(rows), SourceMeta::default()).expect("shape")
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
