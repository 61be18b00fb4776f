"""The worker's image-metrics parity fixture: a 16³ block of one run's model-grid image and mean
probabilities, with the figures explore_image_quality.image_quality() computes on it
(worker/tests/quality.rs compares worker::quality::ImageMetrics with them).

    .venv/bin/python training/image_metrics_fixture.py --run RUNS/cpu/train_0002 \
        --out worker/tests/fixtures/quality/image_metrics

RUN is a `neurobatch process --keep-model-grid` output folder; the block is centred on the voxel
with the largest 4 p_gm p_wm (the grey/white boundary) in the middle third of the grid.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explore_image_quality import LABEL_NAMES, image_quality  # noqa: E402

SIZE = 16


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    grid = args.run / "model_grid"
    img = nib.load(grid / "image.nii.gz")
    probs = [nib.load(grid / f"probability_{c}.nii.gz") for c in range(len(LABEL_NAMES))]
    boundary = 4.0 * np.asarray(probs[1].dataobj) * np.asarray(probs[2].dataobj)
    shape = np.array(img.shape)
    lo, hi = shape // 3, 2 * shape // 3
    middle = boundary[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    centre = np.array(np.unravel_index(np.argmax(middle), middle.shape)) + lo
    start = np.clip(centre - SIZE // 2, 0, shape - SIZE)
    block = tuple(slice(s, s + SIZE) for s in start)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, src in [("image", img)] + [(f"probability_{c}", p) for c, p in enumerate(probs)]:
        data = np.asarray(src.dataobj, dtype=np.float32)[block]
        affine = src.affine.copy()
        affine[:3, 3] = src.affine[:3, :3] @ start + src.affine[:3, 3]
        nib.save(nib.Nifti1Image(data, affine), args.out / f"{name}.nii.gz")
    expected = image_quality(args.out)
    (args.out / "expected.json").write_text(json.dumps(
        {"generated_by": "training/image_metrics_fixture.py", "source": args.run.name, "start_voxel": start.tolist(),
         "size": SIZE, "features": {k: (None if v != v else v) for k, v in expected.items()}}, indent=1) + "\n")
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
