#!/usr/bin/env bash
# Builds the reviewers' web viewer (web/) into web/dist/: index.html, app.js
# (the UI and NiiVue, bundled by esbuild: no CDN, works on a network with no
# internet), style.css. The binary serves that folder at /review/.
#   - `npm ci` from web/package-lock.json, only when web/node_modules is
#     missing or the lock changed (stamp web/node_modules/.lock.sha256)
#   - esbuild bundles web/src/app.js and what it imports; the static files are
#     copied beside it. Asset URLs are relative, so /review/ needs no rewriting.
# A second run on a warm machine only checks the stamp and rebundles (< 1 s).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$ROOT/web"
cd "$WEB"

log() { echo "build-web: $*" >&2; }

command -v npm >/dev/null || { log "npm is missing: install Node.js 20 and npm"; exit 1; }

# --- dependencies (pinned by package-lock.json) ------------------------------
STAMP="node_modules/.lock.sha256"
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
if [[ ! -d node_modules || "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  log "npm ci (web/package-lock.json)"
  # No install scripts: esbuild's only checks its platform binary, which npm
  # installs as an optional dependency anyway; playwright-core downloads nothing.
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$want" > "$STAMP"
fi

# --- bundle --------------------------------------------------------------------
# Into a fresh folder, then swapped in, so a server reading web/dist never sees
# half a build.
tmp="$(mktemp -d "$WEB/.dist.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
node_modules/.bin/esbuild src/app.js \
  --bundle --format=esm --platform=browser --target=es2022 \
  --minify --sourcemap=linked --legal-comments=linked \
  --log-level=warning --outfile="$tmp/app.js"
cp src/index.html src/style.css "$tmp/"
chmod 755 "$tmp"
rm -rf dist.old
[[ -d dist ]] && mv dist dist.old
mv "$tmp" dist
rm -rf dist.old
log "ok: $(du -sh dist | cut -f1) in web/dist"
