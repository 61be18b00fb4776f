#!/usr/bin/env python3
"""Checks the training/reference environment (.venv-train) and prints its figures.

Run: .venv-train/bin/python training/check_env.py [--threads N] [--keep-onnx PATH]

What it checks, deterministically (fixed seeds, eval mode, no dropout at inference):
  1. torch and monai import; a Conv3d forward on CPU; torch.get_num_threads().
  2. monai.inferers.sliding_window_inference on a 1x1x64^3 random volume with a tiny
     conv net, roi 32^3, overlap 0.5, mode='gaussian', sigma_scale=0.125 (the settings
     the Rust engine is checked against); timed (median of 5 runs after 2 warm-up runs).
  3. torch.onnx.export of the tiny net at opset 17 with dynamic batch and spatial
     axes (TorchScript exporter, dynamo=False: the dynamo exporter needs onnxscript,
     which this environment does not install), onnx.checker, then onnxruntime
     (CPUExecutionProvider) on a shape different from the export shape, and the same
     sliding-window inference with onnxruntime as the predictor; max abs differences
     against torch.
  4. the cost of one training step (MONAI UNet, dropout 0.1, AdamW, batch 2 of 64^3) on CPU.
Timings are wall clock and move with machine load; the numeric figures do not.
The .onnx file is written to a temporary directory and removed unless --keep-onnx is given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def timed(fn, repeats: int, warmup: int = 2) -> tuple[object, float, list[float]]:
    for _ in range(warmup):  # first calls pay for oneDNN kernel selection and allocator growth
        fn()
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times), times


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--keep-onnx", default=None, help="write the exported tiny net here and keep it")
    args = ap.parse_args()

    import monai
    import onnx
    import onnxruntime as ort
    import torch
    from monai.inferers import sliding_window_inference

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    torch.use_deterministic_algorithms(True)

    print(f"python          {sys.version.split()[0]}")
    print(f"torch           {torch.__version__}  cuda_available={torch.cuda.is_available()}")
    print(f"monai           {monai.__version__}")
    print(f"numpy           {np.__version__}")
    print(f"onnx            {onnx.__version__}")
    print(f"onnxruntime     {ort.__version__}  providers={ort.get_available_providers()}")
    print(f"os.cpu_count    {os.cpu_count()}")
    print(f"torch threads   {torch.get_num_threads()} (interop {torch.get_num_interop_threads()})")

    # 1. plain Conv3d forward
    conv = torch.nn.Conv3d(1, 16, kernel_size=3, padding=1).eval()
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        y, t_conv, _ = timed(lambda: conv(x), 5)
    print(f"conv3d 1->16 k3 on 64^3: shape={tuple(y.shape)} mean={y.mean().item():.6f} "
          f"median {t_conv * 1e3:.1f} ms")

    # 2. tiny net + MONAI sliding window inference
    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Conv3d(1, 8, 3, padding=1),
                torch.nn.InstanceNorm3d(8, affine=True),
                torch.nn.LeakyReLU(0.01),
                torch.nn.Dropout3d(0.1),  # inactive in eval(); kept for MC-dropout later
                torch.nn.Conv3d(8, 8, 3, padding=1),
                torch.nn.LeakyReLU(0.01),
                torch.nn.Conv3d(8, 3, 1),
            )

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.body(t), dim=1)

    torch.manual_seed(0)
    net = Tiny().eval()
    vol = torch.rand(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(1))
    sw = dict(roi_size=(32, 32, 32), sw_batch_size=4, overlap=0.5, mode="gaussian", sigma_scale=0.125)

    def swi_torch():
        with torch.no_grad():
            return sliding_window_inference(vol, predictor=net, **sw)

    out_t, t_sw, sw_times = timed(swi_torch, 5)
    out_t = out_t.as_tensor() if hasattr(out_t, "as_tensor") else out_t
    print(f"sliding_window_inference 64^3 roi32 ov0.5 gaussian s0.125: shape={tuple(out_t.shape)} "
          f"sum={out_t.sum().item():.4f} ch_means={[round(v, 6) for v in out_t.mean(dim=(0, 2, 3, 4)).tolist()]}")
    print(f"  time median {t_sw * 1e3:.1f} ms, min {min(sw_times) * 1e3:.1f} ms (runs: {', '.join(f'{t * 1e3:.1f}' for t in sw_times)})")

    # 3. ONNX export with dynamic axes, onnxruntime parity
    with tempfile.TemporaryDirectory() as td:
        path = args.keep_onnx or os.path.join(td, "tiny.onnx")
        dummy = torch.rand(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(2))
        t0 = time.perf_counter()
        torch.onnx.export(
            net, (dummy,), path, dynamo=False, opset_version=17,
            input_names=["image"], output_names=["probs"],
            dynamic_axes={"image": {0: "n", 2: "d", 3: "h", 4: "w"},
                          "probs": {0: "n", 2: "d", 3: "h", 4: "w"}},
        )
        t_export = time.perf_counter() - t0
        model = onnx.load(path)
        onnx.checker.check_model(model)
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        in_shape = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        print(f"onnx export: opset={opset} input dims={in_shape} size={os.path.getsize(path)} B "
              f"export {t_export * 1e3:.0f} ms")

        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        probe = torch.rand(2, 1, 40, 48, 56, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            ref = net(probe).numpy()
        got = sess.run(None, {"image": probe.numpy()})[0]
        print(f"onnxruntime vs torch on 2x1x40x48x56 (not the export shape): "
              f"max abs diff {np.abs(got - ref).max():.3e}")

        def ort_predictor(t: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(sess.run(None, {"image": t.numpy()})[0])

        def swi_ort():
            with torch.no_grad():
                return sliding_window_inference(vol, predictor=ort_predictor, **sw)

        out_o, t_swo, swo_times = timed(swi_ort, 5)
        out_o = out_o.as_tensor() if hasattr(out_o, "as_tensor") else out_o
        print(f"sliding_window_inference with onnxruntime predictor: time median {t_swo * 1e3:.1f} ms, min {min(swo_times) * 1e3:.1f} ms, "
              f"max abs diff vs torch predictor {(out_o - out_t).abs().max().item():.3e}")
        if args.keep_onnx:
            print(f"kept {path}")

    # 4. training cost: MONAI UNet forward + backward + AdamW step on CPU
    from monai.networks.nets import UNet

    torch.use_deterministic_algorithms(False)
    for channels, patch, batch in [((8, 16, 32, 64), 64, 2), ((16, 32, 64, 128), 64, 2)]:
        torch.manual_seed(0)
        unet = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=channels,
                    strides=(2, 2, 2), num_res_units=1, dropout=0.1).train()
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=1e-4)
        xb = torch.rand(batch, 1, patch, patch, patch, generator=torch.Generator().manual_seed(4))
        yb = torch.randint(0, 3, (batch, patch, patch, patch), generator=torch.Generator().manual_seed(5))

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(unet(xb), yb)
            loss.backward()
            opt.step()
            return loss.item()

        _, t_step, steps = timed(step, 5, warmup=3)
        n_params = sum(p.numel() for p in unet.parameters())
        print(f"train step UNet{channels} {n_params} params, batch {batch}x{patch}^3: median {t_step:.2f} s, min {min(steps):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in steps)})")

    ok = np.abs(got - ref).max() < 1e-4 and (out_o - out_t).abs().max().item() < 1e-4
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
