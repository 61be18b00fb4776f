#!/usr/bin/env bash
# The main job, on the embedded defaults: `neurobatch serve` (in-process queue, SQLite and
# files under ./data, inbox ./inbox) on the sample studies shipped in samples/ plus a DICOM
# study generated from the MNI template by setup (scripts/testdata/daemon.py):
#   samples/mni_t1_2mm.nii.gz   a brain: segmented, with uncertainty maps; accepted
#   samples/phantom_2mm.nii.gz  not a brain: processed, then routed to the review queue
#   dicom_0/                    a DICOM study (95 axial slices), series selected by the rules
# It copies them into ./inbox, serves until everything that arrived is processed, and prints
# where every result is. Run it again: the studies are known, nothing is processed twice.
# Routine work normally waits for the nightly window (19:00-07:00); the demo opens it all day.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
source scripts/env.sh
cargo build --release --locked --bin neurobatch
bash scripts/build-web.sh
mkdir -p inbox
cp -n samples/*.nii.gz inbox/
cp -rn "$NEUROBATCH_TESTDATA/daemon/samples/dicom_0" inbox/
export NEUROBATCH__SCHEDULER__NIGHTLY_WINDOW="${NEUROBATCH__SCHEDULER__NIGHTLY_WINDOW-}"
export NEUROBATCH__SCHEDULER__QUIET_PERIOD_SECS="${NEUROBATCH__SCHEDULER__QUIET_PERIOD_SECS:-2}"
"$ROOT/target/release/neurobatch" serve --until-idle
cat <<EOM
run: results are under ./data/objects/study/, job state and results in ./data/neurobatch.db.
run: to work the review queue in a browser:
       target/release/neurobatch token create --role reviewer --name me    # prints a token
       target/release/neurobatch serve                                      # then open http://127.0.0.1:8080/review/
EOM
