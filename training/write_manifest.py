"""Write models/brain-tissue/manifest.toml and models/scan-quality/manifest.toml from the training
records (run with either venv: stdlib only).

    write_manifest.py --run training/.cache/run [--models models] [--dice run/dice.json]

Reads run/base.json, run/seg_<k>.json, run/seg_<k>.export.json (member_<i>.onnx = seg_<order[i]>), run/quality_<k>.json, run/quality_<k>.export.json
and optionally the Python-side Dice figures of training/check_members.py; hashes every member.
Routing thresholds and the [ood] reference are left out: they are chosen later from the evaluation.
The keys follow worker/src/manifest/schema.rs and the model contract (mc_dropout_input and
[inference.profiles.*]).
"""
import argparse
import datetime
import glob
import hashlib
import json
import os
import tomllib


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def q(s):
    return json.dumps(s)  # a TOML basic string is a JSON string for our ASCII content


def fmt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return q(v)
    if isinstance(v, float):
        return repr(round(v, 6))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)


def figures_table(figs):
    return "figures = { " + ", ".join(f"{k} = {fmt(float(v))}" for k, v in sorted(figs.items())) + " }"


def load(path):
    with open(path) as f:
        return json.load(f)


def seg_manifest(run, folder, dice, order):
    """member_<i>.onnx is run seg_<order[i]> (the snapshot chain's last snapshot first)."""
    recs = [load(os.path.join(run, f"seg_{k}.json")) for k in order]
    base = load(os.path.join(run, "base.json"))
    exports = [load(os.path.join(run, f"seg_{k}.export.json")) for k in order]
    figs = {}
    for k, e in enumerate(exports):  # onnxruntime vs torch eval, mc_dropout 0: whole 96x112x96 volume and a 64^3 window
        figs[f"onnx_vs_torch_max_abs_diff_volume_member_{k}"] = e["max_abs_diff_ort_vs_torch_gate0"]
        figs[f"onnx_vs_torch_max_abs_diff_patch64_member_{k}"] = e["max_abs_diff_ort_vs_torch_gate0_patch64"]
    for case, row in (dice or {}).items():
        for who, d in row.items():
            figs[f"dice_gm_{case}_{who}"] = d["gm"]
            figs[f"dice_wm_{case}_{who}"] = d["wm"]
    lineage = (f"base run: seed {base['seed']}, {base['steps']} steps, {base['seconds']:.0f} s, "
               f"SynthSeg-style {base['p_synth']:.0%}, lr {base['lr']}. ")
    notes = (lineage + "Each member continues from the checkpoint named by its init with its own seed (its own augmentation "
             "draws) and a restarted cosine learning rate: " + "; ".join(
                 f"member {i}: seed {r['seed']}, init {r['init']}, {r['steps']} steps, {r['seconds']:.0f} s, lr {r['lr']}, "
                 f"SynthSeg-style {r['p_synth']:.0%}" for i, r in enumerate(recs))
             + f". Batch 1, {base['crop']}^3 crops, AdamW wd {base['weight_decay']}, Dice + cross-entropy, gated channel "
             f"dropout p 0.15. {recs[0]['params']} parameters. 1 torch thread per run on a shared 2-core VM. "
             "The members share ancestors (a CPU-time compromise, see training/README.md), so they agree more than "
             "independently trained members would.")
    lines = [
        "# written by training/write_manifest.py; see training/README.md",
        "schema = 1", 'name = "brain-tissue"', 'version = "0.3.0"', 'task = "segmentation"',
        'description = "background / grey matter / white matter from a T1w brain scan (2 mm model grid); '
        'CSF is background: no CSF map ships with the training data"',
        "", "[input]", 'contrast = "T1w"', "spacing_mm = [2.0, 2.0, 2.0]", 'orientation = "RAS"', "channels = 1",
        'tensor = "image"',
        "# blur a finer scan to the 2 mm grid's resolution before resampling (imaging::smooth): the held-out noise cases",
        "anti_aliasing = true",
        "", "[harmonization]", 'method = "percentile"', "lower = 0.5", "upper = 99.5",
        "", "# imaging::bias before harmonization: the held-out bias fields (training/EVALUATION.md)",
        "[bias_correction]", "degree = 3", "classes = 3", "max_iterations = 50", "tolerance = 1e-3",
        "", "[output]", 'tensor = "probabilities"', 'activation = "softmax"',
    ]
    # SNOMED CT codes as pydicom's codedict names them (codes.SCT.Tissue, GrayMatter, WhiteMatter):
    # the DICOM SEG segment's category and type, and the SR finding.
    tissue = '{ value = "85756007", scheme = "SCT", meaning = "Tissue" }'
    coded = {
        "grey_matter": '{ value = "389081007", scheme = "SCT", meaning = "Gray Matter" }',
        "white_matter": '{ value = "389080008", scheme = "SCT", meaning = "White Matter" }',
    }
    for v, name, col in ((0, "background", [0, 0, 0]), (1, "grey_matter", [205, 62, 78]), (2, "white_matter", [245, 245, 245])):
        lines += ["", "[[labels]]", f"value = {v}", f"name = {q(name)}", f"colour = {fmt(col)}"]
        if name in coded:
            lines += [f"category = {tissue}", f"type = {coded[name]}"]
    lines += [
        "", "[inference]", "patch_size = [64, 64, 64]", "overlap = 0.5", "tta_axes = [0, 1, 2]", "mc_dropout_passes = 0",
        'mc_dropout_input = "mc_dropout"',
        "# the members' downsampling (3 poolings, training/unet.py): whole-grid passes pad each axis to a multiple of it",
        "size_multiple = 8",
        "", "[inference.profiles.full]", f"members = {len(recs)}", "tta_axes = [0, 1, 2]", "mc_dropout_passes = 0",
        "", "[inference.profiles.cpu]", f"members = {len(recs)}", "tta_axes = []", "mc_dropout_passes = 0",
        "", "[provenance]", 'script = "training/train_segmentation.py"',
        'data = "nilearn 0.14.1 MNI152 2009c sym T1 + GM/WM probability maps (1 mm), warped (affine + elastic) onto a 2 mm grid; '
        'SynthSeg-style random contrast from the tissue maps or the augmented real T1"',
        f"trained = {q(datetime.date.today().isoformat() + ', CPU (2-core VM, shared), total ' + str(round(base['seconds'] + sum(r['seconds'] for r in recs))) + ' s')}",
        f"notes = {q(notes)}",
        "", "[evaluation]", 'report = "training/EVALUATION.md"', figures_table(figs),
    ]
    for k, r in enumerate(recs):
        f = os.path.join(folder, f"member_{k}.onnx")
        lines += ["", "[[members]]", f'file = "member_{k}.onnx"', f"sha256 = {q(sha256(f))}", f"seed = {r['seed']}"]
    return "\n".join(lines) + "\n"


def quality_manifest(run, folder):
    recs = [load(p) for p in sorted(glob.glob(os.path.join(run, "quality_[0-9].json")))]
    exports = [load(os.path.join(run, f"quality_{k}.export.json")) for k in range(len(recs))]
    figs = {}
    for k, (r, e) in enumerate(zip(recs, exports)):
        figs[f"temperature_member_{k}"] = r["temperature"]
        for when in ("before", "after"):
            for m in ("accuracy", "auroc", "ece15"):
                figs[f"{m}_{when}_temperature_member_{k}"] = r[f"test_{when}"][m]
        figs[f"onnx_vs_torch_max_abs_diff_member_{k}"] = e["max_abs_diff_ort_vs_torch_gate0"]
    notes = ("; ".join(f"member {k}: seed {r['seed']}, {r['bank']} generated volumes, {r['steps']} steps of batch {r['batch']}, "
                       f"{r['seconds']:.0f} s, T = {r['temperature']:.4f}" for k, r in enumerate(recs))
             + f". Temperature fitted on a generated calibration split (seed {recs[0]['calibration_seed']}, {recs[0]['held_out']} volumes), "
             f"figures on a test split (seed {recs[0]['test_seed']}, {recs[0]['held_out']} volumes), 15-bin ECE; T is folded into the graph.")
    lines = [
        "# written by training/write_manifest.py; see training/README.md",
        "schema = 1", 'name = "scan-quality"', 'version = "0.2.0"', 'task = "classification"',
        'description = "is this T1w scan of diagnostic quality, or degraded (motion ghosting, heavy noise, severe bias field)? '
        'Whole harmonized volume on a 4 mm grid"',
        "", "[input]", 'contrast = "T1w"', "spacing_mm = [4.0, 4.0, 4.0]", 'orientation = "RAS"', "channels = 1",
        'tensor = "image"',
        "", "[harmonization]", 'method = "percentile"', "lower = 0.5", "upper = 99.5",
        "", "[output]", 'tensor = "probabilities"', 'activation = "softmax"',
        "", "[[labels]]", "value = 0", 'name = "diagnostic"', "colour = [46, 160, 67]",
        "", "[[labels]]", "value = 1", 'name = "degraded"', "colour = [214, 39, 40]",
        "", "[inference]", "patch_size = [48, 56, 48]", "overlap = 0.0", "tta_axes = [0]", "mc_dropout_passes = 0",
        'mc_dropout_input = "mc_dropout"',
        "", "[provenance]", 'script = "training/train_quality.py"',
        'data = "nilearn 0.14.1 MNI152 2009c sym T1 (1 mm), warped (affine + elastic) onto a 4 mm grid; degraded class: '
        'k-space phase-error ghosting, heavy Rician noise, severe bias field"',
        f"trained = {q(datetime.date.today().isoformat() + ', CPU (2-core VM, shared), total ' + str(round(sum(r['seconds'] for r in recs))) + ' s')}",
        f"notes = {q(notes)}",
        "", "[evaluation]", 'report = "training/EVALUATION.md"', figures_table(figs),
    ]
    for k, r in enumerate(recs):
        f = os.path.join(folder, f"member_{k}.onnx")
        lines += ["", "[[members]]", f'file = "member_{k}.onnx"', f"sha256 = {q(sha256(f))}", f"seed = {r['seed']}"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="the training run's records (all but --in-place)")
    ap.add_argument("--models", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
    ap.add_argument("--dice", default=None)
    ap.add_argument("--routing", default=None, help="training/thresholds.json from report_evaluation.py")
    ap.add_argument("--ood", default=None, help="the [ood] table printed by `neurobatch model fit-ood`")
    ap.add_argument("--seg-order", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                    help="member_<i>.onnx is run seg_<order[i]>")
    ap.add_argument("--in-place", action="store_true",
                    help="keep the manifests' text up to [routing] (members, provenance, figures) and rewrite only "
                         "[routing] and [ood]: re-evaluation without the training run's records")
    args = ap.parse_args()
    if args.in_place:
        return rewrite_routing_in_place(args)
    if not args.run:
        ap.error("--run is required (or --in-place)")
    dice = load(args.dice) if args.dice and os.path.exists(args.dice) else None
    seg = seg_manifest(args.run, os.path.join(args.models, "brain-tissue"), dice, args.seg_order)
    quality = quality_manifest(args.run, os.path.join(args.models, "scan-quality"))
    seg, quality = with_routing(seg, quality, args)
    write_both(args.models, seg, quality)


def with_routing(seg, quality, args):
    th = {}
    if args.routing:
        th = load(args.routing)["thresholds"]
        seg += "\n[routing]\n"
        if "study_uncertainty_max" in th:
            seg += f"study_uncertainty_max = {fmt(th['study_uncertainty_max'])}\n"
        if args.ood and "ood_score_max" in th:
            seg += f"ood_score_max = {fmt(th['ood_score_max'])}\n"
        seg += "source = " + q("training/EVALUATION.md, Thresholds: " + th["rule"]) + "\n"
        flag = th.get("flag_probability_max")
        if flag is not None:
            quality += (f"\n[routing]\nflag_probability_max = {fmt(flag)}\nsource = "
                        + q("training/EVALUATION.md, scan-quality classifier: " + th["quality"]["rule"]) + "\n")
    # Without thresholds (the evaluation's own run) the profile's bound goes too: it needs [routing]'s source.
    seg = with_profile_bound(seg, "full", th.get("study_uncertainty_max_full"))
    if args.ood:
        with open(args.ood) as f:
            seg += "\n" + f.read()
    return seg, quality


def with_profile_bound(text, profile, bound):
    """`study_uncertainty_max = bound` in [inference.profiles.<profile>], replacing an earlier one
    (removing it when `bound` is None)."""
    head = f"[inference.profiles.{profile}]\n"
    start = text.index(head) + len(head)
    end = text.find("\n\n", start)
    end = len(text) if end < 0 else end + 1
    lines = [l for l in text[start:end].splitlines() if not l.startswith("study_uncertainty_max")]
    block = "\n".join(lines + ([] if bound is None else [f"study_uncertainty_max = {fmt(bound)}"])) + "\n"
    return text[:start] + block + text[end:]


def rewrite_routing_in_place(args):
    texts = []
    for name in ("brain-tissue", "scan-quality"):
        with open(os.path.join(args.models, name, "manifest.toml")) as f:
            text = f.read()
        cuts = [i for i in (text.find("\n[routing]\n"), text.find("\n[ood]\n")) if i >= 0]
        texts.append(text[: min(cuts) + 1].rstrip("\n") + "\n" if cuts else text)
    seg, quality = with_routing(texts[0], texts[1], args)
    write_both(args.models, seg, quality)


def write_both(models, seg, quality):
    for name, text in (("brain-tissue", seg), ("scan-quality", quality)):
        path = os.path.join(models, name, "manifest.toml")
        tomllib.loads(text)  # must parse
        with open(path, "w") as f:
            f.write(text)
        print("wrote", path)


if __name__ == "__main__":
    main()
