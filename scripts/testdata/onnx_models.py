"""Test data and references for `worker::runtime` and `worker::manifest`.

The models are built with the `onnx` helper API (no torch): fixed, seeded weights,
so every run writes byte-identical files.

data: under .testdata/onnx/:
  conv3d_softmax.onnx   image [N, 1, x, y, z] -> Conv3d(1 -> 3, 3x3x3, padding 1) -> softmax over
                        channels -> probabilities [N, 3, x, y, z]; opset 17, dynamic batch and
                        spatial axes
  mni_crop.f32/.json    a 32^3 crop of the nilearn MNI152 2009 T1, z-scored within the crop
                        (`_common.write_raw_f32`; Fortran order, axes i, j, k)
  gated_dropout.onnx    conv3d_softmax with an MC-dropout gate: inputs image and mc_dropout float32 [1];
                        the conv's logits are multiplied by 1 + g·(mask/(1 − 0.5) − 1) with a fresh
                        Bernoulli(0.5) mask per run (RandomUniformLike), so g = 0 is exactly the
                        deterministic model and g = 1 is inverted dropout at rate 0.5
  classifier.onnx       image [N, 1, x, y, z] -> Conv3d(1 -> 2, 3x3x3, padding 1) -> mean over x, y, z
                        -> softmax -> probabilities [N, 2] (a stand-in for scan-quality members)
  tissue_model/         a model folder: manifest.toml + member_0.onnx, member_1.onnx (the same
                        graph with two seeds), sha256 of each member written into the manifest
  member_features.onnx  the shipped models/brain-tissue/member_0.onnx with its bottleneck as a second
                        output `features` (training/add_features_output.py)
refs: under worker/tests/fixtures/onnx/:
  conv3d_softmax.json   onnxruntime (Python, CPU) on the crop fed as [1, 1, i, j, k] (nibabel's
                        array order): output shape, per-channel sums and values at
                        `_common.sample_indices` (Fortran-order linear indices of the crop), and
                        the model's sha256 (the Rust test checks the data step wrote the same model)
  bottleneck_features.json  member_features.onnx (onnxruntime, CPU) on the crop as one 32^3 window:
                        its `features` [1, 48, 4, 4, 4] pooled over the brain the way
                        worker::inference::FeaturePool does (each position weighted by the mean of
                        1 - p(background) over its 8^3 block of the window's own output), numpy float64
"""

import hashlib
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

AREA = "onnx"
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "training"))
import add_features_output  # noqa: E402
OPSET = 17
# IR version 8 is the one opset 17 shipped with (onnx 1.12); onnxruntime 1.31 reads it.
IR_VERSION = 8
CLASSES = 3
# Lateral ventricle, caudate, grey and white matter of the MNI template: every class gets voxels.
CROP = (slice(82, 114), slice(110, 142), slice(78, 110))
LABELS = [("background", (0, 0, 0)), ("grey_matter", (205, 62, 78)), ("white_matter", (245, 245, 245))]


def conv_softmax_model(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    weight = (rng.normal(0.0, 0.4, (CLASSES, 1, 3, 3, 3))).astype(np.float32)
    bias = rng.normal(0.0, 0.2, CLASSES).astype(np.float32)
    spatial = ["batch", 1, "x", "y", "z"]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "weight", "bias"], ["logits"], kernel_shape=[3, 3, 3], pads=[1] * 6),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "conv3d_softmax",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, spatial)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES, "x", "y", "z"])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="neurobatch-testdata")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def gated_dropout_model(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    weight = (rng.normal(0.0, 0.4, (CLASSES, 1, 3, 3, 3))).astype(np.float32)
    bias = rng.normal(0.0, 0.2, CLASSES).astype(np.float32)
    scalar = lambda v, name: numpy_helper.from_array(np.array(v, dtype=np.float32), name)  # noqa: E731
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "weight", "bias"], ["logits"], kernel_shape=[3, 3, 3], pads=[1] * 6),
            helper.make_node("RandomUniformLike", ["logits"], ["uniform"]),
            helper.make_node("GreaterOrEqual", ["uniform", "rate"], ["kept"]),
            helper.make_node("Cast", ["kept"], ["keep"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["keep", "inv_keep"], ["scaled"]),
            helper.make_node("Sub", ["scaled", "one"], ["delta"]),
            helper.make_node("Mul", ["delta", "mc_dropout"], ["gated"]),
            helper.make_node("Add", ["gated", "one"], ["factor"]),
            helper.make_node("Mul", ["logits", "factor"], ["dropped"]),
            helper.make_node("Softmax", ["dropped"], ["probabilities"], axis=1),
        ],
        "gated_dropout",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "x", "y", "z"]),
            helper.make_tensor_value_info("mc_dropout", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES, "x", "y", "z"])],
        [
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
            scalar(0.5, "rate"),
            scalar(2.0, "inv_keep"),
            scalar(1.0, "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="neurobatch-testdata")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def classifier_model(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    weight = (rng.normal(0.0, 0.4, (2, 1, 3, 3, 3))).astype(np.float32)
    bias = rng.normal(0.0, 0.2, 2).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "weight", "bias"], ["maps"], kernel_shape=[3, 3, 3], pads=[1] * 6),
            helper.make_node("ReduceMean", ["maps"], ["logits"], axes=[2, 3, 4], keepdims=0),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "x", "y", "z"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="neurobatch-testdata")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def mni_crop():
    img = nib.load(_common.mni_t1())
    crop = np.asarray(img.get_fdata(), dtype=np.float64)[CROP]
    z = (crop - crop.mean()) / crop.std()
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.array([s.start for s in CROP]) + img.affine[:3, 3]
    return z.astype(np.float32), affine


def manifest(members) -> str:
    labels = "\n".join(
        f'[[labels]]\nvalue = {i}\nname = "{name}"\ncolour = [{c[0]}, {c[1]}, {c[2]}]\n' for i, (name, c) in enumerate(LABELS)
    )
    member_tables = "\n".join(f'[[members]]\nfile = "{f}"\nsha256 = "{h}"\nseed = {s}\n' for f, h, s in members)
    return f"""# Test model folder written by scripts/testdata/onnx_models.py: two seeded 3-D conv + softmax
# members, not a trained model.
schema = 1
name = "test-tissue"
version = "0.0.1"
task = "segmentation"
description = "fixed random weights; exercises manifest loading only"

[input]
contrast = "T1w"
spacing_mm = [1.0, 1.0, 1.0]
orientation = "RAS"
channels = 1
tensor = "image"

[harmonization]
method = "zscore"

[output]
tensor = "probabilities"
activation = "softmax"

{labels}
[inference]
patch_size = [32, 32, 32]
overlap = 0.5
tta_axes = [0, 1, 2]
mc_dropout_passes = 0

[routing]
study_uncertainty_max = 0.5
structure_agreement_min = 0.8
source = "none: test data"

[provenance]
script = "scripts/testdata/onnx_models.py"
data = "none"

[evaluation]
report = "none"

{member_tables}"""


def data(out: Path) -> None:
    d = out / AREA
    d.mkdir(parents=True, exist_ok=True)
    (d / "conv3d_softmax.onnx").write_bytes(conv_softmax_model(seed=3))
    (d / "gated_dropout.onnx").write_bytes(gated_dropout_model(seed=3))
    (d / "classifier.onnx").write_bytes(classifier_model(seed=5))
    crop, affine = mni_crop()
    _common.write_raw_f32(d / "mni_crop", crop, affine)
    folder = d / "tissue_model"
    folder.mkdir(exist_ok=True)
    members = []
    for i, seed in enumerate((11, 12)):
        name = f"member_{i}.onnx"
        (folder / name).write_bytes(conv_softmax_model(seed=seed))
        members.append((name, _common.sha256(folder / name), seed))
    (folder / "manifest.toml").write_text(manifest(members))
    (d / "member_features.onnx").write_bytes(member_with_features())


def member_with_features() -> bytes:
    src = str(REPO / "models" / "brain-tissue" / "member_0.onnx")
    model = onnx.load(src)
    tensor = add_features_output.bottleneck(model.graph)
    add_features_output.add_output(model, add_features_output.channels_of(src, tensor))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def refs(out: Path) -> None:
    model = conv_softmax_model(seed=3)
    crop, _ = mni_crop()
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probabilities"], {"image": crop[None, None]})
    idx = _common.sample_indices(crop.shape, n=256, seed=7)
    ijk = np.unravel_index(idx, crop.shape, order="F")
    _common.write_json(
        out / AREA / "conv3d_softmax.json",
        {
            "tool": f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider), onnx {onnx.__version__}",
            "model_sha256": hashlib.sha256(model).hexdigest(),
            "crop_shape": list(crop.shape),
            "output_shape": list(probs.shape),
            "indices": idx,
            "channel_values": [[float(v) for v in probs[0, c][ijk]] for c in range(CLASSES)],
            "channel_sums": [float(probs[0, c].astype(np.float64).sum()) for c in range(CLASSES)],
            "max_abs_class_sum_error": float(np.abs(probs[0].astype(np.float64).sum(axis=0) - 1.0).max()),
        },
    )

    member = member_with_features()
    session = onnxruntime.InferenceSession(member, opts, providers=["CPUExecutionProvider"])
    probs, features = session.run(["probabilities", "features"], {"image": crop[None, None], "mc_dropout": np.zeros(1, np.float32)})
    brain = 1.0 - probs[0, 0].astype(np.float64)
    grid = features.shape[2:]
    block = [n // g for n, g in zip(brain.shape, grid)]
    weights = brain.reshape(grid[0], block[0], grid[1], block[1], grid[2], block[2]).mean(axis=(1, 3, 5)).clip(0, 1)
    f = features[0].astype(np.float64)
    pooled = (f * weights).sum(axis=(1, 2, 3)) / weights.sum()
    _common.write_json(
        out / AREA / "bottleneck_features.json",
        {
            "tool": f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider), onnx {onnx.__version__}, numpy {np.__version__}",
            "model_sha256": hashlib.sha256(member).hexdigest(),
            "features_shape": list(features.shape),
            "weight": float(weights.sum()),
            "pooled": [float(v) for v in pooled],
        },
    )


if __name__ == "__main__":
    _common.cli(data, refs)
