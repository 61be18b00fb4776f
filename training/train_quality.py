"""Train the scan-quality classifier members and temperature-scale them (run with `.venv-train/bin/python`).

Volumes are the whole brain on a 4 mm RAS grid (48x56x48), harmonized as the contract says:
  class 0 diagnostic: the real MNI T1 with a random affine + elastic warp and mild variations
                      (gamma, mild bias field, mild Gaussian/Rician noise);
  class 1 degraded:   the same plus one or two of: motion ghosting (k-space lines along a random
                      phase-encode axis get random phase errors, sometimes every other line, which
                      puts a ghost at half the field of view), heavy Rician noise, a severe bias field.
Each member trains on its own generated bank (seed = member seed); temperature T is fitted per member
on a held-out generated calibration split (seed 7000, NLL, grid search over log T) and the figures
(accuracy, AUROC, 15-bin ECE before/after) are measured on a third split (seed 8000).
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
from synth import N, U, harmonize, load_cache, noise_like, smooth_field, warp  # noqa: E402
from unet import QualityCNN, n_params  # noqa: E402

SHAPE = (48, 56, 48)
SPACING = 4.0


def rician(img, g, sd):
    return torch.sqrt((img + sd * noise_like(img, g)) ** 2 + (sd * noise_like(img, g)) ** 2)


def ghosting(img, g):
    ax = int(torch.randint(0, 3, (1,), generator=g))
    k = torch.fft.fftn(img)
    n = img.shape[ax]
    amp = float(U(g, 0.4, 1.5))
    if float(U(g, 0, 1)) < 0.5:
        sel = torch.zeros(n, dtype=torch.bool)
        sel[int(torch.randint(0, 2, (1,), generator=g))::2] = True  # every other line: N/2 ghost
        phase = torch.where(sel, torch.full((n,), amp, dtype=torch.float64), torch.zeros(n, dtype=torch.float64))
    else:
        sel = torch.rand(n, generator=g, dtype=torch.float64) < float(U(g, 0.2, 0.6))
        phase = torch.where(sel, (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * amp * 2,
                            torch.zeros(n, dtype=torch.float64))
    shape = [1, 1, 1]
    shape[ax] = n
    k = k * torch.exp(1j * phase.reshape(shape)).to(k.dtype)
    return torch.fft.ifftn(k).abs().float()


def make_sample(data, g, degraded):
    maps, _ = warp(data, g, SHAPE, SPACING)
    img = maps[0].clamp(min=0)
    img = img * torch.exp(smooth_field(g, img.shape, 4, float(U(g, 0, 0.15))))
    img = img ** float(torch.exp(N(g) * 0.1))
    if degraded:
        kinds = [int(torch.randint(0, 3, (1,), generator=g))]
        if float(U(g, 0, 1)) < 0.3:
            kinds.append(int(torch.randint(0, 3, (1,), generator=g)))
        for kd in kinds:
            if kd == 0:
                img = ghosting(img, g)
            elif kd == 1:
                img = rician(img, g, float(U(g, 0.08, 0.25)) * float(img.max()))
            else:
                img = img * torch.exp(smooth_field(g, img.shape, 3, float(U(g, 0.6, 1.2))))
    sd = float(U(g, 0, 0.02)) * float(img.max())
    img = rician(img, g, sd) if float(U(g, 0, 1)) < 0.5 else img + sd * noise_like(img, g)
    return harmonize(img)


def make_split(data, seed, n):
    g = torch.Generator().manual_seed(seed)
    ys = torch.tensor([i % 2 for i in range(n)])
    xs = torch.stack([make_sample(data, g, bool(y)) for y in ys])[:, None]
    return xs, ys


def ece(probs, ys, bins=15):
    conf, pred = probs.max(1)
    acc = (pred == ys).double()
    e = 0.0
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += float(m.double().mean()) * abs(float(acc[m].mean()) - float(conf[m].double().mean()))
    return e


def auroc(score, ys):
    """Mann-Whitney AUROC of `score` for ys == 1 (ties count 1/2)."""
    pos, neg = score[ys == 1].double(), score[ys == 0].double()
    gt = (pos[:, None] > neg[None, :]).double().sum() + 0.5 * (pos[:, None] == neg[None, :]).double().sum()
    return float(gt / (len(pos) * len(neg)))


@torch.no_grad()
def logits_of(model, xs):
    model.eval()
    return torch.cat([model.logits(xs[i:i + 16], torch.zeros(1)) for i in range(0, len(xs), 16)])


def fit_temperature(logits, ys):
    best = (float("inf"), 1.0)
    for lt in torch.linspace(math.log(0.05), math.log(20), 400):
        t = float(torch.exp(lt))
        nll = float(F.cross_entropy(logits / t, ys))
        if nll < best[0]:
            best = (nll, t)
    return best[1]


def figures(logits, ys, t):
    p = torch.softmax(logits / t, 1)
    return {"accuracy": float((p.argmax(1) == ys).double().mean()), "auroc": auroc(p[:, 1], ys),
            "ece15": ece(p, ys), "nll": float(F.cross_entropy(logits / t, ys))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=os.path.join(os.path.dirname(__file__), ".cache", "mni.npz"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    ap.add_argument("--bank", type=int, default=480, help="generated training volumes per member")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--held-out", type=int, default=240, help="volumes in each of the calibration and test splits")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_cache(args.cache)
    data["src"] = data["src"][:, :1].contiguous()  # only the T1 is needed (4x cheaper warps)
    t0 = time.time()
    xc, yc = make_split(data, 7000, args.held_out)
    xt, yt = make_split(data, 8000, args.held_out)
    print(f"held-out splits generated in {time.time() - t0:.0f}s", flush=True)
    for k, seed in enumerate(args.seeds):
        t0 = time.time()
        torch.manual_seed(seed)
        xs, ys = make_split(data, seed, args.bank)
        gen_s = time.time() - t0
        g = torch.Generator().manual_seed(seed + 1)
        model = QualityCNN()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
        gate = torch.ones(1)
        for step in range(args.steps):
            model.train()
            idx = torch.randint(0, len(xs), (args.batch,), generator=g)
            x = xs[idx]
            for ax in range(3):  # random flips
                if float(U(g, 0, 1)) < 0.5:
                    x = torch.flip(x, [2 + ax])
            for pg in opt.param_groups:
                pg["lr"] = 2e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
            loss = F.cross_entropy(model.logits(x, gate), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (step + 1) % 50 == 0:
                print(f"quality seed {seed} step {step + 1} loss {float(loss):.4f} {time.time() - t0:.0f}s", flush=True)
        lc, lt = logits_of(model, xc), logits_of(model, xt)
        temp = fit_temperature(lc, yc)
        model.temperature.fill_(temp)
        rec = {"member": k, "seed": seed, "bank": args.bank, "steps": args.steps, "batch": args.batch,
               "params": n_params(model), "generate_seconds": round(gen_s, 1),
               "seconds": round(time.time() - t0, 1), "temperature": temp,
               "test_before": figures(lt, yt, 1.0), "test_after": figures(lt, yt, temp),
               "calibration_seed": 7000, "test_seed": 8000, "held_out": args.held_out}
        torch.save({"model": model.state_dict()}, os.path.join(args.out_dir, f"quality_{k}.pt"))
        with open(os.path.join(args.out_dir, f"quality_{k}.json"), "w") as f:
            json.dump(rec, f, indent=1)
        print("done", json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
