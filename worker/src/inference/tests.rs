//! Unit tests of the engine's pure parts (no ONNX Runtime): window rules at
//! the edges, padding and cropping, the importance map's shape, sinks.

use super::segmentation::extract;
use super::*;

#[test]
fn windows_cover_the_image_and_end_at_its_edge() {
    for (image, patch, overlap) in
        [([97, 115, 97], [64, 64, 64], 0.5), ([10, 70, 33], [8, 16, 12], 0.25), ([9, 40, 17], [9, 8, 16], 0.9)]
    {
        let l = WindowLayout::new(image, patch, overlap).unwrap();
        let mut covered = vec![false; image.iter().product()];
        for s in &l.starts {
            for d in 0..3 {
                assert!(s[d] + patch[d] <= l.padded[d]);
            }
            for k in 0..patch[2] {
                for j in 0..patch[1] {
                    for i in 0..patch[0] {
                        covered[(s[0] + i) + image[0] * ((s[1] + j) + image[1] * (s[2] + k))] = true;
                    }
                }
            }
        }
        assert!(covered.iter().all(|&c| c), "{image:?} {patch:?}");
        for d in 0..3 {
            assert_eq!(l.starts.iter().map(|s| s[d] + patch[d]).max(), Some(image[d]));
        }
    }
}

#[test]
fn smaller_images_are_padded_symmetrically_floor_first() {
    let l = WindowLayout::new([5, 8, 30], [8, 8, 16], 0.5).unwrap();
    assert_eq!((l.padded, l.pad_before, l.is_padded()), ([8, 8, 30], [1, 0, 0], true));
    assert_eq!(l.interval, [8, 8, 8]);
    assert_eq!(l.starts, vec![[0, 0, 0], [0, 0, 8], [0, 0, 14]]);
    assert!(WindowLayout::new([5, 0, 3], [2; 3], 0.5).is_err());
    assert!(WindowLayout::new([5; 3], [2; 3], -0.1).is_err());
}

#[test]
fn importance_map_is_symmetric_and_clamped() {
    let m = ImportanceMap::gaussian([6, 8, 10], SIGMA_SCALE);
    let [p0, p1, p2] = m.patch;
    let at = |i: usize, j: usize, k: usize| m.values[i + p0 * (j + p1 * k)];
    assert_eq!(at(0, 0, 0), at(p0 - 1, p1 - 1, p2 - 1));
    assert_eq!(at(1, 2, 3), at(p0 - 2, p1 - 3, p2 - 4));
    let min = m.values.iter().copied().fold(f32::INFINITY, f32::min);
    assert_eq!(min, 1e-3f32, "σ = patch/8 puts the corners under MONAI's 1e-3 floor");
    assert!(at(2, 3, 4) > at(1, 3, 4) && at(2, 3, 4) > 0.5);
}

#[test]
fn extract_mirrors_each_axis() {
    let dims = [3, 2, 2];
    let img: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let plain = extract(&img, dims, &[[0; 3]], dims, Flip::IDENTITY);
    assert_eq!(plain[[0, 0, 2, 1, 0]], img[2 + 3]);
    let flipped = extract(&img, dims, &[[0; 3]], dims, Flip([true, false, true]));
    assert_eq!(flipped[[0, 0, 0, 1, 0]], img[2 + 3 + 6]);
    let windows = extract(&img, dims, &[[1, 0, 0], [0, 1, 1]], [2, 1, 1], Flip([true, false, false]));
    assert_eq!(windows.shape(), &[2, 1, 2, 1, 1]);
    assert_eq!(windows.iter().copied().collect::<Vec<_>>(), vec![2.0, 1.0, 10.0, 9.0]);
}

#[test]
fn softmax_is_a_distribution() {
    let mut v = vec![1.0f32, 5.0, 2.0, 0.0, 3.0, 1000.0];
    softmax_strided(&mut v, 3, 2, 0);
    softmax_strided(&mut v, 3, 2, 1);
    assert!((v[0] + v[2] + v[4] - 1.0).abs() < 1e-6);
    assert!((v[1] + v[3] + v[5] - 1.0).abs() < 1e-6 && v[5] > 0.999);
}

#[test]
fn sinks_chain_and_mean() {
    let info = PassInfo { index: 0, member: 0, flip: Flip::IDENTITY, mc_pass: None };
    let mut seen = 0;
    let mut sinks = (MeanSink::new(), |_: &PassInfo, p: &[f32]| -> Result<(), String> {
        seen += p.len();
        Ok(())
    });
    assert!(sinks.0.mean().is_none());
    sinks.add_pass(&info, &[1.0, 0.0]).unwrap();
    sinks.add_pass(&info, &[0.0, 1.0]).unwrap();
    assert_eq!(sinks.0.mean(), Some(vec![0.5, 0.5]));
    assert!(sinks.add_pass(&info, &[1.0]).is_err());
    drop(sinks);
    assert_eq!(seen, 4);
}

#[test]
fn image_refs_check_their_length() {
    assert!(ImageRef::new([2, 3, 4], &[0.0; 24]).is_ok());
    assert!(matches!(ImageRef::new([2, 3, 4], &[0.0; 23]), Err(InferenceError::Image { expected: 24, .. })));
    assert!(ImageRef::new([usize::MAX, 2, 2], &[0.0; 4]).is_err());
}
