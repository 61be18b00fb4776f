#!/usr/bin/env bash
# Downloads the ONNX Runtime wheel an image takes its shared library from, at the version the
# project pins (scripts/requirements-reference.lock: onnxruntime==X), from PyPI:
#   fetch-ort.sh cpu|cuda DEST_DIR [LOCK]    onnxruntime / onnxruntime-gpu wheel into DEST_DIR
#   fetch-ort.sh --print cpu|cuda [LOCK]     only print the requirement (used by the checks)
# The wheel's libonnxruntime.so does not depend on the Python version; the cp311 manylinux x86_64
# wheel is taken so the download is the same everywhere.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

print_only=0
if [[ "${1:-}" == "--print" ]]; then print_only=1; shift; fi
variant="${1:-}"
case "$variant" in
  cpu) package=onnxruntime ;;
  cuda) package=onnxruntime-gpu ;;
  *) echo "fetch-ort: the variant must be cpu or cuda, not '${variant}'" >&2; exit 2 ;;
esac
if [[ $print_only -eq 1 ]]; then
  lock="${2:-$here/../../scripts/requirements-reference.lock}"
else
  dest="${2:?fetch-ort: give the destination folder}"
  lock="${3:-$here/../../scripts/requirements-reference.lock}"
fi
[[ -f "$lock" ]] || { echo "fetch-ort: $lock: no such lock file" >&2; exit 1; }
version="$(sed -n 's/^onnxruntime==\([^ ;#]*\).*/\1/p' "$lock")"
if [[ -z "$version" || "$(printf '%s\n' "$version" | wc -l)" -ne 1 ]]; then
  echo "fetch-ort: $lock: expected exactly one 'onnxruntime==VERSION' line" >&2
  exit 1
fi
requirement="${package}==${version}"
if [[ $print_only -eq 1 ]]; then
  echo "$requirement"
  exit 0
fi
mkdir -p "$dest"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
  --dest "$dest" "$requirement"
ls "$dest"/*.whl
