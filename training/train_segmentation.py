"""Train one brain-tissue segmentation member (run with `.venv-train/bin/python`).

Each synthesized 2 mm volume (training/synth.py: random affine + elastic warp of the MNI maps,
SynthSeg-style random contrast or augmented real T1, percentile harmonization) gives `--reuse`
random `--crop`^3 crops (48^3 by default, to fit the CPU budget; inference uses 64^3 windows),
one per step (batch 1). Loss: cross-entropy + soft Dice; AdamW with weight
decay; the gated dropout layers are active in training (gate = 1). `--init` warm-starts from a
checkpoint (how the shipped members are made: see training/README.md).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synth import load_cache, random_crop, synth_volume  # noqa: E402
from unet import UNet3D, n_params  # noqa: E402


def dice_ce(logits, lab):
    ce = F.cross_entropy(logits, lab)
    p = torch.softmax(logits, 1)
    oh = F.one_hot(lab, logits.shape[1]).permute(0, 4, 1, 2, 3).to(p.dtype)
    dims = (0, 2, 3, 4)
    inter = (p * oh).sum(dims)
    den = p.sum(dims) + oh.sum(dims)
    dice = (2 * inter + 1e-5) / (den + 1e-5)
    return ce + (1 - dice).mean()


def onnx_state(path: str, model: torch.nn.Module) -> dict:
    """The exported member's initializers as `model`'s state dict; every parameter must be there."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    state = model.state_dict()
    missing = [k for k in state if k not in inits]
    if missing:
        raise SystemExit(f"{path}: no initializer for {missing[:5]}")
    return {k: torch.from_numpy(inits[k].copy()).to(v.dtype) for k, v in state.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=os.path.join(os.path.dirname(__file__), ".cache", "mni.npz"))
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--max-seconds", type=float, default=float("inf"), help="stop early past this wall time")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--reuse", type=int, default=2, help="crops (steps) per synthesized volume")
    ap.add_argument("--p-synth", type=float, default=0.5, help="fraction of SynthSeg-style volumes")
    ap.add_argument("--init", default=None, help="checkpoint to warm-start from")
    ap.add_argument("--init-onnx", default=None,
                    help="exported member to warm-start from (its initializers by name; with --norm none, "
                         "a member whose normalisations training/freeze_norm.py folded)")
    ap.add_argument("--norm", choices=["instance", "none"], default="instance")
    ap.add_argument("--crop", type=int, default=48, help="training crop side (the graph is fully convolutional)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="checkpoint .pt (a .json with the run's record is written beside it)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    data = load_cache(args.cache)
    model = UNet3D(norm=args.norm)
    if args.init:
        model.load_state_dict(torch.load(args.init)["model"])
    if args.init_onnx:
        model.load_state_dict(onnx_state(args.init_onnx, model))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    gate = torch.ones(1)
    t0 = time.time()
    losses, step, synth_s = [], 0, 0.0
    img = lab = None
    while step < args.steps and time.time() - t0 < args.max_seconds:
        if step % args.reuse == 0:
            ts = time.time()
            img, lab = synth_volume(data, g, p_synth=args.p_synth)
            synth_s += time.time() - ts
        x, y = random_crop(img, lab, g, size=args.crop)
        # cosine decay to 5% of lr over the planned steps, or over --max-seconds if that comes first
        frac = min(1.0, max(step / args.steps, (time.time() - t0) / args.max_seconds))
        for pg in opt.param_groups:
            pg["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        loss = dice_ce(model.logits(x[None, None], gate), y[None])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        step += 1
        if step % 20 == 0:
            el = time.time() - t0
            print(f"seed {args.seed} step {step}/{args.steps} loss {sum(losses[-20:]) / 20:.4f} "
                  f"{el:.0f}s ({el / step:.2f} s/step, synth {synth_s / step:.2f})", flush=True)
    seconds = time.time() - t0
    torch.save({"model": model.state_dict()}, args.out)
    rec = {"seed": args.seed, "steps": step, "planned_steps": args.steps, "seconds": round(seconds, 1),
           "lr": args.lr, "weight_decay": args.weight_decay, "reuse": args.reuse, "crop": args.crop, "threads": args.threads,
           "max_seconds": args.max_seconds, "p_synth": args.p_synth,
           "init": os.path.basename(args.init or args.init_onnx or "") or None, "norm": args.norm, "params": n_params(model),
           "final_loss_mean_last50": sum(losses[-50:]) / max(1, len(losses[-50:]))}
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(rec, f, indent=1)
    print("done", json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
