"""Throughput of the daemon (issue 16): N distinct studies through `neurobatch process` one by one (the
pipeline alone), through `neurobatch serve` on the embedded backends, and through `neurobatch scheduler`
+ 1 and 2 `neurobatch worker`s on RabbitMQ, PostgreSQL and the S3-protocol server. Run by
scripts/bench-daemon.sh (which builds the release binary and starts the S3 server); results in
bench-results/daemon.json and a Markdown table in bench-results/daemon.md (copied into docs/benchmarks.md
by hand).

Per configuration: wall time from the first process start until the database holds N succeeded jobs,
studies/hour, the per-stage seconds the workers record (`neurobatch_stage_duration_seconds`: fetch,
harmonize, inference, upload, database; sums over all jobs, scraped from /metrics before the processes
stop), peak RSS (VmHWM) of every process; for `serve` and one worker the overhead over the pipeline
(wall time / sum of the sequential `process` walls − 1), for two workers the studies/hour against one.

Studies: the MNI152 2009 T1 from nilearn (1 mm, 197 × 233 × 189), each with its own gain, Rician noise
draw and shift of a few voxels (seed = index), so every study is distinct (its own hash) and realistic
in size and content.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
STAGE_RE = re.compile(r'^neurobatch_stage_duration_seconds_(sum|count)\{stage="(\w+)"\} ([0-9.e+-]+)$')


def log(msg: str) -> None:
    print(f"bench-daemon: {msg}", file=sys.stderr, flush=True)


def make_studies(out: Path, n: int) -> list[Path]:
    from nilearn import datasets

    out.mkdir(parents=True, exist_ok=True)
    img = datasets.load_mni152_template(resolution=1)
    base = np.asarray(img.dataobj, dtype=np.float32)
    paths = []
    for i in range(n):
        p = out / f"study_{i:03d}.nii.gz"
        paths.append(p)
        if p.exists():
            continue
        rng = np.random.default_rng(16000 + i)
        shift = rng.integers(-4, 5, size=3)
        vol = np.roll(base, tuple(int(s) for s in shift), axis=(0, 1, 2)) * rng.uniform(0.7, 1.3)
        sd = 0.02 * float(vol.max())
        vol = np.hypot(vol + rng.normal(0, sd, vol.shape), rng.normal(0, sd, vol.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(vol, img.affine), p)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vmhwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def scrape(port: int) -> dict:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    stages: dict[str, dict] = {}
    for line in text.splitlines():
        m = STAGE_RE.match(line)
        if m:
            stages.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    return stages


def merge_stages(parts: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for p in parts:
        for stage, v in p.items():
            e = out.setdefault(stage, {"sum": 0.0, "count": 0.0})
            e["sum"] += v.get("sum", 0.0)
            e["count"] += v.get("count", 0.0)
    return out


def succeeded(db: str) -> tuple[int, int]:
    """(succeeded, failed or dead) jobs in the database."""
    q = "SELECT SUM(state = 'succeeded'), SUM(state IN ('failed', 'dead')) FROM jobs"
    if db.startswith("sqlite://"):
        import sqlite3

        path = db[len("sqlite://"):]
        if not Path(path).exists():
            return 0, 0
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as c:
                row = c.execute(q).fetchone()
        except sqlite3.OperationalError:
            return 0, 0
    else:
        q = ("SELECT COUNT(*) FILTER (WHERE state = 'succeeded'), COUNT(*) FILTER (WHERE state IN ('failed', 'dead')) "
             "FROM jobs")
        r = subprocess.run(["psql", db, "-At", "-F", " ", "-c", q], capture_output=True, text=True)
        if r.returncode != 0:
            return 0, 0
        row = r.stdout.split()
    return tuple(int(x or 0) for x in row)  # type: ignore[return-value]


def start(binary: Path, args: list[str], cwd: Path, env: dict, log_path: Path) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEUROBATCH__")}
    full.update({f"NEUROBATCH__{k.upper().replace('.', '__')}": v for k, v in env.items()})
    return subprocess.Popen([str(binary), "--log-level", "warn", *args], cwd=cwd, env=full,
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT)


def common_env(threads: int) -> dict:
    """Settings every configuration shares; `threads` (0: the CPU default) is both the ONNX Runtime
    threads and the inference lanes of each worker."""
    return {"scheduler.quiet_period_secs": "1", "scheduler.poll_interval_secs": "1",
            "scheduler.nightly_window": "", "pipeline.profile": "cpu",
            "pipeline.threads": str(threads), "pipeline.lanes": str(threads)}


def run_daemon(name: str, binary: Path, studies: list[Path], work: Path, db: str, env: dict,
               procs: list[tuple[str, list[str], dict, int | None]], timeout: float) -> dict:
    """Starts `procs` (role, args, extra env, metrics port), drops the studies in the inbox, waits for N
    succeeded jobs, scrapes every metrics port, records peak RSS, stops everything."""
    inbox = Path(env["scheduler.inbox"])
    inbox.mkdir(parents=True, exist_ok=True)
    # The studies are in place before any process starts: the wall time is the daemon's, not the copy's.
    for s in studies:
        shutil.copy(s, inbox / s.name)
    t0 = time.monotonic()
    running = [(role, start(binary, args, work, {**env, **extra}, work / f"{role}.log"), port)
               for role, args, extra, port in procs]
    n = len(studies)
    done = bad = 0
    try:
        while time.monotonic() - t0 < timeout:
            done, bad = succeeded(db)
            if done + bad >= n:
                break
            if any(p.poll() is not None for _, p, _ in running):
                raise SystemExit(f"{name}: a process exited early; see {work}/*.log")
            time.sleep(0.5)
        wall = time.monotonic() - t0
        time.sleep(1.5)  # the last job's database stage is recorded after its state is
        stages = merge_stages([scrape(port) for _, _, port in running if port])
        rss = {f"{role}#{i}": vmhwm_kb(p.pid) for i, (role, p, _) in enumerate(running)}
    finally:
        for _, p, _ in running:
            p.terminate()
        for _, p, _ in running:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return {"config": name, "studies": n, "succeeded": done, "failed": bad, "wall_s": wall,
            "studies_per_hour": done / wall * 3600 if wall else None, "stages": stages, "peak_rss_kb": rss}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--work", type=Path, default=ROOT / "bench-results" / "daemon-work")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results")
    ap.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "neurobatch")
    ap.add_argument("--s3-endpoint", default="")
    ap.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    ap.add_argument("--only", action="append", help="configurations to run (process, serve, services-1, services-2)")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--report-only", action="store_true", help="rewrite daemon.md from OUT/daemon.json")
    args = ap.parse_args()
    if args.report_only:
        return write_report(json.loads((args.out / "daemon.json").read_text()), args.out)
    args.binary = args.binary.resolve()  # the daemons run in their own folders
    args.work = args.work.resolve()
    if args.work.exists():
        shutil.rmtree(args.work / "runs", ignore_errors=True)
    studies = make_studies(args.work / "studies", args.studies)
    want = set(args.only or ["process", "serve", "services-1", "services-2"])
    results = {"studies": args.studies, "cpus": os.cpu_count(), "load_before": os.getloadavg(), "configs": []}

    if "process" in want:
        walls, stage_ms = [], {}
        out = args.work / "runs" / "process"
        for s in studies:
            t0 = time.monotonic()
            r = subprocess.run([str(args.binary), "process", str(s), "--out", str(out / s.stem), "--profile", "cpu"],
                               capture_output=True, text=True)
            walls.append(time.monotonic() - t0)
            if r.returncode != 0:
                raise SystemExit(f"process {s}: {r.stderr.strip()[-400:]}")
            for t in json.loads((out / s.stem / "report.json").read_text())["timings_ms"]:
                stage_ms[t["stage"]] = stage_ms.get(t["stage"], 0.0) + t["ms"]
        results["configs"].append({"config": "process", "studies": len(studies), "succeeded": len(studies),
                                   "wall_s": sum(walls), "studies_per_hour": len(studies) / sum(walls) * 3600,
                                   "median_study_s": float(np.median(walls)),
                                   "pipeline_stages_s": {k: v / 1000 for k, v in stage_ms.items()}})
        log(f"process: {sum(walls):.1f} s for {len(studies)} studies")

    if "serve" in want:
        work = args.work / "runs" / "serve"
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        db = f"sqlite://{work / 'data' / 'neurobatch.db'}"
        # /metrics without a token is served on scheduler.metrics_listen only.
        env = {**common_env(0), "database.url": db, "queue.url": "memory://",
               "storage.url": f"file://{work / 'data' / 'objects'}", "scheduler.inbox": str(work / "inbox"),
               "scheduler.listen": f"127.0.0.1:{free_port()}", "scheduler.metrics_listen": f"127.0.0.1:{port}"}
        r = run_daemon("serve", args.binary, studies, work, db, env, [("serve", ["serve"], {}, port)], args.timeout)
        results["configs"].append(r)
        log(f"serve: {r['wall_s']:.1f} s, {r['studies_per_hour']:.0f} studies/h")

    for workers in (1, 2):
        name = f"services-{workers}"
        if name not in want:
            continue
        work = args.work / "runs" / name
        work.mkdir(parents=True, exist_ok=True)
        tag = f"nb_bench_{workers}_{os.getpid()}"
        subprocess.run(["psql", f"{args.postgres}/postgres", "-qc", f"CREATE DATABASE {tag}"], check=True)
        db = f"{args.postgres}/{tag}"
        boto = ROOT / ".venv-s3" / "bin" / "python"
        subprocess.run([str(boto), "-c", "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], "
                        "aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1')"
                        ".create_bucket(Bucket=sys.argv[2])", args.s3_endpoint, tag.replace("_", "-")], check=True)
        os.environ.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"})
        # Two workers on a 2-core machine: one inference lane and one thread each, so they do not oversubscribe.
        threads = 1 if workers > 1 else 0
        env = {**common_env(threads), "database.url": db, "queue.url": args.amqp, "queue.prefix": tag,
               "storage.url": f"s3://{tag.replace('_', '-')}", "storage.endpoint": args.s3_endpoint,
               "storage.path_style": "true", "scheduler.inbox": str(work / "inbox"),
               "scheduler.listen": f"127.0.0.1:{free_port()}"}
        subprocess.run([str(args.binary), "migrate"], cwd=work, check=True, capture_output=True,
                       env={**os.environ, "NEUROBATCH__DATABASE__URL": db})
        procs = [("scheduler", ["scheduler"], {}, None)]
        for _ in range(workers):
            p = free_port()
            procs.append(("worker", ["worker"], {"worker.listen": f"127.0.0.1:{p}"}, p))
        try:
            r = run_daemon(name, args.binary, studies, work, db, env, procs, args.timeout)
        finally:
            subprocess.run(["psql", f"{args.postgres}/postgres", "-qc", f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)"])
            # The run's queues and exchanges go too: the broker is the machine's, shared with other work.
            subprocess.run([str(args.binary), "queue", "delete-topology", "--yes"], cwd=work, capture_output=True,
                           env={**os.environ, "NEUROBATCH__QUEUE__URL": args.amqp, "NEUROBATCH__QUEUE__PREFIX": tag})
        r["workers"] = workers
        results["configs"].append(r)
        log(f"{name}: {r['wall_s']:.1f} s, {r['studies_per_hour']:.0f} studies/h")

    results["load_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "daemon.json").write_text(json.dumps(results, indent=1))
    write_report(results, args.out)


def write_report(results: dict, out: Path) -> None:
    """daemon.md from daemon.json. Overhead is that of one pipeline at a time (serve, one worker) over
    the sequential `process` runs, which use every core already; two workers are compared with one."""
    configs = results["configs"]
    base = next((c for c in configs if c["config"] == "process"), None)
    one = next((c for c in configs if c.get("workers") == 1), None)
    lines = ["| configuration | studies | wall (s) | studies/h | overhead vs `process` | peak RSS per process (MB) |",
             "|---|---|---|---|---|---|"]
    for c in configs:
        rss = ", ".join(f"{k} {v / 1024:.0f}" for k, v in (c.get("peak_rss_kb") or {}).items() if v)
        if base and c is not base and c.get("workers", 1) == 1:
            cell = f"{(c['wall_s'] / base['wall_s'] - 1) * 100:+.1f} %"
        elif one and c.get("workers", 1) > 1:
            cell = f"{c['studies_per_hour'] / one['studies_per_hour']:.2f}× the studies/h of 1 worker"
        else:
            cell = "—"
        lines.append(f"| {c['config']} | {c['succeeded']}/{c['studies']} | {c['wall_s']:.1f} | "
                     f"{c['studies_per_hour']:.0f} | {cell} | {rss or '—'} |")
    lines += ["", "| configuration | " + " | ".join(["fetch", "harmonize", "inference", "upload", "database"]) + " |",
              "|---|---|---|---|---|---|"]
    for c in configs:
        st = c.get("stages")
        if st:
            cells = [f"{st[s]['sum'] / max(st[s]['count'], 1):.2f}" if s in st else "—"
                     for s in ("fetch", "harmonize", "inference", "upload", "database")]
            lines.append(f"| {c['config']} (mean s per job) | " + " | ".join(cells) + " |")
    (out / "daemon.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

if __name__ == "__main__":
    main()
