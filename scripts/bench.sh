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
cargo bench -p imaging --locked --bench nifti --bench dicom --bench geometry --bench intensity -- "$@"
mkdir -p bench-results
.venv/bin/python scripts/bench/compare.py --criterion target/criterion --out bench-results/table.md
cat bench-results/table.md
