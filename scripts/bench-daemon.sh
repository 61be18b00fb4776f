#!/usr/bin/env bash
# Throughput of the daemon: N distinct studies through `neurobatch process` one by one, `neurobatch serve`
# (embedded backends) and scheduler + 1 and 2 workers on RabbitMQ, PostgreSQL and the S3-protocol
# server (scripts/bench/daemon.py says what is measured). A benchmark, not a test: run it on a quiet
# machine; results in bench-results/daemon.{json,md}, copied into docs/benchmarks.md by hand.
#   bash scripts/bench-daemon.sh [--studies 20] [--only serve ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
source scripts/env.sh
cargo build --release --locked --bin neurobatch
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/neurobatch"
S3_ENDPOINT="$(bash scripts/s3-server.sh start)"
trap 'bash scripts/s3-server.sh stop' EXIT
.venv/bin/python scripts/bench/daemon.py --binary "$BIN" --s3-endpoint "$S3_ENDPOINT" "$@"
