#!/usr/bin/env bash
# End to end: cache -> segmentation base + members -> 3 quality members -> ONNX export and checks
# -> manifests -> OOD reference -> evaluation through neurobatch process -> thresholds in the manifests. Run from anywhere; needs .venv (scripts/setup.sh) and
# .venv-train (scripts/setup-training.sh).
#
# Measured on the shared 2-core development VM on 2026-11-27 (other people's Rust builds running,
# load average 4-7): base 21 min (319 steps, capped by --max-seconds), long run 38 min, chain 5 x 3.4 min,
# ft30 13 min, fine-tunes 3 x 2.5 min, quality members 5-7 min each, exports ~4 min, evaluation ~25 min
# (the runs that can, ran two at a time on the day). The seconds caps make the schedule fit
# a budget; on a quiet machine the same caps give more steps (the step counts reached are recorded in
# the manifests' provenance notes). For bit-for-bit the same steps, drop the caps (--max-seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-training/.cache/run}
CASES=${CASES:-training/.cache/cases}
PY=.venv/bin/python
TPY=".venv-train/bin/python -W ignore"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$RUN" models/brain-tissue models/scan-quality

$PY training/prepare_data.py
$PY training/perturb.py --out "$CASES"

$TPY training/train_segmentation.py --seed 1000 --steps 900 --max-seconds 1260 --reuse 3 --out "$RUN/base.pt"
# The shipped members (see training/README.md, "How the shipped ensemble was made"):
#   member_0: the longest run, continued from the base (seed 20, 2280 s: 894 steps here)
#   member_1..3: short fine-tunes of member_0 with their own seeds (41-43, 150 s each)
#   member_4: a second lineage: the base fine-tuned in a chain of 200 s runs (seeds 0-4, each from the
#             previous), then 780 s more from the chain's last snapshot (seed 30)
$TPY training/train_segmentation.py --seed 20 --init "$RUN/base.pt" --lr 1e-3 --p-synth 0.25 \
  --steps 2000 --max-seconds 2280 --reuse 3 --out "$RUN/long.pt"
prev="$RUN/base.pt"
for k in 0 1 2 3 4; do
  $TPY training/train_segmentation.py --seed $k --init "$prev" --lr 5e-4 --p-synth 0.25 \
    --steps 400 --max-seconds 200 --reuse 3 --out "$RUN/chain_$k.pt"
  prev="$RUN/chain_$k.pt"
done
$TPY training/train_segmentation.py --seed 30 --init "$RUN/chain_4.pt" --lr 5e-4 --p-synth 0.25 \
  --steps 1000 --max-seconds 780 --reuse 3 --out "$RUN/ft30.pt"
for seed in 41 42 43; do
  $TPY training/train_segmentation.py --seed $seed --init "$RUN/long.pt" --lr 3e-4 --p-synth 0.25 \
    --steps 400 --max-seconds 150 --reuse 3 --out "$RUN/ft$seed.pt"
done
$TPY training/train_quality.py --threads 1 --seeds 11 12 13 --out-dir "$RUN"

k=0
for name in long ft41 ft42 ft43 ft30; do
  cp "$RUN/$name.json" "$RUN/seg_$k.json"
  $TPY training/export_onnx.py seg --ckpt "$RUN/$name.pt" --out models/brain-tissue/member_$k.onnx --check "$RUN/seg_$k.export.json"
  k=$((k + 1))
done
for k in 0 1 2; do
  $TPY training/export_onnx.py quality --ckpt "$RUN/quality_$k.pt" --out models/scan-quality/member_$k.onnx
done
$PY training/write_manifest.py --run "$RUN"

# The OOD reference (in-domain volumes through the engine's own preparation), then the evaluation
# through `neurobatch process`, whose thresholds go into the manifests.
NB=target/release/neurobatch
cargo build --release --locked --bin neurobatch
$PY training/ood_reference.py --out "$RUN/ood-volumes"
$NB model fit-ood --model models/brain-tissue --out "$RUN/ood.toml" "$RUN"/ood-volumes/*.nii.gz
$PY training/write_manifest.py --run "$RUN" --ood "$RUN/ood.toml"
$PY training/evaluate.py --cases "$CASES" --work "$RUN/eval" --binary "$NB"
$PY training/report_evaluation.py
$PY training/write_manifest.py --run "$RUN" --ood "$RUN/ood.toml" --routing training/thresholds.json
