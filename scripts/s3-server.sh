#!/usr/bin/env bash
# Starts or stops the S3-protocol test server (moto, from .venv-s3 built by scripts/setup.sh)
# on a free loopback port.
#   scripts/s3-server.sh start   prints the endpoint URL (also in $STATE/endpoint)
#   scripts/s3-server.sh stop    stops the server this script started (by its recorded pid)
# STATE defaults to target/s3-server; set NEUROBATCH_S3_STATE to run several side by side.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${NEUROBATCH_S3_STATE:-$ROOT/target/s3-server}"
PY="$ROOT/.venv-s3/bin/python"

case "${1:-}" in
  start)
    [[ -x "$PY" ]] || { echo "s3-server: $PY is missing: run scripts/setup.sh" >&2; exit 1; }
    mkdir -p "$STATE"
    if [[ -f "$STATE/pid" ]] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
      echo "s3-server: already running (pid $(cat "$STATE/pid")) at $(cat "$STATE/endpoint")" >&2
      cat "$STATE/endpoint"
      exit 0
    fi
    rm -f "$STATE/endpoint"
    nohup "$PY" "$ROOT/scripts/s3_server.py" --endpoint-file "$STATE/endpoint" >"$STATE/log" 2>&1 &
    echo $! > "$STATE/pid"
    for _ in $(seq 1 300); do
      [[ -s "$STATE/endpoint" ]] && { cat "$STATE/endpoint"; exit 0; }
      kill -0 "$(cat "$STATE/pid")" 2>/dev/null || break
      sleep 0.1
    done
    echo "s3-server: did not start; log follows" >&2
    cat "$STATE/log" >&2
    exit 1
    ;;
  stop)
    if [[ -f "$STATE/pid" ]]; then
      pid="$(cat "$STATE/pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$STATE/pid" "$STATE/endpoint"
    fi
    ;;
  *)
    echo "usage: scripts/s3-server.sh start|stop" >&2
    exit 2
    ;;
esac
