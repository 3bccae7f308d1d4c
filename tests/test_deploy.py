"""deploy/: every file parses and agrees with the daemon's own CLI, config, endpoints and metrics.

No container engine or init system runs here, so the files are checked statically, and the daemon
is started the way the image's ENTRYPOINT would start it. `systemd-analyze verify` runs when the
binary exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from proxy.cli import _parser
from proxy.config import Config, parse_config, parse_duration
from tests.conftest import Daemon, clean_env, free_port, http_get, wait_healthy

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "wheelwell.service"
DOCKERFILE = DEPLOY / "container" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "container" / "Dockerfile.dockerignore"
K8S = DEPLOY / "kubernetes"
K8S_EXAMPLES = K8S / "examples"
#: Helm templates are YAML only once rendered (tests/test_deploy_kubernetes.py checks them)
HELM_TEMPLATES = DEPLOY / "helm" / "wheelwell" / "templates"
SCRAPE = DEPLOY / "prometheus" / "scrape.yaml"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
PORT = 3141
UID = 10001
DEAD_UPSTREAM = "http://127.0.0.1:9/simple/"  # discard port: nothing is ever fetched from it
ROOT_PASSWORD = "deploy-test-secret"
#: metrics that alert rules may name before the daemon exports them, and the milestone label
#: that marks those rules
FUTURE_METRICS: dict[str, str] = {}
METRIC_RE = re.compile(r"\bwheelwell_[a-z0-9_]+")

#: unit keys whose value is fixed (the last assignment counts)
UNIT_SETTINGS = {
    "Type": "exec",
    "DynamicUser": "yes",
    "StateDirectory": "wheelwell",
    "EnvironmentFile": "-/etc/wheelwell/env",
    "Restart": "on-failure",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
}


# ---- readers -----------------------------------------------------------------------------------


def load_docs(path: Path) -> list[Any]:
    return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def load_one(path: Path) -> dict[str, Any]:
    (doc,) = load_docs(path)
    assert isinstance(doc, dict), path
    return doc


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """systemd unit → {section: [(key, value), …]}, keeping repeated keys in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"setting outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(unit: dict[str, list[tuple[str, str]]], key: str) -> list[str]:
    return [value for k, value in unit["Service"] if k == key]


def unit_value(unit: dict[str, list[tuple[str, str]]], key: str) -> str:
    values = unit_values(unit, key)
    assert values, f"{key}= missing from {UNIT.name}"
    return values[-1]


def parse_dockerfile(text: str) -> list[list[tuple[str, str]]]:
    """Dockerfile → stages, each a list of (INSTRUCTION, arguments) with continuations joined."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if not stages and instruction.upper() == "ARG":
            continue  # a global ARG (the base image): only FROM lines can use it
        assert stages, f"instruction before FROM: {line}"
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def exec_form(args: str) -> list[str]:
    argv = json.loads(args)
    assert isinstance(argv, list), args
    assert all(isinstance(a, str) for a in argv), args
    return argv


def docker_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions(stage, "ENV"):
        for word in shlex.split(args):
            key, sep, value = word.partition("=")
            assert sep, f"use ENV KEY=VALUE: {args}"
            env[key] = value
    return env


def healthcheck_argv(stage: list[tuple[str, str]]) -> list[str]:
    (check,) = instructions(stage, "HEALTHCHECK")
    options, sep, command = check.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {check}"
    assert "--timeout=" in options, "a hung check must not hang forever"
    return exec_form(command)


def parse_serve(argv: list[str]) -> argparse.Namespace:
    """`argv` after the program name, through the daemon's real parser; it must be `serve`."""
    args = _parser().parse_args(argv)
    assert args.command == "serve", argv
    return args


def k8s_kinds() -> dict[str, list[str]]:
    """Kinds by file, for every file `kubectl apply -f` reads in deploy/kubernetes and examples/."""
    paths = [p for d in (K8S, K8S_EXAMPLES) for p in d.glob("*") if p.suffix in (".yaml", ".yml")]
    return {str(p.relative_to(K8S)): [doc["kind"] for doc in load_docs(p)] for p in paths}


def k8s_doc(name: str, kind: str) -> dict[str, Any]:
    """`name` relative to deploy/kubernetes (examples/… for the examples)."""
    (doc,) = [d for d in load_docs(K8S / name) if d["kind"] == kind]
    assert isinstance(doc, dict)
    return doc


def configmap_text() -> str:
    text = k8s_doc("configmap.yaml", "ConfigMap")["data"]["wheelwell.yaml"]
    assert isinstance(text, str)
    return text


def example_configs() -> dict[str, str]:
    """Every wheelwell config under deploy/, by a name for messages."""
    return {
        "deploy/systemd/wheelwell.yaml": (DEPLOY / "systemd" / "wheelwell.yaml").read_text(),
        "deploy/container/wheelwell.yaml": (DEPLOY / "container" / "wheelwell.yaml").read_text(),
        "deploy/kubernetes/configmap.yaml#wheelwell.yaml": configmap_text(),
    }


def container_named(containers: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (container,) = [c for c in containers if c["name"] == name]
    assert isinstance(container, dict)
    return container


def probe_target(container: dict[str, Any], probe: str) -> tuple[str, int]:
    get = container[probe]["httpGet"]
    return get["path"], get["port"]


def wheelwell_program() -> list[str]:
    """What `wheelwell` on the image's PATH is: this venv's console script (else `-m proxy`)."""
    script = Path(sys.executable).with_name("wheelwell")
    return [str(script)] if script.exists() else [sys.executable, "-m", "proxy"]


def run_python(code: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
    )


@contextlib.contextmanager
def open_daemon(
    argv: list[str], cwd: Path, port: int, env: dict[str, str], log_path: Path
) -> Iterator[Daemon]:
    """Start `argv`, wait for /+health; at the end SIGTERM it and require a clean exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    daemon = Daemon(f"http://127.0.0.1:{port}", Path(), Path(), log_path, process)
    try:
        wait_healthy(daemon)
        yield daemon
    finally:
        code = daemon.stop()
    assert code == 0, f"exit {code} after SIGTERM:\n{daemon.log()}"


# ---- every file parses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    sorted(p for p in DEPLOY.rglob("*.yaml") if HELM_TEMPLATES not in p.parents),
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_every_yaml_parses_into_mappings(path: Path) -> None:
    docs = load_docs(path)
    assert docs
    assert all(isinstance(doc, dict) for doc in docs)


def test_kubernetes_files_hold_the_expected_kinds() -> None:
    assert k8s_kinds() == {
        "statefulset.yaml": ["StatefulSet"],
        "service.yaml": ["Service", "Service", "Service"],
        "configmap.yaml": ["ConfigMap"],
        "networkpolicy.yaml": ["NetworkPolicy"],
        "examples/backup-cronjob.yaml": ["PersistentVolumeClaim", "CronJob", "NetworkPolicy"],
        "examples/sidecar-ci-job.yaml": ["Job"],
        "examples/sidecar-ci-networkpolicy.yaml": ["NetworkPolicy"],
    }
    api_versions = {
        "StatefulSet": "apps/v1",
        "Job": "batch/v1",
        "CronJob": "batch/v1",
        "NetworkPolicy": "networking.k8s.io/v1",
    }
    for name in k8s_kinds():
        for doc in load_docs(K8S / name):
            assert doc["apiVersion"] == api_versions.get(doc["kind"], "v1"), name
            assert doc["metadata"]["name"], name


@pytest.mark.parametrize("name", sorted(example_configs()))
def test_example_configs_pass_the_daemons_validation(name: str) -> None:
    cfg = parse_config(example_configs()[name], name)
    assert cfg.server.port == PORT
    assert cfg.storage.data_dir.is_absolute()
    assert cfg.upstream.url == ""  # the deployment's pip settings decide, never a host name here


# ---- systemd -----------------------------------------------------------------------------------


def unit() -> dict[str, list[tuple[str, str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def systemd_config() -> Config:
    path = DEPLOY / "systemd" / "wheelwell.yaml"
    return parse_config(path.read_text(), str(path))


def test_unit_exec_start_parses_with_the_cli() -> None:
    service = unit()
    (exec_start,) = unit_values(service, "ExecStart")
    program, *argv = shlex.split(exec_start)
    assert Path(program).is_absolute()
    assert Path(program).name == "wheelwell"
    args = parse_serve(argv)
    state_dir = Path("/var/lib") / unit_value(service, "StateDirectory")
    assert args.data_dir == state_dir
    assert args.data_dir == systemd_config().storage.data_dir
    assert args.config == Path("/etc/wheelwell/wheelwell.yaml")
    assert unit_value(service, "WorkingDirectory") == str(state_dir)


def test_unit_reload_sends_sighup() -> None:
    """`systemctl reload wheelwell` (the README's way to reload the TLS certificate) works."""
    (reload,) = unit_values(unit(), "ExecReload")
    program, *argv = shlex.split(reload)
    # the shell's built-in kill: /bin/kill (procps) is missing from a minimal Debian
    assert program == "/bin/sh"
    assert argv == ["-c", "kill -HUP $$MAINPID"]  # $$: systemd passes a literal $ to the shell


def test_unit_is_hardened() -> None:
    service = unit()
    assert {key: unit_value(service, key) for key in UNIT_SETTINGS} == UNIT_SETTINGS
    assert "@system-service" in unit_values(service, "SystemCallFilter")
    families = set(unit_value(service, "RestrictAddressFamilies").split())
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "User" not in dict(service["Service"])  # DynamicUser picks it
    assert "network-online.target" in dict(unit()["Unit"])["After"]


def test_unit_stops_later_than_graceful_shutdown() -> None:
    stop = parse_duration(unit_value(unit(), "TimeoutStopSec"))
    assert stop > systemd_config().server.shutdown_timeout
    assert stop > parse_config("", "<defaults>").server.shutdown_timeout


def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # verify checks that ExecStart's program exists: point it at this venv's wheelwell.
    (program, *_) = wheelwell_program()
    text = UNIT.read_text().replace("/opt/wheelwell/bin/wheelwell", program)
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    verify = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "wheelwell.service" not in verify.stderr, verify.stderr  # no warnings about the unit
    # Exposure 2.0 or less is systemd's "OK" band (the threshold is in tenths).
    security = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=20", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr


# ---- container ---------------------------------------------------------------------------------


def stages() -> list[list[tuple[str, str]]]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def test_dockerfile_is_multi_stage_with_a_slim_runtime() -> None:
    builder, runtime = stages()
    assert instructions(builder, "FROM") == ["${BASE} AS builder"]
    assert any("python3 -m venv /opt/wheelwell" in run for run in instructions(builder, "RUN"))
    assert instructions(runtime, "FROM") == ["${BASE}"]  # ARG BASE=python:3.11-slim
    assert "--from=builder /opt/wheelwell /opt/wheelwell" in instructions(runtime, "COPY")
    text = DOCKERFILE.read_text()
    assert "gosu" not in text
    assert "su-exec" not in text


def test_dockerfile_dependency_layer_comes_before_the_sources() -> None:
    """The pinned requirements are copied alone, so source edits keep the layer cached."""
    builder, _ = stages()
    copies = instructions(builder, "COPY")
    assert copies[0] == (
        "deploy/container/requirements.txt deploy/container/build-requirements.txt ./"
    )
    assert copies[1:] == ["pyproject.toml README.md ./", "proxy ./proxy"]


def test_dockerfile_runs_as_a_fixed_non_root_uid() -> None:
    (_, runtime) = stages()
    users = instructions(runtime, "USER")
    assert users == [f"{UID}:{UID}"]
    # USER comes before anything that runs at run time; nothing after it switches back.
    names = [instruction for instruction, _ in runtime]
    assert names.index("USER") < names.index("ENTRYPOINT")


def test_dockerfile_environment_volumes_and_port() -> None:
    (_, runtime) = stages()
    env = docker_env(runtime)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["WHEELWELL_CONFIG"] == "/etc/wheelwell/wheelwell.yaml"
    assert f"deploy/container/wheelwell.yaml {env['WHEELWELL_CONFIG']}" in instructions(
        runtime, "COPY"
    )
    # No anonymous volumes: /data and /wheelhouse are mounted explicitly (docs/deploy.md).
    assert instructions(runtime, "VOLUME") == []
    assert instructions(runtime, "EXPOSE") == [str(PORT)]


def test_dockerfile_entrypoint_parses_with_the_cli() -> None:
    (_, runtime) = stages()
    (entrypoint,) = instructions(runtime, "ENTRYPOINT")
    argv = exec_form(entrypoint) + [a for c in instructions(runtime, "CMD") for a in exec_form(c)]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts
    args = parse_serve(argv[1:])
    assert args.config is None  # WHEELWELL_CONFIG names it
    container = parse_config((DEPLOY / "container" / "wheelwell.yaml").read_text(), "container")
    assert container.storage.data_dir == Path("/data")
    assert container.server.host == "0.0.0.0"
    assert [i.wheelhouse for i in container.indexes if i.wheelhouse] == [(Path("/wheelhouse"),)]
    # `docker stop` waits 10s by default before SIGKILL.
    assert container.server.shutdown_timeout < 10


def test_dockerfile_healthcheck_asks_the_daemon_where_it_listens() -> None:
    """`wheelwell healthcheck`, not a fixed address: --port and WHEELWELL_SERVER_PORT apply."""
    (_, runtime) = stages()
    argv = healthcheck_argv(runtime)
    assert argv == ["wheelwell", "healthcheck"]
    assert _parser().parse_args(argv[1:]).command == "healthcheck"


def test_dockerignore_admits_exactly_what_the_dockerfile_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    copied: set[str] = set()
    for stage in stages():
        for args in instructions(stage, "COPY"):
            if not args.startswith("--from="):
                copied.update(s.rstrip("/") for s in args.split()[:-1])
    assert copied == allowed
    assert all((REPO / path).exists() for path in copied)


# ---- kubernetes --------------------------------------------------------------------------------


def test_statefulset_probes_port_and_scrape_annotations() -> None:
    sts = k8s_doc("statefulset.yaml", "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    pod = sts["spec"]["template"]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/+metrics",
    }
    container = container_named(pod["spec"]["containers"], "wheelwell")
    assert [p["containerPort"] for p in container["ports"]] == [PORT]
    assert probe_target(container, "livenessProbe") == ("/+health", PORT)
    assert probe_target(container, "readinessProbe") == ("/+ready", PORT)
    assert probe_target(container, "startupProbe") == ("/+health", PORT)
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    args = parse_serve(["serve", *container.get("args", [])])
    assert args.data_dir in (None, Path("/data"))


def test_statefulset_security_volumes_and_secret() -> None:
    sts = k8s_doc("statefulset.yaml", "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID  # the Dockerfile's USER
    container = container_named(pod["containers"], "wheelwell")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    assert mounts["/data"] in claims
    assert "emptyDir" in volumes[mounts["/tmp"]]
    config_volume = volumes[mounts["/etc/wheelwell"]]["configMap"]["name"]
    assert config_volume == k8s_doc("configmap.yaml", "ConfigMap")["metadata"]["name"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WHEELWELL_CONFIG"]["value"] == "/etc/wheelwell/wheelwell.yaml"
    ref = env["WHEELWELL_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"]
    # No Secret is shipped (tests/test_deploy_kubernetes.py): the operator creates this one.
    assert (ref["name"], ref["key"], ref["optional"]) == ("wheelwell-root", "password", True)
    cfg = parse_config(configmap_text(), "configmap")
    assert cfg.storage.data_dir == Path("/data")
    assert pod["terminationGracePeriodSeconds"] > cfg.server.shutdown_timeout


def test_services_select_the_statefulset() -> None:
    """The headless and client Services select every pod; wheelwell-primary pod 0 alone."""
    sts = k8s_doc("statefulset.yaml", "StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"] == labels
    services = {doc["metadata"]["name"]: doc["spec"] for doc in load_docs(K8S / "service.yaml")}
    assert services[sts["spec"]["serviceName"]]["clusterIP"] == "None"
    pod_0 = {"statefulset.kubernetes.io/pod-name": f"{sts['metadata']['name']}-0"}
    for name, spec in services.items():
        assert spec["selector"] == (labels | pod_0 if name == "wheelwell-primary" else labels)
        assert [(p["port"], p["targetPort"]) for p in spec["ports"]] == [(PORT, "http")]


def sidecar_job() -> tuple[dict[str, Any], dict[str, Any]]:
    """(wheelwell sidecar, CI container) of the sidecar Job."""
    pod = k8s_doc("examples/sidecar-ci-job.yaml", "Job")["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    return container_named(pod["initContainers"], "wheelwell"), container_named(
        pod["containers"], "ci"
    )


def ci_wait_program(ci: dict[str, Any]) -> str:
    """The `python -c '…'` program with which the CI container waits for /+ready."""
    script = ci["command"][-1]
    match = re.search(r"python -c '\n(.*?)\n'", script, re.DOTALL)
    assert match, script
    return match.group(1)


def probe_reaches(container: dict[str, Any], kind: str, host: str) -> str:
    """The path a probe asks for, checked to reach a server bound to `host`.

    kubelet sends an httpGet probe to the pod's IP, which a loopback-bound server never
    answers; an exec probe runs inside the container and may use loopback.
    """
    probe = container[kind]
    if "httpGet" in probe:
        assert host in ("0.0.0.0", "::"), f"{kind}: httpGet to the pod IP, server on {host}"
        path, port = probe_target(container, kind)
        assert port == PORT
        return str(path)
    program = probe["exec"]["command"][-1]
    match = re.search(r"http://([^:/]+):(\d+)(/[^'\"]+)", program)
    assert match, program
    assert (match[1], int(match[2])) == (host, PORT), kind
    return match[3]


def test_sidecar_job_runs_wheelwell_as_a_native_sidecar() -> None:
    sidecar, ci = sidecar_job()
    assert sidecar["restartPolicy"] == "Always"
    args = parse_serve(["serve", *sidecar["args"]])
    assert args.host == "127.0.0.1"  # nothing outside the pod reaches the sidecar
    assert probe_reaches(sidecar, "startupProbe", args.host) == "/+ready"
    assert probe_reaches(sidecar, "livenessProbe", args.host) == "/+health"
    assert probe_reaches(sidecar, "readinessProbe", args.host) == "/+ready"
    assert args.data_dir == Path("/data")
    # The upstream is the cluster's wheelwell, by its ClusterIP Service's name.
    services = {doc["metadata"]["name"]: doc["spec"] for doc in load_docs(K8S / "service.yaml")}
    assert "clusterIP" not in services["wheelwell"]
    assert args.upstream == f"http://wheelwell:{PORT}/root/pypi/+simple/"
    script = ci["command"][-1]
    assert f"http://127.0.0.1:{PORT}/+ready" in ci_wait_program(ci)
    assert f"pip install --index-url http://127.0.0.1:{PORT}/root/pypi/+simple/" in script
    assert script.index("/+ready") < script.index("pip install")


def test_sidecar_job_is_bounded() -> None:
    """A job that never finishes (a sidecar never ready, a hung install) ends, within limits."""
    job = k8s_doc("examples/sidecar-ci-job.yaml", "Job")
    assert 0 < job["spec"]["activeDeadlineSeconds"] <= 6 * 3600
    for container in sidecar_job():
        assert container["resources"]["limits"]["memory"]


# ---- prometheus --------------------------------------------------------------------------------


def test_scrape_config_reads_the_metrics_path_and_annotations() -> None:
    jobs = {job["job_name"]: job for job in load_one(SCRAPE)["scrape_configs"]}
    static = jobs["wheelwell"]
    assert static["metrics_path"] == "/+metrics"
    assert static["static_configs"] == [{"targets": [f"127.0.0.1:{PORT}"]}]
    discovered = jobs["wheelwell-kubernetes"]
    assert discovered["kubernetes_sd_configs"] == [{"role": "pod"}]
    sources = {s for r in discovered["relabel_configs"] for s in r.get("source_labels", [])}
    sts = k8s_doc("statefulset.yaml", "StatefulSet")
    for annotation in sts["spec"]["template"]["metadata"]["annotations"]:
        meta = "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-z0-9]", "_", annotation)
        assert meta in sources


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_one(ALERTS)["groups"] for rule in group["rules"]]


def test_alert_rules_cover_the_failure_modes() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) == {
        "WheelwellDown",
        "WheelwellUpstreamFailing",
        "WheelwellUpstreamResting",
        "WheelwellServingStalePages",
        "WheelwellHashMismatch",
        "WheelwellHighErrorRate",
        "WheelwellStoreOverMaxSize",
        "WheelwellDataDirLowSpace",
        "WheelwellDataDirFillingUp",
        "WheelwellCacheUnbounded",
        "WheelwellReplicaBehind",
        "WheelwellReplicaFarBehind",
        "WheelwellReplicaSilent",
        "WheelwellReplicaLost",
    }
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
    assert 'outcome="error"' in rules["WheelwellUpstreamFailing"]["expr"]
    assert rules["WheelwellUpstreamFailing"]["for"] == "5m"
    assert 'outcome="stale"' in rules["WheelwellServingStalePages"]["expr"]
    assert 'status=~"5.."' in rules["WheelwellHighErrorRate"]["expr"]
    assert rules["WheelwellDown"]["expr"].startswith("up{")


def exported_metric_names(text: str) -> set[str]:
    """Every series name the exposition can hold, including families with no samples yet."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_alert_rules_name_only_exported_metrics(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "wheelwell.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"host": "127.0.0.1", "shutdown_timeout": "3s"},
                "storage": {"data_dir": str(tmp_path / "data")},
                "upstream": {"url": DEAD_UPSTREAM},
            }
        )
    )
    argv = [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(port)]
    env = clean_env(PYTHONUNBUFFERED="1")
    with open_daemon(argv, tmp_path, port, env, tmp_path / "daemon.log") as daemon:
        scraped = http_get(f"{daemon.url}/+metrics")
    assert scraped.status == 200
    exported = exported_metric_names(scraped.body.decode())
    assert "wheelwell_upstream_requests_total" in exported  # the parser saw the families
    for rule in alert_rules():
        used = set(METRIC_RE.findall(rule["expr"]))
        milestone = rule["labels"].get("milestone")
        if milestone is None:
            assert used <= exported, (rule["alert"], used - exported)
        else:
            # A rule for a later milestone: once its metric exists, drop the label.
            assert used - exported, (rule["alert"], "its metric exists now")
            assert {FUTURE_METRICS.get(m) for m in used - exported} == {milestone}


# ---- the daemon, started as the image's ENTRYPOINT starts it -----------------------------------


@pytest.fixture
def container_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """ENTRYPOINT argv and ENV of the image, the image's config with its volumes in tmp_path.

    Only the paths, host and port are rewritten: /data and /wheelhouse become temporary
    directories, and the daemon binds a free loopback port rather than 0.0.0.0:3141.
    The upstream comes from PIP_INDEX_URL, as `docker run -e PIP_INDEX_URL=…` would set it.
    """
    (_, runtime) = stages()
    (entrypoint,) = instructions(runtime, "ENTRYPOINT")
    program, *argv = exec_form(entrypoint)
    assert program == "wheelwell"
    config = yaml.safe_load((DEPLOY / "container" / "wheelwell.yaml").read_text())
    volumes = {"/data": tmp_path / "data", "/wheelhouse": tmp_path / "wheelhouse"}
    for path in volumes.values():
        path.mkdir()
    port = free_port()
    config["server"].update(host="127.0.0.1", port=port)
    config["storage"]["data_dir"] = str(volumes[config["storage"]["data_dir"]])
    for index in config["indexes"]:
        index["wheelhouse"] = [str(volumes[w]) for w in index.get("wheelhouse", [])]
    image_env = docker_env(runtime)
    config_path = tmp_path / "etc" / Path(image_env["WHEELWELL_CONFIG"]).name
    config_path.parent.mkdir()
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = clean_env(
        **{**image_env, "WHEELWELL_CONFIG": str(config_path)},
        PIP_INDEX_URL=DEAD_UPSTREAM,
        WHEELWELL_ROOT_PASSWORD=ROOT_PASSWORD,
    )
    workdir = tmp_path / "cwd"  # the image has no WORKDIR: nothing may land in the cwd
    workdir.mkdir()
    log_path = tmp_path / "daemon.log"
    with open_daemon([*wheelwell_program(), *argv], workdir, port, env, log_path) as daemon:
        yield daemon
    assert list(workdir.iterdir()) == []


def test_container_entrypoint_serves_health_and_ready(container_daemon: Daemon) -> None:
    health = http_get(f"{container_daemon.url}/+health")
    assert health.status == 200
    assert json.loads(health.body) == {"status": "ok"}
    ready = http_get(f"{container_daemon.url}/+ready")
    assert ready.status == 200, ready.body
    assert "listening on" in container_daemon.log()
    assert ROOT_PASSWORD not in container_daemon.log()


def run_healthcheck(config_path: Path) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, with the image's env pointing at `config_path`."""
    (_, runtime) = stages()
    program, *argv = healthcheck_argv(runtime)
    assert program == "wheelwell"
    env = clean_env(**{**docker_env(runtime), "WHEELWELL_CONFIG": str(config_path)})
    return subprocess.run(
        [*wheelwell_program(), *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def test_container_healthcheck_command_passes(container_daemon: Daemon, tmp_path: Path) -> None:
    """The daemon listens on a free port, not 3141: the check finds it all the same."""
    result = run_healthcheck(tmp_path / "etc" / "wheelwell.yaml")
    assert result.returncode == 0, result.stderr


def test_healthcheck_command_fails_without_a_daemon(tmp_path: Path) -> None:
    config = yaml.safe_load((DEPLOY / "container" / "wheelwell.yaml").read_text())
    config["storage"]["data_dir"] = str(tmp_path / "data")
    (tmp_path / "data").mkdir()
    config_path = tmp_path / "wheelwell.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert run_healthcheck(config_path).returncode == 1


def test_ci_wait_script_passes_once_ready(container_daemon: Daemon) -> None:
    _, ci = sidecar_job()
    port = container_daemon.url.rsplit(":", 1)[1]
    result = run_python(ci_wait_program(ci).replace(f":{PORT}/", f":{port}/"))
    assert result.returncode == 0, result.stderr


def test_container_entrypoint_exits_cleanly_on_sigterm(container_daemon: Daemon) -> None:
    assert container_daemon.stop() == 0, container_daemon.log()
    assert "Traceback" not in container_daemon.log()
