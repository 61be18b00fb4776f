# Sourced by the run and test scripts: where the test data and reference tools are.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NEUROBATCH_TESTDATA="$ROOT/.testdata"
export NEUROBATCH_PYTHON="$ROOT/.venv/bin/python"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
