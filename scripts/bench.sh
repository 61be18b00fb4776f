#!/usr/bin/env bash
# Speed, side by side in one run: the criterion suite of the imaging crate,
# then the Python equivalents (nibabel, numpy, scipy, intensity-normalization,
# pydicom) on the same files, and a table of ratios (Python time / Rust time)
# written to bench-results/table.md. Copy it into docs/benchmarks.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
source scripts/env.sh
# Build first, so compilation does not count towards the load the numbers are taken under.
cargo bench -p imaging --locked --bench nifti --bench dicom --bench geometry --bench intensity --no-run
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -p imaging --locked --bench nifti --bench dicom --bench geometry --bench intensity -- "$@"
mkdir -p bench-results
# Extra arguments for the comparison (e.g. "--repeats 20", "--alt-baseline system").
# shellcheck disable=SC2086
.venv/bin/python scripts/bench/compare.py --criterion target/criterion --out bench-results/table.md \
  --load-before "$LOAD_BEFORE" ${BENCH_COMPARE_ARGS:-}
cat bench-results/table.md
