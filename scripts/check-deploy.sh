#!/usr/bin/env bash
# Offline checks of the deployment artefacts in deploy/ (issue 6); exits non-zero on any failure.
#   bash scripts/check-deploy.sh [--binary PATH]
# 1. .venv-deploy from scripts/requirements-deploy.lock (pinned, --no-deps, rebuilt only when the
#    lock changes, and kept in NEUROBATCH_CACHE when that is set, like scripts/setup.sh does for
#    .venv): Helm's engine (helm-python-sdk),
#    kubernetes-validate, jsonschema, yamllint. After that nothing here uses the network.
# 2. The images' build steps, without Docker: deploy/docker/fetch-ort.sh resolves the pinned
#    onnxruntime / onnxruntime-gpu requirement from the lock; deploy/docker/install.sh lays out a
#    CPU image under a temporary prefix, from a wheel built of the onnxruntime in .venv (what the
#    Dockerfile's pip download fetches) and the binary (--binary, else target/release or
#    target/debug; skipped with a notice when none is built); then `neurobatch process` runs on a
#    sample through exactly the image's NEUROBATCH_MODELS and ORT_DYLIB_PATH, from an empty
#    working directory outside the repository.
# 3. deploy/check/check_deploy.py: the chart rendered with every value set and validated, the
#    compose file, the Grafana dashboard, the Dockerfiles against the layout, yamllint.
# A warm run takes seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${NEUROBATCH_BOOTSTRAP_PYTHON:-python3}"

log() { echo "check-deploy: $*" >&2; }
fail() { echo "check-deploy: FAIL: $*" >&2; exit 1; }

binary=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    *) fail "unknown argument '$1' (usage: bash scripts/check-deploy.sh [--binary PATH])" ;;
  esac
done

# --- 1. the tools -----------------------------------------------------------------------------
LOCK="scripts/requirements-deploy.lock"
STAMP=".venv-deploy/.lock.sha256"
want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
source scripts/venv-home.sh
home="$(venv_home .venv-deploy "$want")"
if [[ ! -x .venv-deploy/bin/python || "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  log "building .venv-deploy from $LOCK (in $home)"
  rm -rf "$home"
  "$PYTHON" -m venv "$home"
  .venv-deploy/bin/pip install -q --disable-pip-version-check --no-deps -r "$LOCK"
  .venv-deploy/bin/pip check >/dev/null || fail ".venv-deploy: pip check found missing or conflicting requirements in $LOCK"
  echo "$want" > "$STAMP"
fi

# --- 2. the image's build steps -----------------------------------------------------------------
ort_version="$(sed -n 's/^onnxruntime==\([^ ;#]*\).*/\1/p' scripts/requirements-reference.lock)"
[[ -n "$ort_version" ]] || fail "scripts/requirements-reference.lock pins no onnxruntime"
for variant in cpu cuda; do
  package=onnxruntime; [[ $variant == cuda ]] && package=onnxruntime-gpu
  got="$(bash deploy/docker/fetch-ort.sh --print "$variant")" || fail "fetch-ort.sh --print $variant failed"
  [[ "$got" == "$package==$ort_version" ]] || fail "fetch-ort.sh $variant resolves '$got', the lock pins $package==$ort_version"
done
log "fetch-ort.sh: onnxruntime==$ort_version / onnxruntime-gpu==$ort_version (the lock's version)"

work="$(mktemp -d "${TMPDIR:-/tmp}/neurobatch-check-deploy.XXXXXX")"
trap 'rm -rf "$work"' EXIT

layout_args=()
shopt -s nullglob
capi=(.venv/lib/python3*/site-packages/onnxruntime/capi)
shopt -u nullglob
if [[ ${#capi[@]} -eq 0 ]]; then
  log "NOTICE: no onnxruntime in .venv (run scripts/setup.sh first): the image layout is not checked"
else
  # A wheel-shaped zip of the installed onnxruntime (the real libraries, stored uncompressed), so
  # install.sh takes the same path as in the Dockerfile: files out of onnxruntime/capi in a wheel.
  wheel="$work/onnxruntime-$ort_version-cp311-cp311-manylinux_2_28_x86_64.whl"
  .venv-deploy/bin/python - "${capi[0]}" "$wheel" <<'PY'
import os, sys, zipfile
capi, wheel = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as z:
    for name in sorted(os.listdir(capi)):
        path = os.path.join(capi, name)
        if os.path.isfile(path) and (name.startswith("lib") or name.endswith(".py")):
            z.write(path, f"onnxruntime/capi/{name}")
    # The Python extension module must not be copied into the image.
    z.writestr("onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so", b"not a library")
PY
  if [[ -z "$binary" ]]; then
    for candidate in target/release/neurobatch target/debug/neurobatch; do
      [[ -x "$candidate" ]] && { binary="$candidate"; break; }
    done
  fi
  prefix="$work/cpu"
  install_args=(--prefix "$prefix" --variant cpu --models models --ort "$wheel" --ort-version "$ort_version")
  [[ -n "$binary" ]] && install_args+=(--binary "$binary")
  bash deploy/docker/install.sh "${install_args[@]}" >/dev/null || fail "install.sh (cpu) failed"
  [[ ! -e "$prefix/opt/onnxruntime/lib/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so" ]] \
    || fail "install.sh copied the Python extension module into the image"
  layout_args+=(--layout "cpu=$prefix")
  # The CUDA variant must refuse a wheel without the CUDA provider (the CPU wheel).
  if out="$(bash deploy/docker/install.sh --prefix "$work/cuda" --variant cuda --models models --ort "$wheel" \
      --ort-version "$ort_version" 2>&1)"; then
    fail "install.sh --variant cuda accepted the CPU onnxruntime wheel"
  fi
  [[ "$out" == *"needs the onnxruntime-gpu wheel"* ]] || fail "install.sh --variant cuda with the CPU wheel: unexpected message: $out"
  # A wrong version must be refused too.
  if bash deploy/docker/install.sh --prefix "$work/bad" --variant cpu --models models --ort "$wheel" \
      --ort-version 0.0.1 >/dev/null 2>&1; then
    fail "install.sh accepted --ort-version 0.0.1 for a $ort_version wheel"
  fi
  # The CUDA layout: the same wheel plus a stand-in for the CUDA provider library (the real
  # onnxruntime-gpu wheel is 250 MB and its provider cannot run here): checks where install.sh puts
  # the files for Dockerfile.cuda, not the CUDA libraries themselves.
  cp "$wheel" "$work/gpu.whl"
  .venv-deploy/bin/python - "$work/gpu.whl" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "a") as z:
    z.writestr("onnxruntime/capi/libonnxruntime_providers_cuda.so", b"stand-in for the CUDA provider")
PY
  bash deploy/docker/install.sh --prefix "$work/cuda" --variant cuda --models models --ort "$work/gpu.whl" \
    --ort-version "$ort_version" >/dev/null || fail "install.sh (cuda) failed"
  [[ -f "$work/cuda/opt/onnxruntime/lib/libonnxruntime_providers_cuda.so" ]] \
    || fail "install.sh (cuda) did not put the CUDA provider beside libonnxruntime.so"
  layout_args+=(--layout "cuda=$work/cuda")
  log "install.sh: cpu and cuda layouts in a temporary prefix; cuda refuses the CPU wheel; a wrong version is refused"

  if [[ -n "$binary" ]]; then
    # The image's environment, prefixed: the variables must be what the Dockerfile sets.
    models_env="$(sed -n 's/.*NEUROBATCH_MODELS=\([^ \\]*\).*/\1/p' deploy/docker/Dockerfile)"
    ort_env="$(sed -n 's/.*ORT_DYLIB_PATH=\([^ \\]*\).*/\1/p' deploy/docker/Dockerfile)"
    [[ -n "$models_env" && -n "$ort_env" ]] || fail "deploy/docker/Dockerfile sets no NEUROBATCH_MODELS / ORT_DYLIB_PATH"
    mkdir -p "$work/run"
    if ! (cd "$work/run" && env -i PATH=/usr/bin:/bin HOME="$work/run" \
        NEUROBATCH_MODELS="$prefix$models_env" ORT_DYLIB_PATH="$prefix$ort_env" \
        "$prefix/usr/local/bin/neurobatch" process "$ROOT/samples/phantom_2mm.nii.gz" \
        --no-quality --members 1 --out out >"$work/run/stdout" 2>"$work/run/stderr"); then
      cat "$work/run/stderr" >&2
      fail "neurobatch process through the image layout (NEUROBATCH_MODELS=$models_env, ORT_DYLIB_PATH=$ort_env) failed"
    fi
    for f in mask.nii.gz entropy.nii.gz mutual_information.nii.gz report.json; do
      [[ -s "$work/run/out/$f" ]] || fail "neurobatch process through the image layout wrote no $f"
    done
    grep -q "on cpu" "$work/run/stdout" || fail "neurobatch process through the image layout: no 'on cpu' in: $(cat "$work/run/stdout")"
    # Without the variables the laid-out binary finds no models: the image relies on them.
    if (cd "$work/run" && env -i PATH=/usr/bin:/bin ORT_DYLIB_PATH="$prefix$ort_env" \
        "$prefix/usr/local/bin/neurobatch" process "$ROOT/samples/phantom_2mm.nii.gz" \
        --no-quality --members 1 --out out2 >/dev/null 2>&1); then
      fail "neurobatch found models without NEUROBATCH_MODELS: the check would not notice a wrong path"
    fi
    log "neurobatch process ran through the image layout ($binary): $(cat "$work/run/stdout")"
  else
    log "NOTICE: no neurobatch binary built (target/release, target/debug; or --binary): layout checked without it, no run"
  fi
fi

# --- 3. chart, compose, dashboard, Dockerfiles, yamllint ---------------------------------------------
.venv-deploy/bin/python deploy/check/check_deploy.py --yamllint "$ROOT/.venv-deploy/bin/yamllint" "${layout_args[@]}"
