"""Class weights that remove the ensemble's volume bias (the manifest's `[calibration]`), fitted on the
training split's runs, and the calibrated masks' figures for every run (read by training/fit_quality.py).

    .venv/bin/python training/volume_calibration.py fit --cases CASES --work RUNS --tag cpu
    .venv/bin/python training/volume_calibration.py fit-temperature --cases CASES --work RUNS --tag cpu \
        --weights training/.cache/class_weights.json
    .venv/bin/python training/volume_calibration.py apply --cases CASES --work RUNS --tag cpu \
        --weights training/.cache/class_weights.json

The engine's mask is argmax_c(w_c · p_c) of the ensemble-mean probabilities resampled trilinearly to
the scan's grid (worker/src/pipeline/grid.rs `to_native_grid`; background 1 outside the model grid).
`fit` reproduces that from each run's `model_grid/probability_<c>.nii.gz` (the runs are made with
`--keep-model-grid` and without weights) and chooses w = (1, w_gm, w_wm) so that the median relative
volume error of each tissue over the training split is 0 (alternating bisection on log w; the
median of a sum of step functions is monotone in each weight). `apply` writes, per run,
`calibrated.json`: Dice and volumes of the weighted mask on the labels' grid, and the voxel ECE of
the probabilities before and after the weights (confidence = the largest class probability,
correct = its class is the truth; over the voxels where the truth or the prediction is a tissue;
15 equal-width bins, Guo et al. 2017). `fit-temperature` then chooses the temperature T of the
reported probabilities q_c ∝ (w_c p_c)^(1/T) (the manifest's `[calibration] temperature`, applied by
worker/src/pipeline/grid.rs `calibrate`; the argmax and so the mask do not change) that minimizes
the mean per-run voxel ECE (or, with `--objective nll`, the negative log-likelihood of the truth)
over the same voxels of the training split's runs (a seeded sample of 50 000 voxels per run, a log
grid of T), and writes it into the weights file;
`apply` reports the ECE without calibration, with the weights alone and with both. Only runs whose labels lie on the scan's own grid are used
for fitting and ECE (the truth of a resampled scan is on another grid); Dice and volumes are
measured for every labelled run, on the labels' grid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metrics  # noqa: E402

NAMES = {1: "grey_matter", 2: "white_matter"}


def native_probabilities(run: Path, image: nib.Nifti1Image) -> np.ndarray:
    """The run's mean probabilities (3, X, Y, Z) trilinearly on the scan's grid, as the engine resamples them
    (scipy's affine_transform: the scan's voxel -> the model grid's voxel is one affine map). Only the
    scan voxels within reach of the model grid are interpolated; the rest are background (1, 0, 0), as
    the engine's fill values make them."""
    shape = image.shape[:3]
    grids = [nib.load(run / "model_grid" / f"probability_{c}.nii.gz") for c in range(3)]
    g = grids[0]
    # The model grid's corners in scan voxels, grown by one voxel: the box outside which every voxel is fill.
    to_scan = np.linalg.inv(image.affine) @ g.affine
    corners = np.array([[i, j, k, 1.0] for i in (-1, g.shape[0]) for j in (-1, g.shape[1]) for k in (-1, g.shape[2])])
    ijk = (to_scan @ corners.T)[:3]
    lo = np.clip(np.floor(ijk.min(axis=1)).astype(int), 0, np.array(shape))
    hi = np.clip(np.ceil(ijk.max(axis=1)).astype(int) + 1, 0, np.array(shape))
    out = np.zeros((3,) + tuple(shape), np.float32)
    out[0] = 1.0
    if np.any(hi <= lo):
        return out
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    for c, grid in enumerate(grids):
        m = np.linalg.inv(grid.affine) @ image.affine
        offset = m[:3, :3] @ lo + m[:3, 3]
        vol = np.asarray(grid.dataobj, dtype=np.float32)
        out[c][box] = ndimage.affine_transform(vol, m[:3, :3], offset, output_shape=tuple(hi - lo), order=1,
                                               mode="constant", cval=1.0 if c == 0 else 0.0)
    return out


def weighted_argmax(p: np.ndarray, w) -> np.ndarray:
    return np.argmax(p * np.asarray(w, np.float32)[:, None, None, None], axis=0).astype(np.uint8)


def cases_by_name(cases_dir: Path) -> dict:
    return {c["name"]: c for c in json.loads((cases_dir / "cases.json").read_text())}


def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image) -> bool:
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=1e-4)


def runs_of(work: Path, tag: str, cases: dict, split: str | None):
    for result_path in sorted((work / tag).glob("*/result.json")):
        r = json.loads(result_path.read_text())
        case = cases.get(r["name"])
        if case is None or not case.get("labels") or "error" in r:
            continue
        if split and case.get("split") != split:
            continue
        if not (result_path.parent / "model_grid" / "probability_0.nii.gz").exists():
            continue
        yield result_path.parent, case


class Uncertain:
    """The voxels of one run whose weighted argmax can change for weights within a factor of 4,
    and the fixed label counts of the rest, so that volumes for many weights cost little."""

    def __init__(self, p: np.ndarray, truth: np.ndarray, voxel_ml: float):
        top = np.sort(p, axis=0)
        ambiguous = top[-2] * 4.0 > top[-1]
        self.p = p[:, ambiguous]
        fixed = np.argmax(p[:, ~ambiguous], axis=0)
        self.fixed = np.bincount(fixed, minlength=3)
        self.voxel_ml = voxel_ml
        self.true = {c: float((truth == c).sum() * voxel_ml) for c in NAMES}

    def volumes(self, w) -> dict:
        lab = np.argmax(self.p * np.asarray(w, np.float32)[:, None], axis=0)
        n = self.fixed + np.bincount(lab, minlength=3)
        return {c: float(n[c] * self.voxel_ml) for c in NAMES}

    def rel_errors(self, w) -> dict:
        v = self.volumes(w)
        return {c: v[c] / self.true[c] - 1.0 for c in NAMES}


def training_runs_on_scan_grid(args):
    """(image, probabilities on the scan's grid, truth) of each training run whose labels share the
    scan's grid: what the weights and the temperature are fitted on."""
    cases = cases_by_name(args.cases)
    for run, case in runs_of(args.work, args.tag, cases, "train"):
        image = nib.load(args.cases / case["image"])
        labels = nib.load(args.cases / case["labels"])
        if same_grid(image, labels):
            yield image, native_probabilities(run, image), np.asarray(labels.dataobj).astype(np.uint8)


def fit(args):
    items = []
    for image, p, truth in training_runs_on_scan_grid(args):
        items.append(Uncertain(p, truth, abs(np.linalg.det(image.affine[:3, :3])) / 1000.0))
        if args.limit and len(items) >= args.limit:
            break
    if not items:
        raise SystemExit("no training runs with model_grid outputs and labels on the scan's grid")
    logw = {1: 0.0, 2: 0.0}

    def median_error(c, lw):
        w = [1.0, np.exp(lw[1]), np.exp(lw[2])]
        return float(np.median([it.rel_errors(w)[c] for it in items]))

    before = {NAMES[c]: median_error(c, {1: 0.0, 2: 0.0}) for c in NAMES}
    for _ in range(3):  # alternate: each tissue's weight moves its own volume most
        for c in NAMES:
            lo, hi = -1.4, 1.4
            for _ in range(22):
                mid = (lo + hi) / 2
                trial = {**logw, c: mid}
                if median_error(c, trial) < 0:
                    lo = mid
                else:
                    hi = mid
            logw[c] = (lo + hi) / 2
    weights = [1.0, round(float(np.exp(logw[1])), 4), round(float(np.exp(logw[2])), 4)]
    after = {NAMES[c]: median_error(c, {k: float(np.log(weights[k])) for k in NAMES}) for c in NAMES}
    out = {"class_weights": weights, "cases": len(items), "median_relative_volume_error_before": before,
           "median_relative_volume_error_after": after,
           "rule": "w = (1, w_gm, w_wm) such that each tissue's median relative volume error over the training "
                   f"split ({len(items)} runs with labels on the scan's grid) is 0; the mask is argmax_c(w_c p_c)"}
    args.weights.parent.mkdir(parents=True, exist_ok=True)
    args.weights.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def calibrated(p: np.ndarray, w, temperature: float = 1.0) -> np.ndarray:
    """q_c ∝ (w_c p_c)^(1/T) over axis 0, as the engine's `calibrate` computes it (a voxel with no
    mass stays 0)."""
    q = p * np.asarray(w, np.float32).reshape((-1,) + (1,) * (p.ndim - 1))
    top = q.max(axis=0, keepdims=True)
    q = np.where(top > 0, q / np.where(top > 0, top, 1.0), 0.0) ** (1.0 / temperature)
    return q / np.maximum(q.sum(axis=0, keepdims=True), 1e-30)


def voxel_ece(p: np.ndarray, truth: np.ndarray, w, temperature: float = 1.0) -> float:
    q = calibrated(p, w, temperature)
    pred = np.argmax(q, axis=0)
    region = (truth > 0) | (pred > 0)
    conf = q.max(axis=0)[region]
    return metrics.ece(conf, (pred == truth)[region])


TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(4.0), 81))


def fit_temperature(args):
    """T minimizing the mean voxel ECE (or, with --objective nll, the voxel NLL) of q = calibrated(p, w, T)
    on the training split (see the module doc)."""
    record = json.loads(args.weights.read_text())
    weights = record["class_weights"]
    rng = np.random.default_rng(20261206)
    samples, truths, per_run = [], [], []
    for _, p, t in training_runs_on_scan_grid(args):
        q = calibrated(p, weights)
        region = (t > 0) | (np.argmax(q, axis=0) > 0)
        qr, tr = q[:, region], t[region]
        pick = rng.choice(tr.size, size=min(tr.size, 50000), replace=False)
        samples.append(qr[:, pick].astype(np.float64))
        truths.append(tr[pick])
        per_run.append((qr.astype(np.float32), tr))
        if args.limit and len(per_run) >= args.limit:
            break
    if not samples:
        raise SystemExit("no training runs with model_grid outputs and labels on the scan's grid")
    q = np.concatenate(samples, axis=1)
    t = np.concatenate(truths)

    def nll(temp):
        c = calibrated(q, [1.0, 1.0, 1.0], temp)
        return float(-np.mean(np.log(np.maximum(c[t, np.arange(t.size)], 1e-12))))

    def mean_sample_ece(temp):  # per run, on its sampled voxels; the mean over runs, as the target is stated
        return float(np.mean([metrics.ece(calibrated(sq, [1.0, 1.0, 1.0], temp).max(axis=0),
                                          np.argmax(sq, axis=0) == st) for sq, st in zip(samples, truths)]))

    by_nll = round(min(TEMPERATURES, key=nll), 3)
    by_ece = round(min(TEMPERATURES, key=mean_sample_ece), 3)
    best = by_ece if args.objective == "ece" else by_nll

    def region_ece(qr, tr, temp):  # the region does not depend on T: the argmax does not
        c = calibrated(qr, [1.0, 1.0, 1.0], temp)
        return metrics.ece(c.max(axis=0), np.argmax(c, axis=0) == tr)

    ece = {label: float(np.mean([region_ece(qr, tr, temp) for qr, tr in per_run]))
           for label, temp in (("weights_only", 1.0), ("at_nll_t", by_nll), ("calibrated", best))}
    record["temperature"] = best
    objective = ("the mean over runs of the voxel ECE (15 bins)" if args.objective == "ece"
                 else "the voxel negative log-likelihood")
    record["temperature_fit"] = {
        "rule": f"T minimizing {objective} of q ∝ (w p)^(1/T) over the training split ({len(per_run)} runs with "
                "labels on the scan's grid, 50 000 voxels each where the truth or the prediction is a tissue; "
                "a log grid of 81 values from 0.25 to 4)",
        "objective": args.objective, "runs": len(per_run), "voxels": int(t.size),
        "t_by_nll": by_nll, "t_by_ece": by_ece, "nll_at_1": nll(1.0), "nll_at_t": nll(best),
        "train_ece_weights_only": ece["weights_only"], "train_ece_at_nll_t": ece["at_nll_t"],
        "train_ece_calibrated": ece["calibrated"]}
    args.weights.write_text(json.dumps(record, indent=1))
    print(json.dumps(record["temperature_fit"] | {"temperature": best}, indent=1))


def apply(args):
    cases = cases_by_name(args.cases)
    record = json.loads(args.weights.read_text())
    weights = record["class_weights"]
    temperature = float(record.get("temperature", 1.0))
    n = 0
    for run, case in runs_of(args.work, args.tag, cases, args.split):
        dest = run / "calibrated.json"
        if dest.exists() and not args.force:
            continue
        image = nib.load(args.cases / case["image"])
        labels = nib.load(args.cases / case["labels"])
        p = native_probabilities(run, image)
        mask = nib.Nifti1Image(weighted_argmax(p, weights), image.affine)
        raw = nib.Nifti1Image(weighted_argmax(p, [1.0, 1.0, 1.0]), image.affine)
        out = {"class_weights": weights, "temperature": temperature}
        if not same_grid(image, labels):
            mask = resample_from_to(mask, labels, order=0)
            raw = resample_from_to(raw, labels, order=0)
        t = np.asarray(labels.dataobj).astype(np.uint8)
        m = np.asarray(mask.dataobj).round().astype(np.uint8)
        r = np.asarray(raw.dataobj).round().astype(np.uint8)
        voxel_ml = abs(np.linalg.det(labels.affine[:3, :3])) / 1000.0
        # `uncalibrated_python` checks this script against the engine's own mask (the run had no weights).
        engine = np.asarray(resample_from_to(nib.load(run / "mask.nii.gz"), labels, order=0).dataobj
                            if not same_grid(image, labels) else nib.load(run / "mask.nii.gz").dataobj)
        out["agreement_with_engine_mask"] = float((engine.round().astype(np.uint8) == r).mean())
        out["truth"] = {name: {"dice": metrics.dice(m == c, t == c), "volume_ml": float((m == c).sum() * voxel_ml),
                               "true_volume_ml": float((t == c).sum() * voxel_ml),
                               "uncalibrated_dice": metrics.dice(r == c, t == c),
                               "uncalibrated_volume_ml": float((r == c).sum() * voxel_ml)}
                        for c, name in NAMES.items()}
        if same_grid(image, labels) and case.get("split") == "test":
            out["ece_before"] = voxel_ece(p, t, [1.0, 1.0, 1.0])
            out["ece_weights_only"] = voxel_ece(p, t, weights)
            out["ece_after"] = voxel_ece(p, t, weights, temperature)
        dest.write_text(json.dumps(out, indent=1))
        n += 1
    print(f"{n} runs calibrated")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["fit", "fit-temperature", "apply"])
    ap.add_argument("--cases", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--weights", type=Path, default=Path("training/.cache/class_weights.json"))
    ap.add_argument("--limit", type=int, help="fit on at most this many runs")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--split", help="apply: only this split's runs (the test split's ECE and unweighted volumes; "
                                    "runs made with the weighted manifest need nothing else)")
    ap.add_argument("--objective", choices=["ece", "nll"], default="ece",
                    help="fit-temperature: what T minimizes on the training split (default: the mean voxel ECE, the "
                         "figure the target is stated in)")
    args = ap.parse_args()
    {"fit": fit, "fit-temperature": fit_temperature, "apply": apply}[args.command](args)


if __name__ == "__main__":
    main()
