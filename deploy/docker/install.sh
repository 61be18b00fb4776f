#!/usr/bin/env bash
# Lays out a neurobatch image's files under PREFIX, exactly as the Dockerfiles use them:
#   PREFIX/usr/local/bin/neurobatch                  the binary            (--binary, optional)
#   PREFIX/opt/neurobatch/models/<model>/            the shipped models    NEUROBATCH_MODELS
#   PREFIX/opt/onnxruntime/lib/libonnxruntime.so     -> the versioned library from the wheel,
#                                                    with the provider libraries beside it
#                                                    ORT_DYLIB_PATH
#   PREFIX/opt/onnxruntime/VERSION                   the ONNX Runtime version and variant
#   PREFIX/var/lib/neurobatch/                       the working directory (owned by the user later)
#   PREFIX/etc/neurobatch/                           where a configuration file may be mounted
# Usage:
#   install.sh --prefix DIR --variant cpu|cuda --models DIR --ort WHEEL_OR_SITE_PACKAGES
#              --ort-version X.Y.Z [--binary FILE]
# --ort takes the onnxruntime(-gpu) wheel, or a site-packages folder where it is installed.
# The Dockerfiles run it in their layout stage; scripts/check-deploy.sh runs it into a temporary
# prefix and checks the result (the layout, then a real `neurobatch process` through it).
set -euo pipefail

die() { echo "install.sh: $*" >&2; exit 1; }

prefix="" variant="" models="" ort="" ort_version="" binary=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --variant) variant="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --ort) ort="$2"; shift 2 ;;
    --ort-version) ort_version="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[[ -n "$prefix" ]] || die "--prefix is required"
[[ "$variant" == cpu || "$variant" == cuda ]] || die "--variant must be cpu or cuda"
[[ -d "$models" ]] || die "--models '$models': not a folder"
[[ -e "$ort" ]] || die "--ort '$ort': no such wheel or folder"
[[ "$ort_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--ort-version '$ort_version': expected X.Y.Z"

mkdir -p "$prefix/usr/local/bin" "$prefix/opt/neurobatch" "$prefix/opt/onnxruntime/lib" \
  "$prefix/var/lib/neurobatch" "$prefix/etc/neurobatch"

# --- the binary -----------------------------------------------------------------
if [[ -n "$binary" ]]; then
  [[ -x "$binary" ]] || die "--binary '$binary': not an executable file"
  # A hard link where possible (the checks lay out a 500 MB debug binary), else a copy.
  rm -f "$prefix/usr/local/bin/neurobatch"
  ln "$binary" "$prefix/usr/local/bin/neurobatch" 2>/dev/null || cp "$binary" "$prefix/usr/local/bin/neurobatch"
  chmod 0755 "$prefix/usr/local/bin/neurobatch"
fi

# --- the models -------------------------------------------------------------------
rm -rf "$prefix/opt/neurobatch/models"
mkdir -p "$prefix/opt/neurobatch/models"
found=0
for dir in "$models"/*/; do
  name="$(basename "$dir")"
  [[ -f "$dir/manifest.toml" ]] || die "model folder '$dir' has no manifest.toml"
  cp -R "$dir" "$prefix/opt/neurobatch/models/$name"
  found=$((found + 1))
done
[[ $found -gt 0 ]] || die "--models '$models' holds no model folder"
chmod -R a+rX,go-w "$prefix/opt/neurobatch/models"

# --- ONNX Runtime -----------------------------------------------------------------------
# Every shared library of onnxruntime/capi except the Python extension module: the runtime and,
# for CUDA, the provider libraries ONNX Runtime loads from the runtime's own folder.
lib="$prefix/opt/onnxruntime/lib"
rm -rf "$lib"
mkdir -p "$lib"
python3 - "$ort" "$lib" <<'PY'
import os, re, shutil, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
wanted = re.compile(r"^onnxruntime/capi/(lib[^/]*\.so(\.[0-9.]+)?)$")
n = 0
if os.path.isdir(src):
    capi = os.path.join(src, "onnxruntime", "capi")
    if not os.path.isdir(capi):
        sys.exit(f"install.sh: {src}: no onnxruntime/capi folder (is onnxruntime installed there?)")
    for name in sorted(os.listdir(capi)):
        m = wanted.match("onnxruntime/capi/" + name)
        if m:
            shutil.copyfile(os.path.join(capi, name), os.path.join(dest, m.group(1)))
            n += 1
else:
    with zipfile.ZipFile(src) as wheel:
        for info in wheel.infolist():
            m = wanted.match(info.filename)
            if m:
                with wheel.open(info) as f, open(os.path.join(dest, m.group(1)), "wb") as out:
                    shutil.copyfileobj(f, out)
                n += 1
if n == 0:
    sys.exit(f"install.sh: {src}: no onnxruntime/capi/lib*.so* in it")
PY
versioned="$lib/libonnxruntime.so.$ort_version"
[[ -f "$versioned" ]] || die "'$ort' holds no libonnxruntime.so.$ort_version (found: $(cd "$lib" && echo *))"
[[ -f "$lib/libonnxruntime_providers_shared.so" ]] || die "'$ort' holds no libonnxruntime_providers_shared.so"
if [[ "$variant" == cuda ]]; then
  [[ -f "$lib/libonnxruntime_providers_cuda.so" ]] \
    || die "'$ort' holds no libonnxruntime_providers_cuda.so: the cuda variant needs the onnxruntime-gpu wheel"
fi
chmod 0644 "$lib"/*
ln -sf "libonnxruntime.so.$ort_version" "$lib/libonnxruntime.so"
printf 'onnxruntime %s %s\n' "$ort_version" "$variant" > "$prefix/opt/onnxruntime/VERSION"

echo "install.sh: laid out under $prefix:"
[[ -n "$binary" ]] && echo "  /usr/local/bin/neurobatch"
echo "  /opt/neurobatch/models: $(cd "$prefix/opt/neurobatch/models" && echo *)"
echo "  /opt/onnxruntime/lib: $(cd "$lib" && echo *)"
