"""The StatefulSet's pod 0 and pod 1, emulated as two podman pods running the shipped image.

Each pod runs the manifest's own `command` and `args`, with its env resolved as kubelet would
(POD_NAME from the downward API, the Secrets' values, `$(VAR)` expanded), its securityContext,
the ConfigMap mounted read-only and a volume of its own. Pod 1 reaches pod 0 as
`wheelwell-primary` (the Service's name, an --add-host entry standing in for cluster DNS). Proves:
pod 0 becomes the primary and pod 1 its replica from their names alone; an upload to pod 0 is
installed by pip from pod 1; a write sent to pod 1 is relayed and installable from it at once;
with pod 0 stopped, pod 1 still serves what it has and answers writes 503 naming the primary,
then catches up by itself when pod 0 is back; the replica's volume, given to pod 0 (a promotion
by hand), serves as the primary; without the replication Secret pod 0 serves standalone, as one
pod always did.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Clients, free_port, http_get
from tests.deploy.images import (
    RUN_LIMITS,
    build_wheelwell_image,
    debian_base_image,
    podman,
    require_podman,
)
from tests.deploy.test_container import k8s_doc, named, pod_ip, security_args, volume
from tests.e2e.conftest import installed_versions, twine_upload
from tests.fakes.dists import build_wheel
from tests.polling import wait_until

TAG = "wwh4"  #: every image, container, pod and volume this file makes starts with it
IMAGE = f"localhost/{TAG}-wheelwell:test"
REPLICATION_SECRET = "pods-replication-secret-0123456789"
ROOT_PASSWORD = "pods-root-secret"
ROOT = ("root", ROOT_PASSWORD)
#: the Secrets the operator creates, by name (key → value)
SECRETS = {
    "wheelwell-replication": {"secret": REPLICATION_SECRET},
    "wheelwell-root": {"password": ROOT_PASSWORD},
}
#: the upstream: the discard port, so only private files are ever served
DEAD_UPSTREAM = "http://127.0.0.1:9/simple/"
START_TIMEOUT = 120.0
POD_PORT = 3141


@pytest.fixture(scope="module")
def image() -> str:
    """The shipped Dockerfile on the shared Debian base (podman's layer cache: quick when warm)."""
    require_podman()
    build_wheelwell_image(IMAGE, debian_base_image())
    return IMAGE


@dataclass(frozen=True, slots=True)
class Pod:
    """An emulated StatefulSet pod: its podman pod, its wheelwell container, its host URL."""

    name: str
    container: str
    url: str

    def logs(self) -> str:
        result = podman("logs", self.container, check=False)
        return result.stdout + result.stderr

    def status(self) -> dict[str, Any]:
        got = http_get(self.url + "/+status", {"Accept": "application/json"})
        assert got.status == 200, got.body
        data: dict[str, Any] = json.loads(got.body)
        return data


def template_spec() -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, wheelwell container) of the StatefulSet."""
    pod = k8s_doc("statefulset.yaml", "StatefulSet")["spec"]["template"]["spec"]
    return pod, named(pod["containers"], "wheelwell")


def resolved_env(
    spec: dict[str, Any], pod_name: str, secrets: dict[str, dict[str, str]]
) -> list[str]:
    """The container's env as kubelet resolves it, as -e flags; an optional Secret that does
    not exist leaves its variable out."""
    values: dict[str, str] = {}
    for item in spec["env"]:
        source = item.get("valueFrom", {})
        if "value" in item:  # $(NAME) expands variables defined earlier in the list
            values[item["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: values.get(m[1], m[0]), item["value"]
            )
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            values[item["name"]] = pod_name
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            found = secrets.get(ref["name"], {}).get(ref["key"])
            if found is None:
                assert ref.get("optional") is True, f"{ref['name']} is required"
                continue
            values[item["name"]] = found
        else:
            raise AssertionError(f"an env source this emulation does not know: {item}")
    return [a for key, value in values.items() for a in ("-e", f"{key}={value}")]


def config_dir(tmp_path: Path) -> Path:
    """The ConfigMap volume: one file per key, readable by UID 10001."""
    directory = tmp_path / "configmap"
    directory.mkdir(mode=0o755, exist_ok=True)
    directory.chmod(0o755)
    for key, text in k8s_doc("configmap.yaml", "ConfigMap")["data"].items():
        (directory / key).write_text(text)
        (directory / key).chmod(0o644)
    return directory


def _remove_pod(name: str) -> None:
    podman("pod", "rm", "--force", "--time", "0", name, check=False)


@contextlib.contextmanager
def statefulset_pod(
    ordinal: int,
    tmp_path: Path,
    data: str,
    secrets: dict[str, dict[str, str]],
    hosts: dict[str, str] | None = None,
) -> Iterator[Pod]:
    """Pod `wheelwell-ORDINAL` of the StatefulSet: its command, args, env, mounts and security,
    its port published on host loopback only."""
    pod_spec, spec = template_spec()
    pod_name = f"wheelwell-{ordinal}"
    name = f"{TAG}-{pod_name}"
    port = free_port()
    _remove_pod(name)
    create = ["pod", "create", "--name", name, "--hostname", pod_name]
    create += ["--publish", f"127.0.0.1:{port}:{POD_PORT}"]
    for host, address in (hosts or {}).items():
        create += ["--add-host", f"{host}:{address}"]
    created = podman(*create, check=False)
    if created.returncode != 0:
        pytest.skip(f"podman pods cannot be created here: {created.stderr.strip()[-200:]}")
    mounts: list[str] = []
    for mount in spec["volumeMounts"]:
        if mount["name"] == "config":
            mounts += ["-v", f"{config_dir(tmp_path)}:{mount['mountPath']}:ro"]
        elif mount["name"] == "data":  # the volumeClaimTemplate: a volume per pod
            mounts += ["-v", f"{data}:{mount['mountPath']}"]
        else:  # emptyDir
            mounts += ["--tmpfs", mount["mountPath"]]
    command = spec["command"]
    container = f"{name}-wheelwell"
    pod = Pod(name, container, f"http://127.0.0.1:{port}")
    try:
        podman(
            "run",
            "--detach",
            "--pod",
            name,
            "--name",
            container,
            *RUN_LIMITS,
            *security_args(pod_spec, spec),
            *resolved_env(spec, pod_name, secrets),
            "-e",
            f"PIP_INDEX_URL={DEAD_UPSTREAM}",
            *mounts,
            "--entrypoint",
            command[0],
            IMAGE,
            *command[1:],
            *spec["args"],
        )
        yield pod
    except BaseException:
        print(f"--- {container} log\n{pod.logs()}")  # noqa: T201
        raise
    finally:
        _remove_pod(name)


def answers(url: str, status: int = 200) -> bool:
    try:
        return http_get(url, timeout=3).status == status
    except OSError:
        return False


def wait_ready(pod: Pod) -> None:
    """/+ready answers 200: kubelet would now put the pod behind the read Service."""
    wait_until(
        lambda: answers(pod.url + "/+ready"),
        timeout=START_TIMEOUT,
        interval=0.5,
        message=lambda: f"{pod.name} /+ready:\n{pod.logs()}",
    )


def wait_caught_up(replica: Pod, primary: Pod) -> None:
    wait_until(
        lambda: replica.status()["serial"] == primary.status()["serial"],
        timeout=START_TIMEOUT,
        interval=0.5,
        message=lambda: f"{replica.name} at {primary.name}'s serial:\n{replica.logs()}",
    )


def install(clients: Clients, pod: Pod, target: Path, requirement: str, module: str) -> str:
    clients.pip(
        "install",
        "--no-deps",
        "--target",
        str(target),
        "--index-url",
        f"{pod.url}/root/public/+simple/",
        requirement,
    )
    (version,) = installed_versions(clients, target, module)
    return version


def test_pod_0_is_the_primary_and_pod_1_its_replica(
    image: str, tmp_path: Path, clients: Clients
) -> None:
    """Upload to pod 0, install from pod 1; a write through pod 1, read back from it at once;
    pod 0 away: reads go on, writes 503 naming it; pod 0 back: pod 1 catches up."""
    dists = tmp_path / "dists"
    with (
        volume(f"{TAG}-data-wheelwell-0") as data_0,
        volume(f"{TAG}-data-wheelwell-1") as data_1,
        statefulset_pod(0, tmp_path, data_0, SECRETS) as primary,
    ):
        wait_ready(primary)
        assert primary.status()["role"] == "primary"
        first = build_wheel(dists, "podsfirst", "1.0")
        twine_upload(clients, f"{primary.url}/root/public/", ROOT, first.path)

        address = pod_ip(primary.name)
        with statefulset_pod(
            1, tmp_path, data_1, SECRETS, hosts={"wheelwell-primary": address}
        ) as replica:
            wait_ready(replica)  # only after its first catch-up
            status = replica.status()
            assert status["role"] == "replica"
            assert status["primary"]["url"] == "http://wheelwell-primary:3141"
            assert status["primary"]["caught_up_once"] is True
            (seen,) = primary.status()["replicas"]
            assert seen["id"] == "wheelwell-1"  # the pod's host name
            assert seen["url"] == "http://wheelwell-1.wheelwell-headless:3141"
            assert install(clients, replica, tmp_path / "t1", "podsfirst", "podsfirst") == "1.0"

            # a write sent to the replica is relayed to pod 0 and readable from pod 1 at once
            second = build_wheel(dists, "podssecond", "2.0")
            twine_upload(clients, f"{replica.url}/root/public/", ROOT, second.path)
            assert install(clients, replica, tmp_path / "t2", "podssecond", "podssecond") == "2.0"
            wait_caught_up(replica, primary)
            wait_until(
                lambda: replica.status()["primary"]["files_pending"] == 0,
                timeout=START_TIMEOUT,
                interval=0.5,
                message=lambda: f"files copied to {replica.name}:\n{replica.logs()}",
            )

            # pod 0 away (a restart, a drain): pod 1 serves what it has, refuses writes
            podman("stop", "--time", "30", primary.container, timeout=60)
            assert answers(replica.url + "/+ready")  # still behind the read Service
            assert install(clients, replica, tmp_path / "t3", "podsfirst", "podsfirst") == "1.0"
            third = build_wheel(dists, "podsthird", "3.0")
            refused = twine_upload(
                clients, f"{replica.url}/root/public/", ROOT, third.path, check=False
            )
            assert refused.returncode != 0
            assert "503" in refused.stdout + refused.stderr, refused.stdout + refused.stderr

            # pod 0 back on its volume: pod 1 reconnects and catches up by itself
            podman("start", primary.container, timeout=60)
            wait_ready(primary)
            twine_upload(clients, f"{primary.url}/root/public/", ROOT, third.path)
            wait_caught_up(replica, primary)
            assert install(clients, replica, tmp_path / "t4", "podsthird", "podsthird") == "3.0"
            serial = replica.status()["serial"]

        # Promotion by hand (docs/deploy.md): pod 0's volume lost, the replica's volume becomes
        # pod 0's. The same pod 0 command runs the primary on the replica's data.
        podman("pod", "rm", "--force", "--time", "0", primary.name)
        with statefulset_pod(0, tmp_path, data_1, SECRETS) as promoted:
            wait_ready(promoted)
            status = promoted.status()
            assert (status["role"], status["serial"]) == ("primary", serial)
            assert install(clients, promoted, tmp_path / "t5", "podsfirst", "podsfirst") == "1.0"
            fourth = build_wheel(dists, "podsfourth", "4.0")
            twine_upload(clients, f"{promoted.url}/root/public/", ROOT, fourth.path)
            assert promoted.status()["serial"] > serial


def test_pod_0_without_the_replication_secret_serves_standalone(
    image: str, tmp_path: Path, clients: Clients
) -> None:
    """replicas: 1 with no Secret wheelwell-replication: the single wheelwell of before."""
    secrets = {"wheelwell-root": SECRETS["wheelwell-root"]}
    with (
        volume(f"{TAG}-data-standalone") as data,
        statefulset_pod(0, tmp_path, data, secrets) as alone,
    ):
        wait_ready(alone)
        assert alone.status()["role"] == "standalone"
        assert "no replica can follow" in alone.logs()
        wheel = build_wheel(tmp_path / "dists", "podsalone", "1.0")
        twine_upload(clients, f"{alone.url}/root/public/", ROOT, wheel.path)
        assert install(clients, alone, tmp_path / "t", "podsalone", "podsalone") == "1.0"
