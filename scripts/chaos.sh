#!/usr/bin/env bash
# The chaos campaign (issue 18; scripts/chaos/campaign.py says what it injects and checks): a scheduler
# and workers on RabbitMQ, PostgreSQL and its own S3-protocol server, faults on a seeded schedule, then
# the invariants. The short campaign runs in scripts/test.sh; the long one is documented in
# docs/reliability.md. Uses the debug binary unless NEUROBATCH_BIN names another.
#   bash scripts/chaos.sh [--studies 20] [--faults-per-kind 2] [--span 90] [--seed 18] [--out FILE]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
BIN="${NEUROBATCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/neurobatch}"
[[ -x "$BIN" ]] || { echo "chaos: $BIN is missing: build it first (cargo build)" >&2; exit 1; }
exec .venv/bin/python scripts/chaos/campaign.py --binary "$BIN" "$@"
