#!/usr/bin/env bash
# Builds .venv-train, the PyTorch + MONAI environment for training the demo models and
# for producing MONAI reference outputs, from training/requirements.lock, idempotently.
# Separate from .venv (scripts/setup.sh): ~3 GB download, ~5.5 GB on disk, because the
# PyPI torch wheel for Linux x86_64 pulls the CUDA runtime wheels (CPU use still works).
# NOT called by scripts/test.sh or CI; run it by hand when training or checking against MONAI.
# A second run only checks the stamp and returns quickly.
#   NEUROBATCH_BOOTSTRAP_PYTHON  interpreter for the venv (default python3; needs 3.11)
#   --check                      also run training/check_env.py afterwards
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${NEUROBATCH_BOOTSTRAP_PYTHON:-python3}"
LOCK="training/requirements.lock"
VENV=".venv-train"
STAMP="$VENV/.lock.sha256"

log() { echo "setup-training: $*" >&2; }

pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$pyver" != "3.11" ]]; then
  log "$PYTHON is Python $pyver; the lock is for 3.11 (set NEUROBATCH_BOOTSTRAP_PYTHON)"
  exit 1
fi

want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  avail_kb="$(df -Pk "$ROOT" | awk 'NR==2 {print $4}')"
  if (( avail_kb < 10 * 1024 * 1024 )); then
    log "warning: under 10 GiB free on $(df -P "$ROOT" | awk 'NR==2 {print $6}'); the build needs ~5.5 GiB (+ ~3 GiB pip cache)"
  fi
  log "building $VENV from $LOCK"
  start=$(date +%s)
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --progress-bar off --no-deps -r "$LOCK"
  "$VENV/bin/pip" check >/dev/null
  "$VENV/bin/python" -c 'import torch, monai, onnx, onnxruntime, nibabel' >/dev/null
  echo "$want" > "$STAMP"
  log "built in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1)"
fi

if [[ "${1:-}" == "--check" ]]; then
  "$VENV/bin/python" -W ignore training/check_env.py
fi
log "ok ($VENV)"
