#!/usr/bin/env bash
# Prints the absolute path of the ONNX Runtime shared library that the pinned
# PyPI wheel (scripts/requirements-reference.lock: onnxruntime) put in .venv.
# The worker loads it at run time (ort's load-dynamic); env.sh exports it as
# ORT_DYLIB_PATH. Exits 1 with a message when the wheel is not installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shopt -s nullglob
libs=("$ROOT"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*)
if [[ ${#libs[@]} -eq 0 ]]; then
  echo "ort-dylib: no libonnxruntime.so* under $ROOT/.venv: run \`bash scripts/setup.sh\`" >&2
  exit 1
fi
# One wheel is installed, so one match; take the first if a stray copy exists.
realpath "${libs[0]}"
