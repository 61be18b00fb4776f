#!/usr/bin/env bash
# The whole test suite: setup, formatting, lints, then every test in the workspace.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
source scripts/env.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The storage tests talk to a real S3-protocol server (moto) started here on a free loopback port;
# RabbitMQ (127.0.0.1:5672) and PostgreSQL are the machine's own services.
S3_ENDPOINT="$(bash scripts/s3-server.sh start)"
trap 'bash scripts/s3-server.sh stop' EXIT
export NEUROBATCH_TEST_S3_ENDPOINT="$S3_ENDPOINT"
cargo test --workspace --locked
