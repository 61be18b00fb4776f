"""The Rust engine against MONAI, on a 1 mm brain, with the shipped segmentation ensemble.

Two checks in one run (`.venv-train/bin/python`, which has MONAI, torch, onnxruntime, nibabel):

1. Agreement. `neurobatch process --keep-model-grid` writes the harmonized model-grid input it fed
   the members (`model_grid/image.nii.gz`) and its ensemble-mean probabilities
   (`model_grid/probability_<c>.nii.gz`). The same input goes through MONAI's
   `sliding_window_inference` (mode "gaussian", sigma_scale 0.125, the manifest's patch and overlap)
   with an onnxruntime predictor, once per member and mirror flip (the patch flipped, run and
   flipped back inside the predictor, as the engine does), and the passes are averaged.
   Reported: max |Δp| over all voxels and classes, and the share of voxels with the same argmax.
2. Speed. Both pipelines end to end on the same NIfTI, same members, same flips, same cores
   (`--threads N`: Python's onnxruntime sessions get N intra-op threads, the engine N inference lanes
   of one thread each, its default on an N-core machine; `--rust-lanes 1` gives it one N-thread lane
   instead, as Python has):
   Rust = the `neurobatch process` command (load, reorient + resample to the model grid, mask,
   harmonize, inference, uncertainty, back to the native grid, write mask/entropy/MI + report);
   Python = the MONAI equivalent a researcher would write: LoadImage, Orientation("RAS"),
   the anti-aliasing blur when the manifest asks for it (MONAI GaussianSmooth, imaging::smooth's rule),
   Spacing(2 mm, bilinear), the bias-field correction when the manifest has one (the numpy port of
   imaging::bias in scripts/testdata/_bias.py), the percentile harmonization within an Otsu foreground, the crop to
   the foreground's bounding box + 4 voxels, the same sliding windows, mean/entropy/mutual information, SpatialResample back to the native grid,
   argmax, and nibabel writes. Wall-clock, best of `--repeats` each, interleaved.

Usage:
  .venv-train/bin/python training/reference/compare_pipeline.py --input T1.nii.gz \
      --binary target/release/neurobatch --model models/brain-tissue [--profile full] [--threads 2] \
      [--batch 4] [--rust-lanes N] [--rust-batch 0]
Prints a JSON summary (and writes it with --json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
import onnxruntime as ort
import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.transforms import GaussianSmooth, LoadImage, Orientation, Spacing, SpatialResample

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "testdata"))
from _bias import correct as bias_correct  # noqa: E402


def load_manifest(model: Path):
    m = tomllib.loads((model / "manifest.toml").read_text())
    return m


def profile_settings(m, name: str | None):
    inf = m["inference"]
    members, axes, mc = len(m["members"]), inf.get("tta_axes", []), inf.get("mc_dropout_passes", 0)
    if name:
        p = inf["profiles"][name]
        members, axes, mc = p["members"], p["tta_axes"], p["mc_dropout_passes"]
    return members, list(axes), mc


def flips(axes):
    # Identity first, then every non-empty subset in the order of itertools.combinations.
    out = [()]
    for k in range(1, len(axes) + 1):
        out += list(itertools.combinations(axes, k))
    return out


def sessions(model: Path, m, members: int, threads: int):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return [
        ort.InferenceSession(str(model / mem["file"]), so, providers=["CPUExecutionProvider"])
        for mem in m["members"][:members]
    ]


def predictor_for(sess, flip, gate_name):
    dims = [2 + a for a in flip]

    def predict(x: torch.Tensor) -> torch.Tensor:
        if dims:
            x = torch.flip(x, dims)
        feeds = {sess.get_inputs()[0].name: x.numpy().astype(np.float32, copy=False)}
        if gate_name:
            feeds[gate_name] = np.zeros(1, dtype=np.float32)
        y = torch.from_numpy(sess.run(None, feeds)[0])
        return torch.flip(y, dims) if dims else y

    return predict


def ensemble_mean(image: np.ndarray, m, sess_list, axes, batch: int):
    inf = m["inference"]
    gate = inf.get("mc_dropout_input")
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    total, expected_entropy, passes = None, None, 0
    for sess in sess_list:
        for flip in flips(axes):
            with torch.no_grad():
                p = sliding_window_inference(
                    x,
                    roi_size=inf["patch_size"],
                    sw_batch_size=batch,
                    predictor=predictor_for(sess, flip, gate),
                    overlap=inf.get("overlap", 0.5),
                    mode="gaussian",
                    sigma_scale=0.125,
                )[0].numpy()
            h = -(p * np.log(np.clip(p, 1e-30, None))).sum(0)
            total = p if total is None else total + p
            expected_entropy = h if expected_entropy is None else expected_entropy + h
            passes += 1
    return total / passes, expected_entropy / passes


def otsu(values: np.ndarray, nbins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=nbins)
    centres = (edges[:-1] + edges[1:]) / 2
    w1 = np.cumsum(hist)
    w2 = np.cumsum(hist[::-1])[::-1]
    m1 = np.cumsum(hist * centres) / np.maximum(w1, 1)
    m2 = (np.cumsum((hist * centres)[::-1]) / np.maximum(w2[::-1], 1))[::-1]
    var = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    return float(centres[:-1][np.argmax(var)])


def python_pipeline(inp: Path, out: Path, m, sess_list, axes, batch: int):
    t0 = time.perf_counter()
    img = LoadImage(image_only=True, ensure_channel_first=True)(str(inp))
    native_affine = img.affine.clone()
    native_shape = img.shape[1:]
    ras = Orientation(axcodes="RAS")(img)
    if m["input"].get("anti_aliasing"):
        # imaging::smooth's rule (each axis blurred to the model's resolution, FWHM in quadrature),
        # with MONAI's sampled Gaussian (zero padding at the edges, unlike scipy's reflect: this side
        # only has to do the same work, agreement is measured on the engine's own model-grid input).
        s = np.asarray(ras.pixdim, dtype=np.float64)
        t = np.asarray(m["input"]["spacing_mm"], dtype=np.float64)
        sigma = np.where(t > s, np.sqrt(np.maximum(t * t - s * s, 0)) / (2 * np.sqrt(2 * np.log(2))) / s, 0.0)
        ras = GaussianSmooth(sigma=[float(x) for x in sigma], approx="sampled")(ras)
    grid = Spacing(pixdim=m["input"]["spacing_mm"], mode="bilinear")(ras)
    vol = grid[0].numpy()
    fg = vol > otsu(vol[np.isfinite(vol)])
    if "bias_correction" in m:
        # The same estimate as imaging::bias, in numpy (scripts/testdata/_bias.py).
        vol, _ = bias_correct(vol, fg, **m["bias_correction"])
    h = m["harmonization"]
    lo, hi = np.percentile(vol[fg], [h.get("lower", 0.5), h.get("upper", 99.5)])
    x = np.clip((vol - lo) / (hi - lo), 0, 1).astype(np.float32)
    # Crop to the foreground's bounding box + 4 voxels, as the engine (and nnU-Net) does.
    idx = np.argwhere(fg)
    start = np.maximum(idx.min(0) - 4, 0)
    stop = np.minimum(idx.max(0) + 5, np.array(x.shape))
    x = x[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
    crop_affine = grid.affine.numpy().copy()
    crop_affine[:3, 3] = crop_affine[:3, :3] @ start + crop_affine[:3, 3]
    mean, exp_h = ensemble_mean(x, m, sess_list, axes, batch)
    pred_h = -(mean * np.log(np.clip(mean, 1e-30, None))).sum(0)
    mi = np.maximum(pred_h - exp_h, 0)
    maps = torch.from_numpy(np.concatenate([mean, pred_h[None], mi[None]]).astype(np.float32))
    # Outside the crop: background 1, everything else 0 (padding_mode zeros, then background added back).
    maps[0] -= 1.0
    maps = MetaTensor(maps, affine=torch.from_numpy(crop_affine))
    back = SpatialResample(mode="bilinear", padding_mode="zeros")(
        maps, dst_affine=native_affine, spatial_size=native_shape
    ).numpy()
    back[0] += 1.0
    labels = back[: mean.shape[0]].argmax(0).astype(np.uint8)
    aff = native_affine.numpy()
    out.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels, aff), out / "mask.nii.gz")
    nib.save(nib.Nifti1Image(back[-2], aff), out / "entropy.nii.gz")
    nib.save(nib.Nifti1Image(back[-1], aff), out / "mutual_information.nii.gz")
    return time.perf_counter() - t0


def rust_pipeline(binary: str, inp: Path, out: Path, model: Path, profile: str | None, cores: dict, keep: bool):
    cmd = [binary, "process", str(inp), "--out", str(out), "--model", str(model), "--no-quality"]
    cmd += ["--lanes", str(cores["lanes"]), "--threads", str(cores["threads"]), "--batch-size", str(cores["batch"])]
    if profile:
        cmd += ["--profile", profile]
    if keep:
        cmd += ["--keep-model-grid"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--binary", default="target/release/neurobatch")
    ap.add_argument("--model", type=Path, default=Path("models/brain-tissue"))
    ap.add_argument("--profile", default="full")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4, help="MONAI sw_batch_size")
    ap.add_argument("--rust-lanes", type=int, help="engine lanes (default: --threads, one thread each)")
    ap.add_argument("--rust-batch", type=int, default=0, help="engine windows per call (0: its default)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m = load_manifest(args.model)
    members, axes, mc = profile_settings(m, args.profile)
    if mc:
        raise SystemExit("the comparison needs deterministic passes: choose a profile with mc_dropout_passes = 0")
    sess_list = sessions(args.model, m, members, args.threads)
    lanes = args.rust_lanes or args.threads
    cores = {"lanes": lanes, "threads": max(1, args.threads // lanes), "batch": args.rust_batch}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. agreement on the engine's own harmonized input
        rust_pipeline(args.binary, args.input, tmp / "rust0", args.model, args.profile, cores, keep=True)
        grid_dir = tmp / "rust0" / "model_grid"
        image = nib.load(grid_dir / "image.nii.gz").get_fdata(dtype=np.float32)
        classes = len(m["labels"])
        rust_p = np.stack([nib.load(grid_dir / f"probability_{c}.nii.gz").get_fdata(dtype=np.float32) for c in range(classes)])
        monai_p, _ = ensemble_mean(image, m, sess_list, axes, args.batch)
        diff = float(np.abs(rust_p - monai_p).max())
        same = float((rust_p.argmax(0) == monai_p.argmax(0)).mean())
        print(json.dumps({"max_abs_prob_diff": diff, "argmax_agreement": same, "grid": list(image.shape)}), flush=True)
        # 2. speed, interleaved
        rust_t, py_t = [], []
        for r in range(args.repeats):
            rust_t.append(rust_pipeline(args.binary, args.input, tmp / f"rust{r + 1}", args.model, args.profile, cores, keep=False))
            py_t.append(python_pipeline(args.input, tmp / f"py{r}", m, sess_list, axes, args.batch))
    summary = {
        "input": str(args.input),
        "model": str(args.model),
        "profile": args.profile,
        "members": members,
        "flips": len(flips(axes)),
        "threads": args.threads,
        "python_batch": args.batch,
        "rust": cores,
        "model_grid": list(image.shape),
        "max_abs_prob_diff": diff,
        "argmax_agreement": same,
        "rust_s": min(rust_t),
        "python_monai_s": min(py_t),
        "speedup": min(py_t) / min(rust_t),
        "rust_all_s": rust_t,
        "python_all_s": py_t,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
