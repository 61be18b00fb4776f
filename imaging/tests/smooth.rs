//! `imaging::smooth::gaussian` against `scipy.ndimage.gaussian_filter` (mode
//! "reflect", truncate 4) on the MNI152 T1 and on a volume smaller than its
//! kernels (fixtures from scripts/testdata/intensity.py, `smooth_refs`).

mod common;

use imaging::smooth::{anti_aliasing_sigma, gaussian};
use imaging::{Affine, SourceMeta, Volume};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_f64().expect("number")).collect()
}

fn sigma3(v: &Value) -> [f64; 3] {
    let s = floats(v);
    [s[0], s[1], s[2]]
}

#[test]
fn gaussian_matches_scipy_on_the_mni_t1() {
    let refs = common::load_json("intensity/smooth.json");
    let t1 = common::load_raw_f32(&common::testdata("intensity/mni_t1.json").with_extension(""));
    let indices: Vec<usize> =
        refs["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let cases = refs["mni"].as_array().unwrap();
    // The first case is the pipeline's: a 1 mm scan going to a 2 mm model grid.
    let aa = anti_aliasing_sigma([1.0; 3], [2.0; 3]);
    assert!(sigma3(&cases[0]["sigma"]).iter().zip(&aa).all(|(a, b)| (a - b).abs() < 1e-12), "{aa:?}");
    for case in cases {
        let sigma = sigma3(&case["sigma"]);
        let out = gaussian(&t1, sigma).unwrap();
        assert_eq!(out.dims(), t1.dims());
        assert_eq!(out.affine(), t1.affine());
        let mut worst = 0f64;
        for (&i, &want) in indices.iter().zip(&floats(&case["values"])) {
            let got = f64::from(out.data()[i]);
            worst = worst.max((got - want).abs());
        }
        // Values are 0..255: f32 storage after each axis is ~1e-5 of that.
        assert!(worst < 1e-3, "sigma {sigma:?}: max |rust - scipy| {worst}");
        let sum: f64 = out.data().iter().map(|&v| f64::from(v)).sum();
        let want = case["sum"].as_f64().unwrap();
        assert!((sum - want).abs() <= 1e-6 * want, "sigma {sigma:?}: sum {sum} vs scipy {want}");
        eprintln!("sigma {sigma:?}: max |rust - scipy| at {} voxels: {worst:e}", indices.len());
    }
}

#[test]
fn gaussian_matches_scipy_when_the_kernel_outgrows_the_volume() {
    let refs = common::load_json("intensity/smooth.json");
    let tiny = &refs["tiny"];
    let input: Vec<f32> = floats(&tiny["input"]).iter().map(|&v| v as f32).collect();
    let vol = Volume::new([3, 2, 5], input, Affine::identity(), SourceMeta::default()).unwrap();
    let out = gaussian(&vol, sigma3(&tiny["sigma"])).unwrap();
    for (i, (&got, want)) in out.data().iter().zip(floats(&tiny["values"])).enumerate() {
        assert!((f64::from(got) - want).abs() < 1e-4, "voxel {i}: {got} vs scipy {want}");
    }
}
