#!/usr/bin/env bash
# The HTTP API fuzz run (issue 15): schemathesis, driven by the daemon's own /openapi.json, against a
# live `neurobatch serve` with its embedded defaults (SQLite, in-process queue, file objects) in a fresh
# temporary folder on a free loopback port, the shipped models and the two samples already processed
# (so studies, jobs and review items exist), once per role with a token of that role: service,
# reviewer, admin. Every operation is exercised with positive and negative data and every check on
# (--checks all: not_a_server_error, status_code_conformance, content_type_conformance,
# response_headers_conformance, response_schema_conformance, negative_data_rejection, ignored_auth),
# without stopping at an operation's first failure. Passes only with 0 failures and 0 errors for
# every role; prints a summary per role, and the server log's tail on failure.
#   - schemathesis 3.39.16 with hypothesis 6.115.0 (pinned: newer hypothesis breaks it), from
#     .venv-api-fuzz, built by scripts/setup.sh from scripts/requirements-api-fuzz.lock
#   - reproducible: seed 15, derandomized (so no example database), 100 examples per operation and
#     data kind (positive, negative); about 2 minutes on 2 cores
#   - scripts/api_fuzz_hooks.py: the STOW-RS bodies (multipart/related), negative cases judged by
#     what reaches the server, some path ids pointed at existing data, a call log (its docstring)
# Uses the debug binary unless NEUROBATCH_BIN names another. The JUnit reports, schemathesis output,
# call logs and server log are left in the printed temporary folder when the run fails (always with
# API_FUZZ_KEEP=1).
#   bash scripts/api-fuzz.sh [EXTRA `st run` OPTIONS]    e.g. --include-path-regex '^/v1/review/' to
#                                                       rerun some operations while fixing them
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh

SEED=15
EXAMPLES=100
ROLES=(service reviewer admin)

BIN="${NEUROBATCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/neurobatch}"
[[ "$BIN" == /* ]] || BIN="$ROOT/$BIN"
ST="$ROOT/.venv-api-fuzz/bin/st"
[[ -x "$BIN" ]] || { echo "api-fuzz: $BIN is missing: build it first (cargo build)" >&2; exit 1; }
[[ -x "$ST" ]] || { echo "api-fuzz: $ST is missing: run scripts/setup.sh" >&2; exit 1; }

log() { echo "api-fuzz: $*" >&2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/neurobatch-api-fuzz.XXXXXX")"
mkdir -p "$WORK/inbox"
# Real data behind the API, so success responses are checked too: the two samples, processed (studies,
# jobs, results, review items) before the first request, as the browser test does.
cp samples/phantom_2mm.nii.gz samples/mni_t1_2mm.nii.gz "$WORK/inbox/"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"

# The embedded defaults, as the browser test runs them (web/tests/server.mjs), with the shipped models.
export NEUROBATCH__SCHEDULER__QUIET_PERIOD_SECS=1
export NEUROBATCH__SCHEDULER__POLL_INTERVAL_SECS=1
export NEUROBATCH__SCHEDULER__NIGHTLY_WINDOW=
export NEUROBATCH__PIPELINE__MEMBERS=1
export NEUROBATCH__PIPELINE__PROFILE=cpu
export NEUROBATCH__SCHEDULER__LISTEN="127.0.0.1:$PORT"
export NEUROBATCH_MODELS="${NEUROBATCH_MODELS:-$ROOT/models}"
export NO_COLOR=1
# schemathesis: no telemetry or service configuration, the hooks from this repository.
export SCHEMATHESIS_TELEMETRY=false
export SCHEMATHESIS_HOSTS_PATH="$WORK/schemathesis-hosts.toml"
# schemathesis runs in the temporary folder (hypothesis keeps a cache in ./.hypothesis), importing the
# hooks from the repository.
export SCHEMATHESIS_HOOKS=scripts.api_fuzz_hooks
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

SERVER_PID=""
status=1
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ "$status" -ne 0 ]]; then
    log "FAILED; the server log's tail ($WORK/serve.log):"
    tail -n 60 "$WORK/serve.log" >&2 2>/dev/null || true
    log "reports, call logs and the whole server log are in $WORK"
  elif [[ -n "${API_FUZZ_KEEP:-}" ]]; then
    log "reports, call logs and the server log are in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap 'cleanup' EXIT

log "neurobatch serve ($BIN) on $URL in $WORK"
(cd "$WORK" && exec "$BIN" --log-level info,ort=warn serve) >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for i in $(seq 1 300); do
  curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { log "neurobatch serve exited at start"; exit 1; }
  [[ "$i" -lt 300 ]] || { log "no answer on $URL/healthz within 60 s"; exit 1; }
  sleep 0.2
done

# One token per role, written by `neurobatch token create` to the server's database (same folder and
# environment); the token is the last line of its output.
declare -A TOKEN
for role in "${ROLES[@]}"; do
  TOKEN[$role]="$(cd "$WORK" && "$BIN" token create --role "$role" --name "api-fuzz-$role" | tail -n 1 | tr -d '[:space:]')"
  [[ -n "${TOKEN[$role]}" ]] || { log "neurobatch token create --role $role printed no token"; exit 1; }
done

# Both samples processed and at least one case in the review queue (well under a minute on 2 cores).
log "waiting for the samples to be processed"
if ! python3 - "$URL" "${TOKEN[admin]}" <<'EOF_WAIT'
import json, sys, time, urllib.request
url, token = sys.argv[1], sys.argv[2]
def get(path):
    req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.load(res)
deadline, state = time.monotonic() + 300, ""
while time.monotonic() < deadline:
    studies = get("/v1/studies")
    studies = studies if isinstance(studies, list) else studies.get("studies", [])
    done = [s for s in studies if s.get("ineligible_reason") or s.get("latest_job_state") in ("succeeded", "failed", "dead")]
    pending = get("/v1/review/items?state=pending")["items"]
    state = f"{len(done)}/2 studies processed, {len(pending)} pending review"
    if len(done) >= 2 and pending:
        print(f"api-fuzz: {state}", file=sys.stderr)
        sys.exit(0)
    time.sleep(1)
print(f"api-fuzz: after 300 s: {state}", file=sys.stderr)
sys.exit(1)
EOF_WAIT
then
  exit 1
fi

summary=()
failed=0
for role in "${ROLES[@]}"; do
  log "role $role: schemathesis run (seed $SEED, $EXAMPLES examples)"
  set +e
  (cd "$WORK" && API_FUZZ_CALL_LOG="$WORK/calls-$role.tsv" exec "$ST" run "$URL/openapi.json" \
    -H "Authorization: Bearer ${TOKEN[$role]}" \
    --experimental=openapi-3.1 \
    --experimental-no-failfast \
    --checks all \
    --data-generation-method all \
    --hypothesis-max-examples "$EXAMPLES" \
    --hypothesis-seed "$SEED" \
    --hypothesis-derandomize \
    --hypothesis-suppress-health-check all \
    --request-timeout 30000 \
    --junit-xml "$WORK/junit-$role.xml" \
    --no-color \
    "$@") 2>&1 | tee "$WORK/schemathesis-$role.log"
  rc=${PIPESTATUS[0]}
  set -e
  # Operations, failures and errors from the JUnit report; each failing operation's failure kinds
  # and statuses from schemathesis's output; requests from the hooks' call log.
  counts="$(python3 - "$WORK/junit-$role.xml" "$WORK/schemathesis-$role.log" "$WORK/calls-$role.tsv" <<'EOF'
import re, sys, xml.etree.ElementTree as ET
junit, output, calls_log = sys.argv[1:4]
try:
    cases = ET.parse(junit).getroot().findall(".//testcase")
    failures = sum(1 for c in cases if c.find("failure") is not None)
    errors = sum(1 for c in cases if c.find("error") is not None)
    head = f"{len(cases)} operations, {failures} failed, {errors} errored"
except Exception as e:  # no report: schemathesis did not get as far
    head = f"no JUnit report ({e.__class__.__name__})"
lines = []
try:
    text = open(output, encoding="utf-8", errors="replace").read()
except OSError:
    text = ""
for section in ("ERRORS", "FAILURES"):
    match = re.search(rf"^=+ {section} =+$(.*?)(?=^=+ [A-Z]+ =+$)", text, re.M | re.S)
    if not match:
        continue
    parts = re.split(r"^_{3,} (.+?) _{3,}$", match.group(1), flags=re.M)
    for operation, body in zip(parts[1::2], parts[2::2]):
        kinds = sorted(set(re.findall(r"^- (.+)$", body, re.M)))
        if section == "ERRORS":
            kinds = ["error: " + " ".join(body.split("Need more help?")[0].split())[:120]]
        statuses = sorted(set(re.findall(r"^\[(\d{3})\]", body, re.M)))
        lines.append(f"      {operation}: {'; '.join(kinds)}" + (f" [{', '.join(statuses)}]" if statuses else ""))
try:
    with open(calls_log, encoding="utf-8") as f:
        calls = [line.split("\t") for line in f]
except OSError:
    calls = []
ok = sum(1 for c in calls if len(c) > 1 and c[1].startswith("2"))
print("\n".join([f"{head}; {len(calls)} requests ({ok} answered 2xx)", *lines]))
EOF
)"
  summary+=("$role (schemathesis exit $rc): $counts")
  [[ "$rc" -eq 0 ]] || failed=1
done

echo "api-fuzz summary (seed $SEED, $EXAMPLES examples per operation):"
for line in "${summary[@]}"; do echo "  $line"; done
if [[ "$failed" -ne 0 ]]; then
  log "schemathesis reported failures or errors (details above and in $WORK/schemathesis-ROLE.log)"
  exit 1
fi
status=0
