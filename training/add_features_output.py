"""Give exported segmentation members a second output, `features`: the bottleneck activations
(the deepest encoder block's output, before its gated dropout) that the engine pools over the brain
for the feature-space out-of-distribution distance (docs/routing.md, `output.features`).

    .venv/bin/python training/add_features_output.py models/brain-tissue/member_*.onnx [--out DIR]

No retraining and no re-export from torch: the tensor is already computed inside the graph; this
adds it to the graph's outputs (onnx), checks the model, and checks with onnxruntime on random
windows that `probabilities` is bit-identical to the original's and that `features` is
[N, F, D/8, H/8, W/8]. Writes over each file unless --out names a folder. The manifest's member
checksums change with the bytes (training/update_manifest.py writes them).

Which tensor: the data input of the first ConvTranspose in graph order (training/unet.py's
`up[0]`, the deepest upsampling) is the gated-dropout `Mul` of the bottleneck; its first input is
the bottleneck before dropout (deterministic whatever the gate). A graph without that pattern is
refused rather than guessed at.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

NAME = "features"


def bottleneck(graph):
    producers = {o: n for n in graph.node for o in n.output}
    ups = [n for n in graph.node if n.op_type == "ConvTranspose"]
    if not ups:
        raise ValueError("no ConvTranspose: not a training/unet.py segmentation member")
    x = ups[0].input[0]
    node = producers.get(x)
    if node is not None and node.op_type == "Mul" and "drop" in node.name:
        x = node.input[0]  # before the gated dropout
    return x


def add_output(model, channels):
    graph = model.graph
    if any(o.name == NAME for o in graph.output):
        raise ValueError(f"it already has an output `{NAME}`")
    tensor = bottleneck(graph)
    renamed = helper.make_node("Identity", [tensor], [NAME], name="features_output")
    graph.node.append(renamed)
    graph.output.append(helper.make_tensor_value_info(
        NAME, onnx.TensorProto.FLOAT, ["n", channels, "fd", "fh", "fw"]))
    return tensor


def channels_of(path, tensor):
    """Runs the original graph with `tensor` exposed once to read its channel count."""
    m = onnx.load(path)
    m.graph.output.append(helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([tensor], feeds(sess, 1))[0].shape[1]


def feeds(sess, n, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for i in sess.get_inputs():
        if len(i.shape) == 5:
            out[i.name] = rng.normal(size=(n, 1, 64, 64, 64)).astype(np.float32)
        else:
            out[i.name] = np.zeros(1, np.float32)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("members", nargs="+")
    ap.add_argument("--out", default=None, help="folder for the new files (default: overwrite)")
    args = ap.parse_args()
    for path in args.members:
        model = onnx.load(path)
        tensor = bottleneck(model.graph)
        channels = channels_of(path, tensor)
        add_output(model, channels)
        onnx.checker.check_model(model)
        before = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = feeds(before, 2, seed=7)
        p0 = before.run(["probabilities"], feed)[0]
        p1, f = after.run(["probabilities", NAME], feed)
        if not np.array_equal(p0, p1):
            sys.exit(f"{path}: probabilities changed (max |diff| {np.abs(p0 - p1).max()})")
        if f.shape != (2, channels, 8, 8, 8) or not np.isfinite(f).all():
            sys.exit(f"{path}: features of shape {f.shape}, expected (2, {channels}, 8, 8, 8)")
        out = os.path.join(args.out, os.path.basename(path)) if args.out else path
        if args.out:
            os.makedirs(args.out, exist_ok=True)
        onnx.save(model, out)
        print(f"{out}: `{NAME}` = {tensor} [n, {channels}, d/8, h/8, w/8]; probabilities unchanged on 2 random windows")


if __name__ == "__main__":
    main()
