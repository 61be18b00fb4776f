#!/usr/bin/env bash
# The main job, on the embedded defaults. Until the daemon exists (see the
# open issues), this is the pipeline a worker will run, done by the CLI on a
# bundled study: a DICOM folder that interleaves two series of one study
# (derived from the MNI152 template by scripts/testdata/dicom.py).
#   inspect → convert each series to NIfTI → foreground mask → z-score
#   → neurobatch process: the shipped tissue ensemble (CPU profile) with
#     uncertainty maps, the scan-quality classifier, report.json and routing
# Everything lands in ./data/sample (override with NEUROBATCH_OUT).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
source scripts/env.sh
cargo build --release --locked --bin neurobatch
NB="$ROOT/target/release/neurobatch"
STUDY="${1:-$NEUROBATCH_TESTDATA/dicom/derived/two_series}"
OUT="${NEUROBATCH_OUT:-$ROOT/data/sample}"
mkdir -p "$OUT"

"$NB" inspect "$STUDY"
"$NB" inspect "$STUDY" --json > "$OUT/inspect.json"
# One line per series UID, read from the JSON inspect just wrote.
mapfile -t SERIES < <("$NEUROBATCH_PYTHON" -c 'import json,sys; [print(e["series_uid"]) for e in json.load(open(sys.argv[1]))]' "$OUT/inspect.json")
for uid in "${SERIES[@]}"; do
  "$NB" convert "$STUDY" "$OUT/$uid.nii.gz" --series "$uid"
  "$NB" harmonize mask "$OUT/$uid.nii.gz" "$OUT/$uid.mask.nii.gz"
  "$NB" harmonize apply "$OUT/$uid.nii.gz" "$OUT/$uid.zscore.nii.gz" --method zscore --mask "$OUT/$uid.mask.nii.gz"
  "$NB" process "$STUDY" --series "$uid" --out "$OUT/$uid.process"
  echo "run: series $uid → $OUT/$uid.{nii.gz,mask.nii.gz,zscore.nii.gz}, $OUT/$uid.process/{mask,entropy,mutual_information}.nii.gz + report.json"
done
echo "run: done, outputs in $OUT"
