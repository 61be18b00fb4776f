#!/usr/bin/env bash
# Time-bounded fuzz runs of the imaging readers (cargo-fuzz / libFuzzer on the
# stable toolchain: no sanitizer, debug assertions and overflow checks on).
# Not part of the test command; see docs/testing.md, "Fuzzing".
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]     (defaults: all, 60 s per target)
#
# Targets: nifti_header, dicom_series, dicom_file. Seeds are built here at run
# time (from .testdata/nifti and pydicom's test files; nothing binary is
# committed) into fuzz/corpus/<target>, which libFuzzer then grows; corpus and
# crash artifacts (fuzz/artifacts/<target>) are git-ignored. Exits non-zero if
# any target crashed. Extra libFuzzer flags: FUZZ_ARGS="-jobs=2 ...".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ALL=(nifti_header dicom_series dicom_file)
target="${1:-all}"
secs="${2:-60}"
if [[ "$target" == all ]]; then targets=("${ALL[@]}"); else targets=("$target"); fi
for t in "${targets[@]}"; do
  [[ " ${ALL[*]} " == *" $t "* ]] || { echo "fuzz: unknown target $t (one of: ${ALL[*]} all)" >&2; exit 2; }
done
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "fuzz: SECONDS must be a whole number" >&2; exit 2; }

log() { echo "fuzz: $*" >&2; }
# Same flags for build and run, so `run` does not rebuild.
FLAGS=(--sanitizer none --release --debug-assertions)

# A seed is the control byte the target reads first, then the file's bytes.
seed() { # seed DIR NAME CONTROL_BYTE_OCTAL  < bytes
  { printf "\\$3"; cat; } > "$1/$2"
}

seed_nifti_header() {
  local dir="fuzz/corpus/nifti_header" src=".testdata/nifti"
  if [[ ! -d "$src" ]]; then
    log "generating $src"
    .venv/bin/python scripts/testdata/nifti.py data --out .testdata
  fi
  mkdir -p "$dir"
  # The one complete small volume, plain (0), gzip-wrapped (1), 4-D refused + small limit (6).
  for c in 0 1 6; do gzip -dc "$src/standard.nii.gz" | seed "$dir" "standard-$c" "$c"; done
  # Headers (plus the start of the data) of every layout the readers know:
  # NIfTI-2, big-endian, each datatype, scaling, NaN, oblique qform, 4-D, 5-D.
  local f
  for f in anatomical.nii anat_nifti2_be.nii; do head -c 4096 "$src/$f" | seed "$dir" "${f%.nii}" 0; done
  for f in example_nifti2 dtype_int8_be dtype_uint16_be dtype_int32_le dtype_uint64_be dtype_int64_le \
    mni_t1_float32_be mni_t1_float64 mni_t1_scaled_int16 mni_t1_nan qform_oblique example4d fived singleton5d; do
    # head closes the pipe early: gzip's SIGPIPE is expected.
    { gzip -dc "$src/$f.nii.gz" || true; } | head -c 4096 | seed "$dir" "$f" 1
  done
}

seed_dicom_file() {
  local dir="fuzz/corpus/dicom_file" f
  local src
  src="$(compgen -G '.venv/lib/python3*/site-packages/pydicom/data/test_files' | head -n1 || true)"
  [[ -n "$src" ]] || { log "pydicom's test files not found under .venv (run scripts/setup.sh)"; exit 2; }
  mkdir -p "$dir"
  # MR_small in every transfer syntax, plus deflate, multi-frame (RT dose) and a truncated file.
  for f in "$src"/MR_small*.dcm "$src"/MR_truncated.dcm "$src"/image_dfl.dcm "$src"/rtdose_1frame.dcm \
    "$src"/rtdose_rle_1frame.dcm; do
    seed "$dir" "$(basename "$f" .dcm)" 0 < "$f"
  done
  seed "$dir" "MR_small-lenient" 1 < "$src/MR_small.dcm"
}

seed_dicom_series() {
  # Structured input (arbitrary): libFuzzer starts from nothing.
  mkdir -p fuzz/corpus/dicom_series
}

log "building ${targets[*]}"
for t in "${targets[@]}"; do nice -n 10 cargo fuzz build "${FLAGS[@]}" "$t"; done

scratch="$(mktemp -d "$( [[ -d /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/imaging-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

declare -A max_len=([nifti_header]=8192 [dicom_series]=4096 [dicom_file]=20000)
failed=()
for t in "${targets[@]}"; do
  "seed_$t"
  log "$t: ${secs}s from $(find "fuzz/corpus/$t" -type f | wc -l) corpus files"
  # -timeout: one input taking 10 s is a hang worth a report (libFuzzer's default is 20 min).
  # shellcheck disable=SC2086
  if ! IMAGING_FUZZ_TMP="$scratch" nice -n 10 cargo fuzz run "${FLAGS[@]}" "$t" -- \
    -max_total_time="$secs" -max_len="${max_len[$t]}" -timeout=10 -print_final_stats=1 ${FUZZ_ARGS:-}; then
    log "$t: FAILED (reproducer under fuzz/artifacts/$t/)"
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  log "crashed: ${failed[*]}"
  exit 1
fi
log "no crashes in ${targets[*]}"
