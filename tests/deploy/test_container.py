"""The shipped image, built by podman on the debootstrapped Debian base and run for real.

Proves: the Dockerfile builds on a base other than python:3.11-slim; the HEALTHCHECK survives the
build (--format docker) and follows --port and WHEELWELL_SERVER_PORT; pip installs through the
container; the daemon runs as UID 10001 and its files in /data are private; `podman stop` with a
slow download in flight ends gracefully within shutdown_timeout; the StatefulSet's httpGet probes
answer on the pod IP, and the sidecar Job's exec probes pass inside the sidecar while its CI
script installs through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import yaml

from proxy.config import parse_config
from tests.conftest import Clients, Dists, free_port, http_get
from tests.deploy.images import (
    REPO,
    RUN_LIMITS,
    build_wheelwell_image,
    debian_base_image,
    podman,
    require_podman,
)
from tests.fakes.index import JSON_TYPE, FakeIndex, ThreadedServer
from tests.polling import wait_until

TAG = "wwh1"  #: every image, container, pod and volume this file makes starts with it
IMAGE = f"localhost/{TAG}-wheelwell:test"
UID = 10001
K8S = REPO / "deploy" / "kubernetes"
CONTAINER_CONFIG = REPO / "deploy" / "container" / "wheelwell.yaml"
START_TIMEOUT = 60.0
#: the interpreter's exit after the drain: the same margin as the process-level shutdown test
STOP_MARGIN = 3.0
IN_POD_UPSTREAM_PORT = 8000
#: a project for the CI script's `pip install requests`: the in-pod fake upstream serves it
CI_PROJECT_VERSION = "2.99.0"


@pytest.fixture(scope="session")
def image() -> str:
    """The shipped Dockerfile built on the Debian base (podman's layer cache: quick when warm)."""
    require_podman()
    base = debian_base_image()
    before = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    seconds = build_wheelwell_image(IMAGE, base)
    if before and before != podman("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip():
        podman("rmi", before, check=False)  # the previous build, now untagged
    print(f"podman build of {IMAGE} on {base}: {seconds:.1f} s")  # noqa: T201
    return IMAGE


@dataclass(frozen=True, slots=True)
class Running:
    """A container this test started: its name and the URL it answers on from the host."""

    name: str
    url: str

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def inspect(self) -> dict[str, Any]:
        (data,) = json.loads(podman("inspect", self.name).stdout)
        assert isinstance(data, dict)
        return data

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *argv, check=check)


def _remove(*names: str) -> None:
    for name in names:
        podman("rm", "--force", "--time", "0", name, check=False)


@contextlib.contextmanager
def volume(name: str) -> Iterator[str]:
    """A named volume, new and empty: podman fills it from the image's directory (owner, mode)."""
    podman("volume", "rm", "--force", name, check=False)
    podman("volume", "create", name)
    try:
        yield name
    finally:
        podman("volume", "rm", "--force", name, check=False)


@contextlib.contextmanager
def container(name: str, port: int, *run_args: str) -> Iterator[Running]:
    """`podman run -d` on the host network; removed at the end, its log shown on failure."""
    _remove(name)
    podman("run", "--detach", "--name", name, *RUN_LIMITS, *run_args)
    running = Running(name, f"http://127.0.0.1:{port}")
    try:
        yield running
    except BaseException:
        print(f"--- {name} log\n{running.logs()}")  # noqa: T201
        raise
    finally:
        _remove(name)


def wait_answering(running: Running, path: str = "/+health") -> None:
    def answers() -> bool:
        try:
            return http_get(running.url + path, timeout=2).status == 200
        except OSError:
            return False

    wait_until(
        answers,
        timeout=START_TIMEOUT,
        interval=0.2,
        message=lambda: f"{running.url}{path}:\n{running.logs()}",
    )


def healthcheck(running: Running) -> tuple[int, str]:
    """`podman healthcheck run` (no systemd timers here), then the status podman records."""
    result = podman("healthcheck", "run", running.name, check=False, timeout=60)
    status = running.inspect()["State"]["Health"]["Status"]
    return result.returncode, f"{status} ({result.stdout.strip()} {result.stderr.strip()})"


def host_pid(running: Running) -> int:
    pid = running.inspect()["State"]["Pid"]
    assert isinstance(pid, int)
    assert pid > 0
    return pid


def uids(pid: int) -> list[int]:
    """Real, effective, saved and filesystem UIDs of a host process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(u) for u in line.split()[1:]]
    raise AssertionError(f"no Uid line for {pid}")


def daemon_run_args(upstream: str) -> list[str]:
    """The daemon on host loopback only (the image's config binds 0.0.0.0), on `upstream`."""
    return [
        "--network",
        "host",
        "-e",
        "WHEELWELL_SERVER_HOST=127.0.0.1",
        "-e",
        f"PIP_INDEX_URL={upstream}",
    ]


# ---- the image ---------------------------------------------------------------------------------


def test_image_keeps_its_healthcheck_and_runs_as_10001(image: str) -> None:
    """podman's OCI format would have dropped HEALTHCHECK; --format docker keeps it."""
    (data,) = json.loads(podman("image", "inspect", image).stdout)
    assert data["Healthcheck"]["Test"] == ["CMD", "wheelwell", "healthcheck"]
    assert data["Config"]["User"] == f"{UID}:{UID}"
    assert not data["Config"].get("Volumes")  # no anonymous volumes
    assert data["Config"]["Entrypoint"] == ["wheelwell", "serve"]


def test_install_through_the_container(
    image: str,
    fake_index_server: ThreadedServer,
    clients: Clients,
) -> None:
    """WHEELWELL_SERVER_PORT moves the port; pip installs; UID 10001; /data stays private."""
    port = free_port()
    with (
        volume(f"{TAG}-install-data") as data,
        container(
            f"{TAG}-install",
            port,
            *daemon_run_args(f"{fake_index_server.url}/simple/"),
            "-e",
            f"WHEELWELL_SERVER_PORT={port}",
            "-v",
            f"{data}:/data",
            image,
        ) as running,
    ):
        wait_answering(running, "/+ready")
        target = clients.workdir / "target"
        clients.pip(
            "install",
            "--index-url",
            f"{running.url}/root/pypi/+simple/",
            "--target",
            str(target),
            "alpha",
        )
        assert (target / "alpha" / "__init__.py").is_file()
        assert (target / "beta" / "__init__.py").is_file()

        assert uids(host_pid(running)) == [UID] * 4
        assert running.exec("id", "-u").stdout.strip() == str(UID)
        listing = running.exec("find", "/data", "-printf", "%m %U:%G %p\n").stdout
        files = {line.split(" ", 2)[2]: line for line in listing.splitlines()}
        for name in ("/data/wheelwell.sqlite3", "/data/root-password"):
            assert name in files, listing
        readable = [line for line in files.values() if int(line.split()[0], 8) & 0o077]
        assert readable == [], f"group/world bits in /data:\n{listing}"
        assert all(line.split()[1] == f"{UID}:{UID}" for line in files.values()), listing

        code, status = healthcheck(running)
        assert code == 0, status
        assert status.startswith("healthy"), status


def test_healthcheck_follows_the_port_argument(
    image: str, fake_index_server: ThreadedServer
) -> None:
    """`--port` appended to the ENTRYPOINT; unhealthy while the daemon does not answer."""
    port = free_port()
    with container(
        f"{TAG}-port-arg",
        port,
        *daemon_run_args(f"{fake_index_server.url}/simple/"),
        image,
        "--port",
        str(port),
    ) as running:
        wait_answering(running)
        code, status = healthcheck(running)
        assert code == 0, status
        assert status.startswith("healthy"), status

        pid = host_pid(running)
        os.kill(pid, signal.SIGSTOP)  # the socket still accepts, nothing answers
        try:
            code, status = healthcheck(running)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert code != 0, status
        assert "unhealthy" in status, status


# ---- graceful stop -----------------------------------------------------------------------------


def _file_url(base: str, project: str, filename: str) -> str:
    page_url = f"{base}/root/pypi/+simple/{project}/"
    page = http_get(page_url, {"Accept": JSON_TYPE})
    assert page.status == 200, page.body
    links: dict[str, str] = {f["filename"]: f["url"] for f in json.loads(page.body)["files"]}
    return urljoin(page_url, links[filename])


def _slow_reader(url: str, received: threading.Event, sockets: list[socket.socket]) -> None:
    """GET `url` and read what arrives until the daemon closes the connection."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    sockets.append(sock)
    sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    with contextlib.suppress(OSError):
        while sock.recv(1 << 16):
            received.set()


def test_podman_stop_with_a_download_in_flight_is_graceful(
    image: str, fake_index: FakeIndex, fake_index_server: ThreadedServer, dists: Dists
) -> None:
    """SIGTERM drains within the image's shutdown_timeout: exit 0, not podman's SIGKILL (137)."""
    shutdown_timeout = parse_config(CONTAINER_CONFIG.read_text(), "image").server.shutdown_timeout
    grace = int(shutdown_timeout) + 20  # podman stop -t: SIGKILL only far past the bound
    port = free_port()
    sockets: list[socket.socket] = []
    with container(
        f"{TAG}-stop",
        port,
        *daemon_run_args(f"{fake_index_server.url}/simple/"),
        "-e",
        f"WHEELWELL_SERVER_PORT={port}",
        image,
    ) as running:
        wait_answering(running)
        url = _file_url(running.url, "bulky", dists.bulky.filename)
        fake_index.slow_chunk_delay = 0.5  # ~40 s for the 5 MB file: in flight at the stop
        received = threading.Event()
        reader = threading.Thread(target=_slow_reader, args=(url, received, sockets))
        reader.start()
        try:
            assert received.wait(30), running.logs()
            status = json.loads(http_get(f"{running.url}/+status").body)
            assert status["downloads_in_flight"] >= 1, status
            started = time.monotonic()
            podman("stop", "--time", str(grace), running.name, timeout=grace + 30)
            elapsed = time.monotonic() - started
        finally:
            for sock in sockets:
                sock.close()
            reader.join(30)
        print(f"podman stop with a slow download in flight: {elapsed:.2f} s")  # noqa: T201
        state = running.inspect()["State"]
        log = running.logs()
        assert state["ExitCode"] == 0, f"exit {state['ExitCode']} after {elapsed:.1f} s\n{log}"
        assert elapsed < shutdown_timeout + STOP_MARGIN, log
        assert "shutting down" in log, log
        assert '"stopped"' in log, log
        assert "Traceback" not in log, log


# ---- the Kubernetes pods, emulated with podman pods --------------------------------------------


def k8s_doc(name: str, kind: str) -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d and d["kind"] == kind]
    assert isinstance(doc, dict)
    return doc


def named(containers: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [c for c in containers if c["name"] == name]
    assert isinstance(found, dict)
    return found


def security_args(pod: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """The pod's and container's securityContext as podman flags, resources' memory limit too."""
    pod_security = pod.get("securityContext", {})
    security = spec.get("securityContext", {})
    args: list[str] = []
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    group = security.get("runAsGroup", pod_security.get("runAsGroup"))
    if user is not None:
        args += ["--user", f"{user}:{group if group is not None else user}"]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for capability in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", capability]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    memory = spec.get("resources", {}).get("limits", {}).get("memory")
    if memory:
        args += ["--memory", memory.replace("Gi", "g").replace("Mi", "m")]
    return args


def env_args(spec: dict[str, Any], secret: str) -> list[str]:
    """`env` as -e flags; a secretKeyRef gets `secret` (the test's stand-in Secret)."""
    args: list[str] = []
    for item in spec.get("env", []):
        value = item.get("value", secret)
        args += ["-e", f"{item['name']}={value}"]
    return args


@contextlib.contextmanager
def pod(name: str) -> Iterator[str]:
    """A podman pod (its own network namespace on the bridge, like a Kubernetes pod)."""
    podman("pod", "rm", "--force", name, check=False)
    created = podman("pod", "create", "--name", name, check=False)
    if created.returncode != 0:
        pytest.skip(f"podman pods cannot be created here: {created.stderr.strip()[-200:]}")
    try:
        yield name
    finally:
        podman("pod", "rm", "--force", "--time", "0", name, check=False)


def pod_ip(name: str) -> str:
    infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", name).stdout.strip()
    address = podman("inspect", "--format", "{{.NetworkSettings.IPAddress}}", infra).stdout.strip()
    if not address:
        pytest.skip(f"pod {name} got no IP address: podman's bridge network is unavailable")
    return address


def refused(host: str, port: int) -> bool:
    """Nothing listens at host:port: the connection is refused (not merely answered 503)."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except ConnectionRefusedError:
        return True


def answers_200(url: str) -> bool:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            url, timeout=3
        ) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def probe_budget(probe: dict[str, Any]) -> float:
    """How long kubelet would keep trying a probe before it gives up."""
    return float(probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3))


def wait_http_probe(running: Running, kind: str, probe: dict[str, Any], url: str) -> None:
    """Poll `url` as kubelet would, for as long as kubelet would."""
    wait_until(
        lambda: answers_200(url),
        timeout=probe_budget(probe),
        interval=0.5,
        message=lambda: f"{kind} {url}:\n{running.logs()}",
    )


def wait_exec_probe(running: Running, kind: str, probe: dict[str, Any], command: list[str]) -> None:
    """Run an exec probe in the container until it exits 0, for as long as kubelet would."""
    wait_until(
        lambda: running.exec(*command, check=False).returncode == 0,
        timeout=probe_budget(probe),
        interval=0.5,
        message=lambda: f"{kind} {command}:\n{running.logs()}",
    )


def test_statefulset_pod_answers_its_http_probes_on_the_pod_ip(image: str, tmp_path: Path) -> None:
    """kubelet sends httpGet probes to the pod IP: each passes there, within its budget."""
    template = k8s_doc("statefulset.yaml", "StatefulSet")["spec"]["template"]["spec"]
    spec = named(template["containers"], "wheelwell")
    config_dir = tmp_path / "configmap"  # the ConfigMap volume, one file per key
    config_dir.mkdir(mode=0o755)
    config_dir.chmod(0o755)
    for key, text in k8s_doc("configmap.yaml", "ConfigMap")["data"].items():
        (config_dir / key).write_text(text)
        (config_dir / key).chmod(0o644)
    with (
        pod(f"{TAG}-statefulset") as pod_name,
        volume(f"{TAG}-statefulset-data") as data,
    ):
        volume_args: list[str] = []
        for mount in spec.get("volumeMounts", []):
            if mount["name"] == "config":
                volume_args += ["-v", f"{config_dir}:{mount['mountPath']}:ro"]
            elif mount["name"] == "data":  # the volumeClaimTemplate
                volume_args += ["-v", f"{data}:{mount['mountPath']}"]
            else:  # emptyDir
                volume_args += ["--tmpfs", mount["mountPath"]]
        name = f"{TAG}-statefulset-wheelwell"
        _remove(name)
        podman(
            "run",
            "--detach",
            "--pod",
            pod_name,
            "--name",
            name,
            *RUN_LIMITS,
            *security_args(template, spec),
            *env_args(spec, "statefulset-test-secret"),
            "-e",
            "PIP_INDEX_URL=http://127.0.0.1:9/simple/",  # probes never reach the upstream
            *volume_args,
            image,
            *spec.get("args", []),
        )
        running = Running(name, "")
        try:
            address = pod_ip(pod_name)
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = spec[kind]["httpGet"]
                url = f"http://{address}:{probe['port']}{probe['path']}"
                wait_http_probe(running, kind, spec[kind], url)
            code, status = healthcheck(running)  # the image's own check, on the default port
            assert code == 0, status
        finally:
            _remove(name)


IN_POD_UPSTREAM = """
import sys
from pathlib import Path
from aiohttp import web
from tests.fakes.dists import build_wheel
from tests.fakes.index import FakeIndex
fake = FakeIndex(Path("/tmp/upstream/index"))
fake.add(build_wheel(Path("/tmp/upstream/dists"), "requests", sys.argv[2]))
web.run_app(fake.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def test_sidecar_job_pod_probes_pass_inside_and_its_ci_script_installs(
    image: str, tmp_path: Path
) -> None:
    """The sidecar binds loopback: exec probes pass in it, the pod IP gets no answer."""
    job = k8s_doc("examples/sidecar-ci-job.yaml", "Job")["spec"]["template"]["spec"]
    sidecar = named(job["initContainers"], "wheelwell")
    ci = named(job["containers"], "ci")
    args = list(sidecar.get("args", []))
    upstream = f"http://127.0.0.1:{IN_POD_UPSTREAM_PORT}/simple/"
    args[args.index("--upstream") + 1] = upstream  # the FakeIndex in the pod, not the Service
    # The CI image (python:3.11-slim) cannot be pulled here: the Debian base stands in, with
    # `python` for python3 as the slim image has it.
    shim = tmp_path / "shim"
    shim.mkdir(mode=0o755)
    shim.chmod(0o755)
    (shim / "python").symlink_to("/usr/bin/python3")
    names = [f"{TAG}-job-upstream", f"{TAG}-job-wheelwell", f"{TAG}-job-ci"]
    with (
        pod(f"{TAG}-job") as pod_name,
        volume(f"{TAG}-job-data") as data,
        volume(f"{TAG}-job-tmp") as tmp,
    ):
        shared = {"wheelwell-data": data, "tmp": tmp}  # emptyDirs shared by the pod's containers
        try:
            _remove(*names)
            podman(
                "run",
                "--detach",
                "--pod",
                pod_name,
                "--name",
                names[0],
                *RUN_LIMITS,
                "-v",
                f"{REPO / 'tests'}:/src/tests:ro",
                "-e",
                "PYTHONPATH=/src",
                "--entrypoint",
                "python",
                image,
                "-c",
                IN_POD_UPSTREAM,
                str(IN_POD_UPSTREAM_PORT),
                CI_PROJECT_VERSION,
            )
            podman(
                "run",
                "--detach",
                "--pod",
                pod_name,
                "--name",
                names[1],
                *RUN_LIMITS,
                *security_args(job, sidecar),
                *env_args(sidecar, "unused"),
                *[
                    a
                    for m in sidecar.get("volumeMounts", [])
                    for a in ("-v", f"{shared[m['name']]}:{m['mountPath']}")
                ],
                image,
                *args,
            )
            sidecar_running = Running(names[1], "")
            probe_kinds = ("startupProbe", "livenessProbe", "readinessProbe")
            for kind in probe_kinds:
                command = sidecar[kind]["exec"]["command"]
                wait_exec_probe(sidecar_running, kind, sidecar[kind], command)
            address = pod_ip(pod_name)
            port = sidecar["ports"][0]["containerPort"]
            assert refused(address, port), f"the sidecar answers on the pod IP {address}:{port}"

            command = ci["command"]
            result = podman(
                "run",
                "--pod",
                pod_name,
                "--name",
                names[2],
                *RUN_LIMITS,
                *security_args(job, ci),
                *env_args(ci, "unused"),
                "-e",
                "PATH=/opt/ci-shim:/usr/local/bin:/usr/bin:/bin",
                "-v",
                f"{shim}:/opt/ci-shim:ro",
                *[
                    a
                    for m in ci.get("volumeMounts", [])
                    for a in ("-v", f"{shared[m['name']]}:{m['mountPath']}")
                ],
                "--entrypoint",
                command[0],
                debian_base_image(),
                *command[1:],
                check=False,
                timeout=600,
            )
            assert result.returncode == 0, result.stdout + result.stderr + sidecar_running.logs()
            assert result.stdout.strip().splitlines()[-1] == CI_PROJECT_VERSION, result.stdout

            # The Job ends when the CI container does: Kubernetes then stops the sidecar.
            podman("stop", "--time", "30", names[1], timeout=60)
            assert sidecar_running.inspect()["State"]["ExitCode"] == 0, sidecar_running.logs()
        finally:
            _remove(*names)
