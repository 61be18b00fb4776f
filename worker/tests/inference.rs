//! `worker::inference` against MONAI 1.6.1's `sliding_window_inference` with
//! onnxruntime members (training/reference/monai_sliding_window.py writes the
//! fixtures under tests/fixtures/monai/), and the engine's own guarantees:
//! batch size, flips, gates, progress, typed errors.

mod common;

use std::path::PathBuf;

use serde_json::Value;
use worker::inference::{
    Ensemble, Flip, ImageRef, ImportanceMap, InferenceError, MeanSink, PassInfo, Plan, Progress, SIGMA_SCALE,
    WindowLayout,
};
use worker::manifest::{Activation, ManifestError, Task, Tiling, load_model_folder};
use worker::runtime::{Model, RuntimeError};
use worker::uncertainty::Accumulator;

fn crop() -> ([usize; 3], Vec<f32>) {
    common::load_raw_f32(&common::testdata("onnx/mni_crop.f32").with_extension(""))
}

/// The crop mirrored past its end and cut to 37 × 29 × 41 (as the reference script builds it).
fn noncubic() -> ([usize; 3], Vec<f32>) {
    let ([n0, n1, _], c) = crop();
    let r = |x: usize| if x < 32 { x } else { 63 - x };
    let dims = [37, 29, 41];
    let mut out = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                out.push(c[r(i) + n0 * (r(j) + n1 * r(k))]);
            }
        }
    }
    (dims, out)
}

fn model(rel: &str) -> Model {
    Model::load(&common::testdata(rel), &common::config()).unwrap()
}

fn plan(patch: [usize; 3], tta_axes: Vec<usize>, mc: u32, classes: usize) -> Plan {
    Plan {
        task: Task::Segmentation,
        patch_size: patch,
        overlap: 0.5,
        sigma_scale: SIGMA_SCALE,
        tta_axes,
        mc_dropout_passes: mc,
        batch_size: 4,
        classes,
        activation: Activation::Softmax,
        tiling: Tiling::Windows,
        size_multiple: 1,
        whole_max_voxels: 1 << 22,
        features: None,
    }
}

fn usizes(v: &Value) -> Vec<usize> {
    serde_json::from_value(v.clone()).unwrap()
}

fn arr3(v: &Value) -> [usize; 3] {
    serde_json::from_value(v.clone()).unwrap()
}

fn flip_of(v: &Value) -> Flip {
    let mut f = [false; 3];
    for a in usizes(v) {
        f[a] = true;
    }
    Flip(f)
}

fn no_progress() -> impl FnMut(&Progress) {
    |_: &Progress| {}
}

#[test]
fn windows_match_monai() {
    let refs = common::load_json("monai/windows.json");
    for case in refs["cases"].as_array().unwrap() {
        let overlap = case["overlap"].as_f64().unwrap();
        let layout = WindowLayout::new(arr3(&case["image"]), arr3(&case["patch"]), overlap).unwrap();
        let starts: Vec<[usize; 3]> = serde_json::from_value(case["starts"].clone()).unwrap();
        assert_eq!(layout.padded, arr3(&case["padded"]), "{case}");
        assert_eq!(layout.pad_before, arr3(&case["pad_before"]), "{case}");
        assert_eq!(layout.interval, arr3(&case["interval"]), "{case}");
        assert_eq!(layout.starts, starts, "image {} patch {}", case["image"], case["patch"]);
    }
}

#[test]
fn importance_map_matches_monai() {
    let refs = common::load_json("monai/importance.json");
    assert_eq!(refs["sigma_scale"].as_f64(), Some(SIGMA_SCALE));
    let mut worst = 0f64;
    for case in refs["cases"].as_array().unwrap() {
        let patch = arr3(&case["patch"]);
        let map = ImportanceMap::gaussian(patch, SIGMA_SCALE);
        let values: Vec<f32> = serde_json::from_value(case["values"].clone()).unwrap();
        let indices = case.get("indices").map_or_else(|| (0..values.len()).collect(), usizes);
        assert_eq!(indices.len(), values.len());
        for (&i, &want) in indices.iter().zip(&values) {
            let rel = (f64::from(map.values[i]) - f64::from(want)).abs() / f64::from(want);
            worst = worst.max(rel);
        }
        let min = map.values.iter().copied().fold(f32::INFINITY, f32::min);
        let max = map.values.iter().copied().fold(0f32, f32::max);
        let sum: f64 = map.values.iter().map(|&v| f64::from(v)).sum();
        assert_eq!(f64::from(min), case["min"].as_f64().unwrap(), "{patch:?}");
        assert!((f64::from(max) / case["max"].as_f64().unwrap() - 1.0).abs() < 1e-6, "{patch:?}");
        assert!((sum / case["sum"].as_f64().unwrap() - 1.0).abs() < 1e-6, "{patch:?}");
    }
    eprintln!("importance map: max relative difference from MONAI {worst:e}");
    assert!(worst <= 1e-6, "{worst}");
}

/// Runs a fixture's case and compares the ensemble mean and the listed passes with MONAI.
fn check_case(name: &str, image: ([usize; 3], Vec<f32>)) -> f32 {
    let refs = common::load_json(&format!("monai/{name}.json"));
    let (dims, voxels) = image;
    assert_eq!(dims.to_vec(), usizes(&refs["image_shape"]));
    let members: Vec<Model> = refs["members"].as_array().unwrap().iter().map(|m| model(m.as_str().unwrap())).collect();
    let plan = plan(arr3(&refs["patch_size"]), usizes(&refs["tta_axes"]), 0, 3);
    let ensemble = Ensemble::new(members.iter().collect(), plan).unwrap();
    let wanted: Vec<(usize, Flip)> = refs["passes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["member"].as_u64().unwrap() as usize, flip_of(&p["flip"])))
        .collect();
    let mut kept: Vec<Option<Vec<f32>>> = vec![None; wanted.len()];
    let keep = |pass: &PassInfo, probs: &[f32]| -> Result<(), String> {
        if let Some(w) = wanted.iter().position(|&(m, f)| m == pass.member && f == pass.flip) {
            kept[w] = Some(probs.to_vec());
        }
        Ok(())
    };
    let mut sinks = (MeanSink::new(), keep);
    let run = ensemble.segment(ImageRef::new(dims, &voxels).unwrap(), &mut sinks, &mut no_progress()).unwrap();
    assert_eq!(run.passes, members.len() * (1 << refs["tta_axes"].as_array().unwrap().len()));
    let mean = sinks.0.mean().unwrap();
    let v: usize = dims.iter().product();
    let indices = usizes(&refs["indices"]);

    let compare = |probs: &[f32], want: &Value, what: &str| -> f32 {
        let values: Vec<Vec<f32>> = serde_json::from_value(want["values"].clone()).unwrap();
        let mut max_diff = 0f32;
        for (c, vals) in values.iter().enumerate() {
            for (&i, &w) in indices.iter().zip(vals) {
                max_diff = max_diff.max((probs[c * v + i] - w).abs());
            }
        }
        let sums: Vec<f64> = serde_json::from_value(want["channel_sums"].clone()).unwrap();
        for (c, &s) in sums.iter().enumerate() {
            let got: f64 = probs[c * v..(c + 1) * v].iter().map(|&p| f64::from(p)).sum();
            assert!((got - s).abs() <= 1e-6 * v as f64, "{name} {what}: channel {c} sum {got} vs MONAI {s}");
        }
        eprintln!(
            "{name} {what}: max |rust - monai| over {} voxels x {} channels: {max_diff:e}",
            indices.len(),
            values.len()
        );
        assert!(max_diff <= 1e-4, "{name} {what}: max abs difference {max_diff}");
        max_diff
    };
    let mut worst = compare(&mean, &refs["mean"], "ensemble mean");
    for (p, want) in refs["passes"].as_array().unwrap().iter().enumerate() {
        let probs = kept[p].as_ref().expect("the pass ran");
        worst = worst.max(compare(probs, want, &format!("pass member {} flip {}", wanted[p].0, wanted[p].1)));
    }

    // The full label map: argmax of the mean, lowest class on ties (numpy.argmax).
    let labels = refs["mean"]["labels"].as_str().unwrap().as_bytes();
    assert_eq!(labels.len(), v);
    let agree = (0..v)
        .filter(|&i| {
            let p = [mean[i], mean[v + i], mean[2 * v + i]];
            let arg = (0..3).fold(0, |b, c| if p[c] > p[b] { c } else { b });
            usize::from(labels[i] - b'0') == arg
        })
        .count();
    let fraction = agree as f64 / v as f64;
    eprintln!("{name}: argmax agrees with MONAI on {agree}/{v} voxels ({:.4} %)", 100.0 * fraction);
    assert!(fraction >= 0.9999, "{fraction}");
    worst
}

#[test]
fn crop_with_tta_ensemble_matches_monai() {
    check_case("crop32", crop());
}

#[test]
fn noncubic_padded_image_matches_monai() {
    check_case("noncubic", noncubic());
}

#[test]
fn gated_model_at_gate_zero_matches_monai() {
    check_case("gated", crop());
}

#[test]
fn batch_size_does_not_change_the_result() {
    let (dims, voxels) = noncubic();
    let members = [model("onnx/tissue_model/member_0.onnx")];
    let image = ImageRef::new(dims, &voxels).unwrap();
    let run = |batch: usize| {
        let ensemble = Ensemble::new(members.iter().collect(), plan([16, 16, 16], vec![0, 2], 0, 3))
            .unwrap()
            .with_batch_size(batch)
            .unwrap();
        let mut mean = MeanSink::new();
        let run = ensemble.segment(image, &mut mean, &mut no_progress()).unwrap();
        (run, mean.mean().unwrap())
    };
    let (one, reference) = run(1);
    assert!(one.layout.starts.len() > 7);
    for batch in [3, 7, one.layout.starts.len() + 5] {
        let (r, probs) = run(batch);
        assert_eq!(r.model_calls, r.passes * one.layout.starts.len().div_ceil(batch));
        let diff = probs.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-6, "batch {batch}: {diff}");
    }
}

/// Lanes spread the model calls over several sessions of each member; the
/// passes, their order, every probability and the progress are those of one lane.
#[test]
fn lanes_change_the_speed_not_the_result() {
    let (dims, voxels) = noncubic();
    let set = || [model("onnx/tissue_model/member_0.onnx"), model("onnx/tissue_model/member_1.onnx")];
    let sets = [set(), set(), set()];
    let image = ImageRef::new(dims, &voxels).unwrap();
    let run = |n: usize| {
        let lanes = sets[..n].iter().map(|s| s.iter().collect()).collect();
        let ensemble =
            Ensemble::with_lanes(lanes, plan([16, 16, 16], vec![0, 1], 0, 3)).unwrap().with_batch_size(2).unwrap();
        assert_eq!(ensemble.lanes(), n);
        let mut passes = Vec::new();
        let mut seen = Vec::new();
        let mut sink = |p: &PassInfo, probs: &[f32]| -> Result<(), String> {
            passes.push((p.index, p.member, p.flip, probs.to_vec()));
            Ok(())
        };
        let run = ensemble.segment(image, &mut sink, &mut |p| seen.push(*p)).unwrap();
        (run, passes, seen)
    };
    let (one, reference, progress) = run(1);
    assert_eq!(reference.len(), 8);
    assert!(one.model_calls > 8 * 2, "several calls per pass, so lanes interleave inside a pass");
    for n in [2, 3] {
        let (r, passes, seen) = run(n);
        assert_eq!(r, one, "{n} lanes");
        assert_eq!(seen, progress, "{n} lanes report the same progress");
        assert_eq!(passes.len(), reference.len());
        for (a, b) in passes.iter().zip(&reference) {
            assert_eq!(a.0..=a.2.0.len(), b.0..=b.2.0.len());
            assert_eq!((a.1, a.2), (b.1, b.2));
            assert!(a.3 == b.3, "pass {} differs with {n} lanes", a.0);
        }
    }
    // Every lane must hold every member.
    let short = vec![vec![&sets[0][0], &sets[0][1]], vec![&sets[1][0]]];
    let err = Ensemble::with_lanes(short, plan([16; 3], vec![], 0, 3)).unwrap_err();
    assert!(err.to_string().contains("lane 1 has 1 members"), "{err}");
    assert!(Ensemble::with_lanes(vec![], plan([16; 3], vec![], 0, 3)).is_err());
}

/// A failing model call on one lane ends the run with that model's error; no
/// pass after it reaches the sink.
#[test]
fn a_failing_lane_fails_the_run_with_the_model_named() {
    let (dims, voxels) = crop();
    let good = model("onnx/tissue_model/member_0.onnx");
    let wrong = model("onnx/classifier.onnx");
    // Lane 1 runs a classifier (`[N, 2]` out) in place of member 0; 8 passes × 7
    // calls give it work whatever the thread timing.
    let ensemble = Ensemble::with_lanes(vec![vec![&good], vec![&wrong]], plan([16; 3], vec![0, 1, 2], 0, 3)).unwrap();
    let mut passes = 0;
    let mut sink = |_: &PassInfo, _: &[f32]| -> Result<(), String> {
        passes += 1;
        Ok(())
    };
    let err = ensemble.segment(ImageRef::new(dims, &voxels).unwrap(), &mut sink, &mut no_progress()).unwrap_err();
    assert!(matches!(&err, InferenceError::OutputShape { path, .. } if path.ends_with("classifier.onnx")), "{err}");
    assert!(passes < 8, "the run stopped at the failing call");
}

#[test]
fn progress_counts_every_model_call() {
    let (dims, voxels) = crop();
    let members = [model("onnx/tissue_model/member_0.onnx"), model("onnx/tissue_model/member_1.onnx")];
    let ensemble = Ensemble::new(members.iter().collect(), plan([16, 16, 16], vec![1], 0, 3)).unwrap();
    assert_eq!(ensemble.passes(), 4);
    let order: Vec<(usize, Flip)> = ensemble.pass_order().iter().map(|p| (p.member, p.flip)).collect();
    let j = Flip([false, true, false]);
    assert_eq!(order, vec![(0, Flip::IDENTITY), (0, j), (1, Flip::IDENTITY), (1, j)]);
    let mut seen: Vec<Progress> = Vec::new();
    let mut passes = Vec::new();
    let mut sink = |p: &PassInfo, probs: &[f32]| -> Result<(), String> {
        passes.push((p.index, probs.len()));
        Ok(())
    };
    let run = ensemble.segment(ImageRef::new(dims, &voxels).unwrap(), &mut sink, &mut |p| seen.push(*p)).unwrap();
    // 27 windows in batches of 4: 7 calls per pass.
    assert_eq!(run.model_calls, 4 * 7);
    assert_eq!(seen.len(), run.model_calls);
    assert!(seen.iter().all(|p| p.passes == 4 && p.windows == 27));
    assert_eq!(seen.iter().filter(|p| p.windows_done == 27).map(|p| p.pass).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(passes, (0..4).map(|i| (i, 3 * 32 * 32 * 32)).collect::<Vec<_>>());
}

#[test]
fn accumulator_is_a_sink_and_agrees_with_the_plain_mean() {
    let (dims, voxels) = noncubic();
    let members = [model("onnx/tissue_model/member_0.onnx"), model("onnx/tissue_model/member_1.onnx")];
    let ensemble = Ensemble::new(members.iter().collect(), plan([16, 20, 48], vec![0], 0, 3)).unwrap();
    let v = voxels.len();
    let mut sinks = (Accumulator::new(3, v, 0.008).unwrap(), MeanSink::new());
    ensemble.segment(ImageRef::new(dims, &voxels).unwrap(), &mut sinks, &mut no_progress()).unwrap();
    let maps = sinks.0.finish().unwrap();
    assert_eq!(maps.passes, 4);
    let mean = sinks.1.mean().unwrap();
    let diff = maps.mean_probs.iter().zip(&mean).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-6, "{diff}");
    assert!(maps.mutual_information.iter().any(|&m| m > 0.0), "members and flips disagree somewhere");
}

#[test]
fn a_member_with_wrong_output_channels_is_a_typed_error() {
    let (dims, voxels) = crop();
    let conv = model("onnx/conv3d_softmax.onnx");
    let ensemble = Ensemble::new(vec![&conv], plan([16, 16, 16], vec![], 0, 2)).unwrap();
    let err =
        ensemble.segment(ImageRef::new(dims, &voxels).unwrap(), &mut MeanSink::new(), &mut no_progress()).unwrap_err();
    match &err {
        InferenceError::OutputShape { path, expected, actual } => {
            assert!(path.ends_with("conv3d_softmax.onnx"));
            assert_eq!((expected[1], actual[1]), (2, 3));
        }
        e => panic!("{e}"),
    }
    assert!(err.to_string().contains("conv3d_softmax.onnx"), "{err}");
    // A classifier plan on a segmentation output.
    let plan = Plan { task: Task::Classification, ..plan([16, 16, 16], vec![], 0, 3) };
    let err =
        Ensemble::new(vec![&conv], plan).unwrap().classify(ImageRef::new(dims, &voxels).unwrap(), &mut no_progress());
    assert!(matches!(err, Err(InferenceError::OutputShape { .. })), "{err:?}");
}

#[test]
fn bad_plans_and_images_are_refused() {
    let conv = model("onnx/conv3d_softmax.onnx");
    let plan_err = |p: Plan| Ensemble::new(vec![&conv], p).unwrap_err();
    assert!(matches!(plan_err(Plan { batch_size: 0, ..plan([8; 3], vec![], 0, 3) }), InferenceError::Plan { .. }));
    assert!(matches!(plan_err(Plan { overlap: 1.0, ..plan([8; 3], vec![], 0, 3) }), InferenceError::Plan { .. }));
    assert!(matches!(plan_err(plan([8, 0, 8], vec![], 0, 3)), InferenceError::Plan { .. }));
    assert!(matches!(plan_err(plan([8; 3], vec![3], 0, 3)), InferenceError::Plan { .. }));
    assert!(matches!(plan_err(plan([8; 3], vec![1, 1], 0, 3)), InferenceError::Plan { .. }));
    assert!(matches!(plan_err(plan([usize::MAX / 2, 4, 4], vec![], 0, 3)), InferenceError::Plan { .. }));
    // MC passes need a gate input on every member.
    match plan_err(plan([8; 3], vec![], 2, 3)) {
        InferenceError::Model { path, reason } => {
            assert!(path.ends_with("conv3d_softmax.onnx") && reason.contains("gate"), "{reason}");
        }
        e => panic!("{e}"),
    }
    assert!(Ensemble::new(vec![], plan([8; 3], vec![], 0, 3)).is_err());
    let short = vec![0f32; 10];
    assert!(matches!(ImageRef::new([2, 2, 3], &short), Err(InferenceError::Image { expected: 12, actual: 10, .. })));
    assert!(ImageRef::new([0, 2, 3], &[]).is_err());
}

#[test]
fn gate_zero_is_deterministic_and_gate_one_is_dropout() {
    let (dims, voxels) = crop();
    let gated = model("onnx/gated_dropout.onnx");
    let plain = model("onnx/conv3d_softmax.onnx");
    assert_eq!(gated.gate().map(|g| g.name.as_str()), Some("mc_dropout"));
    assert!(plain.gate().is_none());
    let input = ndarray::Array5::from_shape_vec((1, 1, dims[0], dims[1], dims[2]), voxels.clone()).unwrap();
    let off = gated.run(input.view()).unwrap();
    assert_eq!(gated.run_gated(input.view(), Some(0.0)).unwrap(), off);
    assert_eq!(gated.run_gated(input.view(), None).unwrap(), off);
    // Same weights as conv3d_softmax (seed 3): gate 0 is that model.
    let reference = plain.run(input.view()).unwrap();
    let diff = off.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-6, "{diff}");
    let on1 = gated.run_gated(input.view(), Some(1.0)).unwrap();
    let on2 = gated.run_gated(input.view(), Some(1.0)).unwrap();
    let changed = |a: &ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>| a.iter().zip(b).filter(|(x, y)| x != y).count();
    assert!(changed(&on1, &off) > off.len() / 4, "dropout changes the output");
    assert!(changed(&on1, &on2) > off.len() / 4, "each run draws a fresh mask");
    match plain.run_gated(input.view(), Some(1.0)) {
        Err(RuntimeError::NoGate { path, .. }) => assert!(path.ends_with("conv3d_softmax.onnx")),
        other => panic!("{other:?}"),
    }

    // Through the engine: 3 MC passes per flip, each different; deterministic passes equal gate 0.
    let ensemble = Ensemble::new(vec![&gated], plan([16, 16, 16], vec![], 3, 3)).unwrap();
    assert_eq!(ensemble.passes(), 3);
    let mut passes: Vec<Vec<f32>> = Vec::new();
    let mut sink = |p: &PassInfo, probs: &[f32]| -> Result<(), String> {
        assert_eq!(p.mc_pass, Some(passes.len() as u32));
        passes.push(probs.to_vec());
        Ok(())
    };
    let image = ImageRef::new(dims, &voxels).unwrap();
    ensemble.segment(image, &mut sink, &mut no_progress()).unwrap();
    assert_ne!(passes[0], passes[1]);
    assert_ne!(passes[1], passes[2]);
    let deterministic = |m: &Model| {
        let mut mean = MeanSink::new();
        Ensemble::new(vec![m], plan([16, 16, 16], vec![], 0, 3))
            .unwrap()
            .segment(image, &mut mean, &mut no_progress())
            .unwrap();
        mean.mean().unwrap()
    };
    let (a, b) = (deterministic(&gated), deterministic(&plain));
    assert_ne!(passes[0], a);
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-6, "{diff}");
}

#[test]
fn flips_round_trip_and_cover_every_subset() {
    let all = Flip::subsets(&[0, 1, 2]);
    assert_eq!(all.len(), 8);
    assert_eq!(all[0], Flip::IDENTITY);
    let mut distinct = all.clone();
    distinct.sort_by_key(|f| f.0);
    distinct.dedup();
    assert_eq!(distinct.len(), 8);
    assert_eq!(Flip::subsets(&[2]), vec![Flip::IDENTITY, Flip([false, false, true])]);
    assert_eq!(Flip([true, false, true]).to_string(), "i+k");

    // A one-window image: each flipped pass, flipped back by the engine, equals
    // running the member on the mirrored image and mirroring its output.
    let (dims, voxels) = crop();
    let conv = model("onnx/conv3d_softmax.onnx");
    let ensemble = Ensemble::new(vec![&conv], plan(dims, vec![0, 1, 2], 0, 3)).unwrap();
    let mut by_flip: Vec<(Flip, Vec<f32>)> = Vec::new();
    let mut sink = |p: &PassInfo, probs: &[f32]| -> Result<(), String> {
        by_flip.push((p.flip, probs.to_vec()));
        Ok(())
    };
    ensemble.segment(ImageRef::new(dims, &voxels).unwrap(), &mut sink, &mut no_progress()).unwrap();
    let [n0, n1, n2] = dims;
    let v = n0 * n1 * n2;
    let at = |f: Flip, i: usize, j: usize, k: usize| {
        (if f.0[0] { n0 - 1 - i } else { i })
            + n0 * ((if f.0[1] { n1 - 1 - j } else { j }) + n1 * (if f.0[2] { n2 - 1 - k } else { k }))
    };
    let mut max_diff = 0f32;
    for (flip, probs) in &by_flip {
        let mut mirrored = vec![0f32; v];
        for k in 0..n2 {
            for j in 0..n1 {
                for i in 0..n0 {
                    mirrored[i + n0 * (j + n1 * k)] = voxels[at(*flip, i, j, k)];
                }
            }
        }
        let input = ndarray::Array5::from_shape_vec((1, 1, n2, n1, n0), mirrored).unwrap();
        let input = input.permuted_axes([0, 1, 4, 3, 2]);
        let out = conv.run(input.view()).unwrap();
        for c in 0..3 {
            for k in 0..n2 {
                for j in 0..n1 {
                    for i in 0..n0 {
                        // The engine's value at (i, j, k) is the mirrored run's value at the mirrored position.
                        let m = at(*flip, i, j, k);
                        let (mi, mj, mk) = (m % n0, (m / n0) % n1, m / (n0 * n1));
                        let want = out[[0, c, mi, mj, mk]];
                        max_diff = max_diff.max((probs[c * v + i + n0 * (j + n1 * k)] - want).abs());
                    }
                }
            }
        }
    }
    assert_eq!(by_flip.len(), 8);
    assert!(max_diff <= 1e-6, "{max_diff}");
    assert_ne!(by_flip[0].1, by_flip[1].1, "the conv is not mirror-symmetric, flips must differ");
}

#[test]
fn classification_matches_onnxruntime_over_flips() {
    let refs = common::load_json("monai/classification.json");
    let (dims, voxels) = noncubic();
    let clf = model("onnx/classifier.onnx");
    let plan = Plan { task: Task::Classification, ..plan([1, 1, 1], usizes(&refs["tta_axes"]), 0, 2) };
    let ensemble = Ensemble::new(vec![&clf], plan).unwrap();
    let mut calls = 0;
    let u = ensemble.classify(ImageRef::new(dims, &voxels).unwrap(), &mut |_| calls += 1).unwrap();
    assert_eq!((u.members, calls), (8, 8));
    let mean: Vec<f64> = serde_json::from_value(refs["mean"].clone()).unwrap();
    let diff = u.mean_probs.iter().zip(&mean).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
    eprintln!("classification: max |rust - onnxruntime python| of the mean over 8 flips: {diff:e}");
    assert!(diff <= 1e-6, "{diff}");
    let runs = refs["runs"].as_array().unwrap();
    let spread = runs
        .iter()
        .map(|r| r["probabilities"][0].as_f64().unwrap())
        .fold((1f64, 0f64), |(lo, hi), p| (lo.min(p), hi.max(p)));
    assert!(spread.1 > spread.0, "flips change the classifier's output, so the mean tests the flips");
    // A segmentation plan refuses to classify and vice versa.
    let seg = Ensemble::new(vec![&clf], self::plan([8; 3], vec![], 0, 2)).unwrap();
    assert!(matches!(
        seg.classify(ImageRef::new(dims, &voxels).unwrap(), &mut no_progress()),
        Err(InferenceError::Plan { .. })
    ));
}

#[test]
fn a_sink_error_stops_the_run_with_the_pass_named() {
    let (dims, voxels) = crop();
    let conv = model("onnx/conv3d_softmax.onnx");
    let ensemble = Ensemble::new(vec![&conv], plan([16; 3], vec![0], 0, 3)).unwrap();
    let mut sink = |p: &PassInfo, _: &[f32]| if p.index == 1 { Err("disk full".to_string()) } else { Ok(()) };
    let err = ensemble.segment(ImageRef::new(dims, &voxels).unwrap(), &mut sink, &mut no_progress()).unwrap_err();
    assert!(matches!(err, InferenceError::Sink { pass: 1, .. }), "{err}");
    assert!(err.to_string().contains("disk full"), "{err}");
    // The accumulator refuses a pass of the wrong size, through the same path.
    let mut acc = Accumulator::new(3, 10, 1.0).unwrap();
    let err = ensemble.segment(ImageRef::new(dims, &voxels).unwrap(), &mut acc, &mut no_progress()).unwrap_err();
    assert!(matches!(err, InferenceError::Sink { pass: 0, .. }), "{err}");
}

/// A model folder with the gated member: it loads only when the manifest names the gate.
#[test]
fn gated_members_need_mc_dropout_input_in_the_manifest() {
    use sha2::{Digest, Sha256};
    let dir = common::scratch_model_folder("gated");
    let bytes = std::fs::read(common::testdata("onnx/gated_dropout.onnx")).unwrap();
    std::fs::write(dir.join("member_0.onnx"), &bytes).unwrap();
    let sha = format!("{:x}", Sha256::digest(&bytes));
    let old_sha = {
        let text = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
        let line = text.lines().find(|l| l.starts_with("sha256")).unwrap().to_string();
        line.split('"').nth(1).unwrap().to_string()
    };
    common::edit_manifest(&dir, |t| t.replacen(&old_sha, &sha, 1));
    let load = |dir: &PathBuf| load_model_folder(dir, &common::config());
    match load(&dir).unwrap_err() {
        ManifestError::Signature { path, reason } => {
            assert!(path.ends_with("member_0.onnx") && reason.contains("mc_dropout"), "{reason}");
        }
        e => panic!("{e}"),
    }
    common::edit_manifest(&dir, |t| {
        t.replacen("mc_dropout_passes = 0", "mc_dropout_passes = 0\nmc_dropout_input = \"mc_dropout\"", 1)
    });
    // Now member_1 (no gate) is the one that disagrees.
    match load(&dir).unwrap_err() {
        ManifestError::Signature { path, reason } => {
            assert!(path.ends_with("member_1.onnx") && reason.contains("mc_dropout"), "{reason}");
        }
        e => panic!("{e}"),
    }
    std::fs::write(dir.join("member_1.onnx"), &bytes).unwrap();
    let old_sha1 = {
        let text = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
        let line = text.lines().filter(|l| l.starts_with("sha256")).nth(1).unwrap().to_string();
        line.split('"').nth(1).unwrap().to_string()
    };
    common::edit_manifest(&dir, |t| t.replacen(&old_sha1, &sha, 1));
    common::edit_manifest(&dir, |t| {
        t.replacen(
            "[routing]",
            "[inference.profiles.cpu]\nmembers = 1\ntta_axes = [0]\nmc_dropout_passes = 2\n\n[routing]",
            1,
        )
    });
    let loaded = load(&dir).unwrap();
    let profile = loaded.select_profile(None).unwrap();
    assert_eq!((profile.label(), profile.members, profile.mc_dropout_passes), ("cpu", 1, 2));
    let ensemble = Ensemble::from_model(&loaded, &profile).unwrap();
    // 1 member × 2 flips × 2 MC passes.
    assert_eq!(ensemble.passes(), 4);
    let default = loaded.select_profile(Some("full"));
    assert!(matches!(default, Err(ManifestError::Profile { .. })), "{default:?}");
}

/// `activation = "none"`: the engine applies softmax to each window's logits before blending.
#[test]
fn logits_get_a_softmax_per_voxel() {
    let (dims, voxels) = crop();
    let conv = model("onnx/conv3d_softmax.onnx");
    let plan = Plan { activation: Activation::Identity, ..plan(dims, vec![], 0, 3) };
    let mut mean = MeanSink::new();
    Ensemble::new(vec![&conv], plan)
        .unwrap()
        .segment(ImageRef::new(dims, &voxels).unwrap(), &mut mean, &mut no_progress())
        .unwrap();
    let got = mean.mean().unwrap();
    let input = ndarray::Array5::from_shape_vec((1, 1, dims[2], dims[1], dims[0]), voxels.clone()).unwrap();
    let out = conv.run(input.permuted_axes([0, 1, 4, 3, 2]).view()).unwrap();
    let v = voxels.len();
    let mut max_diff = 0f64;
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let x: Vec<f64> = (0..3).map(|c| f64::from(out[[0, c, i, j, k]])).collect();
                let z: f64 = x.iter().map(|x| x.exp()).sum();
                for (c, xc) in x.iter().enumerate() {
                    let want = xc.exp() / z;
                    max_diff = max_diff.max((f64::from(got[c * v + i + dims[0] * (j + dims[1] * k)]) - want).abs());
                }
            }
        }
    }
    assert!(max_diff <= 1e-6, "{max_diff}");
}

/// The shipped tissue model routes both profiles on one estimator and one bound
/// (the estimate comes from the unflipped passes, worker::quality); a profile may
/// still carry its own bound, which an overridden pass set drops.
#[test]
fn profiles_share_the_shipped_bound_and_a_profile_bound_replaces_it() {
    use worker::pipeline::{ModelRunner, ProfileChoice};
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/brain-tissue");
    let named = |name: &str| ProfileChoice { name: Some(name.into()), ..ProfileChoice::default() };
    let runner = |dir: &PathBuf, choice: ProfileChoice| {
        ModelRunner::new(load_model_folder(dir, &common::config()).unwrap(), &choice, None, 1).unwrap()
    };
    let model = load_model_folder(&shipped, &common::config()).unwrap();
    let base = model.manifest().routing.predicted_dice_min;
    assert!(base.is_some(), "the shipped model routes on the predicted Dice");
    assert!(model.quality_estimator(5).is_some() && model.quality_estimator(2).is_none());
    let (full, cpu) = (runner(&shipped, named("full")), runner(&shipped, named("cpu")));
    assert_eq!(full.profile().tta_axes, vec![0], "left-right flips only");
    assert_eq!((full.policy().predicted_dice_min(), cpu.policy().predicted_dice_min()), (base, base));
    assert_eq!((full.profile().members, cpu.profile().members), (5, 5), "one base pass set, one estimator");

    // A copy whose `full` profile carries its own bound.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("model-folders/profile-bound");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
    let edited =
        text.replacen("[inference.profiles.full]\n", "[inference.profiles.full]\npredicted_dice_min = 0.93\n", 1);
    assert_ne!(edited, text);
    std::fs::write(dir.join("manifest.toml"), edited).unwrap();
    assert_eq!(runner(&dir, named("full")).policy().predicted_dice_min(), Some(0.93));
    assert_eq!(runner(&dir, named("cpu")).policy().predicted_dice_min(), base);
    let fewer = runner(&dir, ProfileChoice { members: Some(2), ..named("full") });
    assert_eq!(fewer.policy().predicted_dice_min(), base, "an overridden pass set falls back to [routing]");
}

/// A member's probabilities from one direct call on the whole image, mirrored
/// by `flip` going in and back coming out, as `[classes][voxels]` in the
/// image's Fortran order: what a whole-grid pass must hand on.
fn one_call(member: &Model, dims: [usize; 3], voxels: &[f32], flip: Flip, classes: usize) -> Vec<f32> {
    use ndarray::{Array3, Axis, ShapeBuilder};
    let mut image = Array3::from_shape_vec((dims[0], dims[1], dims[2]).f(), voxels.to_vec()).unwrap();
    for a in 0..3 {
        if flip.0[a] {
            image.invert_axis(Axis(a));
        }
    }
    let input = image.as_standard_layout().into_owned().insert_axis(Axis(0)).insert_axis(Axis(0));
    let mut out = member.run(input.view()).unwrap();
    assert_eq!(out.shape(), &[1, classes, dims[0], dims[1], dims[2]]);
    for a in 0..3 {
        if flip.0[a] {
            out.invert_axis(Axis(2 + a));
        }
    }
    let mut probs = Vec::with_capacity(classes * voxels.len());
    for c in 0..classes {
        let channel = out.index_axis(Axis(0), 0).index_axis(Axis(0), c).to_owned();
        probs.extend(channel.reversed_axes().iter().copied());
    }
    probs
}

/// Tiling `whole`: one model call per pass over the image zero-padded to the
/// size multiple, cropped back. The test members are one 3×3×3 convolution with
/// zero padding, so that is exactly one call on the unpadded image; sliding
/// windows differ from it where a window's edge cuts the image.
#[test]
fn whole_grid_is_one_call_per_pass_on_the_padded_grid() {
    let (dims, voxels) = noncubic();
    let members = [model("onnx/tissue_model/member_0.onnx"), model("onnx/tissue_model/member_1.onnx")];
    let mut whole = plan([16; 3], vec![0, 2], 0, 3);
    whole.tiling = Tiling::Whole;
    whole.size_multiple = 8;
    let ensemble = Ensemble::new(members.iter().collect(), whole.clone()).unwrap();
    let image = ImageRef::new(dims, &voxels).unwrap();
    let mut passes = Vec::new();
    let mut sink = |p: &PassInfo, probs: &[f32]| -> Result<(), String> {
        passes.push((p.member, p.flip, probs.to_vec()));
        Ok(())
    };
    let run = ensemble.segment(image, &mut sink, &mut no_progress()).unwrap();
    assert_eq!(run.tiling, Tiling::Whole);
    assert_eq!(run.layout.padded, [40, 32, 48], "37 × 29 × 41 up to multiples of 8");
    assert_eq!(run.layout.starts, vec![[0, 0, 0]]);
    assert_eq!((run.passes, run.model_calls), (8, 8), "one call per pass");
    let mut worst = 0f32;
    for (member, flip, probs) in &passes {
        let want = one_call(&members[*member], dims, &voxels, *flip, 3);
        worst = probs.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
    }
    assert!(worst <= 1e-5, "whole-grid pass vs one direct call: {worst}");

    // A windowed pass of member 0 is not that: windows see zeros where their edges cut the image.
    let want = one_call(&members[0], dims, &voxels, Flip::IDENTITY, 3);
    let mut windowed = MeanSink::new();
    let run = Ensemble::new(vec![&members[0]], plan([16; 3], vec![], 0, 3))
        .unwrap()
        .segment(image, &mut windowed, &mut no_progress())
        .unwrap();
    assert_eq!(run.tiling, Tiling::Windows);
    let differs = windowed.mean().unwrap().iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(differs > 1e-3, "windows blend zero-padded window edges: {differs}");
}

/// A grid whose padded size exceeds `whole_max_voxels` runs sliding windows,
/// exactly as a windowed plan does, and says so.
#[test]
fn whole_grid_falls_back_to_windows_above_its_voxel_limit() {
    let (dims, voxels) = noncubic();
    let members = [model("onnx/tissue_model/member_0.onnx")];
    let image = ImageRef::new(dims, &voxels).unwrap();
    let run = |p: Plan| {
        let mut mean = MeanSink::new();
        let run = Ensemble::new(members.iter().collect(), p).unwrap().segment(image, &mut mean, &mut no_progress());
        (run.unwrap(), mean.mean().unwrap())
    };
    let mut capped = plan([16; 3], vec![1], 0, 3);
    capped.tiling = Tiling::Whole;
    capped.size_multiple = 8;
    capped.whole_max_voxels = 40 * 32 * 48 - 1;
    assert_eq!(capped.whole_grid_patch(dims), None);
    let (fallback, a) = run(capped.clone());
    let (windowed, b) = run(plan([16; 3], vec![1], 0, 3));
    assert_eq!(fallback.tiling, Tiling::Windows);
    assert_eq!(fallback.layout, windowed.layout);
    assert!(a == b, "the fallback is the windowed run");
    capped.whole_max_voxels += 1;
    assert_eq!(capped.whole_grid_patch(dims), Some([40, 32, 48]));
    // A size multiple of 0 is refused with the plan.
    capped.size_multiple = 0;
    assert!(Ensemble::new(members.iter().collect(), capped).is_err());
}

/// The shipped member 0 with its bottleneck as a second output: the pooled features of one
/// window are onnxruntime-Python's pooled the same way (fixture), and asking for them changes
/// no probability.
#[test]
fn bottleneck_features_are_pooled_over_the_brain_like_onnxruntime() {
    let reference = common::load_json("onnx/bottleneck_features.json");
    let path = common::testdata("onnx/member_features.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(sha, reference["model_sha256"].as_str().unwrap(), "the data step wrote another member");
    let member = Model::load(&path, &common::config()).unwrap();
    assert_eq!(member.outputs().iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["probabilities", "features"]);
    let (dims, voxels) = crop();
    let image = ImageRef::new(dims, &voxels).unwrap();
    let run = |features: Option<&str>| {
        let plan = Plan { features: features.map(String::from), ..plan([32, 32, 32], vec![0], 0, 3) };
        let ensemble = Ensemble::new(vec![&member], plan).unwrap();
        let mut mean = MeanSink::new();
        let run = ensemble.segment(image, &mut mean, &mut no_progress()).unwrap();
        (run, mean.mean().unwrap())
    };
    let (with, probs_with) = run(Some("features"));
    let (without, probs_without) = run(None);
    assert_eq!(probs_with, probs_without, "the features output changed the probabilities");
    assert!(without.features.is_empty());
    assert_eq!(with.passes, 2, "identity and one flip; only the identity pass is pooled");
    let pooled = with.features[0].as_ref().expect("the crop is brain");
    let want: Vec<f64> = serde_json::from_value(reference["pooled"].clone()).unwrap();
    assert_eq!(pooled.len(), want.len());
    let worst = pooled.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    // float32 network outputs summed in float64 on both sides; onnxruntime's thread count differs.
    assert!(worst < 1e-4, "max |pooled − onnxruntime| = {worst}");
    assert!(want.iter().any(|v| v.abs() > 0.1), "the reference is not all zeros");
}

/// A manifest that names a features output its members do not have is refused at load, naming it.
#[test]
fn features_output_missing_from_the_members_is_a_load_error() {
    let dir = common::scratch_model_folder("features-missing");
    common::edit_manifest(&dir, |t| {
        t.replace("activation = \"softmax\"\n", "activation = \"softmax\"\nfeatures = \"features\"\n")
    });
    let err = load_model_folder(&dir, &common::config()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("output.features is `features`"), "{text}");
    assert!(text.contains("member_0.onnx"), "{text}");
}
