"""Quick Python-side check of the segmentation members on the held-out cases of training/perturb.py
(run with `.venv-train/bin/python`): Dice of grey and white matter per member and for the ensemble mean.

Pipeline (a simple stand-in for the engine, not the reference): each case image (any grid) is
resampled trilinearly to the 2 mm RAS model grid 96x112x96 centred on the template's brain,
harmonized (training/synth.py's percentile harmonization), run through MONAI's
sliding_window_inference (64^3, overlap 0.5, gaussian, sigma 0.125) with each member's ONNX graph
in onnxruntime (mc_dropout = 0, no flips), the member or ensemble probabilities are resampled
trilinearly to the case's 1 mm label grid and the argmax is compared with the labels.
"""
import argparse
import json
import os
import sys
import time

import nibabel as nib
import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synth import grid_affine, harmonize, load_cache  # noqa: E402

SHAPE, SPACING = (96, 112, 96), 2.0


def sample(vol, vol_aff, out_aff, out_shape):
    """Trilinear sample of `vol` (C, I, J, K, grid vol_aff) at the voxels of (out_aff, out_shape)."""
    full = np.linalg.inv(vol_aff) @ out_aff
    dims_in = np.array(vol.shape[1:], np.float64)
    dims_out = np.array(out_shape, np.float64)
    out_from_norm = np.eye(4)
    out_from_norm[:3, :3] = np.diag((dims_out - 1) / 2)
    out_from_norm[:3, 3] = (dims_out - 1) / 2
    norm_from_in = np.eye(4)
    norm_from_in[:3, :3] = np.diag(2 / np.maximum(dims_in - 1, 1))
    norm_from_in[:3, 3] = -1
    t = norm_from_in @ full @ out_from_norm
    perm = [2, 1, 0]
    theta = torch.from_numpy(t[:3, :4][perm][:, perm + [3]]).float()[None]
    grid = F.affine_grid(theta, [1, 1, *out_shape], align_corners=True)
    src = torch.from_numpy(np.ascontiguousarray(vol, dtype=np.float32))[None]
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def dice(a, b):
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True, help="folder written by perturb.py")
    ap.add_argument("--names", nargs="+", default=None, help="cases to run (default: every case with labels)")
    ap.add_argument("--members", nargs="+", required=True, help="ONNX members")
    ap.add_argument("--cache", default=os.path.join(os.path.dirname(__file__), ".cache", "mni.npz"))
    ap.add_argument("--out", required=True, help="json with the figures")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_cache(args.cache)
    grid_aff = grid_affine(SHAPE, SPACING, data["center"]).numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sessions = [ort.InferenceSession(m, so, providers=["CPUExecutionProvider"]) for m in args.members]
    index = json.load(open(os.path.join(args.cases, "cases.json")))["cases"]
    results = {}
    for case in index:
        if case["labels"] is None or (args.names and case["name"] not in args.names):
            continue
        t0 = time.time()
        img = nib.as_closest_canonical(nib.load(os.path.join(args.cases, case["image"])))
        lab = nib.as_closest_canonical(nib.load(os.path.join(args.cases, case["labels"])))
        x = sample(np.asarray(img.dataobj, np.float32)[None], img.affine, grid_aff, SHAPE)[0]
        x = harmonize(x)[None, None]
        probs = []
        for sess in sessions:
            def predictor(p, sess=sess):
                return torch.from_numpy(sess.run(None, {"image": p.numpy(), "mc_dropout": np.zeros(1, np.float32)})[0])
            with torch.no_grad():
                probs.append(sliding_window_inference(x, (64, 64, 64), 4, predictor, overlap=0.5, mode="gaussian",
                                                      sigma_scale=0.125)[0].numpy())
        gt = np.asarray(lab.dataobj, np.uint8)
        row = {}
        for name, p in [(f"member_{k}", p) for k, p in enumerate(probs)] + [("ensemble", np.mean(probs, 0))]:
            up = sample(p, grid_aff, lab.affine, gt.shape).argmax(0).numpy()
            row[name] = {"gm": dice(up == 1, gt == 1), "wm": dice(up == 2, gt == 2)}
        results[case["name"]] = row
        print(case["name"], f"{time.time() - t0:.0f}s", " ".join(f"{k}: {v['gm']:.3f}/{v['wm']:.3f}" for k, v in row.items()),
              flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
