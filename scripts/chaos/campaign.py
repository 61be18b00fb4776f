"""The chaos campaign (issue 18): a scheduler and N workers on RabbitMQ, PostgreSQL and an S3-protocol
server, distinct studies submitted through the S3 prefix and the HTTP API (one deliberately corrupt),
faults injected on a seeded schedule, then the invariants checked against the database, the bucket and
the broker. Run by scripts/chaos.sh; `--studies 20` is the short campaign of scripts/test.sh.

Faults (scripts/chaos/faults.py): worker SIGKILL (restarted at once, as a pod would be), scheduler
SIGKILL (restarted after 2 s), broker, database and S3 outages (a TCP relay between the daemon and
the machine's own RabbitMQ / PostgreSQL / the campaign's S3 server resets every connection and
refuses new ones for the fault's duration; the services themselves are not touched), S3 server
paused (SIGSTOP/SIGCONT of the campaign's own moto server: requests hang instead of failing).

Invariants, once every study settled (or the deadline passed):
- every good study has exactly one succeeded job and one result; the corrupt one failed with a reason
  (a failed or dead job, or the study recorded as ineligible);
- nothing is stuck: no job queued or running; no message left on the job and retry queues;
- every failed or dead job is on the dead-letter queue (as many messages as such jobs);
- every object a result names is in the bucket, and no result object is orphaned (in the bucket under
  the results prefix of a study, not named by any result);
- the scheduler's metrics equal the database: `neurobatch_queue_depth{queue="database"}` = queued jobs,
  `neurobatch_review_backlog` = review items pending or claimed.
Figures (faults by kind, attempts spent beyond one per job, wall time, RSS and open files of the
scheduler and of each worker over time with their slope) go to --out as JSON; the exit status is 1 when
an invariant fails.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from faults import FaultProxy, free_port, pause, resume  # noqa: E402

KINDS = ("worker_kill", "scheduler_kill", "broker_down", "database_down", "s3_down", "s3_pause")


def log(msg: str) -> None:
    print(f"chaos: {msg}", file=sys.stderr, flush=True)


# --- studies ---------------------------------------------------------------------------------------

def make_studies(out: Path, n: int) -> list[Path]:
    """n distinct 2 mm T1 scans (samples/mni_t1_2mm.nii.gz with its own gain, shift and noise per index)."""
    out.mkdir(parents=True, exist_ok=True)
    img = nib.load(ROOT / "samples" / "mni_t1_2mm.nii.gz")
    base = np.asarray(img.dataobj, dtype=np.float32)
    paths = []
    for i in range(n):
        p = out / f"study_{i:03d}.nii.gz"
        rng = np.random.default_rng(18000 + i)
        shift = tuple(int(s) for s in rng.integers(-2, 3, size=3))
        vol = np.roll(base, shift, axis=(0, 1, 2)) * rng.uniform(0.8, 1.2)
        vol = np.abs(vol + rng.normal(0, 0.01 * float(vol.max()), vol.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(vol, img.affine), p)
        paths.append(p)
    return paths


def corrupt_study(out: Path) -> Path:
    """A NIfTI whose gzip stream ends half-way: what a broken transfer leaves."""
    good = gzip.compress(nib.Nifti1Image(np.ones((32, 32, 32), np.float32), np.eye(4)).to_bytes())
    p = out / "corrupt.nii.gz"
    p.write_bytes(good[: len(good) // 2])
    return p


# --- services ----------------------------------------------------------------------------------------

class S3:
    """The campaign's own moto server and a boto3 client of it (from .venv-s3, through a subprocess)."""

    def __init__(self, work: Path):
        endpoint_file = work / "s3-endpoint"
        endpoint_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen([str(ROOT / ".venv-s3" / "bin" / "python"), str(ROOT / "scripts" / "s3_server.py"),
                                      "--endpoint-file", str(endpoint_file)],
                                     stdout=(work / "s3.log").open("w"), stderr=subprocess.STDOUT)
        for _ in range(300):
            if endpoint_file.exists() and endpoint_file.read_text().strip():
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the S3 server did not start; see s3.log")
        self.endpoint = endpoint_file.read_text().strip()

    def boto(self, code: str, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        prelude = ("import boto3, sys\n"
                   "c = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='test', "
                   "aws_secret_access_key='test', region_name='us-east-1')\n")
        r = subprocess.run([str(ROOT / ".venv-s3" / "bin" / "python"), "-c", prelude + code, self.endpoint, *args],
                           input=stdin, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"boto3: {r.stderr.strip()[-500:]}")
        return r.stdout

    def upload(self, bucket: str, files: list[tuple[Path, str]]) -> None:
        """Uploads (file, key) pairs with one client: one process, not one per file (1 800
        studies took about 39 minutes one process each on a loaded 2-core machine)."""
        self.boto("import json\n"
                  "for path, key in json.load(sys.stdin): c.upload_file(path, sys.argv[2], key)",
                  bucket, stdin=json.dumps([[str(f), k] for f, k in files]), timeout=120 + len(files))

    def keys(self, bucket: str) -> list[str]:
        out = self.boto("p = c.get_paginator('list_objects_v2')\n"
                        "for page in p.paginate(Bucket=sys.argv[2]):\n"
                        "    for o in page.get('Contents', []): print(o['Key'])", bucket)
        return out.split()

    def stop(self) -> None:
        resume(self.proc.pid)
        self.proc.terminate()
        self.proc.wait(timeout=30)


def psql(url: str, sql: str) -> list[list[str]]:
    r = subprocess.run(["psql", url, "-At", "-F", "\t", "-c", sql], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"psql: {r.stderr.strip()}")
    return [line.split("\t") for line in r.stdout.splitlines() if line]


def broker_queues(prefix: str) -> dict[str, int]:
    r = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "messages", "--formatter", "json"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"rabbitmqctl: {r.stderr.strip()}")
    return {q["name"]: int(q["messages"]) for q in json.loads(r.stdout) if q["name"].startswith(prefix + ".")}


def delete_topology(binary: Path, daemon: "Daemon", amqp_url: str, tag: str) -> None:
    """The campaign's queues and exchanges, deleted by the binary's own teardown (rabbitmqctl
    deletes no exchange), straight to the broker (the proxy is down by then)."""
    env = daemon.environment()
    env["NEUROBATCH__QUEUE__URL"] = amqp_url
    r = subprocess.run([str(binary), "queue", "delete-topology", "--yes"], env=env, cwd=daemon.work,
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:  # cleanup is best effort; the figures are already taken
        log(f"queues and exchanges of {tag} not deleted: {r.stderr.strip()[-300:]}")


# --- processes ---------------------------------------------------------------------------------------

class Daemon:
    """One `neurobatch <role>` process, restartable, with RSS and open-file samples over its lives."""

    def __init__(self, name: str, role: str, binary: Path, work: Path, env: dict):
        self.name, self.role, self.binary, self.work, self.env = name, role, binary, work, env
        self.proc: subprocess.Popen | None = None
        self.lives = 0
        self.samples: list[tuple[float, int, int, int]] = []  # (t, life, rss kB, open fds)

    def environment(self) -> dict[str, str]:
        """The process environment: this one's, with the campaign's settings as NEUROBATCH__ variables."""
        full = {k: v for k, v in os.environ.items() if not k.startswith("NEUROBATCH__")}
        full.update({f"NEUROBATCH__{k.upper().replace('.', '__')}": v for k, v in self.env.items()})
        return full

    def start(self) -> None:
        full = self.environment()
        self.lives += 1
        out = (self.work / f"{self.name}.{self.lives}.log").open("w")
        self.proc = subprocess.Popen([str(self.binary), "--log-level", "warn", self.role], cwd=self.work, env=full,
                                     stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def sample(self, t: float) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except (OSError, StopIteration):
            return
        self.samples.append((t, self.lives, rss, fds))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope (per hour) over the second half of the points (after warm-up)."""
    pts = points[len(points) // 2:]
    if len(pts) < 4:
        return None
    t = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts], dtype=float)
    if np.ptp(t) == 0:
        return None
    return float(np.polyfit(t, y, 1)[0] * 3600)


def soak_figures(d: Daemon) -> dict:
    """Per process life (a killed worker starts a new life), the longest one's RSS and fd slopes."""
    lives: dict[int, list] = {}
    for t, life, rss, fds in d.samples:
        lives.setdefault(life, []).append((t, rss, fds))
    if not lives:
        return {"samples": 0}
    life, pts = max(lives.items(), key=lambda kv: len(kv[1]))
    return {"samples": len(d.samples), "lives": d.lives, "longest_life_s": pts[-1][0] - pts[0][0],
            "rss_mb_first_last": [pts[0][1] / 1024, pts[-1][1] / 1024],
            "rss_mb_slope_per_hour": (lambda s: s / 1024 if s is not None else None)(
                slope_per_hour([(p[0], p[1]) for p in pts])),
            "fds_first_last": [pts[0][2], pts[-1][2]],
            "fds_slope_per_hour": slope_per_hour([(p[0], p[2]) for p in pts]),
            # The longest life's samples (seconds into it, RSS MB, open files), to see whether it levels off.
            "longest_life": [[round(p[0] - pts[0][0], 1), round(p[1] / 1024, 1), p[2]] for p in pts]}


# --- the campaign --------------------------------------------------------------------------------------

def schedule(rng: random.Random, per_kind: int, span_s: float) -> list[tuple[float, str, float]]:
    """(at, kind, duration) for `per_kind` faults of each kind, spread over [5 s, span_s]."""
    events = []
    for kind in KINDS:
        for _ in range(per_kind):
            duration = rng.uniform(8, 20) if kind.endswith(("_down", "_pause")) else 0.0
            events.append((rng.uniform(5, span_s), kind, duration))
    return sorted(events)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", type=Path, default=ROOT / "target" / "debug" / "neurobatch")
    ap.add_argument("--studies", type=int, default=20, help="good studies (one corrupt study is added)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--faults-per-kind", type=int, default=2)
    ap.add_argument("--span", type=float, default=90, help="seconds over which the faults are spread")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--deadline", type=float, default=900, help="seconds to wait for every study to settle")
    ap.add_argument("--work", type=Path, default=ROOT / "target" / "chaos")
    ap.add_argument("--out", type=Path, help="the figures as JSON (default WORK/chaos.json)")
    ap.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    ap.add_argument("--amqp-host", default="127.0.0.1:5672")
    args = ap.parse_args()
    # Stopped from outside (a timeout, Ctrl-C): still stop the daemons and drop the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = args.binary.resolve()
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = random.Random(args.seed)
    tag = f"nb_chaos_{os.getpid()}"
    bucket = tag.replace("_", "-")

    studies = make_studies(work / "studies", args.studies)
    corrupt = corrupt_study(work / "studies")
    s3 = S3(work)
    pg_host, pg_port = "127.0.0.1", 5432
    amqp_host, amqp_port = args.amqp_host.split(":")
    pg_proxy = FaultProxy(pg_host, pg_port)
    amqp_proxy = FaultProxy(amqp_host, int(amqp_port))
    s3_host, s3_port = s3.endpoint.removeprefix("http://").split(":")
    s3_proxy = FaultProxy(s3_host, int(s3_port))
    psql(f"{args.postgres}/postgres", f"CREATE DATABASE {tag}")
    direct_db = f"{args.postgres}/{tag}"
    daemons: list[Daemon] = []
    result: dict = {"seed": args.seed, "studies": args.studies, "workers": args.workers}
    ok = False
    try:
        s3.boto("c.create_bucket(Bucket=sys.argv[2])", bucket)
        os.environ.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"})
        api_port, metrics_port = free_port(), free_port()
        env = {"database.url": f"postgres://postgres@127.0.0.1:{pg_proxy.port}/{tag}",
               "database.max_connections": "4",
               "queue.url": f"amqp://guest:guest@127.0.0.1:{amqp_proxy.port}/%2f", "queue.prefix": tag,
               "queue.retry_initial_secs": "2", "queue.retry_max_secs": "10",
               "storage.url": f"s3://{bucket}", "storage.endpoint": f"http://127.0.0.1:{s3_proxy.port}", "storage.path_style": "true",
               "scheduler.inbox": str(work / "inbox"), "scheduler.s3_prefix": "incoming/",
               "scheduler.quiet_period_secs": "1", "scheduler.poll_interval_secs": "1",
               "scheduler.nightly_window": "", "scheduler.listen": f"127.0.0.1:{api_port}",
               "scheduler.metrics_listen": f"127.0.0.1:{metrics_port}",
               "pipeline.models_dir": str(ROOT / "models"),
               "pipeline.profile": "cpu", "pipeline.members": "1", "pipeline.threads": "1", "pipeline.lanes": "1",
               "worker.lease_secs": "8", "worker.max_attempts": "5", "worker.grace_period_secs": "10",
               "worker.listen": ""}
        (work / "inbox").mkdir()
        subprocess.run([str(binary), "migrate"], cwd=work, check=True, capture_output=True,
                       env={**os.environ, "NEUROBATCH__DATABASE__URL": direct_db})
        token = subprocess.run([str(binary), "token", "create", "--name", "chaos-bridge", "--role", "service"],
                               cwd=work, check=True, capture_output=True, text=True,
                               env={**os.environ, "NEUROBATCH__DATABASE__URL": direct_db}).stdout.strip()
        scheduler = Daemon("scheduler", "scheduler", binary, work, env)
        workers = [Daemon(f"worker{i}", "worker", binary, work, env) for i in range(args.workers)]
        daemons = [scheduler, *workers]
        for d in daemons:
            d.start()

        # Half of the studies arrive under the S3 prefix the scheduler polls, half through the API.
        via_api = studies[1::2]
        api = set(via_api)
        uploads = [(p, f"{'api' if p in api else 'incoming'}/{p.stem.split('.')[0]}/scan.nii.gz")
                   for p in studies]
        s3.upload(bucket, [*uploads, (corrupt, "incoming/corrupt/scan.nii.gz")])
        t0 = time.monotonic()
        pending_api = [f"s3://{bucket}/api/{p.stem.split('.')[0]}/" for p in via_api]

        events = schedule(rng, args.faults_per_kind, args.span)
        result["schedule"] = [{"at_s": round(a, 1), "kind": k, "duration_s": round(d, 1)} for a, k, d in events]
        injected = {k: 0 for k in KINDS}
        stop = threading.Event()

        def inject() -> None:
            for at, kind, duration in events:
                if stop.wait(max(0.0, at - (time.monotonic() - t0))):
                    return
                log(f"{time.monotonic() - t0:6.1f} s: {kind} {duration:.0f} s")
                if kind == "worker_kill":
                    w = rng.choice(workers)
                    w.kill()
                    w.start()
                elif kind == "scheduler_kill":
                    scheduler.kill()
                    time.sleep(2)
                    scheduler.start()
                else:
                    down, up = {"broker_down": (amqp_proxy.down, amqp_proxy.up),
                                "database_down": (pg_proxy.down, pg_proxy.up),
                                "s3_down": (s3_proxy.down, s3_proxy.up),
                                "s3_pause": (lambda: pause(s3.proc.pid), lambda: resume(s3.proc.pid))}[kind]
                    down()
                    stop.wait(duration)
                    up()
                injected[kind] += 1

        injector = threading.Thread(target=inject, daemon=True)
        injector.start()

        def submit(uri: str) -> bool:
            req = urllib.request.Request(f"http://127.0.0.1:{api_port}/v1/studies", method="POST",
                                         data=json.dumps({"uri": uri}).encode(),
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return 200 <= r.status < 300
            except OSError:
                return False  # the scheduler is down or busy: the bridge tries again, as a PACS bridge does

        expected = args.studies + 1
        settled_at = None
        while time.monotonic() - t0 < args.deadline:
            pending_api = [u for u in pending_api if not submit(u)]
            now = time.monotonic() - t0
            for d in daemons:
                d.sample(now)
            try:
                rows = psql(direct_db, "SELECT (SELECT COUNT(*) FROM studies), "
                                       "(SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')), "
                                       "(SELECT COUNT(*) FROM studies s WHERE ineligible_reason IS NOT NULL "
                                       " OR EXISTS (SELECT 1 FROM jobs j WHERE j.study_id = s.id AND j.state "
                                       " IN ('succeeded', 'failed', 'dead')))")
                n_studies, active, settled = (int(x) for x in rows[0])
            except RuntimeError:
                n_studies = active = settled = -1
            if not pending_api and not injector.is_alive() and n_studies == expected and active == 0 \
                    and settled == expected:
                settled_at = now
                break
            time.sleep(2)
        stop.set()
        injector.join(timeout=60)
        amqp_proxy.up()
        pg_proxy.up()
        s3_proxy.up()
        resume(s3.proc.pid)
        result["wall_s"] = time.monotonic() - t0
        result["settled_s"] = settled_at
        result["faults"] = injected
        time.sleep(3)  # one more metrics pass of the scheduler after the last change
        result["checks"] = check(direct_db, s3, bucket, tag, metrics_port, expected)
        result["soak"] = {d.name: soak_figures(d) for d in daemons}
        ok = settled_at is not None and all(c["ok"] for c in result["checks"].values())
        result["ok"] = ok
    finally:
        for d in daemons:
            d.stop()
        amqp_proxy.down()
        pg_proxy.down()
        s3_proxy.down()
        s3.stop()
        if daemons:
            delete_topology(binary, daemons[0], f"amqp://guest:guest@{args.amqp_host}/%2f", tag)
        subprocess.run(["psql", f"{args.postgres}/postgres", "-qc", f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)"],
                       capture_output=True)
    out = args.out or work / "chaos.json"
    out.write_text(json.dumps(result, indent=1))
    for name, c in result.get("checks", {}).items():
        log(f"{'ok  ' if c['ok'] else 'FAIL'} {name}: {c['detail']}")
    log(f"faults {result.get('faults')}, settled in {result.get('settled_s')} s; figures in {out}")
    return 0 if ok else 1


def check(db: str, s3: S3, bucket: str, prefix: str, metrics_port: int, expected: int) -> dict:
    checks = {}

    def record(name: str, good: bool, detail) -> None:
        checks[name] = {"ok": bool(good), "detail": detail}

    per_study = psql(db, "SELECT s.source_uri, s.ineligible_reason IS NOT NULL, "
                         "COUNT(j.id) FILTER (WHERE j.state = 'succeeded'), "
                         "COUNT(j.id) FILTER (WHERE j.state IN ('failed', 'dead')), "
                         "COALESCE(MAX(j.last_error) FILTER (WHERE j.state IN ('failed', 'dead')), ''), "
                         "(SELECT COUNT(*) FROM results r WHERE r.study_id = s.id) "
                         "FROM studies s LEFT JOIN jobs j ON j.study_id = s.id GROUP BY s.id, s.source_uri")
    good = [r for r in per_study if "corrupt" not in r[0]]
    bad = [r for r in per_study if "corrupt" in r[0]]
    wrong = [r[0] for r in good if (r[2], r[5]) != ("1", "1")]
    record("each good study exactly one succeeded job and one result",
           len(per_study) == expected and not wrong,
           f"{len(good)} good studies, {len(per_study)} in all (expected {expected}); not exactly one: {wrong}")
    record("the corrupt study failed with a reason",
           len(bad) == 1 and bad[0][2] == "0" and (bad[0][1] == "t" or (bad[0][3] != "0" and bad[0][4] != "")),
           [{"ineligible": r[1] == "t", "failed_jobs": int(r[3]), "reason": r[4][:160]} for r in bad])
    states = dict((k, int(v)) for k, v in psql(db, "SELECT state, COUNT(*) FROM jobs GROUP BY state"))
    attempts = psql(db, "SELECT COALESCE(SUM(attempts), 0), COUNT(*) FROM jobs")[0]
    released = dict((k, int(v)) for k, v in psql(
        db, "SELECT detail, COUNT(*) FROM audit_events WHERE action = 'job.released' GROUP BY detail"))
    lost = psql(db, "SELECT COUNT(*), COALESCE(SUM(CASE WHEN solo THEN 1 ELSE 0 END), 0) FROM lease_expiries")[0]
    # Figures, not invariants: attempts spent (one per job is the least), jobs handed back unspent, and
    # workers that vanished holding a job (which spends no attempt; `alone`: the job was all it ran).
    checks["jobs"] = {"ok": True, "detail": {"states": states, "attempts": int(attempts[0]), "jobs": int(attempts[1]),
                                             "released": released,
                                             "lost_workers": {"leases": int(lost[0]), "alone": int(lost[1])}}}
    record("nothing stuck in the job store", states.get("queued", 0) + states.get("running", 0) == 0, states)

    queues = broker_queues(prefix)
    dead_letters = sum(n for q, n in queues.items() if q.endswith(".dead"))
    left = {q: n for q, n in queues.items() if not q.endswith(".dead") and n}
    record("no message left on the job and retry queues", not left, queues)
    # A job that failed for good (`failed`: a permanent error; `dead`: its attempts used up or its
    # workers gone) is dead-lettered with its reason, exactly once.
    ended = states.get("failed", 0) + states.get("dead", 0)
    record("every failed or dead job is on the dead-letter queue", dead_letters == ended,
           f"{states.get('failed', 0)} failed and {states.get('dead', 0)} dead jobs, {dead_letters} dead letters")

    named = set()
    for (keys,) in psql(db, "SELECT object_keys FROM results"):
        named.update(json.loads(keys).values())
    in_bucket = set(s3.keys(bucket))
    missing = sorted(named - in_bucket)
    inputs = ("incoming/", "api/")
    result_like = {k for k in in_bucket if not k.startswith(inputs)}
    # What else the daemon keeps in the bucket (snapshots of submitted prefixes, staged uploads) is
    # listed, not judged: only the objects of results are checked against the database.
    result_prefixes = {k.rsplit("/", 2)[0] for k in named}
    orphans = sorted(k for k in result_like - named if k.rsplit("/", 2)[0] in result_prefixes)
    record("every result object present", not missing, {"named": len(named), "missing": missing[:10]})
    record("no orphaned result object", not orphans,
           {"orphans": orphans[:10], "other_objects": len(result_like - named - set(orphans))})

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).read().decode()

    def sample(name: str) -> float | None:
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    depth = sample('neurobatch_queue_depth{queue="database"}')
    backlog = sample("neurobatch_review_backlog")
    db_backlog = int(psql(db, "SELECT COUNT(*) FROM review_items WHERE state IN ('pending', 'claimed')")[0][0])
    record("metrics equal the database", depth == states.get("queued", 0) and backlog == db_backlog,
           {"queue_depth_database": [depth, states.get("queued", 0)], "review_backlog": [backlog, db_backlog]})
    return checks


if __name__ == "__main__":
    sys.exit(main())
