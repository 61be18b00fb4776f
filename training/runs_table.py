"""The per-case records of a routing evaluation as one committed file, so that the estimator and the
bounds can be refitted and judged again without re-running `neurobatch process` over the splits.

    .venv/bin/python training/runs_table.py export --work RUNS --tag cpu --out training/routing_runs_cpu.jsonl.gz

Each line is one case: its `result.json` (training/routing_eval.py: split, shifts, quality features,
OOD signals, decision, truth) with the case's `calibrated.json` (training/volume_calibration.py) under
`calibrated` when it exists; the per-run timings are dropped. With `--image-metrics`, a run made
before the worker computed its image-quality features gets them from its `model_grid/` folder
(`routing_eval.py --keep-model-grid`), and its record lists them under `features_from_model_grid`.
With `--merge OLD`, the records of OLD whose cases WORK has not run are kept: a later session runs
only the cases the committed table lacks (shifts.py regenerates any case from its seed). training/fit_quality.py and the
exploration scripts read this file wherever they take `--work` (a file instead of a folder).
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

DROPPED = ("timings_ms",)


def export(work: Path, tag: str, out: Path, image_metrics: bool = False, merge: Path | None = None) -> int:
    from fit_quality import load_runs  # the reader of result.json + calibrated.json (imports this module)

    rows = []
    for r in load_runs(work, tag):
        grid = work / tag / r["name"] / "model_grid"
        if image_metrics and r.get("features") and grid.is_dir():
            added = add_image_metrics(r["features"], grid)
            if added:
                r["features_from_model_grid"] = added
        rows.append({k: v for k, v in r.items() if k not in DROPPED})
    if merge:
        # An earlier table's records of cases this folder has not run (a session continuing another's).
        have = {r["name"] for r in rows}
        rows += [r for r in load(merge) if r["name"] not in have]
        rows.sort(key=lambda r: r["name"])
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime 0: the same records give the same bytes.
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        for r in rows:
            f.write((json.dumps(r, sort_keys=True) + "\n").encode())
    return len(rows)


def add_image_metrics(features: dict, grid: Path) -> list[str]:
    """The worker's image-quality features (worker/src/quality/image_metrics.rs) a run made before it
    computed them lacks, from the run's model_grid/ folder (the same arithmetic in Python:
    explore_image_quality.image_quality, which matches the worker to 1e-13 on real runs); returns
    the names added."""
    from explore_image_quality import image_quality

    added = []
    for name, value in image_quality(grid).items():
        if name in features:
            continue
        features[name] = None if value != value else float(value)  # NaN is the worker's null
        added.append(name)
    return added


def load(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export")
    e.add_argument("--work", type=Path, required=True)
    e.add_argument("--tag", default="cpu")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--image-metrics", action="store_true",
                   help="add the image-quality features to runs made before the worker computed them")
    e.add_argument("--merge", type=Path, help="keep this table's records of cases WORK has not run")
    args = ap.parse_args()
    n = export(args.work, args.tag, args.out, args.image_metrics, args.merge)
    print(f"{n} cases written to {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
