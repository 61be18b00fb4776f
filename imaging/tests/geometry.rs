//! Orientation and resampling against nibabel and scipy.ndimage on the MNI152
//! T1 and its GM/WM maps (raw volumes from `scripts/testdata/geometry.py`),
//! plus property tests of the invariants.

mod common;

use std::collections::BTreeSet;

use imaging::orientation::{from_canonical, into_canonical, to_canonical};
use imaging::resample::{self, GridLimits, ProbabilityMaps, TargetGrid};
use imaging::{Affine, SourceMeta, Volume};
use nalgebra::{Matrix4, Rotation3};
use proptest::prelude::*;
use serde_json::Value;

/// The fixtures' exact whole-volume fingerprint: sum((i + 1) · bits(v_i)) mod 2^64.
fn checksum(data: &[f32]) -> u64 {
    data.iter()
        .enumerate()
        .fold(0u64, |acc, (i, v)| acc.wrapping_add((i as u64 + 1).wrapping_mul(u64::from(v.to_bits()))))
}

fn rows(v: &Value) -> [[f64; 4]; 4] {
    serde_json::from_value(v.clone()).expect("4x4 affine")
}

fn max_abs_diff(a: &Affine, b: &Affine) -> f64 {
    (a.matrix() - b.matrix()).amax()
}

fn raw(name: &str) -> Volume<f32> {
    common::load_raw_f32(&common::testdata(&format!("geometry/{name}.f32")).with_extension(""))
}

fn indices(v: &Value) -> Vec<usize> {
    serde_json::from_value(v.clone()).expect("sample indices")
}

fn floats(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).expect("sample values")
}

#[test]
fn axis_codes_agree_with_nibabel_io_orientation() {
    let refs = common::load_json("geometry/orientation.json");
    let variants = refs["variants"].as_object().expect("variants").values();
    let randoms = refs["random_affines"].as_array().expect("random affines");
    let mut checked = 0;
    for case in variants
        .map(|c| (&c["input_affine"], &c["io_orientation"], &c["axcodes"]))
        .chain(randoms.iter().map(|c| (&c["affine"], &c["io_orientation"], &c["axcodes"])))
    {
        let affine = Affine::from_rows(rows(case.0));
        let ornt: Vec<[i64; 2]> = serde_json::from_value(case.1.clone()).expect("ornt");
        let codes = affine.axis_codes();
        for (c, [axis, sign]) in ornt.iter().enumerate() {
            assert_eq!(codes[c].world_axis as i64, *axis, "axis {c} of {affine:?}");
            assert_eq!(codes[c].positive, *sign > 0, "sign of axis {c} of {affine:?}");
        }
        assert_eq!(affine.orientation_code(), case.2.as_str().expect("axcodes"));
        checked += 1;
    }
    assert_eq!(checked, 105);
}

#[test]
fn reorientation_matches_nibabel_as_closest_canonical_and_round_trips() {
    let refs = common::load_json("geometry/orientation.json");
    for (name, case) in refs["variants"].as_object().expect("variants") {
        let v = raw(name);
        assert_eq!(max_abs_diff(v.affine(), &Affine::from_rows(rows(&case["input_affine"]))), 0.0, "{name}");
        let (can, record) = to_canonical(&v).expect("valid affine");
        let shape: [usize; 3] = serde_json::from_value(case["canonical_shape"].clone()).expect("shape");
        assert_eq!(can.dims(), shape, "{name}");
        let want_affine = Affine::from_rows(rows(&case["canonical_affine"]));
        let diff = max_abs_diff(can.affine(), &want_affine);
        assert!(diff <= 1e-6, "{name}: canonical affine differs from nibabel's by {diff}");
        assert_eq!(can.affine().orientation_code(), case["canonical_axcodes"].as_str().expect("codes"), "{name}");
        let want_sum: u64 = case["canonical_checksum"].as_str().expect("checksum").parse().expect("u64");
        assert_eq!(checksum(can.data()), want_sum, "{name}: canonical voxels differ from nibabel's");
        for (&i, &want) in indices(&case["sample_indices"]).iter().zip(&floats(&case["sample_values"])) {
            assert_eq!(can.data()[i].to_bits(), want.to_bits(), "{name}: voxel {i}");
        }
        let back = from_canonical(&can, &record).expect("record fits");
        let (in_place, in_place_record) = into_canonical(v.clone()).expect("valid affine");
        assert_eq!(in_place_record, record, "{name}");
        assert!(in_place.data() == can.data() && in_place.affine() == can.affine(), "{name}: into_canonical");
        assert_eq!(back.affine(), v.affine(), "{name}: round trip affine");
        assert!(back.data() == v.data(), "{name}: round trip voxels");
        // The record survives a JSON trip (a job stores it next to its outputs).
        let stored: imaging::orientation::Reorientation =
            serde_json::from_str(&serde_json::to_string(&record).expect("serializes")).expect("parses");
        assert_eq!(stored, record);
    }
}

/// Compares one resampled output with scipy's values at the sampled indices;
/// returns the largest absolute difference.
fn compare_linear(label: &str, out: &[f32], case: &Value, refs: &Value, range: f64) -> f64 {
    let idx = indices(&case["sample_indices"]);
    let want = floats(&refs["sample_values"]);
    let max = idx.iter().zip(&want).map(|(&i, &w)| (f64::from(out[i]) - f64::from(w)).abs()).fold(0.0, f64::max);
    assert!(max <= 1e-4 * range, "{label}: max |diff| {max} > 1e-4 of the range {range}");
    let sum: f64 = out.iter().map(|&v| f64::from(v)).sum();
    let want_sum = refs["sum"].as_f64().expect("sum");
    assert!((sum - want_sum).abs() <= 1e-6 * want_sum.abs().max(1.0), "{label}: sum {sum} vs scipy {want_sum}");
    eprintln!(
        "{label}: max |diff| = {max:.3e} ({:.2e} of range), sum rel diff = {:.2e}",
        max / range,
        (sum - want_sum).abs() / want_sum
    );
    max
}

#[test]
fn resampling_matches_scipy_affine_transform() {
    let refs = common::load_json("geometry/resample.json");
    let t1 = raw("mni_t1");
    let labels = raw("mni_labels").map(|&v| v as u8);
    let gm = raw("mni_gm");
    let wm = raw("mni_wm");
    let t1_2mm = raw("mni_t1_2mm");
    let labels_2mm = raw("mni_labels_2mm").map(|&v| v as u8);
    let t1_range = refs["input_range"]["t1"].as_f64().expect("range");
    let limits = GridLimits::default();
    for (name, case) in refs["cases"].as_object().expect("cases") {
        let (intensity, label_map) = match case["input"].as_str() {
            Some("mni") => (&t1, &labels),
            Some("mni_2mm") => (&t1_2mm, &labels_2mm),
            other => panic!("{name}: unknown input {other:?}"),
        };
        let want_dims: [usize; 3] = serde_json::from_value(case["output_shape"].clone()).expect("shape");
        let want_affine = Affine::from_rows(rows(&case["output_affine"]));
        let grid = if case["spacing"].is_array() {
            let spacing: [f64; 3] = serde_json::from_value(case["spacing"].clone()).expect("spacing");
            let g = TargetGrid::with_spacing(intensity.dims(), intensity.affine(), spacing, &limits).expect("grid");
            assert_eq!(g.dims(), want_dims, "{name}: output shape");
            assert!(max_abs_diff(g.affine(), &want_affine) <= 1e-9, "{name}: output affine {:?}", g.affine());
            g
        } else {
            TargetGrid::new(want_dims, want_affine, &limits).expect("grid")
        };

        let out = resample::linear(intensity, &grid, 0.0).expect("resample");
        assert_eq!((out.dims(), out.affine()), (want_dims, grid.affine()));
        compare_linear(&format!("{name} linear t1"), out.data(), case, &case["linear_t1"], t1_range);

        let out = resample::nearest(label_map, &grid, 0u8).expect("resample");
        let as_f32: Vec<f32> = out.data().iter().map(|&v| f32::from(v)).collect();
        let refs_nn = &case["nearest_labels"];
        let idx = indices(&case["sample_indices"]);
        let mismatches = idx.iter().zip(&floats(&refs_nn["sample_values"])).filter(|&(&i, &w)| as_f32[i] != w).count();
        let ties = case["nearest_exact_half_ties_in_samples"].as_u64().expect("ties");
        eprintln!("{name} nearest labels: {mismatches} mismatches in {} samples ({ties} exact-half ties)", idx.len());
        assert_eq!(mismatches, 0, "{name}: nearest-neighbour labels differ from scipy order=0");
        let want_sum: u64 = refs_nn["checksum"].as_str().expect("checksum").parse().expect("u64");
        assert_eq!(checksum(&as_f32), want_sum, "{name}: whole-volume nearest-neighbour labels differ from scipy");

        if case.get("linear_gm").is_some() {
            let nvox = gm.len();
            let mut data = gm.data().to_vec();
            data.extend_from_slice(wm.data());
            assert_eq!(data.len(), 2 * nvox);
            let maps = ProbabilityMaps::new(2, gm.dims(), *gm.affine(), data, "mni gm+wm").expect("maps");
            let out = resample::linear_channels(&maps, &grid, 0.0).expect("resample");
            assert_eq!((out.channels(), out.dims()), (2, want_dims));
            compare_linear(&format!("{name} linear gm channel"), out.channel(0), case, &case["linear_gm"], 1.0);
            compare_linear(&format!("{name} linear wm channel"), out.channel(1), case, &case["linear_wm"], 1.0);
        }
    }
}

#[test]
fn labels_go_back_to_the_source_grid_exactly() {
    // A mask computed on the canonical grid of a sagittal PIR scan, taken back, must
    // line up voxel for voxel with that scan.
    let pir = raw("t1_pir");
    let (can, record) = to_canonical(&pir).expect("valid");
    let mask = can.map(|&v| u8::from(v > 100.0));
    let back = from_canonical(&mask, &record).expect("fits");
    assert_eq!(back.affine(), pir.affine());
    assert!(back.data().iter().zip(pir.data()).all(|(&m, &v)| m == u8::from(v > 100.0)));
}

// ---- properties ---------------------------------------------------------------

const PERMS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];

/// Random valid affines: any axis permutation and flips, anisotropic zooms,
/// rotations up to ~25° about each axis, any translation.
fn affine_strategy() -> impl Strategy<Value = Affine> {
    (
        0..6usize,
        prop::array::uniform3(any::<bool>()),
        prop::array::uniform3(0.3f64..3.0),
        prop::array::uniform3(-0.45f64..0.45),
        prop::array::uniform3(-80.0f64..80.0),
    )
        .prop_map(|(p, flips, zooms, angles, shift)| {
            let mut base = Matrix4::<f64>::identity();
            for c in 0..3 {
                for r in 0..3 {
                    base[(r, c)] = 0.0;
                }
                base[(PERMS[p][c], c)] = if flips[c] { -zooms[c] } else { zooms[c] };
                base[(c, 3)] = shift[c];
            }
            let rot = Rotation3::from_euler_angles(angles[0], angles[1], angles[2]).to_homogeneous();
            Affine::from_matrix(rot * base)
        })
}

fn volume_strategy() -> impl Strategy<Value = Volume<u16>> {
    (prop::array::uniform3(1usize..7), affine_strategy()).prop_flat_map(|(dims, affine)| {
        prop::collection::vec(0u16..6, dims.iter().product::<usize>())
            .prop_map(move |data| Volume::new(dims, data, affine, SourceMeta::default()).expect("consistent shape"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn reorientation_round_trip_is_exact_and_keeps_world_positions(v in volume_strategy()) {
        let (can, record) = to_canonical(&v).expect("valid affine");
        prop_assert_eq!(can.affine().orientation_code(), "RAS");
        let back = from_canonical(&can, &record).expect("fits");
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(into_canonical(v.clone()).expect("valid affine"), (can.clone(), record));
        // Every canonical voxel sits where its source voxel was.
        let [nx, ny, nz] = can.dims();
        let inv = v.affine().inverse().expect("invertible");
        for (i, j, k) in [(0, 0, 0), (nx - 1, ny - 1, nz - 1), (nx / 2, 0, nz - 1)] {
            let src = inv.apply(can.affine().apply([i as f64, j as f64, k as f64]));
            let s = src.map(|x| x.round());
            prop_assert!(src.iter().zip(&s).all(|(a, b)| (a - b).abs() < 1e-6), "{:?}", src);
            prop_assert_eq!(can.get(i, j, k), v.get(s[0] as usize, s[1] as usize, s[2] as usize));
        }
    }

    #[test]
    fn resampling_onto_the_same_grid_is_the_identity(v in volume_strategy()) {
        let grid = TargetGrid::new(v.dims(), *v.affine(), &GridLimits::default()).expect("valid");
        let nn = resample::nearest(&v, &grid, 99u16).expect("resample");
        prop_assert_eq!(nn.data(), v.data());
        let f = v.map(|&x| f32::from(x) * 1.5 - 2.0);
        let lin = resample::linear(&f, &grid, -7.0).expect("resample");
        for (a, b) in lin.data().iter().zip(f.data()) {
            prop_assert!((a - b).abs() <= 1e-5, "{} vs {}", a, b);
        }
    }

    #[test]
    fn nearest_never_invents_labels(v in volume_strategy(), target in affine_strategy(), dims in prop::array::uniform3(1usize..9)) {
        let grid = TargetGrid::new(dims, target, &GridLimits::default()).expect("valid");
        let out = resample::nearest(&v, &grid, 77u16).expect("resample");
        let allowed: BTreeSet<u16> = v.data().iter().copied().chain([77]).collect();
        prop_assert!(out.data().iter().all(|x| allowed.contains(x)));
        // Linear interpolation of a constant volume is that constant wherever it is inside.
        let c = v.map(|_| 3.25f32);
        let lin = resample::linear(&c, &grid, 0.0).expect("resample");
        prop_assert!(lin.data().iter().all(|&x| x == 0.0 || (x - 3.25).abs() < 1e-5));
    }

    #[test]
    fn broken_affines_are_errors_not_panics(v in volume_strategy(), row in 0usize..3, col in 0usize..4, bad in prop::sample::select(vec![f64::NAN, f64::INFINITY, 0.0])) {
        let mut rows = v.affine().to_rows();
        if bad == 0.0 {
            // Zero a whole column of the linear block: singular.
            let c = col.min(2);
            for r in rows.iter_mut().take(3) { r[c] = 0.0; }
        } else {
            rows[row][col] = bad;
        }
        let mut broken = v.clone();
        broken.set_affine(Affine::from_rows(rows));
        prop_assert!(to_canonical(&broken).is_err());
        let good = TargetGrid::new([3, 3, 3], Affine::identity(), &GridLimits::default()).expect("valid");
        prop_assert!(resample::nearest(&broken, &good, 0).is_err());
        prop_assert!(TargetGrid::new([3, 3, 3], *broken.affine(), &GridLimits::default()).is_err());
        prop_assert!(TargetGrid::with_spacing(v.dims(), broken.affine(), [1.0; 3], &GridLimits::default()).is_err());
    }
}
