"""Members whose output does not depend on how much of the head one call sees (issue 16): every
InstanceNormalization of an exported member is folded into the convolution before it, with fixed
per-channel statistics measured on training-split inputs, so that a whole-grid pass and the
sliding windows compute the same function (up to the zero padding at window borders).

    .venv/bin/python training/freeze_norm.py freeze --model models/brain-tissue \
        --images RUNS/*/model_grid/image.nii.gz --out DIR [--crop 48] [--crops 96] [--seed 0] [--one-pass]
    .venv/bin/python training/freeze_norm.py check --model DIR --cases CASES --runs RUNS/<case> ...

`freeze` reads the harmonized model-grid inputs that `neurobatch process --keep-model-grid` writes
(`model_grid/image.nii.gz`; training-split cases only), draws `--crops` crops of `--crop`³ voxels
(90 % centred on a voxel inside the head, 10 % anywhere, as training/synth.py draws its training
crops), and folds the normalisations one at a time in graph order: the statistics of layer k are
measured with layers 1..k-1 already folded, so each layer sees the inputs it will see at inference
(the BatchNorm re-estimation of AdaBN, Li et al. 2016, applied to instance statistics; `--one-pass`
measures all of them on the original member instead). Per channel:
mu = the mean over crops of the crop's mean, var = the mean over crops of the crop's variance (the
scale an instance normalisation applied to a typical training crop). With a = gamma / sqrt(var + eps):
W' = a W, b' = a (b - mu) + beta, and the InstanceNormalization node is removed. It writes DIR with
the folded members and a copy of the rest of the model folder, whose manifest names the new members'
sha256 (nothing else in it changes: its version, thresholds and figures are the source model's).

`check` runs, for each run folder (a `neurobatch process --keep-model-grid` output of the reference
model), the folded members over the whole padded model grid and compares the ensemble mean with the
reference run's model-grid probabilities (mask Dice per tissue, max |dp|) and both with the case's
labels taken to the model grid (nearest neighbour): a quick, engine-free look before the real runs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import onnx
import onnxruntime as ort
from nibabel.processing import resample_from_to
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics import dice  # noqa: E402
from routing_eval import NAMES  # noqa: E402
from write_manifest import sha256  # noqa: E402


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_model(sess: ort.InferenceSession, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    return sess.run(outputs, {"image": x.astype(np.float32), "mc_dropout": np.zeros(1, np.float32)})


def fold(model: onnx.ModelProto, node: onnx.NodeProto, mu: np.ndarray, var: np.ndarray) -> None:
    """Folds one InstanceNormalization into the Conv that produces its input, in place."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    conv = next(n for n in graph.node if n.output[0] == node.input[0])
    if conv.op_type != "Conv" or len(conv.input) != 3:
        raise SystemExit(f"{node.name}: its input comes from {conv.op_type}, not a Conv with a bias")
    eps = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), 1e-5)
    w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
    b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
    gamma = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
    beta = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
    a = gamma / np.sqrt(var + eps)
    for name, value in ((conv.input[1], w * a[:, None, None, None, None]), (conv.input[2], a * (b - mu) + beta)):
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    conv.output[0] = node.output[0]
    graph.node.remove(node)
    used = {i for n in graph.node for i in n.input}
    for name in node.input[1:]:
        if name not in used:
            graph.initializer.remove(inits[name])


def draw_crops(images: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """n crops of size³ (zero-padded where they leave the grid), 90 % centred inside the head."""
    crops = np.zeros((n, 1, size, size, size), np.float32)
    half = size // 2
    for k in range(n):
        img = images[rng.integers(len(images))]
        if rng.random() < 0.9:
            inside = np.argwhere(img > 0.05)
            centre = inside[rng.integers(len(inside))]
        else:
            centre = np.array([rng.integers(s) for s in img.shape])
        lo = centre - half
        src = tuple(slice(max(l, 0), min(l + size, s)) for l, s in zip(lo, img.shape))
        dst = tuple(slice(sl.start - l, sl.stop - l) for sl, l in zip(src, lo))
        crops[(k, 0) + dst] = img[src]
    return crops


def truncated(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    """The member computing only `outputs`: the nodes they depend on, no others."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    need, keep = set(outputs), []
    for node in reversed(list(graph.node)):
        if any(o in need for o in node.output):
            keep.append(node)
            need.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outputs)
    return probe


def crop_stats(model: onnx.ModelProto, names: list[str], crops: np.ndarray, batch: int) -> list[tuple]:
    """Per channel of each named tensor: the mean over crops of the crop's mean and of its variance,
    and the between-crop sd of the means relative to the mean within-crop sd (how much an instance
    normalisation adapted to the crop)."""
    probe = truncated(model, names)
    sess = session(probe)
    means, variances = [[] for _ in names], [[] for _ in names]
    for i in range(0, len(crops), batch):
        for k, y in enumerate(run_model(sess, crops[i:i + batch], names)):
            y = y.astype(np.float64).reshape(y.shape[0], y.shape[1], -1)
            means[k].append(y.mean(axis=2))
            variances[k].append(y.var(axis=2))
    out = []
    for m, v in zip(means, variances):
        m, v = np.concatenate(m), np.concatenate(v)
        out.append((m.mean(axis=0), v.mean(axis=0), float(m.std(axis=0).mean() / np.sqrt(v.mean(axis=0)).mean())))
    return out


def freeze_member(path: Path, crops: np.ndarray, batch: int, sequential: bool) -> tuple[onnx.ModelProto, list[dict]]:
    """Folds every InstanceNormalization. sequential: layer k's statistics are measured with layers
    1..k-1 folded (each sees the inputs it will see); otherwise all come from one pass of the
    original member."""
    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type == "InstanceNormalization"]
    stats = []
    if not sequential:
        measured = crop_stats(model, [n.input[0] for n in nodes], crops, batch)
    for k, node in enumerate(nodes):
        mu, var, spread = crop_stats(model, [node.input[0]], crops, batch)[0] if sequential else measured[k]
        stats.append({"node": node.name, "channels": int(mu.size), "between_crop_sd_of_mean_over_sd": spread})
        fold(model, node, mu, var)
    return model, stats


def cmd_freeze(args) -> None:
    images = [np.asarray(nib.load(str(p)).dataobj, dtype=np.float32) for p in args.images]
    rng = np.random.default_rng(args.seed)
    crops = draw_crops(images, args.crops, args.crop, rng)
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(args.model, args.out)
    record = {"images": [str(p) for p in args.images], "crop": args.crop, "crops": args.crops,
              "seed": args.seed, "sequential": not args.one_pass, "members": {}}
    manifest = (args.out / "manifest.toml").read_text()
    for path in sorted(args.model.glob("member_*.onnx")):
        model, stats = freeze_member(path, crops, args.batch, sequential=not args.one_pass)
        onnx.checker.check_model(model)
        onnx.save(model, str(args.out / path.name))
        manifest = manifest.replace(sha256(path), sha256(args.out / path.name))
        record["members"][path.name] = stats
        print(f"{path.name}: {len(stats)} normalisations folded", file=sys.stderr)
    (args.out / "manifest.toml").write_text(manifest)
    (args.out / "freeze_norm.json").write_text(json.dumps(record, indent=1))


def whole_grid(sessions: list[ort.InferenceSession], img: np.ndarray, multiple: int) -> np.ndarray:
    pad = [(-s) % multiple for s in img.shape]
    widths = [(p // 2, p - p // 2) for p in pad]
    x = np.pad(img, widths)[None, None]
    mean = sum(run_model(s, x, ["probabilities"])[0][0] for s in sessions) / len(sessions)
    return mean[(slice(None),) + tuple(slice(lo, lo + s) for (lo, _), s in zip(widths, img.shape))]


def cmd_check(args) -> None:
    sessions = [session(onnx.load(str(p))) for p in sorted(args.model.glob("member_*.onnx"))]
    cases = {c["name"]: c for c in json.loads((args.cases / "cases.json").read_text())}
    rows = []
    for run in args.runs:
        grid = nib.load(str(run / "model_grid" / "image.nii.gz"))
        img = np.asarray(grid.dataobj, dtype=np.float32)
        ref = np.stack([np.asarray(nib.load(str(run / "model_grid" / f"probability_{c}.nii.gz")).dataobj)
                        for c in range(3)])
        new = whole_grid(sessions, img, args.multiple)
        ma, mb = ref.argmax(0), new.argmax(0)
        row = {"case": run.name, "max_abs_dp": float(np.abs(ref - new).max())}
        case = cases.get(run.name)
        truth = None
        if case and case.get("labels"):
            labels = nib.load(str(args.cases / case["labels"]))
            truth = np.asarray(resample_from_to(labels, grid, order=0).dataobj)
        for c, name in NAMES.items():
            row[f"agree_{name}"] = dice(ma == c, mb == c)
            if truth is not None:
                row[f"ref_{name}"] = dice(ma == c, truth == c)
                row[f"new_{name}"] = dice(mb == c, truth == c)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k != "case"]
    summary = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    print(json.dumps({"cases": len(rows), "mean": summary}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("freeze")
    f.add_argument("--model", type=Path, required=True)
    f.add_argument("--images", type=Path, nargs="+", required=True)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--crop", type=int, default=48)
    f.add_argument("--crops", type=int, default=96)
    f.add_argument("--batch", type=int, default=8)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--one-pass", action="store_true",
                   help="measure every layer in one pass of the original member (worse: training/README.md)")
    c = sub.add_parser("check")
    c.add_argument("--model", type=Path, required=True)
    c.add_argument("--cases", type=Path, required=True)
    c.add_argument("--runs", type=Path, nargs="+", required=True)
    c.add_argument("--multiple", type=int, default=8)
    args = ap.parse_args()
    {"freeze": cmd_freeze, "check": cmd_check}[args.cmd](args)


if __name__ == "__main__":
    main()
