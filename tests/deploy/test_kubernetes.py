"""The Kubernetes manifests and the Helm chart against Kubernetes' own schemas, offline.

kubernetes-validate (the deploy extra) carries the OpenAPI schemas of each Kubernetes release;
strict mode rejects fields the API does not know, which the API server would drop silently. The
chart is rendered by a real `helm` when the machine has one (no Debian package or well-known
package-index wheel ships it, so `make test-deploy` cannot install it); the static agreement of
its values with the manifests is checked in tests/test_deploy_kubernetes.py either way.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import MIN_SECRET_LENGTH, parse_config
from tests.test_deploy_kubernetes import (
    CHART,
    EXAMPLES,
    K8S,
    PORT,
    applied_files,
    container_named,
    load_docs,
    statefulset,
    wheelwell_container,
)

#: the oldest release the manifests are for (native sidecars, Chart.yaml's kubeVersion) and the
#: newest the installed kubernetes-validate knows (its default)
OLDEST = "1.29"
#: CRDs have no schema in kubernetes-validate; these are checked by hand below
CRD_KINDS = {"ServiceMonitor"}


def need_validator() -> None:
    """Skip unless kubernetes-validate is installed (make test-deploy installs the deploy extra)."""
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.skip("kubernetes-validate is not installed (pip install -e '.[deploy]')")


def need_helm() -> str:
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not on PATH (no Debian package ships it; on PyPI only as a library)")
    return helm


def offline(argv: list[str]) -> list[str]:
    """`argv` in a network namespace of its own when possible: proof that it needs no network."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--net", *argv]
    return argv


def validate(paths: list[Path], *versions: str) -> dict[str, str]:
    """Strict validation of every document in `paths` → {file: output}; every document must
    have had a schema (an unknown kind only warns, so it is refused here)."""
    argv = [sys.executable, "-m", "kubernetes_validate", "--strict"]
    for version in versions:
        argv += ["-k", version]
    result = subprocess.run(
        offline([*argv, *map(str, paths)]), capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARN" not in output, output
    assert "ERROR" not in output, output
    counts = {str(p): output.count(f"{p} passed") for p in paths}
    for path in paths:
        expected = len(load_docs(path)) * max(1, len(versions))
        assert counts[str(path)] == expected, output
    return {str(p): output for p in paths}


def manifest_paths() -> list[Path]:
    return [*applied_files(K8S), *applied_files(EXAMPLES)]


def test_validator_is_strict_and_offline(tmp_path: Path) -> None:
    """A misspelled field must fail: otherwise the passes below would prove nothing."""
    need_validator()
    bad = tmp_path / "bad.yaml"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}
    bad.write_text(yaml.safe_dump({**service, "spec": {"prots": []}}))
    argv = [sys.executable, "-m", "kubernetes_validate", "--strict", str(bad)]
    result = subprocess.run(offline(argv), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "prots" in result.stdout + result.stderr


@pytest.mark.parametrize("path", manifest_paths(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_passes_the_kubernetes_schemas(path: Path) -> None:
    need_validator()
    validate([path], OLDEST)
    validate([path])  # the newest release kubernetes-validate knows


# ---- the Helm chart ----------------------------------------------------------------------------


def helm(*args: str) -> str:
    result = subprocess.run(
        [need_helm(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def render(tmp_path: Path, *sets: str) -> tuple[Path, list[dict[str, Any]]]:
    """`helm template` of the chart with `--set` values → (file, documents)."""
    argv = ["template", "ww", str(CHART), "--namespace", "wwh3"]
    for value in sets:
        argv += ["--set", value]
    out = tmp_path / "rendered.yaml"
    out.write_text(helm(*argv))
    return out, load_docs(out)


def rendered(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def test_helm_lint_passes() -> None:
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), "--set", "serviceMonitor.enabled=true")


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("serviceMonitor.enabled=true", "rootPassword.existingSecret=mine"),
        ("networkPolicy.enabled=false", "persistence.storageClass=fast"),
        ("replicaCount=3", "replication.existingSecret=ours", "rootPassword.existingSecret=mine"),
    ],
    ids=["defaults", "servicemonitor-existing-secret", "no-networkpolicy", "replicas"],
)
def test_helm_template_passes_the_kubernetes_schemas(tmp_path: Path, sets: tuple[str, ...]) -> None:
    need_validator()
    out, docs = render(tmp_path, *sets)
    core = tmp_path / "core.yaml"
    core.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] not in CRD_KINDS]))
    validate([core], OLDEST)
    validate([core])
    for monitor in rendered(docs, "ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["spec"]["endpoints"][0]["path"] == "/+metrics"
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [
            s
            for s in rendered(docs, "Service")
            if selector.items() <= s["metadata"]["labels"].items()
        ]
        assert [s["spec"].get("clusterIP") for s in selected] == [None]  # not the headless one
    assert out.exists()


def test_helm_template_agrees_with_the_plain_manifests(tmp_path: Path) -> None:
    _, docs = render(tmp_path)
    assert sorted(d["kind"] for d in docs) == [
        "ConfigMap", "NetworkPolicy", "Secret", "Secret", "Service", "Service", "Service",
        "StatefulSet",
    ]  # fmt: skip
    (sts,) = rendered(docs, "StatefulSet")
    plain = statefulset()
    pod, plain_pod = sts["spec"]["template"]["spec"], plain["spec"]["template"]["spec"]
    container = container_named(pod["containers"], "wheelwell")
    plain_container = wheelwell_container()
    for key in ("image", "command", "args", "ports", "livenessProbe", "readinessProbe"):
        assert container[key] == plain_container[key], key
    for key in ("startupProbe", "securityContext", "resources", "volumeMounts"):
        assert container[key] == plain_container[key], key
    for key in ("securityContext", "terminationGracePeriodSeconds", "enableServiceLinks"):
        assert pod[key] == plain_pod[key], key
    assert sts["spec"]["replicas"] == plain["spec"]["replicas"] == 1
    assert (
        sts["spec"]["volumeClaimTemplates"][0]["spec"]
        == (plain["spec"]["volumeClaimTemplates"][0]["spec"])
    )
    (configmap,) = rendered(docs, "ConfigMap")
    cfg = parse_config(configmap["data"]["wheelwell.yaml"], "rendered configmap")
    assert pod["terminationGracePeriodSeconds"] > cfg.server.shutdown_timeout + 3
    assert cfg.server.port == PORT
    env = {e["name"]: e for e in container["env"]}
    plain_env = {e["name"]: e for e in plain_container["env"]}
    assert list(env) == list(plain_env)  # the same variables, in the same order ($(POD_NAME))
    secrets = {s["metadata"]["name"]: s for s in rendered(docs, "Secret")}
    for variable in ("WHEELWELL_ROOT_PASSWORD", "WHEELWELL_REPLICATION_SECRET"):
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        secret = secrets[ref["name"]]
        assert ref["key"] in secret["data"], variable
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    generated = base64.b64decode(secrets["ww-wheelwell-replication"]["data"]["secret"])
    assert len(generated) >= MIN_SECRET_LENGTH
    services = {s["metadata"]["name"]: s["spec"] for s in rendered(docs, "Service")}
    primary = services["ww-wheelwell-primary"]
    assert primary["selector"]["statefulset.kubernetes.io/pod-name"] == "ww-wheelwell-0"
    assert primary["publishNotReadyAddresses"] is True
    assert env["PRIMARY_URL"]["value"] == f"http://ww-wheelwell-primary:{PORT}"
    assert env["WHEELWELL_REPLICATION_OUTSIDE_URL"]["value"] == (
        f"http://$(POD_NAME).ww-wheelwell-headless:{PORT}"
    )


def test_helm_replica_count_scales_the_statefulset_only(tmp_path: Path) -> None:
    """replicaCount=3: pod 0 the primary and two replicas; nothing else changes."""
    _, one = render(tmp_path)
    _, three = render(tmp_path, "replicaCount=3")
    (sts,) = rendered(three, "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    for doc in three:
        (same,) = [
            d
            for d in one
            if (d["kind"], d["metadata"]["name"]) == (doc["kind"], doc["metadata"]["name"])
        ]
        if doc["kind"] not in ("StatefulSet", "Secret"):  # Secrets: random without a cluster
            assert doc == same, doc["metadata"]["name"]
