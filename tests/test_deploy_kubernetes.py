"""Static checks of deploy/kubernetes and the Helm chart deploy/helm/wheelwell (no cluster or helm).

What `kubectl apply -f deploy/kubernetes/` creates is what a real install needs and nothing
insecure; the chart's values agree with the plain manifests on what matters. Schema validation
and `helm lint`/`helm template` run in tests/deploy/test_kubernetes.py (make test-deploy).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import _parser
from proxy.config import MIN_SECRET_LENGTH, Role, parse_config
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
    assert kinds == ["ConfigMap", "NetworkPolicy", "Service", "Service", "Service", "StatefulSet"]


def test_no_password_is_committed() -> None:
    """No Secret with a value anywhere: a committed password or replication secret would be
    authoritative at start (and known to everyone who can read the repository)."""
    paths = [p for p in K8S.rglob("*") if p.suffix in KUBECTL_SUFFIXES]
    for doc in (doc for path in paths for doc in load_docs(path)):
        assert doc["kind"] != "Secret", doc["metadata"]["name"]
    assert "change-me" not in (CHART / "values.yaml").read_text()
    for item in wheelwell_container()["env"]:
        if "SECRET" in item["name"] or "PASSWORD" in item["name"]:
            assert "value" not in item, item["name"]
    literal = re.compile(r"- name: \S*(SECRET|PASSWORD)\S*\n\s+value:")
    assert not literal.search(template("statefulset.yaml"))


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


# ---- a primary and read replicas --------------------------------------------------------------

#: what the StatefulSet's command runs as $0 (a name for sh's messages)
ROLE_SCRIPT_NAME = "wheelwell-role"
SECRET = "r" * MIN_SECRET_LENGTH
#: a stand-in `wheelwell` that prints its arguments NUL-separated
FAKE_WHEELWELL = "#!/bin/sh\nprintf '%s\\0' \"$@\"\n"


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container["env"]}


def role_script() -> str:
    """The `sh -c` program that picks the role; the command is `/bin/sh -c SCRIPT NAME`."""
    command = wheelwell_container()["command"]
    assert command[:2] == ["/bin/sh", "-c"]
    assert command[3:] == [ROLE_SCRIPT_NAME]
    script = command[2]
    assert isinstance(script, str)
    return script


def run_role_script(
    tmp_path: Path, pod_name: str | None, secret: str | None, wheelwell: str = FAKE_WHEELWELL
) -> subprocess.CompletedProcess[str]:
    """The script as kubelet runs it (command + args, the manifest's env), `wheelwell` faked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "wheelwell"
    fake.write_text(wheelwell)
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    env["PRIMARY_URL"] = env_of(wheelwell_container())["PRIMARY_URL"]["value"]
    if pod_name is not None:
        env["POD_NAME"] = pod_name
    if secret is not None:
        env["WHEELWELL_REPLICATION_SECRET"] = secret
    argv = ["/bin/sh", "-c", role_script(), ROLE_SCRIPT_NAME, *wheelwell_container()["args"]]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)


def exec_argv(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\0")[:-1]


def primary_service() -> dict[str, Any]:
    (service,) = [
        d for d in load_docs(K8S / "service.yaml") if d["metadata"]["name"] == "wheelwell-primary"
    ]
    return service


def test_pod_0_runs_the_primary(tmp_path: Path) -> None:
    argv = exec_argv(run_role_script(tmp_path, "wheelwell-0", SECRET))
    assert argv == ["serve", "--role", "primary", "--data-dir", "/data"]
    args = _parser().parse_args(argv)
    assert (args.role, args.primary_url, args.data_dir) == ("primary", None, Path("/data"))


@pytest.mark.parametrize("pod_name", ["wheelwell-1", "wheelwell-2", "ww-wheelwell-10"])
def test_pods_above_0_are_replicas_of_the_primary_service(tmp_path: Path, pod_name: str) -> None:
    """Any ordinal but 0 follows PRIMARY_URL; a Helm release's longer names parse the same."""
    argv = exec_argv(run_role_script(tmp_path, pod_name, SECRET))
    url = "http://wheelwell-primary:3141"
    assert argv == ["serve", "--primary-url", url, "--data-dir", "/data"]
    assert _parser().parse_args(argv).primary_url == url


def test_pod_0_without_the_secret_runs_standalone_as_today(tmp_path: Path) -> None:
    """replicas: 1 and no Secret: exactly the single wheelwell of before, plus one line saying
    why no replica could follow it."""
    for secret in (None, ""):
        result = run_role_script(tmp_path, "wheelwell-0", secret)
        assert exec_argv(result) == ["serve", "--data-dir", "/data"]
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "no replica can follow" in result.stderr


@pytest.mark.parametrize("pod_name", [None, "", "wheelwell", "wheelwell-x", "wheelwell-1a"])
def test_a_pod_name_without_an_ordinal_is_refused(tmp_path: Path, pod_name: str | None) -> None:
    result = run_role_script(tmp_path, pod_name, SECRET)
    assert result.returncode == 2
    assert result.stdout == ""  # wheelwell never ran
    assert "no ordinal" in result.stderr


def real_wheelwell() -> str:
    """A `wheelwell` that runs this checkout's daemon (whatever interpreter runs the tests)."""
    return f'#!/bin/sh\nexec {sys.executable} -m proxy "$@"\n'


@pytest.mark.parametrize("secret", [None, "short"])
def test_a_replica_without_a_usable_secret_exits_2_with_one_config_line(
    tmp_path: Path, secret: str | None
) -> None:
    """The real daemon refuses before it listens: the pod crash-loops with a readable log, and
    is never ready, so the read Service never sends it a request."""
    config = tmp_path / "wheelwell.yaml"
    config.write_text(yaml.safe_dump(configmap_config()))
    daemon = real_wheelwell().replace("exec ", f"WHEELWELL_CONFIG={config} exec ", 1)
    daemon = daemon.replace('"$@"', f'"$@" --data-dir {tmp_path / "data"}')
    result = run_role_script(tmp_path, "wheelwell-1", secret, wheelwell=daemon)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "replication.secret" in line]
    assert len(errors) == 1, result.stderr
    assert f"{MIN_SECRET_LENGTH} characters" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_the_role_script_is_posix_sh(tmp_path: Path) -> None:
    """The image's /bin/sh is Debian's dash: no bashisms (sh -n parses; dash when present)."""
    for shell in ("/bin/sh", "/bin/dash"):
        if Path(shell).exists():
            checked = subprocess.run(
                [shell, "-n", "-c", role_script()], capture_output=True, text=True, check=False
            )
            assert checked.returncode == 0, checked.stderr


def test_the_pod_env_gives_the_script_its_name_primary_and_secret() -> None:
    env = env_of(wheelwell_container())
    names = list(env)
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    ref = env["WHEELWELL_REPLICATION_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "wheelwell-replication", "key": "secret", "optional": True}
    # $(POD_NAME) is expanded only from variables defined earlier in the list
    outside = env["WHEELWELL_REPLICATION_OUTSIDE_URL"]["value"]
    assert outside == "http://$(POD_NAME).wheelwell-headless:3141"
    assert env["WHEELWELL_REPLICATION_REPLICA_ID"]["value"] == "$(POD_NAME)"
    for expanded in ("WHEELWELL_REPLICATION_OUTSIDE_URL", "WHEELWELL_REPLICATION_REPLICA_ID"):
        assert names.index("POD_NAME") < names.index(expanded)
    assert statefulset()["spec"]["serviceName"] == "wheelwell-headless"
    # The daemon's WHEELWELL_<SECTION>_<KEY> overrides must not take the script's variables
    # (WHEELWELL_REPLICATION_PRIMARY_URL on pod 0 would make the primary follow itself).
    assert "WHEELWELL_REPLICATION_PRIMARY_URL" not in env
    assert "WHEELWELL_REPLICATION_ROLE" not in env


def test_the_secret_is_documented_never_committed() -> None:
    command = 'kubectl create secret generic wheelwell-replication --from-literal=secret="$(openssl'
    assert command in (K8S / "statefulset.yaml").read_text()
    assert command in (REPO / "docs" / "deploy.md").read_text()
    replication = configmap_config()["replication"]
    assert not {"role", "primary_url", "secret", "secret_file"} & set(replication)
    cfg = parse_config(yaml.safe_dump(configmap_config()), "configmap").replication
    assert cfg.role is Role.STANDALONE  # the pod's command decides


def pods(count: int) -> list[dict[str, str]]:
    """The labels of the StatefulSet's pods 0..count-1, as the controller sets them."""
    sts = statefulset()
    labels = sts["spec"]["template"]["metadata"]["labels"]
    name = sts["metadata"]["name"]
    return [labels | {"statefulset.kubernetes.io/pod-name": f"{name}-{n}"} for n in range(count)]


def selected(selector: dict[str, str], count: int) -> list[str]:
    return [
        p["statefulset.kubernetes.io/pod-name"]
        for p in pods(count)
        if selector.items() <= p.items()
    ]


def test_services_send_reads_to_every_pod_and_replicas_to_pod_0() -> None:
    services = {d["metadata"]["name"]: d["spec"] for d in load_docs(K8S / "service.yaml")}
    everyone = ["wheelwell-0", "wheelwell-1", "wheelwell-2"]
    assert selected(services["wheelwell"]["selector"], 3) == everyone
    assert selected(services["wheelwell-headless"]["selector"], 3) == everyone
    assert selected(services["wheelwell-primary"]["selector"], 3) == ["wheelwell-0"]
    assert selected(services["wheelwell-primary"]["selector"], 1) == ["wheelwell-0"]
    # reads only from pods that are ready (a replica: caught up); replicas reach the primary
    # even while it is not ready (it still serves its changelog)
    assert not services["wheelwell"].get("publishNotReadyAddresses", False)
    assert services["wheelwell-primary"]["publishNotReadyAddresses"] is True
    assert wheelwell_container()["readinessProbe"]["httpGet"]["path"] == "/+ready"
    # PRIMARY_URL names the primary Service, on its port
    url = env_of(wheelwell_container())["PRIMARY_URL"]["value"]
    assert url == f"http://{primary_service()['metadata']['name']}:{PORT}"
    assert [p["port"] for p in services["wheelwell-primary"]["ports"]] == [PORT]


def test_network_policy_lets_replicas_reach_the_primary() -> None:
    """Both sides: egress from a replica to pod 0 on 3141, ingress to pod 0 from a replica,
    in rules of their own (so narrowing the clients' rule keeps replication working)."""
    spec = doc_of(K8S / "networkpolicy.yaml", "NetworkPolicy")["spec"]
    pod_labels = pods(2)[1]

    def own_pods(rule: dict[str, Any], side: str) -> bool:
        peers = rule.get(side, [])
        labels = [
            peer["podSelector"].get("matchLabels") for peer in peers if set(peer) == {"podSelector"}
        ]
        return any(found and found.items() <= pod_labels.items() for found in labels)

    port = [{"protocol": "TCP", "port": PORT}]
    assert any(own_pods(r, "to") and r["ports"] == port for r in spec["egress"])
    assert any(own_pods(r, "from") and r["ports"] == port for r in spec["ingress"])


def test_one_replica_is_still_the_default() -> None:
    """Scaling is `kubectl scale`; the file says how, and what the Secret is for."""
    assert statefulset()["spec"]["replicas"] == 1
    text = (K8S / "statefulset.yaml").read_text()
    assert "kubectl scale statefulset wheelwell --replicas=3" in text
    assert "podManagementPolicy" not in text  # OrderedReady: replicas start after pod 0 is ready


# ---- the chart's primary and replicas ----------------------------------------------------------


def template_script() -> list[str]:
    """The chart's role script, its lines unindented (no helm here to render it)."""
    text = template("statefulset.yaml")
    match = re.search(r"- -c\n\s*- \|\n(.*?)\n\s*- wheelwell-role\n", text, re.DOTALL)
    assert match, "the chart's StatefulSet has no `/bin/sh -c SCRIPT wheelwell-role` command"
    return [line.strip() for line in match[1].splitlines()]


def test_chart_runs_the_same_role_script() -> None:
    assert template_script() == [line.strip() for line in role_script().splitlines()]
    assert "{{" not in "".join(template_script())  # nothing templated inside it
    assert "- name: POD_NAME" in template("statefulset.yaml")
    assert "fieldPath: metadata.name" in template("statefulset.yaml")


def test_chart_replication_secret_is_kept_or_taken_from_an_existing_one() -> None:
    assert values()["replication"] == {"existingSecret": "", "existingSecretKey": "secret"}
    secret = template("secret.yaml")
    assert "wheelwell.replicationSecretName" in secret
    assert secret.count('lookup "v1" "Secret"') == 2  # generated once, then kept
    assert secret.count("helm.sh/resource-policy: keep") == 2
    assert "randAlphaNum 64" in secret  # well above MIN_SECRET_LENGTH
    sts = template("statefulset.yaml")
    assert 'include "wheelwell.replicationSecretName"' in sts
    assert 'include "wheelwell.replicationSecretKey"' in sts
    assert 'include "wheelwell.primaryUrl"' in sts


def test_chart_primary_service_selects_pod_0_and_the_monitor_skips_it() -> None:
    services = template("service.yaml")
    assert 'statefulset.kubernetes.io/pod-name: {{ include "wheelwell.fullname" . }}-0' in services
    assert "publishNotReadyAddresses: true" in services
    assert services.count("app.kubernetes.io/component: server") == 1  # the ServiceMonitor's
    assert "app.kubernetes.io/component: primary" in services
    helpers = template("_helpers.tpl")
    assert '"http://%s-primary:%v"' in helpers
    assert values()["service"]["port"] == PORT


def test_chart_network_policy_lets_replicas_reach_the_primary() -> None:
    policy = template("networkpolicy.yaml")
    egress = policy[policy.index("egress:") :]
    ingress = policy[: policy.index("egress:")]
    own = "podSelector:\n            matchLabels:\n"
    own += '              {{- include "wheelwell.selectorLabels"'
    assert own in egress
    assert own in ingress
