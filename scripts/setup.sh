#!/usr/bin/env bash
# Installs everything the run and test commands need, pinned and idempotently:
#   - Debian's dcm2niix (reference converter for the DICOM tests)
#   - Debian's dcmtk (echoscu/storescu: the DICOM peer of the Storage SCP tests)
#   - Debian's dicom3tools (dciodvfy: validates the SEG and SR neurobatch writes)
#   - Debian's orthanc and orthanc-dicomweb (the PACS that sends a study to neurobatch by C-STORE
#     and by STOW-RS in the round-trip tests)
#   - Debian's chromium (the review viewer's browser test, driven by playwright-core;
#     the web build itself is scripts/build-web.sh: npm ci from web/package-lock.json)
#   - rustfmt and clippy for the toolchain in use
#   - .venv: the Python reference tools (nibabel, nilearn, pydicom, scipy,
#     intensity-normalization, dipy, onnx, highdicom) from scripts/requirements-reference.lock,
#     and the onnxruntime wheel whose libonnxruntime.so the worker loads at run time
#     (scripts/ort-dylib.sh finds it; scripts/env.sh exports ORT_DYLIB_PATH)
#   - .venv-s3: moto's S3-protocol server for the storage tests (scripts/requirements-s3.lock;
#     started and stopped by scripts/s3-server.sh)
#   - .venv-api-fuzz: schemathesis, the API fuzzer of scripts/api-fuzz.sh
#     (scripts/requirements-api-fuzz.lock)
#   - .testdata/: real and derived scans, generated deterministically from
#     the files those PyPI packages ship
# A second run on a warm machine only checks stamps and returns quickly. With NEUROBATCH_CACHE set
# (.ci/run sets it: CI starts from a fresh clone), each virtual environment is built once per lock
# hash in that folder and the clone's .venv / .venv-s3 / .venv-api-fuzz are links to it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DCM2NIIX_VERSION="1.0.20220720-1+deb12u1"
PYTHON="${NEUROBATCH_BOOTSTRAP_PYTHON:-python3}"

log() { echo "setup: $*" >&2; }

# Installs Debian packages at exact versions (`name=version` ...) unless all are installed at them.
apt_pin() {
  local want missing=()
  for want in "$@"; do
    [[ "$(dpkg-query -W -f='${Version}' "${want%%=*}" 2>/dev/null || true)" == "${want#*=}" ]] || missing+=("$want")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  local SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- dcm2niix (Debian) --------------------------------------------------------
apt_pin "dcm2niix=$DCM2NIIX_VERSION"

# --- dcmtk (Debian): echoscu and storescu, the second DICOM peer of the Storage SCP tests
DCMTK_VERSION="3.6.7-9~deb12u4"
apt_pin "dcmtk=$DCMTK_VERSION"

# --- dicom3tools (Debian): dciodvfy, the IOD validator of the SEG and SR tests ---
DICOM3TOOLS_VERSION="1.00~20220618093127-2"
apt_pin "dicom3tools=$DICOM3TOOLS_VERSION"

# --- Orthanc (Debian): the PACS of the DICOM round-trip test --------------------
# The test runs its own Orthanc on free loopback ports; the package's service is not used.
# Its DICOMweb plugin sends a study to neurobatch by STOW-RS in the STOW test.
ORTHANC_VERSION="1.10.1+dfsg-2+deb12u1"
ORTHANC_DICOMWEB_VERSION="1.7+dfsg-6+b2"
apt_pin "orthanc=$ORTHANC_VERSION" "orthanc-dicomweb=$ORTHANC_DICOMWEB_VERSION"

# --- chromium (Debian) for the browser test ------------------------------------
# Pinned; Debian's security archive replaces Chromium often, so when the pinned build is
# gone the archive's current one is installed and its version logged.
CHROMIUM_VERSION="156.0.8078.108-1~deb12u1"
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "chromium=$CHROMIUM_VERSION" >/dev/null 2>&1; then
    log "chromium $CHROMIUM_VERSION is no longer in the archive; installing the current build"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
  log "chromium $(dpkg-query -W -f='${Version}' chromium)"
fi

# --- Rust components ----------------------------------------------------------
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  log "adding rustfmt and clippy"
  rustup component add rustfmt clippy
fi

# venv_home NAME HASH: where the environment for that lock hash is built (scripts/venv-home.sh).
source "$(dirname "${BASH_SOURCE[0]}")/venv-home.sh"

# --- Python reference environment --------------------------------------------
LOCK="scripts/requirements-reference.lock"
STAMP=".venv/.lock.sha256"
want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
home="$(venv_home .venv "$want")"
if [[ ! -x .venv/bin/python || "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  log "building .venv from $LOCK (in $home)"
  rm -rf "$home"
  "$PYTHON" -m venv "$home"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r "$LOCK"
  .venv/bin/pip check >/dev/null
  echo "$want" > "$STAMP"
fi

# --- S3-protocol test server (moto) -------------------------------------------
# Its own venv: botocore needs python-dateutil<3, the reference tools pin 4.0.0.
S3_LOCK="scripts/requirements-s3.lock"
S3_STAMP=".venv-s3/.lock.sha256"
s3_want="$(sha256sum "$S3_LOCK" | cut -d' ' -f1)"
s3_home="$(venv_home .venv-s3 "$s3_want")"
if [[ ! -x .venv-s3/bin/python || "$(cat "$S3_STAMP" 2>/dev/null)" != "$s3_want" ]]; then
  log "building .venv-s3 from $S3_LOCK (in $s3_home)"
  rm -rf "$s3_home"
  "$PYTHON" -m venv "$s3_home"
  .venv-s3/bin/pip install -q --disable-pip-version-check --no-deps -r "$S3_LOCK"
  .venv-s3/bin/pip check >/dev/null
  echo "$s3_want" > "$S3_STAMP"
fi

# --- API fuzzer (schemathesis) -------------------------------------------------
# Its own venv: schemathesis 3.39 needs hypothesis 6.115.0 and its own requests/jsonschema stack.
FUZZ_LOCK="scripts/requirements-api-fuzz.lock"
FUZZ_STAMP=".venv-api-fuzz/.lock.sha256"
fuzz_want="$(sha256sum "$FUZZ_LOCK" | cut -d' ' -f1)"
fuzz_home="$(venv_home .venv-api-fuzz "$fuzz_want")"
if [[ ! -x .venv-api-fuzz/bin/python || "$(cat "$FUZZ_STAMP" 2>/dev/null)" != "$fuzz_want" ]]; then
  log "building .venv-api-fuzz from $FUZZ_LOCK (in $fuzz_home)"
  rm -rf "$fuzz_home"
  "$PYTHON" -m venv "$fuzz_home"
  .venv-api-fuzz/bin/pip install -q --disable-pip-version-check --no-deps -r "$FUZZ_LOCK"
  .venv-api-fuzz/bin/pip check >/dev/null
  echo "$fuzz_want" > "$FUZZ_STAMP"
fi

# --- ONNX Runtime library (from the onnxruntime wheel) -----------------------
ort_lib="$(bash scripts/ort-dylib.sh)" || { log "onnxruntime is missing from .venv: check $LOCK"; exit 1; }
log "onnx runtime: $ort_lib"

# --- Test data ----------------------------------------------------------------
# Regenerated whenever a generator script or the lock changes.
TD_STAMP=".testdata/.stamp"
td_want="$( (cat "$LOCK"; cat scripts/testdata/*.py) | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$TD_STAMP" 2>/dev/null)" != "$td_want" ]]; then
  log "generating .testdata/"
  rm -rf .testdata
  mkdir -p .testdata
  for gen in scripts/testdata/*.py; do
    [[ "$(basename "$gen")" == _* ]] && continue
    log "  $gen"
    .venv/bin/python "$gen" data --out .testdata
  done
  echo "$td_want" > "$TD_STAMP"
fi
log "ok"
