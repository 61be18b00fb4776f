#!/usr/bin/env bash
# The whole test suite: setup, formatting, lints, every test in the workspace, the API fuzz run,
# the chaos campaign, the review viewer in a real browser, and the deployment checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Each step's wall time, printed as it ends and again together at the end (docs/testing.md's table).
TIMES=()
step() {
  local name="$1" t0=$SECONDS
  shift
  "$@"
  TIMES+=("$name $((SECONDS - t0)) s")
  echo "test.sh: $name took $((SECONDS - t0)) s" >&2
}
step setup bash scripts/setup.sh
source scripts/env.sh
# The binary the browser and deployment checks run (under CARGO_TARGET_DIR when the caller sets one).
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/neurobatch"
# This checkout's shipped models, for binaries built outside it (a caller's CARGO_TARGET_DIR, where
# "above the executable" is not this checkout).
export NEUROBATCH_MODELS="${NEUROBATCH_MODELS:-$ROOT/models}"
step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets --locked -- -D warnings
# The storage tests talk to a real S3-protocol server (moto) started here on a free loopback port;
# RabbitMQ (127.0.0.1:5672) and PostgreSQL are the machine's own services.
S3_ENDPOINT="$(bash scripts/s3-server.sh start)"
trap 'bash scripts/s3-server.sh stop' EXIT
export NEUROBATCH_TEST_S3_ENDPOINT="$S3_ENDPOINT"
step "cargo test" cargo test --workspace --locked
# The API fuzz run (issue 15; scripts/api-fuzz.sh): schemathesis from /openapi.json against
# `neurobatch serve` built above, a token of each role, every operation and check, fixed seed.
step api-fuzz env NEUROBATCH_BIN="$BIN" bash scripts/api-fuzz.sh
# The short chaos campaign (issue 18; docs/reliability.md): a scheduler and 2 workers of the binary
# built above on RabbitMQ, PostgreSQL and its own S3 server, 20 studies, 2 faults of each kind,
# then the invariants (nothing lost, duplicated or stuck, dead letters, objects, metrics).
step chaos env NEUROBATCH_BIN="$BIN" bash scripts/chaos.sh --studies 20 --faults-per-kind 2 --span 120
# The review viewer: its unit tests, then the real-browser test (headless chromium through
# playwright-core against `neurobatch serve` built above); screenshots in web/test-artifacts/.
step "viewer build" bash scripts/build-web.sh
step "viewer unit tests" node --test web/tests/format.test.mjs
step "viewer browser test" env NEUROBATCH_BIN="$BIN" node web/tests/review.test.mjs
# The deployment: images' install steps, the Helm chart rendered and validated offline, compose.
step deploy bash scripts/check-deploy.sh --binary "$BIN"
printf -v summary '%s, ' "${TIMES[@]}"
echo "test.sh: all passed in ${SECONDS} s (${summary%, })" >&2
