"""Static checks of deploy/kubernetes and the Helm chart deploy/helm/wheelwell (no cluster or helm).

What `kubectl apply -f deploy/kubernetes/` creates is what a real install needs and nothing
insecure; the chart's values agree with the plain manifests on what matters. Schema validation
and `helm lint`/`helm template` run in tests/deploy/test_kubernetes.py (make test-deploy).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import parse_config
from proxy.yamlconv import parse_size

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "kubernetes"
EXAMPLES = K8S / "examples"
KUSTOMIZATION = K8S / "Kustomization"
CHART = REPO / "deploy" / "helm" / "wheelwell"
PORT = 3141
#: what kubectl apply -f DIR reads (non-recursively)
KUBECTL_SUFFIXES = (".yaml", ".yml", ".json")
#: registry hosts that can never be a real registry (RFC 2606 / RFC 6761 names, ICANN's .internal)
PLACEHOLDER_HOST = re.compile(r"^[a-z0-9.-]+\.(example|internal|invalid|test)$")
#: Kubernetes quantity suffixes → multiplier
QUANTITY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "k": 1000, "M": 1000**2}
QUANTITY |= {"G": 1000**3, "T": 1000**4, "": 1}


def load_docs(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    assert all(isinstance(doc, dict) for doc in docs), path
    return docs


def applied_files(directory: Path = K8S) -> list[Path]:
    """The files `kubectl apply -f DIRECTORY` reads."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in KUBECTL_SUFFIXES)


def applied_docs(directory: Path = K8S) -> list[dict[str, Any]]:
    return [doc for path in applied_files(directory) for doc in load_docs(path)]


def doc_of(path: Path, kind: str) -> dict[str, Any]:
    (doc,) = [d for d in load_docs(path) if d["kind"] == kind]
    return doc


def statefulset() -> dict[str, Any]:
    return doc_of(K8S / "statefulset.yaml", "StatefulSet")


def container_named(containers: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (container,) = [c for c in containers if c["name"] == name]
    return container


def wheelwell_container() -> dict[str, Any]:
    return container_named(statefulset()["spec"]["template"]["spec"]["containers"], "wheelwell")


def sidecar_pod() -> dict[str, Any]:
    pod = doc_of(EXAMPLES / "sidecar-ci-job.yaml", "Job")["spec"]["template"]
    assert isinstance(pod, dict)
    return pod


def configmap_config() -> dict[str, Any]:
    text = doc_of(K8S / "configmap.yaml", "ConfigMap")["data"]["wheelwell.yaml"]
    config = yaml.safe_load(text)
    assert isinstance(config, dict)
    return config


def quantity(value: str) -> int:
    """A Kubernetes quantity (`50Gi`, `512M`) → bytes."""
    match = re.fullmatch(r"(\d+)([KMGT]i|[kMGT]|)", value)
    assert match, value
    return int(match[1]) * QUANTITY[match[2]]


def claim_storage() -> int:
    (claim,) = statefulset()["spec"]["volumeClaimTemplates"]
    return quantity(claim["spec"]["resources"]["requests"]["storage"])


def image_parts(image: str) -> tuple[str, str, str]:
    """`host/path/name:tag` → (host, path/name, tag)."""
    name, _, tag = image.rpartition(":")
    host, _, repository = name.partition("/")
    return host, repository, tag


# ---- what kubectl apply -f deploy/kubernetes/ creates -------------------------------------------


def test_apply_of_the_directory_creates_only_the_install() -> None:
    kinds = sorted(doc["kind"] for doc in applied_docs())
    assert kinds == ["ConfigMap", "NetworkPolicy", "Service", "Service", "StatefulSet"]


def test_no_password_is_committed() -> None:
    """No Secret with a value anywhere: a committed password would be authoritative at start."""
    paths = [p for p in K8S.rglob("*") if p.suffix in KUBECTL_SUFFIXES]
    for doc in (doc for path in paths for doc in load_docs(path)):
        assert doc["kind"] != "Secret", doc["metadata"]["name"]
    assert "change-me" not in (CHART / "values.yaml").read_text()


def test_root_password_secret_is_optional() -> None:
    """Without the Secret the pod starts and the daemon writes /data/root-password (0600)."""
    env = {e["name"]: e for e in wheelwell_container()["env"]}
    ref = env["WHEELWELL_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "wheelwell-root", "key": "password", "optional": True}
    text = (K8S / "statefulset.yaml").read_text()
    assert "kubectl create secret generic wheelwell-root" in text
    assert "cat /data/root-password" in text


def test_the_sidecar_job_is_an_example_outside_the_applied_directory() -> None:
    assert not (K8S / "sidecar-ci-job.yaml").exists()
    sidecar = container_named(sidecar_pod()["spec"]["initContainers"], "wheelwell")
    ci = container_named(sidecar_pod()["spec"]["containers"], "ci")
    assert sidecar["restartPolicy"] == "Always"
    assert "exec" in sidecar["startupProbe"]
    assert ci["resources"]["limits"]["memory"]
    assert doc_of(EXAMPLES / "sidecar-ci-job.yaml", "Job")["spec"]["activeDeadlineSeconds"] > 0


# ---- the image ---------------------------------------------------------------------------------


def wheelwell_images() -> dict[str, str]:
    return {
        "statefulset.yaml": wheelwell_container()["image"],
        "examples/sidecar-ci-job.yaml": container_named(
            sidecar_pod()["spec"]["initContainers"], "wheelwell"
        )["image"],
    }


@pytest.mark.parametrize("name", ["statefulset.yaml", "examples/sidecar-ci-job.yaml"])
def test_image_is_a_placeholder_registry_path_to_replace(name: str) -> None:
    host, repository, tag = image_parts(wheelwell_images()[name])
    assert PLACEHOLDER_HOST.match(host), f"{host}: a reserved placeholder domain, never real"
    assert repository == "wheelwell"
    assert tag == chart()["appVersion"]
    text = (K8S / name).read_text()
    assert "push" in text
    assert "kustomize edit set image" in text or "kubectl set image" in text


def test_kustomization_applies_the_same_files_with_one_image_edit() -> None:
    """`kubectl apply -k` and `-f` create the same objects; the file is invisible to `-f`."""
    assert KUSTOMIZATION.suffix not in KUBECTL_SUFFIXES
    (kustomization,) = load_docs(KUSTOMIZATION)
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in applied_files()]
    name, _, tag = wheelwell_images()["statefulset.yaml"].rpartition(":")
    assert kustomization["images"] == [{"name": name, "newName": name, "newTag": tag}]


# ---- storage -----------------------------------------------------------------------------------


def test_cache_is_bounded_below_the_volume() -> None:
    max_size = parse_size(configmap_config()["storage"]["max_size"])
    assert 0 < max_size < claim_storage()
    assert "volumeClaimTemplates" in (K8S / "configmap.yaml").read_text()  # the comment ties them


# ---- network policies --------------------------------------------------------------------------


def egress_ports(policy: dict[str, Any]) -> set[tuple[str, int]]:
    return {
        (port.get("protocol", "TCP"), port["port"])
        for rule in policy["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }


def test_network_policy_admits_clients_and_prometheus_and_reaches_dns_and_upstream() -> None:
    policy = doc_of(K8S / "networkpolicy.yaml", "NetworkPolicy")
    spec = policy["spec"]
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    for rule in spec["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": PORT}]
    assert len(spec["ingress"]) >= 2  # clients, Prometheus
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 80)} <= egress_ports(policy)


def test_sidecar_example_network_policy_admits_nothing_and_reaches_the_cluster_wheelwell() -> None:
    policy = doc_of(EXAMPLES / "sidecar-ci-networkpolicy.yaml", "NetworkPolicy")
    spec = policy["spec"]
    labels = sidecar_pod()["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert spec["ingress"] == []  # the sidecar listens on loopback only
    assert {("UDP", 53), ("TCP", PORT)} <= egress_ports(policy)


# ---- the Helm chart agrees with the plain manifests -------------------------------------------


def chart() -> dict[str, Any]:
    (doc,) = load_docs(CHART / "Chart.yaml")
    return doc


def values() -> dict[str, Any]:
    (doc,) = load_docs(CHART / "values.yaml")
    return doc


def template(name: str) -> str:
    return (CHART / "templates" / name).read_text(encoding="utf-8")


def templates() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in (CHART / "templates").iterdir()}


def test_chart_metadata() -> None:
    meta = chart()
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "wheelwell" == CHART.name
    assert meta["type"] == "application"
    assert meta["version"]
    assert meta["appVersion"] == "0.1.0"


def test_chart_image_matches_the_manifests() -> None:
    image = values()["image"]
    name, _, tag = wheelwell_container()["image"].rpartition(":")
    assert image["repository"] == name
    assert image["tag"] in ("", tag)  # "" → the chart's appVersion
    assert chart()["appVersion"] == tag
    assert image["pullPolicy"] in ("IfNotPresent", "Always")


def test_chart_config_is_the_configmaps_and_passes_validation() -> None:
    config = values()["config"]
    assert config == configmap_config()
    parse_config(yaml.safe_dump(config), "deploy/helm/wheelwell/values.yaml#config")
    assert "toYaml .Values.config" in template("configmap.yaml")


def test_chart_persistence_and_cache_bound_match_the_manifests() -> None:
    persistence = values()["persistence"]
    assert quantity(persistence["size"]) == claim_storage()
    assert "storageClass" in persistence
    assert parse_size(values()["config"]["storage"]["max_size"]) < quantity(persistence["size"])
    (claim,) = statefulset()["spec"]["volumeClaimTemplates"]
    assert persistence["accessModes"] == claim["spec"]["accessModes"]


@pytest.mark.parametrize(
    ("key", "plain"),
    [
        (
            "podSecurityContext",
            lambda: statefulset()["spec"]["template"]["spec"]["securityContext"],
        ),
        ("securityContext", lambda: wheelwell_container()["securityContext"]),
        ("resources", lambda: wheelwell_container()["resources"]),
        ("livenessProbe", lambda: wheelwell_container()["livenessProbe"]),
        ("readinessProbe", lambda: wheelwell_container()["readinessProbe"]),
        ("startupProbe", lambda: wheelwell_container()["startupProbe"]),
    ],
)
def test_chart_values_rendered_verbatim_equal_the_manifests(key: str, plain: Any) -> None:
    """The StatefulSet template renders these values with toYaml, so equality here is equality
    of the rendered pod spec."""
    assert values()[key] == plain()
    assert f"toYaml .Values.{key} " in template("statefulset.yaml")


def test_chart_probes_reach_health_and_ready() -> None:
    assert values()["livenessProbe"]["httpGet"] == {"path": "/+health", "port": PORT}
    assert values()["readinessProbe"]["httpGet"] == {"path": "/+ready", "port": PORT}
    assert values()["startupProbe"]["httpGet"] == {"path": "/+health", "port": PORT}


def test_shutdown_timing_leaves_room_for_a_graceful_stop() -> None:
    """kubelet SIGKILLs after terminationGracePeriodSeconds; the daemon needs shutdown_timeout+3s"""
    shutdown = parse_config(yaml.safe_dump(configmap_config()), "configmap").server.shutdown_timeout
    plain = statefulset()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert plain > shutdown + 3
    chart_shutdown = parse_config(yaml.safe_dump(values()["config"]), "values").server
    assert values()["terminationGracePeriodSeconds"] > chart_shutdown.shutdown_timeout + 3


def test_chart_defaults_one_replica_no_service_monitor_a_network_policy() -> None:
    assert values()["replicaCount"] == 1 == statefulset()["spec"]["replicas"]
    assert values()["serviceMonitor"]["enabled"] is False
    assert values()["networkPolicy"]["enabled"] is True
    assert "monitoring.coreos.com/v1" in template("servicemonitor.yaml")
    assert "ServiceMonitor" in template("servicemonitor.yaml")
    assert "replication" in (CHART / "values.yaml").read_text()  # what more replicas would mean


def test_chart_root_password_secret_is_kept_or_taken_from_an_existing_one() -> None:
    password = values()["rootPassword"]
    assert password == {"existingSecret": "", "existingSecretKey": "password"}
    secret = template("secret.yaml")
    assert "lookup" in secret  # generated once, then kept on upgrades
    assert "helm.sh/resource-policy" in secret
    assert ".Values.rootPassword.existingSecret" in secret


def values_paths(node: Any, prefix: str = "") -> set[str]:
    paths = {prefix} if prefix else set()
    if isinstance(node, dict):
        for key, value in node.items():
            paths |= values_paths(value, f"{prefix}.{key}" if prefix else key)
    return paths


def test_chart_templates_only_name_values_that_exist() -> None:
    known = values_paths(values())
    for name, text in templates().items():
        for path in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
            assert path.rstrip(".") in known, f"{name}: .Values.{path}"


def test_chart_templates_include_only_defined_helpers() -> None:
    helpers = template("_helpers.tpl")
    defined = set(re.findall(r'define "([^"]+)"', helpers))
    for name, text in templates().items():
        for used in re.findall(r'include "([^"]+)"', text):
            assert used in defined, f"{name}: {used}"
    for label in ("name", "instance", "version", "managed-by"):
        assert f"app.kubernetes.io/{label}" in helpers


def test_chart_templates_have_balanced_actions() -> None:
    for name, text in templates().items():
        assert text.count("{{") == text.count("}}"), name
        opened = len(re.findall(r"\{\{-?\s*(if|range|with|define)\b", text))
        closed = len(re.findall(r"\{\{-?\s*end\b", text))
        assert opened == closed, name


def test_chart_notes_say_how_to_get_the_password_and_the_url() -> None:
    notes = template("NOTES.txt")
    assert "/data/root-password" in notes
    assert "kubectl" in notes
    assert "/root/public/+simple/" in notes
    assert "sidecar" not in "".join(templates())
