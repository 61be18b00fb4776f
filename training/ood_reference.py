"""In-domain scans for fitting a model's out-of-distribution reference (`neurobatch model fit-ood`).

    .venv/bin/python training/ood_reference.py --out /tmp/nb-ood --count 8
    target/release/neurobatch model fit-ood --model models/brain-tissue --out /tmp/ood.toml /tmp/nb-ood/*.nii.gz

The reference describes what the models were trained on: the real MNI152 T1 under the ranges of
the *ordinary* augmentations of training (training/synth.py's real-T1 branch): a global gain
0.5-2, gamma 0.75-1.35 (training: exp(N(0, 0.15))), a smooth multiplicative field with a log
amplitude up to 0.25 (training: the same bound), Rician noise at a white-matter SNR of 10-60
(training: sd up to 4 % of the maximum) and rotations up to 15 degrees (training: the same). It is not fitted on the SynthSeg-style synthetic contrasts, which are
a training device, not scans the models are meant to receive. Seeds 9000+ (training uses 0-4,
11-13, 1000, 7000, 8000; the evaluation 424242+).
"""

import argparse
import os
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prepare_data import load_template  # noqa: E402

SEED = 9000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=12)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    maps, aff, _ = load_template()
    t1 = maps["t1"].astype(np.float64) * 255.0
    wm_mean = float(t1[maps["wm"] > 0.9].mean())
    shape = t1.shape
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    for i in range(args.count):
        rng = np.random.default_rng(SEED + i)
        img = t1 / 255.0
        img = img ** rng.uniform(0.75, 1.35)
        coef = rng.uniform(-0.25, 0.25, 3) / 1.5
        img = img * np.exp(sum(c * g for c, g in zip(coef, grid)) + coef[0] * grid[1] * grid[2])
        img = img * rng.uniform(0.5, 2.0) * 255.0
        deg = rng.uniform(-15, 15)
        axes = [(0, 1), (1, 2), (0, 2)][i % 3]
        img = ndimage.rotate(img, deg, axes=axes, reshape=False, order=1, mode="constant", cval=0.0)
        sd = wm_mean * img.mean() / t1.mean() / rng.uniform(10, 60)
        img = np.sqrt((img + rng.normal(0, sd, shape)) ** 2 + rng.normal(0, sd, shape) ** 2)
        nib.save(nib.Nifti1Image(img.astype(np.float32), aff), os.path.join(args.out, f"in_domain_{i}.nii.gz"))
        print(f"in_domain_{i}: gamma/gain/field/rotation {deg:.1f} deg about {axes}", flush=True)


if __name__ == "__main__":
    main()
