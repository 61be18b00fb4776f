"""Offline checks of deploy/, run by scripts/check-deploy.sh inside .venv-deploy.

What it proves, without a cluster, a Docker engine or the network:
  chart       the Helm chart renders (Helm v4's own engine, helm-python-sdk) with each value set of
              deploy/helm/neurobatch/ci/, every manifest validates against the Kubernetes schemas
              (kubernetes-validate, strict, oldest and newest supported version), KEDA and
              ServiceMonitor objects against their vendored CRD schemas (deploy/schemas/), and the
              objects fit together (names, ports, secrets, selectors, grace periods, queue name,
              configuration keys and types against config/neurobatch.toml); missing secrets and
              misplaced passwords fail the render with a message naming the value
  compose     deploy/compose.yaml parses and refers only to defined services, volumes, secrets
              and files; its NEUROBATCH__ variables are configuration keys
  dashboard   deploy/grafana/neurobatch.json is a dashboard whose queries use exactly the
              neurobatch_* metrics the daemon exposes
  image       the Dockerfiles' paths (ENV, ENTRYPOINT, COPY sources) against the layout install.sh
              made under --prefix (scripts/check-deploy.sh runs install.sh first)
  yamllint    deploy/ (templates excluded) and every rendered manifest, with deploy/.yamllint
Each failure is one line naming the file or object and the reason; exit status 1 if any.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Callable

import jsonschema
import kubernetes_validate
import yaml
from helm_python import Chart, helm_sdk_version
from helm_python.chart import lint as helm_lint

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "neurobatch"
SCHEMAS = DEPLOY / "schemas"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the pinned
# kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.29.0", "1.37.0"]
# Variables the chart may set before the daemon has their key: reported, not failed, until
# config/neurobatch.toml has it (none now: worker.listen landed with the worker's listener).
PENDING_VARIABLES: dict[str, str] = {}
METRICS = {
    "neurobatch_jobs_total": "counter",
    "neurobatch_stage_duration_seconds": "histogram",
    "neurobatch_queue_depth": "gauge",
    "neurobatch_review_backlog": "gauge",
    "neurobatch_review_oldest_age_seconds": "gauge",
    "neurobatch_routed_total": "counter",
    "neurobatch_model_info": "gauge",
    "neurobatch_worker_concurrency": "gauge",
    "neurobatch_execution_provider_info": "gauge",
}
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication-v1alpha1.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.yaml",
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Report:
    """Collects results; every failure names what failed and why."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.warnings: list[str] = []
        self.passed = 0

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
            print(f"FAIL: {what}", flush=True)
        return ok

    def fail(self, what: str) -> None:
        self.check(False, what)

    def warn(self, what: str) -> None:
        if what not in self.warnings:
            self.warnings.append(what)
            print(f"warn: {what}", flush=True)


# ---------------------------------------------------------------------------------------------
# neurobatch's configuration keys (config/neurobatch.toml documents exactly the defaults)


def config_keys() -> dict[tuple[str, str], Any]:
    """(section, key) -> default value of every configuration key."""
    with open(ROOT / "config" / "neurobatch.toml", "rb") as f:
        doc = tomllib.load(f)
    return {(section, key): value for section, table in doc.items() for key, value in table.items()}


def same_type(a: Any, b: Any) -> bool:
    """TOML types of a default and a configured value agree (bool is not an int here)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, list):
        return isinstance(b, list) and all(isinstance(x, str) for x in b)
    return type(a) is type(b)


def check_variable(report: Report, keys: dict, name: str, where: str) -> None:
    """A NEUROBATCH__SECTION__KEY[__FILE] variable must name a configuration key."""
    if not name.startswith("NEUROBATCH__"):
        return
    parts = name[len("NEUROBATCH__"):].split("__")
    if parts[-1] == "FILE" and len(parts) == 3:
        parts = parts[:2]
    if len(parts) != 2:
        report.fail(f"{where}: {name}: not NEUROBATCH__SECTION__KEY[__FILE]")
        return
    key = (parts[0].lower(), parts[1].lower())
    if key in keys:
        report.check(True, name)
    elif name in PENDING_VARIABLES:
        report.warn(f"{name} (set by the chart) is not a key of config/neurobatch.toml yet: {PENDING_VARIABLES[name]}; "
                    "the daemon refuses unknown variables, so the key must land with that endpoint")
    else:
        report.fail(f"{where}: {name}: no key {key[0]}.{key[1]} in config/neurobatch.toml "
                    "(the daemon refuses unknown variables at start)")


# ---------------------------------------------------------------------------------------------
# Schemas


def strict_schema(schema: Any) -> Any:
    """The API server's strict field validation: objects with listed properties take no others."""
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


def load_crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    validators = {}
    for key, file in CRD_SCHEMAS.items():
        doc = yaml.safe_load((SCHEMAS / file).read_text())
        if (doc.get("apiVersion"), doc.get("kind")) != key:
            raise SystemExit(f"{SCHEMAS / file}: apiVersion/kind {doc.get('apiVersion')}/{doc.get('kind')}, expected {key}")
        schema = strict_schema(doc["schema"])
        jsonschema.Draft7Validator.check_schema(schema)
        validators[key] = jsonschema.Draft7Validator(schema)
    return validators


def validate_object(report: Report, crds: dict, obj: dict, where: str) -> None:
    key = (obj.get("apiVersion"), obj.get("kind"))
    name = obj.get("metadata", {}).get("name", "")
    label = f"{where}: {key[1]}/{name}"
    report.check(bool(name) and len(name) <= 253 and bool(DNS_SUBDOMAIN.match(name)),
                 f"{label}: metadata.name {name!r} is not a DNS subdomain")
    for k, v in (obj.get("metadata", {}).get("labels") or {}).items():
        report.check(isinstance(v, str) and len(v) <= 63, f"{label}: label {k}={v!r} is not a string of ≤ 63 characters")
    if key in crds:
        errors = sorted(crds[key].iter_errors(obj), key=lambda e: list(e.absolute_path))
        for e in errors:
            report.fail(f"{label}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message} "
                        f"(vendored CRD schema {CRD_SCHEMAS[key]})")
        if not errors:
            report.check(True, label)
        return
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            report.check(True, f"{label} on {version}")
        except kubernetes_validate.ValidationError as e:
            report.fail(f"{label}: Kubernetes {version}: {'.'.join(map(str, e.path)) or '(root)'}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            report.fail(f"{label}: no Kubernetes {version} schema and no vendored CRD schema for {key[0]} {key[1]}")


# ---------------------------------------------------------------------------------------------
# The chart


def render(chart: Chart, values: dict) -> dict[str, str]:
    return chart.render(values=values, name="nb", namespace="neurobatch", is_install=True)


def objects_of(rendered: dict[str, str]) -> list[tuple[str, dict]]:
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


def pod_specs(objs: list[tuple[str, dict]]) -> list[tuple[dict, dict, dict]]:
    """(owner object, pod template metadata, pod spec) of every Deployment and Job."""
    out = []
    for _, o in objs:
        if o["kind"] in ("Deployment", "Job"):
            t = o["spec"]["template"]
            out.append((o, t.get("metadata", {}), t["spec"]))
    return out


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_semantics(report: Report, keys: dict, objs: list[tuple[str, dict]], merged: dict, where: str) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for _, o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    secrets = by_kind.get("Secret", {})
    existing = {merged["database"]["existingSecret"], merged["broker"]["existingSecret"],
                merged["s3"]["existingSecret"]} - {""}
    pods = pod_specs(objs)
    config_maps = by_kind.get("ConfigMap", {})

    def secret_has(name: str, key: str, what: str) -> None:
        if name in secrets:
            data = {**secrets[name].get("stringData", {}), **secrets[name].get("data", {})}
            report.check(key in data, f"{where}: {what}: Secret {name} has no key {key!r}")
        else:
            report.check(name in existing, f"{where}: {what}: Secret {name} is neither rendered nor an existingSecret")

    # Pods: volumes, mounts, ports, probes, secrets, environment, arguments, security.
    for owner, meta, spec in pods:
        what = f"{owner['kind']}/{owner['metadata']['name']}"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        report.check(spec.get("securityContext", {}).get("runAsNonRoot") is True, f"{where}: {what}: runAsNonRoot is not true")
        for v in volumes.values():
            if "secret" in v:
                for item in v["secret"].get("items", []):
                    secret_has(v["secret"]["secretName"], item["key"], f"{what} volume {v['name']}")
            if "configMap" in v:
                report.check(v["configMap"]["name"] in config_maps, f"{where}: {what}: ConfigMap {v['configMap']['name']} not rendered")
        for c in spec["containers"]:
            cw = f"{what} container {c['name']}"
            report.check(c.get("securityContext", {}).get("readOnlyRootFilesystem") is True, f"{where}: {cw}: root filesystem not read-only")
            report.check(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False, f"{where}: {cw}: privilege escalation allowed")
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in c:
                    port = c[probe]["httpGet"]["port"]
                    report.check(port in ports, f"{where}: {cw}: {probe} port {port!r} is not a container port {sorted(ports)}")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            for m in c.get("volumeMounts", []):
                report.check(m["name"] in volumes, f"{where}: {cw}: mount {m['name']} has no volume")
            env = {e["name"]: e for e in c.get("env", [])}
            for name, e in env.items():
                check_variable(report, keys, name, f"{where}: {cw}")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret_has(ref["name"], ref["key"], f"{cw} env {name}")
                if name.endswith("__FILE"):
                    path = e["value"]
                    parent = str(Path(path).parent)
                    report.check(parent in mounts, f"{where}: {cw}: {name}={path}: nothing mounted at {parent}")
                    vol = volumes.get(mounts.get(parent, ""), {})
                    report.check(Path(path).name in [i["path"] for i in vol.get("secret", {}).get("items", [])],
                                 f"{where}: {cw}: {name}={path}: the mounted secret has no item {Path(path).name}")
            args = c.get("args", [])
            if "--config" in args:
                path = Path(args[args.index("--config") + 1])
                vol = volumes.get(mounts.get(str(path.parent), ""), {})
                cm = config_maps.get(vol.get("configMap", {}).get("name", ""), {})
                report.check(path.name in cm.get("data", {}), f"{where}: {cw}: --config {path}: no ConfigMap mounted there with that key")

    # The configuration file: TOML, every key known, every value of the key's type.
    for name, cm in config_maps.items():
        for file, text in cm.get("data", {}).items():
            try:
                doc = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                report.fail(f"{where}: ConfigMap/{name} {file}: not TOML: {e}")
                continue
            for section, table in doc.items():
                for key, value in table.items():
                    default = keys.get((section, key))
                    if default is None:
                        report.fail(f"{where}: ConfigMap/{name} {file}: {section}.{key} is not a configuration key")
                    else:
                        report.check(same_type(default, value),
                                     f"{where}: ConfigMap/{name} {file}: {section}.{key} = {value!r} is not of the type of its default {default!r}")
            for section, table in merged["config"].items():
                for key, value in table.items():
                    report.check(doc.get(section, {}).get(key) == value,
                                 f"{where}: ConfigMap/{name}: {section}.{key} rendered as {doc.get(section, {}).get(key)!r}, values say {value!r}")

    # Workers: grace period, GPUs, replicas under KEDA, image.
    worker = by_kind.get("Deployment", {}).get("nb-neurobatch-worker")
    if report.check(worker is not None, f"{where}: no worker Deployment nb-neurobatch-worker"):
        spec = worker["spec"]["template"]["spec"]
        c = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        grace = merged["worker"]["gracePeriodSeconds"]
        report.check(env.get("NEUROBATCH__WORKER__GRACE_PERIOD_SECS") == str(grace),
                     f"{where}: worker: NEUROBATCH__WORKER__GRACE_PERIOD_SECS {env.get('NEUROBATCH__WORKER__GRACE_PERIOD_SECS')!r} != worker.gracePeriodSeconds {grace}")
        report.check(spec.get("terminationGracePeriodSeconds") == grace + merged["worker"]["terminationMarginSeconds"]
                     and spec["terminationGracePeriodSeconds"] > grace,
                     f"{where}: worker: terminationGracePeriodSeconds {spec.get('terminationGracePeriodSeconds')} is not the grace period {grace} plus the margin")
        gpu = merged["worker"]["gpu"]
        limits = c.get("resources", {}).get("limits", {})
        if gpu["enabled"]:
            report.check(limits.get(gpu["resourceName"]) == gpu["count"], f"{where}: worker: limit {gpu['resourceName']} is {limits.get(gpu['resourceName'])!r}, not {gpu['count']}")
            report.check(c["image"].startswith(gpu["image"]["repository"] + ":"), f"{where}: worker: image {c['image']} is not the CUDA image")
            report.check(spec.get("nodeSelector") == merged["worker"]["nodeSelector"] and spec.get("tolerations") == merged["worker"]["tolerations"],
                         f"{where}: worker: nodeSelector/tolerations not as in values")
        else:
            report.check(not any("gpu" in k for k in limits), f"{where}: worker: GPU limits {limits} with worker.gpu.enabled false")
        if merged["keda"]["enabled"]:
            report.check("replicas" not in worker["spec"], f"{where}: worker: replicas set although KEDA owns the count")
        else:
            report.check(worker["spec"].get("replicas") == merged["worker"]["replicas"], f"{where}: worker: replicas not worker.replicas")
        sched = by_kind.get("Deployment", {}).get("nb-neurobatch-scheduler")
        if report.check(sched is not None, f"{where}: no scheduler Deployment"):
            report.check(sched["spec"]["replicas"] == 1 and sched["spec"]["strategy"]["type"] == "Recreate",
                         f"{where}: scheduler: not exactly one replica with strategy Recreate")

    # Services, Ingress, ServiceMonitors, PDB, NetworkPolicies: selectors and ports.
    def pods_matching(selector: dict) -> list[dict]:
        return [spec for _, meta, spec in pods if matches(selector, meta.get("labels", {}))]

    def container_ports(specs: list[dict]) -> set[str]:
        return {p["name"] for s in specs for c in s["containers"] for p in c.get("ports", [])}

    for name, svc in by_kind.get("Service", {}).items():
        selected = pods_matching(svc["spec"]["selector"])
        if report.check(bool(selected), f"{where}: Service/{name}: selects no pod"):
            for p in svc["spec"]["ports"]:
                report.check(p["targetPort"] in container_ports(selected),
                             f"{where}: Service/{name}: targetPort {p['targetPort']!r} not a port of the selected pods")
    for name, ing in by_kind.get("Ingress", {}).items():
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                b = path["backend"]["service"]
                svc = by_kind.get("Service", {}).get(b["name"])
                report.check(svc is not None and b["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]},
                             f"{where}: Ingress/{name}: backend {b['name']}:{b['port']} is not a rendered Service port")
    for name, sm in by_kind.get("ServiceMonitor", {}).items():
        svcs = [s for s in by_kind.get("Service", {}).values()
                if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        if report.check(bool(svcs), f"{where}: ServiceMonitor/{name}: selects no Service"):
            for ep in sm["spec"]["endpoints"]:
                report.check(any(ep["port"] in {p["name"] for p in s["spec"]["ports"]} for s in svcs),
                             f"{where}: ServiceMonitor/{name}: port {ep['port']!r} is not a port of the selected Services")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        report.check(bool(pods_matching(pdb["spec"]["selector"]["matchLabels"])), f"{where}: PodDisruptionBudget/{name}: selects no pod")
    for name, np in by_kind.get("NetworkPolicy", {}).items():
        selected = pods_matching(np["spec"]["podSelector"]["matchLabels"])
        if report.check(bool(selected), f"{where}: NetworkPolicy/{name}: selects no pod"):
            for rule in np["spec"].get("ingress", []):
                for p in rule.get("ports", []):
                    if isinstance(p["port"], str):
                        report.check(p["port"] in container_ports(selected),
                                     f"{where}: NetworkPolicy/{name}: port {p['port']!r} is not a port of the selected pods")

    # KEDA: the worker Deployment, the jobs queue, the broker secret.
    scaled = by_kind.get("ScaledObject", {})
    report.check(bool(scaled) == bool(merged["keda"]["enabled"]), f"{where}: ScaledObject rendered: {bool(scaled)}, keda.enabled: {merged['keda']['enabled']}")
    for name, so in scaled.items():
        spec = so["spec"]
        report.check(spec["scaleTargetRef"]["name"] in by_kind.get("Deployment", {}) and spec["scaleTargetRef"]["name"].endswith("-worker"),
                     f"{where}: ScaledObject/{name}: scaleTargetRef {spec['scaleTargetRef']['name']} is not the worker Deployment")
        report.check(0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], f"{where}: ScaledObject/{name}: min/max replicas out of order")
        rabbit = [t for t in spec["triggers"] if t["type"] == "rabbitmq"]
        if report.check(len(rabbit) == 1, f"{where}: ScaledObject/{name}: {len(rabbit)} rabbitmq triggers, expected 1"):
            t = rabbit[0]
            queue = f"{merged['config']['queue']['prefix']}.jobs"
            report.check(t["metadata"]["queueName"] == queue, f"{where}: ScaledObject/{name}: queueName {t['metadata']['queueName']!r}, the jobs queue is {queue!r}")
            report.check(t["metadata"]["mode"] == "QueueLength" and t["metadata"]["protocol"] == merged["keda"]["protocol"],
                         f"{where}: ScaledObject/{name}: mode/protocol not QueueLength/{merged['keda']['protocol']}")
            auth = by_kind.get("TriggerAuthentication", {}).get(t["authenticationRef"]["name"])
            if report.check(auth is not None, f"{where}: ScaledObject/{name}: TriggerAuthentication {t['authenticationRef']['name']} not rendered"):
                for ref in auth["spec"]["secretTargetRef"]:
                    report.check(ref["parameter"] == "host", f"{where}: TriggerAuthentication: parameter {ref['parameter']!r}, KEDA's rabbitmq scaler reads 'host'")
                    secret_has(ref["name"], ref["key"], f"TriggerAuthentication/{auth['metadata']['name']}")

    # The migration hook: before install and upgrade, `neurobatch migrate`, its secret first.
    jobs = by_kind.get("Job", {})
    if merged["migration"]["enabled"] and report.check(len(jobs) == 1, f"{where}: {len(jobs)} Jobs, expected the migration job"):
        job = next(iter(jobs.values()))
        ann = job["metadata"].get("annotations", {})
        report.check(set(ann.get("helm.sh/hook", "").split(",")) == {"pre-install", "pre-upgrade"}, f"{where}: migration job hook {ann.get('helm.sh/hook')!r}")
        report.check(job["spec"]["template"]["spec"]["containers"][0]["args"][0] == "migrate", f"{where}: migration job does not run `neurobatch migrate`")
        for s in secrets.values():
            sa = s["metadata"].get("annotations", {})
            if "helm.sh/hook" in sa:
                report.check(sa["helm.sh/hook"] == ann.get("helm.sh/hook") and int(sa["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"]),
                             f"{where}: hook Secret/{s['metadata']['name']} is not created before the migration job")
    if merged["database"]["existingSecret"] and merged["broker"]["existingSecret"] and merged["s3"]["existingSecret"]:
        report.check(not secrets, f"{where}: Secrets {sorted(secrets)} rendered although every secret is an existing one")


def check_chart(report: Report, keys: dict, crds: dict, rendered_dir: Path) -> None:
    print(f"chart: Helm SDK {helm_sdk_version()} (helm-python-sdk), {CHART.relative_to(ROOT)}", flush=True)
    sets = sorted((CHART / "ci").glob("*-values.yaml"))
    report.check(len(sets) >= 3, f"{CHART / 'ci'}: expected at least 3 value sets, found {len(sets)}")
    with Chart.load(CHART) as chart:
        lint = helm_lint(CHART, yaml.safe_load(sets[0].read_text()), strict=True)
        for m in lint.get("messages", []):
            # Severity 1 is informational (e.g. "icon is recommended").
            if m.get("severity", 0) >= 2:
                report.fail(f"helm lint: {m.get('path')}: {m.get('error')}")
        for file in sets:
            name = file.name.removesuffix("-values.yaml")
            values = yaml.safe_load(file.read_text()) or {}
            merged = chart.merge_values(values)
            try:
                rendered = render(chart, values)
            except Exception as e:  # the SDK raises HelmRenderError/HelmValuesError with Helm's message
                report.fail(f"chart with ci/{file.name}: render failed: {e}")
                continue
            objs = objects_of(rendered)
            kinds = sorted({o["kind"] for _, o in objs})
            print(f"chart [{name}]: {len(objs)} objects: {', '.join(kinds)}", flush=True)
            out = rendered_dir / name
            out.mkdir(parents=True, exist_ok=True)
            for path, text in rendered.items():
                if not path.endswith("NOTES.txt") and text.strip():
                    (out / Path(path).name).write_text(text)
            for path, o in objs:
                validate_object(report, crds, o, f"[{name}] {Path(path).name}")
            check_semantics(report, keys, objs, merged, f"[{name}]")

        # What must not render: each case names the value to set.
        base = yaml.safe_load(sets[0].read_text())
        negative: list[tuple[str, dict, str]] = [
            ("no secrets at all", {}, "set database.url"),
            ("no broker", {"database": base["database"]}, "set broker.url"),
            ("no S3 keys", {k: base[k] for k in ("database", "broker")}, "set s3.accessKeyId"),
            ("database password in config", {**base, "config": {"database": {"url": "postgres://u:p@h/d"}}}, "holds a password"),
            ("broker password in config", {**base, "config": {"queue": {"url": "amqp://u:p@h/v"}}}, "holds a password"),
            ("file:// storage", {**base, "config": {"storage": {"url": "file:///data"}}}, "must be s3://"),
            ("KEDA over http without a management URL", {**base, "keda": {"enabled": True}}, "set broker.managementUrl"),
            ("unknown KEDA protocol", {**base, "keda": {"protocol": "mqtt"}}, "keda.protocol must be http or amqp"),
            ("a null config value", {**base, "config": {"worker": {"concurrency": None}}}, ""),
        ]
        for what, values, message in negative:
            try:
                r = render(chart, values)
                if what == "a null config value":
                    # Helm deletes keys set to null: the default stays, nothing is written for it.
                    text = r["neurobatch/templates/configmap.yaml"]
                    report.check("concurrency" not in text, f"chart: {what}: a null value was written into the configuration")
                else:
                    report.fail(f"chart: {what}: rendered, expected a failure mentioning {message!r}")
            except Exception as e:
                report.check(bool(message) and message in str(e), f"chart: {what}: failed with {str(e)!r}, expected {message!r}")


# Values documented as a whole block rather than key by key.
OPAQUE_VALUES = ("podSecurityContext", "securityContext")
OPAQUE_SUFFIXES = ("resources", "Probe", "updateStrategy")


def value_leaves(values: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        path = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v and path not in OPAQUE_VALUES and not path.endswith(OPAQUE_SUFFIXES):
            out.update(value_leaves(v, path))
        else:
            out[path] = v
    return out


def check_values_documented(report: Report) -> None:
    """values.yaml: every value commented or under a commented block, and in the README's table."""
    text = (CHART / "values.yaml").read_text()
    leaves = value_leaves(yaml.safe_load(text))
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", readme, re.M))
    for path in leaves:
        report.check(path in documented, f"{CHART.name}/README.md: value {path} is not in the table")
    for path in documented - set(leaves):
        report.fail(f"{CHART.name}/README.md: documents {path}, which values.yaml does not have")
    # Every top-level key is preceded by a comment line.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Za-z]", line):
            report.check(i > 0 and lines[i - 1].lstrip().startswith("#"), f"values.yaml:{i + 1}: {line.split(':')[0]} has no comment above it")
    print(f"values: {len(leaves)} values, all in the README's table", flush=True)


# ---------------------------------------------------------------------------------------------
# compose.yaml


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


def check_compose(report: Report, keys: dict) -> None:
    path = DEPLOY / "compose.yaml"
    doc = yaml.safe_load(path.read_text())
    services = doc.get("services", {})
    volumes = set(doc.get("volumes", {}) or {})
    secrets = doc.get("secrets", {}) or {}
    report.check({"postgres", "rabbitmq", "minio", "create-bucket", "scheduler", "worker"} <= set(services),
                 f"{path}: services {sorted(services)} lack one of postgres, rabbitmq, minio, create-bucket, scheduler, worker")
    used_volumes: set[str] = set()
    host_ports: list[str] = []
    for name, svc in services.items():
        where = f"{path.name}: service {name}"
        report.check("image" in svc or "build" in svc, f"{where}: neither image nor build")
        deps = svc.get("depends_on", {})
        for dep, cond in (deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)):
            if report.check(dep in services, f"{where}: depends_on {dep!r}, which is not a service"):
                c = (cond or {}).get("condition", "service_started")
                report.check(c in ("service_started", "service_healthy", "service_completed_successfully"), f"{where}: unknown condition {c!r}")
                if c == "service_healthy":
                    report.check("healthcheck" in services[dep], f"{where}: waits for {dep} to be healthy but {dep} has no healthcheck")
        for v in svc.get("volumes", []):
            source = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if source.startswith((".", "/", "~")):
                continue  # a bind mount
            used_volumes.add(source)
            report.check(source in volumes, f"{where}: volume {source!r} is not declared under volumes")
        mounted = set()
        for s in svc.get("secrets", []):
            s_name = s if isinstance(s, str) else s["source"]
            mounted.add(s_name)
            report.check(s_name in secrets, f"{where}: secret {s_name!r} is not declared under secrets")
        env: dict[str, str] = {}
        env_files = svc.get("env_file", [])
        for f in [env_files] if isinstance(env_files, str) else env_files:
            if report.check((DEPLOY / f).is_file(), f"{where}: env_file {f} does not exist"):
                env.update(read_env_file(DEPLOY / f))
        environment = svc.get("environment", {})
        if isinstance(environment, list):
            environment = dict(e.split("=", 1) for e in environment)
        env.update({k: str(v) for k, v in environment.items()})
        for k, v in env.items():
            check_variable(report, keys, k, where)
            if k.endswith("__FILE") and k.startswith("NEUROBATCH__"):
                report.check(v.startswith("/run/secrets/") and v.removeprefix("/run/secrets/") in mounted,
                             f"{where}: {k}={v} is not a secret the service mounts")
        if "build" in svc:
            ctx = DEPLOY / svc["build"]["context"]
            report.check((ctx / svc["build"]["dockerfile"]).is_file(), f"{where}: build dockerfile {svc['build']['dockerfile']} not under {ctx}")
        for p in svc.get("ports", []):
            host_ports.append(str(p).rsplit(":", 1)[0])
    report.check(len(host_ports) == len(set(host_ports)), f"{path.name}: a host port is published twice: {host_ports}")
    report.check(used_volumes == volumes, f"{path.name}: volumes declared but unused: {sorted(volumes - used_volumes)}")
    for s_name, s in secrets.items():
        report.check((DEPLOY / s["file"]).is_file(), f"{path.name}: secret {s_name}: file {s['file']} does not exist")
    # The broker and database URLs the stack's services use point at the stack's own services.
    for s_name, s in secrets.items():
        text = (DEPLOY / s["file"]).read_text().strip()
        host = re.sub(r"^[a-z]+://[^@]*@([^:/]+).*$", r"\1", text)
        report.check(host in services, f"{path.name}: secret {s_name} points at host {host!r}, not a service of the stack")
    print(f"compose: {len(services)} services, {len(volumes)} volumes, {len(secrets)} secrets", flush=True)


# ---------------------------------------------------------------------------------------------
# The Grafana dashboard


def check_dashboard(report: Report) -> None:
    path = DEPLOY / "grafana" / "neurobatch.json"
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        report.fail(f"{path}: not JSON: {e}")
        return
    for k in ("uid", "title", "panels", "schemaVersion", "templating"):
        report.check(k in dash, f"{path.name}: no {k!r}")
    panels = [p for p in dash.get("panels", []) if p.get("type") != "row"]
    ids = [p["id"] for p in dash.get("panels", [])]
    report.check(len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids")
    used: set[str] = set()
    for p in panels:
        where = f"{path.name}: panel {p.get('title')!r}"
        report.check(p.get("datasource", {}).get("uid") == "${datasource}", f"{where}: datasource is not the ${{datasource}} variable")
        gp = p.get("gridPos", {})
        report.check(gp.get("x", 0) + gp.get("w", 0) <= 24, f"{where}: wider than the 24-column grid")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            report.check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), f"{where}: unbalanced brackets in {expr!r}")
            for metric in re.findall(r"\bneurobatch_[a-z_]+", expr):
                base = metric
                for suffix in ("_bucket", "_sum", "_count"):
                    if metric.endswith(suffix) and metric.removesuffix(suffix) in METRICS:
                        base = metric.removesuffix(suffix)
                        report.check(METRICS[base] == "histogram", f"{where}: {metric}: {base} is a {METRICS[base]}, not a histogram")
                if report.check(base in METRICS, f"{where}: {metric} is not one of the daemon's metrics"):
                    used.add(base)
                    if METRICS[base] in ("counter", "histogram") and base == metric:
                        report.check(re.search(rf"(rate|increase)\(\s*{metric}\b", expr) is not None, f"{where}: counter {metric} used without rate() or increase()")
    report.check(used == set(METRICS), f"{path.name}: metrics never shown: {sorted(set(METRICS) - used)}")
    print(f"dashboard: {len(panels)} panels over {len(used)} metrics", flush=True)


# ---------------------------------------------------------------------------------------------
# The Dockerfiles against the layout install.sh made


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        current = ""
    return out


def check_image(report: Report, variant_layouts: dict[str, Path]) -> None:
    for name, variant in (("Dockerfile", "cpu"), ("Dockerfile.cuda", "cuda")):
        path = DEPLOY / "docker" / name
        ins = dockerfile_instructions(path)
        where = f"{path.relative_to(ROOT)}"
        args = {}
        for word, rest in ins:
            if word == "ARG" and "=" in rest:
                k, v = rest.split("=", 1)
                args[k] = v
        report.check(args.get("RUST_IMAGE", "").startswith("rust:1.95"), f"{where}: the build stage is not rust:1.95 ({args.get('RUST_IMAGE')})")
        froms = [rest for w, rest in ins if w == "FROM"]
        report.check(len(froms) >= 3 and " AS build" in froms[0], f"{where}: not a multi-stage build (build, layout, runtime)")
        final_from = froms[-1]
        expected_base = "${RUNTIME_IMAGE}" if variant == "cpu" else "${CUDA_IMAGE}"
        report.check(final_from == expected_base, f"{where}: the runtime stage is {final_from}, expected {expected_base}")
        if variant == "cpu":
            report.check("slim" in args.get("RUNTIME_IMAGE", ""), f"{where}: the runtime image is not a slim Debian ({args.get('RUNTIME_IMAGE')})")
        else:
            report.check(args.get("CUDA_IMAGE", "").startswith("nvidia/cuda:13.") and "cudnn-runtime" in args.get("CUDA_IMAGE", ""),
                         f"{where}: the CUDA image {args.get('CUDA_IMAGE')} is not CUDA 13 with cuDNN (what onnxruntime-gpu 1.31 needs)")
        users = [rest for w, rest in ins if w == "USER"]
        report.check(bool(users) and users[-1].split(":")[0] not in ("0", "root"), f"{where}: the image does not end as a non-root USER")
        entry = [rest for w, rest in ins if w == "ENTRYPOINT"]
        report.check(entry == ['["/usr/local/bin/neurobatch"]'], f"{where}: ENTRYPOINT {entry}, expected /usr/local/bin/neurobatch")
        env: dict[str, str] = {}
        for w, rest in ins:
            if w == "ENV":
                for token in shlex.split(rest):
                    if "=" in token:
                        k, v = token.split("=", 1)
                        env[k] = v
        report.check(env.get("NEUROBATCH_MODELS") == "/opt/neurobatch/models", f"{where}: NEUROBATCH_MODELS={env.get('NEUROBATCH_MODELS')}")
        report.check(bool(env.get("ORT_DYLIB_PATH")), f"{where}: no ORT_DYLIB_PATH")
        runs = " ".join(rest for w, rest in ins if w == "RUN")
        report.check(f"fetch-ort.sh {variant} " in runs and f"--variant {variant} " in runs,
                     f"{where}: fetch-ort.sh / install.sh are not run for the {variant} variant")
        for w, rest in ins:
            if w == "COPY" and not rest.startswith("--from"):
                for src in shlex.split(rest)[:-1]:
                    if not src.startswith("--"):
                        report.check((ROOT / src).exists(), f"{where}: COPY source {src} does not exist in the repository")
        ignore = (path.parent / f"{name}.dockerignore")
        report.check(ignore.is_file() and "target/" in ignore.read_text().split(), f"{where}: no {ignore.name} keeping target/ out of the context")
        layout = variant_layouts.get(variant)
        if layout is None:
            report.warn(f"{where}: no {variant} layout was made (install.sh not run for it): its paths are not checked")
            continue
        for k in ("NEUROBATCH_MODELS", "ORT_DYLIB_PATH"):
            target = layout / env[k].lstrip("/")
            report.check(target.exists(), f"{where}: {k}={env[k]} does not exist in the layout install.sh made ({layout})")
        models = layout / env["NEUROBATCH_MODELS"].lstrip("/")
        for model in ("brain-tissue", "scan-quality"):
            report.check((models / model / "manifest.toml").is_file(), f"{where}: model {model} missing under {env['NEUROBATCH_MODELS']}")
        ort = (layout / env["ORT_DYLIB_PATH"].lstrip("/"))
        report.check(ort.is_symlink() and ort.resolve().parent == ort.parent, f"{where}: {env['ORT_DYLIB_PATH']} is not a link to the versioned library beside it")
        binary = layout / "usr/local/bin/neurobatch"
        if binary.exists():
            report.check(binary.stat().st_mode & 0o111 != 0, f"{where}: /usr/local/bin/neurobatch is not executable")
    print(f"image: Dockerfiles checked against the layouts {', '.join(f'{k}={v}' for k, v in variant_layouts.items()) or '(none)'}", flush=True)


# ---------------------------------------------------------------------------------------------
# yamllint


def check_yamllint(report: Report, yamllint: str, rendered_dir: Path) -> None:
    config = DEPLOY / ".yamllint"
    for target, cwd in ((".", DEPLOY), (str(rendered_dir), rendered_dir)):
        r = subprocess.run([yamllint, "-c", str(config), "-f", "parsable", "-s", target], cwd=cwd,
                           capture_output=True, text=True)
        for line in r.stdout.splitlines():
            report.fail(f"yamllint: {line}")
        if r.returncode not in (0,) and not r.stdout.strip():
            report.fail(f"yamllint {target}: exit {r.returncode}: {r.stderr.strip()}")
        report.check(r.returncode == 0, f"yamllint {'deploy/' if target == '.' else 'rendered manifests'}: not clean")
    print("yamllint: deploy/ and the rendered manifests", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", action="append", default=[], metavar="VARIANT=DIR",
                        help="a prefix install.sh laid out for the cpu or cuda variant")
    parser.add_argument("--yamllint", required=True, help="the yamllint executable")
    args = parser.parse_args()
    layouts = {}
    for spec in args.layout:
        variant, _, path = spec.partition("=")
        layouts[variant] = Path(path)

    report = Report()
    keys = config_keys()
    crds = load_crd_validators()
    with tempfile.TemporaryDirectory(prefix="neurobatch-rendered-") as tmp:
        rendered = Path(tmp)
        steps: list[tuple[str, Callable[[], None]]] = [
            ("chart", lambda: check_chart(report, keys, crds, rendered)),
            ("values", lambda: check_values_documented(report)),
            ("compose", lambda: check_compose(report, keys)),
            ("dashboard", lambda: check_dashboard(report)),
            ("image", lambda: check_image(report, layouts)),
            ("yamllint", lambda: check_yamllint(report, args.yamllint, rendered)),
        ]
        for name, step in steps:
            try:
                step()
            except Exception as e:  # a crash in one step is a failure of that step, the others still run
                report.fail(f"{name}: {type(e).__name__}: {e}")
    print(f"check-deploy: {report.passed} checks passed, {len(report.failures)} failed, {len(report.warnings)} warnings", flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
