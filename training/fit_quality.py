"""The learned quality estimator and the routing thresholds, fitted and judged on disjoint splits.

    .venv/bin/python training/fit_quality.py --cases CASES --work RUNS --tag cpu --profile cpu \
        [--write models/brain-tissue] [--out training/routing_evaluation_cpu.json]
    .venv/bin/python training/fit_quality.py --cases CASES --work RUNS --tag cpu --evaluate test

The second form refits nothing: it recomputes one split's figures in the figures file with the
shipped estimator (its sha256 checked against the file's) and thresholds, for a split re-run with
more cases.

Reads the runs of training/routing_eval.py (WORK/<tag>/<case>/result.json) and, where
training/volume_calibration.py wrote them, the calibrated figures (calibrated.json: the truth of the
mask the engine writes with the manifest's class weights). Then:

1. **Estimator** (train split only): one gradient-boosted regression tree ensemble per tissue
   (scikit-learn GradientBoostingRegressor, Huber loss, depth 3, 300 trees, learning rate 0.05,
   subsample 0.8) from the report's `quality_features` to that tissue's Dice; exported with skl2onnx
   and joined into one ONNX graph `features` [N, F] -> `dice` [N, 2], the graph the worker runs
   (worker::quality). Every later figure uses the ONNX graph's predictions through onnxruntime,
   i.e. the numbers the worker computes, not scikit-learn's.
2. **Thresholds** (calibration split only). The policy: review when the OOD score exceeds
   `ood_score_max` or any tissue's predicted Dice is below `predicted_dice_min`.
   - `ood_score_max`: the calibration split's out-of-distribution inputs (non-brain, non-T1, noise)
     must all be routed: the smallest OOD score among them divided by a margin of 1.25, unless
     that is below the 97.5th percentile of the labelled calibration cases' scores, in which case
     the smallest OOD-input score itself (the estimator must then catch the rest).
   - `predicted_dice_min` (`--procedure ltt`, the default): **Learn-then-Test** (Angelopoulos et al.
     2021) for the target "among accepted cases at most ALPHA have min-tissue Dice < 0.85, with
     1 - DELTA confidence". For a bound λ the null hypothesis is "the failure rate among the cases
     accepted at λ exceeds ALPHA"; its p-value on the in-domain calibration cases is the binomial
     P(X <= k | n, ALPHA) with n accepted and k of them failing. The hypotheses are tested in a fixed
     sequence chosen on the training split alone: it starts at the λ whose out-of-fold training
     predictions (5-fold, the same estimator) give the smallest p-value, and steps by 0.0005 toward
     more lenient bounds until the first p-value above DELTA; the bound is the last one rejected
     (fixed-sequence testing controls the family-wise error at DELTA, whatever the sequence, as long
     as the calibration split did not choose it). If not even the first is rejected, nothing is
     certified and the bound falls back to conformal risk control (below), which says so.
   - Conformal risk control (Angelopoulos et al. 2022; `--procedure crc`, and always reported) on the
     loss L_i(λ) = 1[case i is accepted at λ and its min-tissue Dice < 0.85], which falls as λ rises:
     λ̂ = the smallest λ with (Σ_i L_i(λ) + 1) / (n + 1) ≤ ALPHA over the n in-domain calibration
     cases. Guarantee, for a new case exchangeable with the calibration split: the probability that
     it is accepted *and* fails is at most ALPHA (in expectation over calibration sets) — a joint
     rate, weaker than the Learn-then-Test target, which bounds the rate among accepted cases.
3. **Test split only** for every reported figure: failure-detection AUROC of the predicted min Dice,
   Spearman of predicted vs true Dice per tissue, the accepted-failure rate, the review rate on good
   cases, per shift type; OOD inputs routed; invariance triples (the same scan, padded and cropped)
   with equal decisions; volume errors and ECE (from calibrated.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metrics  # noqa: E402
import runs_table  # noqa: E402
from routing_eval import collect  # noqa: E402

TISSUES = ["grey_matter", "white_matter"]
LABELS = {"grey_matter": 1, "white_matter": 2}
FAIL_DICE = 0.85
ALPHA = 0.05
DELTA = 0.10
OOD_MARGIN = 1.25
LTT_STEP = 0.0005
SEED = 2026


def truth_of(r):
    """Per-tissue truth of the engine's mask: the calibrated one when calibrated.json exists."""
    cal = r.get("calibrated")
    return cal["truth"] if cal else r["truth"]


def min_dice(r):
    return min(truth_of(r)[t]["dice"] for t in TISSUES)


def load_runs(work: Path, tag: str):
    """The runs of routing_eval.py under WORK/<tag>, or the records of a runs_table.py file."""
    if work.is_file():
        return runs_table.load(work)
    runs = collect(work, tag)
    for r in runs:
        p = work / tag / r["name"] / "calibrated.json"
        r["calibrated"] = json.loads(p.read_text()) if p.exists() else None
    return runs


def feature_matrix(runs, names):
    rows, keep = [], []
    for r in runs:
        f = r.get("features") or {}
        row = [f.get(n) for n in names]
        ok = all(v is not None for v in row)
        keep.append(ok)
        rows.append([np.nan if v is None else float(v) for v in row])
    return np.asarray(rows, dtype=np.float32), np.asarray(keep, dtype=bool)


def export_onnx(models, n_features: int, path: Path):
    """One graph: `features` [N, F] -> `dice` [N, len(models)], one tree ensemble per output column."""
    import onnx
    from onnx import compose, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    graphs = []
    for i, m in enumerate(models):
        g = convert_sklearn(m, initial_types=[("features", FloatTensorType([None, n_features]))],
                            target_opset={"": 17, "ai.onnx.ml": 3})
        g = compose.add_prefix(g, prefix=f"t{i}_", rename_inputs=False)
        graphs.append(g)
    nodes, inits, outs = [], [], []
    for g in graphs:
        nodes.extend(g.graph.node)
        inits.extend(g.graph.initializer)
        outs.append(g.graph.output[0].name)
    nodes.append(helper.make_node("Concat", outs, ["dice"], axis=1))
    graph = helper.make_graph(
        nodes, "quality_estimator",
        [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("dice", onnx.TensorProto.FLOAT, [None, len(models)])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
                              producer_name="neurobatch training/fit_quality.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def predict_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = np.zeros((len(x), len(TISSUES)), np.float32)
    ok = ~np.isnan(x).any(axis=1)
    for i in np.flatnonzero(ok):
        # One row per run, as the worker runs it (a batch may sum the trees in another order).
        out[i] = s.run(["dice"], {"features": x[i : i + 1]})[0][0]
    out[~ok] = np.nan
    return np.clip(out, 0.0, 1.0)


def ltt_pvalue(pred_min, fail, lam):
    """Binomial p-value of "the failure rate among the cases accepted at λ exceeds ALPHA"."""
    acc = pred_min >= lam
    n, k = int(acc.sum()), int((acc & fail).sum())
    return (float(binom.cdf(k, n, ALPHA)) if n > 0 else 1.0), n, k


def ltt_start(train_pred_min, train_fail, step=LTT_STEP):
    """The first hypothesis of the fixed sequence, from the training split alone: the λ on a grid of
    `step` whose (out-of-fold) training predictions give the smallest p-value; ties go to the most
    lenient."""
    grid = np.round(np.arange(0.80, 0.95 + 1e-9, step), 4)
    p = np.array([ltt_pvalue(train_pred_min, train_fail, lam)[0] for lam in grid])
    best = np.flatnonzero(p == p.min())
    return float(grid[best[0]])


def ltt_bound(pred_min, fail, start, step=LTT_STEP, stop=0.0):
    """Fixed-sequence Learn-then-Test: λ from `start` down by `step`; the last λ whose p-value ≤ DELTA."""
    chosen, trail = None, []
    lam = start
    while lam >= stop:
        p, n, k = ltt_pvalue(pred_min, fail, lam)
        trail.append({"lambda": round(lam, 4), "accepted": n, "failures": k, "p_value": p})
        if p > DELTA:
            break
        chosen = lam
        lam = round(lam - step, 6)
    return chosen, trail


def out_of_fold_min(x, y, fit):
    """Min-tissue predictions of the training split by 5-fold cross-fitting (each case predicted by
    estimators that did not see it): what the sequence of hypotheses is learned from."""
    from sklearn.model_selection import KFold

    pred = np.zeros_like(y)
    for tr, te in KFold(5, shuffle=True, random_state=SEED).split(x):
        for i in range(y.shape[1]):
            pred[te, i] = fit(x[tr], y[tr, i]).predict(x[te])
    return pred.min(axis=1)


def crc_bound(pred_min, fail, alpha):
    """Conformal risk control: the smallest λ with (Σ 1[pred ≥ λ ∧ fail] + 1)/(n + 1) ≤ alpha
    (the loss is 1 for an accepted failure, bounded by B = 1)."""
    n = len(pred_min)
    candidates = np.unique(np.concatenate([pred_min, [1.0]]))
    for lam in candidates:  # ascending: the first that satisfies is the most lenient
        loss = int(((pred_min >= lam) & fail).sum())
        if (loss + 1) / (n + 1) <= alpha:
            # Halfway to the next smaller prediction would accept the same cases; keep λ itself.
            return float(lam), loss
    return 1.0, 0


def decide(r, pred_min, ood_max, dice_min):
    if "error" in r:
        return "error"
    score = (r.get("ood") or {}).get("score")
    if score is None or score > ood_max:
        return "review"
    if pred_min is None or np.isnan(pred_min) or pred_min < dice_min:
        return "review"
    return "accept"


def shift_types(r):
    return [s["type"] for s in r.get("shifts", [])] or [r["category"]]


def summarize(runs, pred, ood_max, dice_min):
    """Figures of one split under the policy; `pred` maps name -> (gm, wm) predictions."""
    lab = [r for r in runs if r["labelled"] and "error" not in r and r.get("group") is None]
    out = {"labelled": len(lab)}
    pm = np.array([np.nanmin(pred[r["name"]]) if not np.isnan(pred[r["name"]]).all() else np.nan for r in lab])
    md = np.array([min_dice(r) for r in lab])
    fail = md < FAIL_DICE
    dec = np.array([decide(r, p, ood_max, dice_min) for r, p in zip(lab, pm)])
    acc = dec == "accept"
    out["failing"] = int(fail.sum())
    out["accepted"] = int(acc.sum())
    out["accepted_failures"] = int((acc & fail).sum())
    out["accepted_failure_rate"] = float((acc & fail).sum() / max(acc.sum(), 1))
    out["review_rate_good"] = float(((~acc) & ~fail).sum() / max((~fail).sum(), 1))
    out["review_rate_all"] = float((~acc).mean()) if len(acc) else None
    ok = ~np.isnan(pm)
    out["auroc_failure"] = metrics.auroc(-pm[ok], fail[ok])
    out["auroc_failure_study_score"] = metrics.auroc([r["study_score"] or 0 for r, o in zip(lab, ok) if o], fail[ok])
    for i, t in enumerate(TISSUES):
        p = np.array([pred[r["name"]][i] for r in lab])
        d = np.array([truth_of(r)[t]["dice"] for r in lab])
        good = ~np.isnan(p)
        out[f"spearman_{t}"] = metrics.spearman(p[good], d[good])
        out[f"mae_{t}"] = float(np.abs(p[good] - d[good]).mean())
    # Per shift type (a case counts once for each of its shifts).
    per = {}
    for r, a, f, d in zip(lab, acc, fail, md):
        for s in shift_types(r):
            e = per.setdefault(s, {"cases": 0, "failing": 0, "accepted_failures": 0, "reviewed_good": 0, "good": 0,
                                   "dice_gm": [], "dice_wm": []})
            e["cases"] += 1
            e["failing"] += int(f)
            e["accepted_failures"] += int(a and f)
            e["good"] += int(not f)
            e["reviewed_good"] += int((not a) and (not f))
            e["dice_gm"].append(truth_of(r)["grey_matter"]["dice"])
            e["dice_wm"].append(truth_of(r)["white_matter"]["dice"])
    for e in per.values():
        e["dice_gm"] = float(np.mean(e["dice_gm"]))
        e["dice_wm"] = float(np.mean(e["dice_wm"]))
    out["per_shift"] = dict(sorted(per.items()))
    ood = [r for r in runs if not r["labelled"]]
    out["ood_inputs"] = [{"name": r["name"], "category": r["category"], "ood_score": (r.get("ood") or {}).get("score"),
                          "decision": decide(r, np.nan, ood_max, dice_min), "error": r.get("error")} for r in ood]
    out["ood_routed"] = sum(1 for o in out["ood_inputs"] if o["decision"] == "review")
    groups = {}
    for r in runs:
        if r.get("group"):
            p = pred.get(r["name"])
            pmin = np.nan if p is None or np.isnan(p).all() else float(np.nanmin(p))
            groups.setdefault(r["group"], {})[r["variant"]] = {
                "decision": decide(r, pmin, ood_max, dice_min), "ood_score": (r.get("ood") or {}).get("score"),
                "predicted_min_dice": pmin, "min_dice": min_dice(r) if r["labelled"] and "error" not in r else None}
    out["invariance"] = groups
    out["invariance_changed"] = sum(1 for g in groups.values() if len({v["decision"] for v in g.values()}) > 1)
    vol = {}
    for t in TISSUES:
        rel = [truth_of(r)[t]["volume_ml"] / truth_of(r)[t]["true_volume_ml"] - 1 for r in lab
               if min_dice(r) >= 0.8]
        # Without the weights: the unweighted argmax of the same probabilities (calibrated.json), not the
        # engine's mask, which carries the weights for runs made after they shipped.
        raw = [r["calibrated"]["truth"][t]["uncalibrated_volume_ml"] / r["calibrated"]["truth"][t]["true_volume_ml"] - 1
               for r in lab if min_dice(r) >= 0.8 and r.get("calibrated")]
        vol[t] = {"median_relative_error": float(np.median(rel)) if rel else None,
                  "median_relative_error_uncalibrated": float(np.median(raw)) if raw else None,
                  "median_abs_relative_error": float(np.median(np.abs(rel))) if rel else None, "cases": len(rel)}
    out["volumes"] = vol
    out.update(ece_figures(lab))
    classifier = [(r["classifier"]["p_degraded"], min_dice(r) < FAIL_DICE) for r in lab if r.get("classifier")]
    if classifier:
        out["classifier_auroc_failure"] = metrics.auroc([c[0] for c in classifier], [c[1] for c in classifier])
        out["classifier_cases"] = len(classifier)
    out["seconds_median"] = float(np.median([r["seconds"] for r in runs if "seconds" in r]))
    return out


def ece_figures(lab: list) -> dict:
    """Mean voxel ECE over the runs whose calibrated.json has it (labels on the scan's grid): of the
    ensemble mean, with the class weights alone when recorded, and of the reported probabilities."""
    cal = [r["calibrated"] for r in lab if r.get("calibrated") and "ece_before" in r["calibrated"]]
    if not cal:
        return {}
    out = {"ece_before": float(np.mean([c["ece_before"] for c in cal])),
           "ece_after": float(np.mean([c["ece_after"] for c in cal])), "ece_cases": len(cal)}
    if all("ece_weights_only" in c for c in cal):
        out["ece_weights_only"] = float(np.mean([c["ece_weights_only"] for c in cal]))
    return out


def evaluate(args):
    """`--evaluate SPLIT`: that split's figures under the shipped estimator and thresholds (nothing refitted)."""
    import datetime

    out_path = args.out or Path(f"training/routing_{args.profile}.json")
    figures = json.loads(out_path.read_text())
    estimator = args.estimator or Path(f"models/brain-tissue/{figures['estimator']['file']}")
    sha = hashlib.sha256(estimator.read_bytes()).hexdigest()
    if sha != figures["estimator"]["sha256"]:
        sys.exit(f"{estimator}: sha256 {sha[:16]}… is not the estimator of {out_path} ({figures['estimator']['sha256'][:16]}…)")
    runs = [r for r in load_runs(args.work, args.tag) if r.get("split") == args.evaluate]
    if args.only_ece:
        # Only the calibration figures: the runs present may be the split's cases whose labels share
        # the scan's grid, not the whole split, so nothing else is recomputed.
        split = figures["splits"][args.evaluate]
        ece = ece_figures([r for r in runs if r["labelled"] and "error" not in r and r.get("group") is None])
        split.update(ece)
        split["ece_evaluated"] = {"date": datetime.date.today().isoformat(), "cases": ece.get("ece_cases", 0),
                                  "note": "re-run of the split's cases with labels on the scan's grid for the "
                                          "voxel ECE; the other figures of this split are unchanged"}
        out_path.write_text(json.dumps(figures, indent=1, default=float))
        print(json.dumps(ece, indent=1))
        return
    x, _ = feature_matrix(runs, figures["features"])
    pred = dict(zip((r["name"] for r in runs), predict_onnx(estimator, x)))
    th = figures["thresholds"]
    split = summarize(runs, pred, th["ood_score_max"], th["predicted_dice_min"])
    split["evaluated"] = {"date": datetime.date.today().isoformat(), "estimator_sha256": sha,
                          "note": "re-run of this split only, with the estimator and thresholds fitted on the "
                                  "train and cal splits (unchanged)"}
    figures["splits"][args.evaluate] = split
    out_path.write_text(json.dumps(figures, indent=1, default=float))
    print(json.dumps({k: v for k, v in split.items() if k not in ("per_shift", "ood_inputs", "invariance")}, indent=1,
                     default=float))
    print("wrote", out_path)


def main():
    from sklearn.ensemble import GradientBoostingRegressor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=Path, help="not read (the runs record everything); accepted for older commands")
    ap.add_argument("--work", type=Path, required=True,
                    help="routing_eval.py's folder, or a runs_table.py file (training/routing_runs_cpu.jsonl.gz)")
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--onnx", type=Path, help="where the estimator goes (default: training/.cache/quality_<profile>.onnx)")
    ap.add_argument("--out", type=Path, help="figures (default: training/routing_<profile>.json)")
    ap.add_argument("--procedure", choices=["ltt", "crc"], default="ltt",
                    help="how predicted_dice_min is set on the calibration split (module docstring)")
    ap.add_argument("--evaluate", choices=["cal", "test"],
                    help="only recompute this split's figures in --out with the shipped estimator and thresholds")
    ap.add_argument("--only-ece", action="store_true",
                    help="with --evaluate: only the voxel ECE figures (from each run's calibrated.json)")
    ap.add_argument("--estimator", type=Path, help="with --evaluate: the shipped estimator "
                                                   "(default: models/brain-tissue/<the file in --out>)")
    args = ap.parse_args()
    if args.evaluate:
        return evaluate(args)
    onnx_path = args.onnx or Path(f"training/.cache/quality_{args.profile}.onnx")
    out_path = args.out or Path(f"training/routing_{args.profile}.json")
    onnx_path.parent.mkdir(parents=True, exist_ok=True)

    runs = load_runs(args.work, args.tag)
    by_split = {s: [r for r in runs if r.get("split") == s] for s in ("train", "cal", "test")}
    any_features = next(r["features"] for r in runs if r.get("features"))
    names = sorted(any_features)

    train = [r for r in by_split["train"] if r["labelled"] and "error" not in r and r.get("group") is None]
    x, ok = feature_matrix(train, names)
    x = x[ok]
    train = [r for r, k in zip(train, ok) if k]

    def fit(xs, ys):
        return GradientBoostingRegressor(loss="huber", n_estimators=300, max_depth=3, learning_rate=0.05,
                                         subsample=0.8, min_samples_leaf=5, random_state=SEED).fit(xs, ys)

    y = np.array([[truth_of(r)[t]["dice"] for t in TISSUES] for r in train])
    models = [fit(x, y[:, i]) for i in range(len(TISSUES))]
    export_onnx(models, len(names), onnx_path)
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()

    # One session for every run (a run without features — a failed study — predicts nothing).
    x_all, _ = feature_matrix(runs, names)
    pred = dict(zip((r["name"] for r in runs), predict_onnx(onnx_path, x_all)))

    # Thresholds on the calibration split.
    cal = by_split["cal"]
    cal_lab = [r for r in cal if r["labelled"] and "error" not in r and r.get("group") is None]
    cal_ood = [r for r in cal if not r["labelled"] and "error" not in r]
    ood_scores_ood = [r["ood"]["score"] for r in cal_ood if r.get("ood")]
    lab_scores = np.array([r["ood"]["score"] for r in cal_lab if r.get("ood")])
    q975 = float(np.quantile(lab_scores, 0.975))
    if ood_scores_ood:
        lowest = min(ood_scores_ood)
        ood_max = lowest / OOD_MARGIN if lowest / OOD_MARGIN >= q975 else lowest * 0.999
    else:
        ood_max = q975
    in_domain = [r for r in cal_lab if r["ood"]["score"] <= ood_max]
    pm = np.array([np.nanmin(pred[r["name"]]) for r in in_domain])
    fail = np.array([min_dice(r) < FAIL_DICE for r in in_domain])
    train_in = np.array([r["ood"]["score"] <= ood_max for r in train])
    oof = out_of_fold_min(x, y, fit)
    start = ltt_start(oof[train_in], (y.min(axis=1) < FAIL_DICE)[train_in])
    ltt_min, trail = ltt_bound(np.nan_to_num(pm, nan=-1.0), fail, start)
    crc_min, crc_loss = crc_bound(np.nan_to_num(pm, nan=-1.0), fail, ALPHA)
    procedure = args.procedure if args.procedure == "crc" or ltt_min is not None else "crc (Learn-then-Test certified nothing)"
    dice_min = ltt_min if procedure == "ltt" else crc_min
    # Rounded up to 4 decimals: never more lenient than the bound the procedure chose.
    dice_min = float(np.ceil(round(dice_min * 1e4, 6)) / 1e4)
    ood_max = round(ood_max, 3)

    members = max(r["passes"] for r in runs if "passes" in r)  # the cpu profile: one unflipped pass per member
    figures = {
        "profile": args.profile,
        "members": members,
        "features": names,
        "estimator": {"file": onnx_path.name, "sha256": sha, "train_cases": len(train),
                      "model": "GradientBoostingRegressor(huber, 300 trees, depth 3, lr 0.05, subsample 0.8) per tissue"},
        "thresholds": {"ood_score_max": ood_max, "predicted_dice_min": dice_min, "alpha": ALPHA, "delta": DELTA,
                       "fail_dice": FAIL_DICE, "procedure": procedure,
                       "crc_bound": crc_min, "crc_calibration_accepted_failures": crc_loss,
                       "ltt_bound": ltt_min, "ltt_start": start, "ltt_trail": trail,
                       "calibration_cases": len(cal_lab), "calibration_in_domain": len(in_domain),
                       "calibration_ood_inputs": len(cal_ood), "ood_q975_labelled": q975,
                       "ood_min_of_ood_inputs": min(ood_scores_ood) if ood_scores_ood else None},
        "splits": {s: summarize(rs, pred, ood_max, dice_min) for s, rs in by_split.items() if rs},
    }
    out_path.write_text(json.dumps(figures, indent=1, default=float))
    # The worker's parity test (worker/tests/quality.rs): test-split rows and onnxruntime's predictions.
    rows = [r for r in by_split.get("test", []) if r.get("features") and not np.isnan(pred[r["name"]]).any()][:24]
    fixture = {"profile": args.profile, "members": members, "sha256": sha, "generated_by": "training/fit_quality.py",
               "rows": [{"name": r["name"], "features": r["features"],
                         "predicted": [float(v) for v in pred[r["name"]]]} for r in rows]}
    fixture_path = Path(__file__).resolve().parent.parent / "worker/tests/fixtures/quality" / f"estimator_{members}_members.json"
    fixture_path.parent.mkdir(parents=True, exist_ok=True)
    fixture_path.write_text(json.dumps(fixture, indent=1) + "\n")
    t = figures["splits"].get("test", {})
    print(json.dumps({k: v for k, v in t.items() if k not in ("per_shift", "ood_inputs", "invariance")}, indent=1,
                     default=float))
    print("thresholds:", {k: v for k, v in figures["thresholds"].items() if k != "ltt_trail"})
    print("wrote", out_path, onnx_path)


if __name__ == "__main__":
    main()
