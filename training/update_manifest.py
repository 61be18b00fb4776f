"""Writes the routing of issue 13 into a segmentation model's manifest: the refitted OOD reference, the
class weights, one quality estimator per profile and the thresholds fitted by training/fit_quality.py.

    .venv/bin/python training/update_manifest.py --model models/brain-tissue --version 0.4.0 \
        --ood /tmp/nb-routing/ood.toml [--weights training/.cache/class_weights.json] \
        [--routing training/routing_cpu.json] [--routing training/routing_full.json] \
        [--full-tta-axes 0]

Everything from `[routing]` on is rewritten (the manifest keeps `[routing]`, `[ood]` and what follows
last). Without --routing the manifest gets no thresholds at all (the state in which the evaluation
runs: nothing routed on figures of the previous version). Each --routing file names its profile; its
estimator (training/.cache/quality_<profile>.onnx) is copied into the model folder and listed with
its sha256 for the base pass set it was fitted on (`members`: worker::quality), and the thresholds
of the first --routing file become `[routing]`'s: every profile with that base pass set (the `cpu`
profile and the `full` one, which adds mirror flips) gets the same estimate and the same bound, and
a run of any other pass set (no estimator) is routed as unknown rather than accepted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import tomllib
from pathlib import Path


def fmt(v: float) -> str:
    return repr(float(v))


def q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def set_profile(text: str, profile: str, key: str, value: str | None) -> str:
    """`key = value` in [inference.profiles.<profile>], replacing an earlier one (removing it for None)."""
    head = f"[inference.profiles.{profile}]\n"
    start = text.index(head) + len(head)
    end = text.find("\n\n", start)
    end = len(text) if end < 0 else end + 1
    lines = [line for line in text[start:end].splitlines() if not line.startswith(key + " ")]
    if value is not None:
        lines.append(f"{key} = {value}")
    return text[:start] + "\n".join(lines) + "\n" + text[end:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/brain-tissue"))
    ap.add_argument("--version")
    ap.add_argument("--ood", type=Path, required=True, help="`neurobatch model fit-ood` output")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--routing", type=Path, action="append", default=[])
    ap.add_argument("--full-tta-axes", help="comma-separated mirror axes of the `full` profile")
    args = ap.parse_args()
    path = args.model / "manifest.toml"
    text = path.read_text()
    cut = text.find("\n[routing]\n")
    if cut < 0:
        cut = text.find("\n[ood]\n")
    text = (text[: cut + 1] if cut >= 0 else text).rstrip("\n") + "\n"
    if args.version:
        text = re.sub(r'^version = ".*"$', f'version = "{args.version}"', text, count=1, flags=re.M)
    if args.full_tta_axes is not None:
        axes = [int(a) for a in args.full_tta_axes.split(",") if a.strip()]
        text = set_profile(text, "full", "tta_axes", str(axes))
    for profile in ("full", "cpu"):
        text = set_profile(text, profile, "study_uncertainty_max", None)
        text = set_profile(text, profile, "predicted_dice_min", None)

    fits = [json.loads(p.read_text()) for p in args.routing]
    by_profile = {f["profile"]: f for f in fits}
    tail = ""
    if fits:
        cpu = by_profile.get("cpu", fits[0])
        th = cpu["thresholds"]
        if th["procedure"] == "ltt":
            rule = ("the Learn-then-Test bound for 'among accepted studies at most "
                    f"{th['alpha']:.0%} have min-tissue Dice < {th['fail_dice']}, with {1 - th['delta']:.0%} confidence'")
        else:
            rule = ("the conformal-risk-control bound for 'the rate of studies accepted with min-tissue Dice < "
                    f"{th['fail_dice']} is at most {th['alpha']:.0%}' (expectation over calibration sets)")
        source = ("training/EVALUATION.md, Routing: ood_score_max routes every out-of-distribution input of the "
                  f"calibration split; predicted_dice_min is {rule} on the calibration split (seeds 700000+); "
                  "the estimator fitted on the training split (600000+); figures on the test split (800000+)")
        tail += ("\n[routing]\n"
                 f"ood_score_max = {fmt(th['ood_score_max'])}\n"
                 f"predicted_dice_min = {fmt(th['predicted_dice_min'])}\n"
                 f"source = {q(source)}\n")
    tail += "\n" + args.ood.read_text().strip() + "\n"
    if args.weights:
        w = json.loads(args.weights.read_text())
        temperature = (f"temperature = {fmt(w['temperature'])}\n" if "temperature" in w else "")
        source = "training/EVALUATION.md, Volumes: " + w["rule"]
        if "temperature_fit" in w:
            source += "; temperature: " + w["temperature_fit"]["rule"]
        tail += ("\n[calibration]\n"
                 f"class_weights = [{', '.join(fmt(x) for x in w['class_weights'])}]\n"
                 f"{temperature}source = {q(source)}\n")
    for f in fits:
        src = Path("training/.cache") / f["estimator"]["file"]
        dest = args.model / f"quality_{f['profile']}.onnx"
        shutil.copyfile(src, dest)
        sha = hashlib.sha256(dest.read_bytes()).hexdigest()
        assert sha == f["estimator"]["sha256"], f"{src} changed since it was evaluated"
        tail += ("\n[[quality_estimators]]\n"
                 f"members = {int(f['members'])}\n"
                 f"file = {q(dest.name)}\n"
                 f"sha256 = {q(sha)}\n"
                 f"features = [{', '.join(q(n) for n in f['features'])}]\n"
                 "structures = [1, 2]\n")
    text += tail
    tomllib.loads(text)  # must parse
    path.write_text(text)
    print("wrote", path)


if __name__ == "__main__":
    main()
