"""MONAI's sliding-window inference as the reference for `worker::inference`.

Runs MONAI 1.6.1 `sliding_window_inference(mode="gaussian", sigma_scale=0.125)`
with onnxruntime (CPU) predictors on inputs CI regenerates, and writes small JSON
fixtures under worker/tests/fixtures/monai/ that `worker/tests/inference.rs`
compares the Rust engine with.

Mirror TTA is done inside the predictor, per patch, the way the Rust engine does
it: flip the patch, run the member, flip the output back. Blending is linear, so
the mean over (member, flip) passes of the blended maps that the engine produces
equals MONAI's blend of the flip-averaged patches, averaged over members, up to
float32 rounding.

Inputs (from `scripts/testdata/onnx_models.py data --out .testdata`):
  .testdata/onnx/mni_crop.f32/.json        the 32^3 z-scored MNI crop (Fortran order)
  .testdata/onnx/tissue_model/member_*.onnx  two conv3d + softmax members
  .testdata/onnx/conv3d_softmax.onnx, gated_dropout.onnx, classifier.onnx
The non-cubic input is the crop mirrored past its end, `img[i, j, k] =
crop[r(i), r(j), r(k)]` with `r(x) = x if x < 32 else 63 - x`, cut to 37 x 29 x 41
(the Rust test builds the same array).

Fixtures (worker/tests/fixtures/monai/):
  windows.json     window starts, scan intervals and padding MONAI uses for several
                   image/patch/overlap shapes (recorded from inside sliding_window_inference)
  importance.json  compute_importance_map values (sampled, and complete for a small patch)
  crop32.json, noncubic.json, gated.json
                   per case: sampled probabilities and per-channel sums of the ensemble mean and
                   of single passes; the mean's full argmax label map (one digit per voxel,
                   Fortran order)
  classification.json  whole-volume classifier probabilities per member x flip, and their mean

Usage: .venv-train/bin/python training/reference/monai_sliding_window.py [--testdata .testdata] [--out worker/tests/fixtures/monai]
"""

import argparse
import itertools
import json
from pathlib import Path

import monai
import numpy as np
import onnxruntime
import torch
from monai.data.utils import compute_importance_map
from monai.inferers import sliding_window_inference

REPO = Path(__file__).resolve().parents[2]
SIGMA_SCALE = 0.125
SAMPLES = 1200


def load_raw(stem: Path) -> np.ndarray:
    meta = json.loads(stem.with_suffix(".json").read_text())
    data = np.fromfile(stem.with_suffix(".f32"), dtype="<f4")
    return data.reshape(meta["shape"], order="F")


def noncubic(crop: np.ndarray) -> np.ndarray:
    def r(n):
        x = np.arange(n)
        return np.where(x < 32, x, 63 - x)

    return np.ascontiguousarray(crop[np.ix_(r(37), r(29), r(41))])


def session(path: Path) -> onnxruntime.InferenceSession:
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def flips(axes):
    """All subsets of `axes`, identity first, in the engine's order (bit b of m -> axes[b])."""
    return [tuple(a for b, a in enumerate(axes) if m >> b & 1) for m in range(1 << len(axes))]


def predictor(sess, flip_sets, gate=None):
    """Per patch: for each flip, flip the [N, 1, D, H, W] patch, run, flip the output back; mean over flips."""
    names = [i.name for i in sess.get_inputs()]

    def run(patch: torch.Tensor) -> torch.Tensor:
        acc = None
        for f in flip_sets:
            dims = [2 + a for a in f]
            x = torch.flip(patch, dims) if dims else patch
            feed = {"image": np.ascontiguousarray(x.numpy())}
            if "mc_dropout" in names:
                feed["mc_dropout"] = np.array([0.0 if gate is None else gate], dtype=np.float32)
            (y,) = sess.run(["probabilities"], feed)
            y = torch.from_numpy(y)
            y = torch.flip(y, dims) if dims else y
            acc = y if acc is None else acc + y
        return acc / len(flip_sets)

    return run


def swi(image: np.ndarray, sess, patch, flip_sets, batch=4, overlap=0.5, gate=None) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    with torch.no_grad():
        out = sliding_window_inference(
            x, roi_size=list(patch), sw_batch_size=batch, predictor=predictor(sess, flip_sets, gate),
            overlap=overlap, mode="gaussian", sigma_scale=SIGMA_SCALE, padding_mode="constant", cval=0.0,
        )
    return out[0].numpy()  # [C, D, H, W]


def sample_indices(shape, n, seed):
    total = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(total, size=min(n, total), replace=False))


def sampled(probs: np.ndarray, idx):
    ijk = np.unravel_index(idx, probs.shape[1:], order="F")
    return [[f32(v) for v in probs[c][ijk]] for c in range(probs.shape[0])]


def f32(v) -> float:
    """The shortest decimal that reads back as the same float32 (keeps the fixtures small)."""
    return float(str(np.float32(v)))


def labels_string(probs: np.ndarray) -> str:
    lab = np.argmax(probs, axis=0)
    return "".join(str(int(v)) for v in lab.ravel(order="F"))


def case(image, members, patch, axes, passes, seed, gate=None):
    """Ensemble mean over members x flips, plus the listed single passes (member, flip)."""
    flip_sets = flips(axes)
    mean = None
    for path in members:
        p = swi(image, session(path), patch, flip_sets, gate=gate)
        mean = p if mean is None else mean + p
    mean = mean / len(members)
    idx = sample_indices(image.shape, SAMPLES, seed)
    out = {
        "image_shape": list(image.shape),
        "patch_size": list(patch),
        "overlap": 0.5,
        "tta_axes": list(axes),
        "members": [str(Path(m).relative_to(REPO / ".testdata")) for m in members],
        "indices": idx,
        "mean": {
            "values": sampled(mean, idx),
            "channel_sums": [float(mean[c].astype(np.float64).sum()) for c in range(mean.shape[0])],
            "labels": labels_string(mean),
        },
        "passes": [],
    }
    for member, flip in passes:
        p = swi(image, session(members[member]), patch, [flip], gate=gate)
        out["passes"].append({
            "member": member,
            "flip": list(flip),
            "values": sampled(p, idx),
            "channel_sums": [float(p[c].astype(np.float64).sum()) for c in range(p.shape[0])],
        })
    return out


def windows_case(image_shape, patch, overlap):
    """The windows MONAI places, recorded by a predictor that receives its coordinates."""
    seen = []

    def rec(patch_data, coords):
        for c in coords:
            seen.append([int(s.start) for s in c[2:]])
        return torch.zeros((patch_data.shape[0], 1, *patch_data.shape[2:]))

    x = torch.zeros((1, 1, *image_shape))
    out = sliding_window_inference(x, list(patch), 3, rec, overlap=overlap, mode="gaussian", with_coord=True)
    assert tuple(out.shape[2:]) == tuple(image_shape)
    padded = [max(i, p) for i, p in zip(image_shape, patch)]
    return {
        "image": list(image_shape),
        "patch": list(patch),
        "overlap": overlap,
        "padded": padded,
        "pad_before": [(p - i) // 2 for i, p in zip(image_shape, padded)],
        "interval": list(monai.inferers.utils._get_scan_interval(padded, patch, 3, (overlap,) * 3)),
        "starts": seen,
    }


def importance_case(patch, full=False, seed=0):
    m = compute_importance_map(tuple(patch), mode="gaussian", sigma_scale=SIGMA_SCALE, device="cpu").numpy()
    flat = m.ravel(order="F")
    entry = {
        "patch": list(patch),
        "min": float(m.min()),
        "max": float(m.max()),
        "sum": float(m.astype(np.float64).sum()),
    }
    if full:
        entry["values"] = [f32(v) for v in flat]
    else:
        idx = sample_indices(patch, 400, seed)
        entry["indices"] = idx
        entry["values"] = [f32(flat[i]) for i in idx]
    return entry


def classification(image, members, axes):
    runs = []
    for mi, path in enumerate(members):
        sess = session(path)
        for f in flips(axes):
            x = np.flip(image, f).copy() if f else image
            (y,) = sess.run(["probabilities"], {"image": np.ascontiguousarray(x[None, None], dtype=np.float32)})
            runs.append({"member": mi, "flip": list(f), "probabilities": [float(v) for v in y[0]]})
    mean = np.mean([r["probabilities"] for r in runs], axis=0)
    return {"members": [str(Path(m).relative_to(REPO / ".testdata")) for m in members], "tta_axes": list(axes),
            "runs": runs, "mean": [float(v) for v in mean]}


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=None, sort_keys=True, separators=(",", ":")) + "\n"
    path.write_text(text)
    print(f"{path.relative_to(REPO)}: {len(text)} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testdata", type=Path, default=REPO / ".testdata")
    ap.add_argument("--out", type=Path, default=REPO / "worker/tests/fixtures/monai")
    a = ap.parse_args()
    torch.set_num_threads(1)
    onnx_dir = a.testdata / "onnx"
    crop = load_raw(onnx_dir / "mni_crop")
    odd = noncubic(crop)
    tool = f"monai {monai.__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__} (CPU)"
    tissue = [onnx_dir / "tissue_model" / f"member_{i}.onnx" for i in (0, 1)]

    shapes = [
        ((32, 32, 32), (16, 16, 16), 0.5),
        ((37, 29, 41), (16, 20, 48), 0.5),
        ((97, 115, 97), (64, 64, 64), 0.5),
        ((64, 64, 64), (64, 64, 64), 0.5),
        ((5, 6, 7), (8, 8, 8), 0.5),
        ((10, 70, 33), (8, 16, 12), 0.25),
        ((20, 21, 22), (7, 9, 11), 0.6),
        ((9, 40, 17), (9, 8, 16), 0.9),
        ((30, 3, 50), (4, 4, 4), 0.0),
    ]
    write(a.out / "windows.json", {"tool": tool, "cases": [windows_case(*s) for s in shapes]})
    write(a.out / "importance.json", {"tool": tool, "sigma_scale": SIGMA_SCALE, "cases": [
        importance_case((6, 8, 10), full=True),
        importance_case((16, 16, 16), seed=1),
        importance_case((16, 20, 48), seed=2),
        importance_case((64, 64, 64), seed=3),
        importance_case((96, 80, 112), seed=4),
    ]})
    write(a.out / "crop32.json", {"tool": tool, **case(crop, tissue, (16, 16, 16), (0, 1, 2), [(0, ()), (1, (0, 2))], seed=11)})
    write(a.out / "noncubic.json", {"tool": tool, **case(odd, tissue, (16, 20, 48), (0, 1, 2), [(0, ()), (1, (1,))], seed=12)})
    write(a.out / "gated.json", {"tool": tool, "gate": 0.0,
                                 **case(crop, [onnx_dir / "gated_dropout.onnx"], (16, 16, 16), (2,), [(0, ())], seed=13)})
    write(a.out / "classification.json", {"tool": tool, **classification(odd, [onnx_dir / "classifier.onnx"], (0, 1, 2))})


if __name__ == "__main__":
    main()
