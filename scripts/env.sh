# Sourced by the run and test scripts: where the test data and reference tools are.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NEUROBATCH_TESTDATA="$ROOT/.testdata"
export NEUROBATCH_PYTHON="$ROOT/.venv/bin/python"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The ONNX Runtime library the worker loads at run time (the onnxruntime wheel in .venv),
# unless the caller points elsewhere. Missing library: left unset; the worker says what to run.
if [[ -z "${ORT_DYLIB_PATH:-}" ]] && _ort_lib="$(bash "$ROOT/scripts/ort-dylib.sh" 2>/dev/null)"; then
  export ORT_DYLIB_PATH="$_ort_lib"
fi
unset _ort_lib
