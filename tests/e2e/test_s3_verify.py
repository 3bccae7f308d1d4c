"""`wheelwell cache verify` and the scrubber in the bucket (storage.backend s3, issue 16),
against a real SeaweedFS: objects overwritten with wrong bytes are found, moved to
`{prefix}quarantine/` and no longer served; a mirror file comes again from upstream, a hosted
one answers an error, or is put back when this disk's copy hashes right."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from tests.conftest import Daemon, DaemonFactory, Dists, free_port
from tests.e2e.test_disk_faults import hosted_file_url, metric, upload_hosted
from tests.e2e.test_upstream_failures import download, file_url
from tests.fakes.index import FakeIndex, ThreadedServer
from tests.polling import wait_until
from tests.seaweed import BUCKET, SeaweedFS, on_bucket, wheelwell_cli

ROTTEN = b"these bytes do not hash to their name"


def _key(sha: str) -> str:
    return f"ww/blobs/{sha[:2]}/{sha}"


def _rot(store: SeaweedFS, sha: str) -> None:
    """The bucket's object now holds other bytes (a fault of the store, or a bad writer)."""
    store.request("PUT", f"/{BUCKET}/{_key(sha)}", ROTTEN)


def _quarantined(store: SeaweedFS) -> set[str]:
    return {key.rsplit("/", 1)[1] for key in store.keys("ww/quarantine/")}


def _drop_disk_copy(daemon: Daemon, sha: str) -> None:
    (daemon.data_dir / "blobs" / sha[:2] / sha).unlink()


def _verify(config: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return wheelwell_cli("cache", "verify", "--config", str(config), "--data-dir", str(data_dir))


def test_cache_verify_quarantines_corrupt_objects_in_the_bucket(
    store: SeaweedFS,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    fake_index: FakeIndex,
    dists: Dists,
    tmp_path: Path,
) -> None:
    daemon = on_bucket(daemon_factory, fake_index_server, store)
    lost = upload_hosted(daemon, tmp_path / "lost", "lost")  # no good copy anywhere
    kept = upload_hosted(daemon, tmp_path / "kept", "kept")  # a good copy on this disk
    mirror_url = file_url(daemon, "alpha", dists.alpha.filename)
    assert download(mirror_url) == dists.alpha.path.read_bytes()
    daemon.stop()
    for sha in (lost.sha256, kept.sha256, dists.alpha.sha256):
        _rot(store, sha)
    _drop_disk_copy(daemon, lost.sha256)
    _drop_disk_copy(daemon, dists.alpha.sha256)

    found = _verify(daemon.config_path, daemon.data_dir)
    assert found.returncode == 1, found.stderr
    for sha in (lost.sha256, dists.alpha.sha256):
        assert f"corrupt: {sha} (moved to s3://{BUCKET}/ww/quarantine/{sha})\n" in found.stdout
    moved = f"moved to s3://{BUCKET}/ww/quarantine/{kept.sha256}; put back from this disk"
    assert f"corrupt: {kept.sha256} ({moved})\n" in found.stdout
    assert f"in s3://{BUCKET}/ww/, 3 corrupt" in found.stdout
    assert _quarantined(store) == {lost.sha256, kept.sha256, dists.alpha.sha256}
    keys = set(store.keys("ww/blobs/"))
    assert _key(lost.sha256) not in keys and _key(dists.alpha.sha256) not in keys
    assert hashlib.sha256(store.get(_key(kept.sha256))).hexdigest() == kept.sha256

    again = _verify(daemon.config_path, daemon.data_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"in s3://{BUCKET}/ww/, 0 corrupt" in again.stdout
    stats = wheelwell_cli("cache", "stats", "--config", str(daemon.config_path))
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["bucket"] == {
        "store": f"s3://{BUCKET}/ww/",
        "files": len(keys),
        "bytes": sum(len(store.get(key)) for key in keys),
    }

    daemon = on_bucket(daemon_factory, fake_index_server, store, again=daemon)
    before = fake_index.hits(f"/files/{dists.alpha.filename}")
    assert (
        download(file_url(daemon, "alpha", dists.alpha.filename)) == dists.alpha.path.read_bytes()
    )
    assert fake_index.hits(f"/files/{dists.alpha.filename}") == before + 1  # from upstream again
    assert download(hosted_file_url(daemon, lost)) is None  # an error, never the wrong bytes
    assert download(hosted_file_url(daemon, kept)) == kept.path.read_bytes()


def test_cache_verify_names_a_store_it_cannot_reach(tmp_path: Path) -> None:
    config = tmp_path / "wheelwell.yaml"
    s3 = {"endpoint": f"http://127.0.0.1:{free_port()}", "bucket": BUCKET, "prefix": "ww/"}
    config.write_text(
        "storage:\n  backend: s3\n  s3:\n"
        + "".join(f"    {key}: {value}\n" for key, value in s3.items())
        + "    addressing: path\n    connect_timeout: 1s\n"
    )
    (tmp_path / "data" / "blobs").mkdir(parents=True)
    found = _verify(config, tmp_path / "data")
    assert found.returncode == 1
    assert found.stderr.count("\n") == 1, found.stderr
    assert f"wheelwell cache verify: object store s3://{BUCKET}/ww/ is unavailable" in found.stderr


def test_the_scrubber_quarantines_corrupt_objects_in_the_bucket(
    store: SeaweedFS,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    dists: Dists,
    tmp_path: Path,
) -> None:
    scrub = {"scrub_rate": "1GB", "scrub_interval": "200ms"}
    daemon = on_bucket(daemon_factory, fake_index_server, store, storage=scrub)
    hosted = upload_hosted(daemon, tmp_path, "rotten")
    url = file_url(daemon, "bulky", dists.bulky.filename)
    assert download(url) == dists.bulky.path.read_bytes()
    _drop_disk_copy(daemon, hosted.sha256)  # read from the bucket from now on
    _rot(store, hosted.sha256)
    _rot(store, dists.bulky.sha256)  # its copy here is good: put back

    def both_found() -> bool:
        return all(
            metric(daemon, "wheelwell_scrub_failures_total", kind=kind) == 1
            for kind in ("mirror", "hosted")
        )

    wait_until(both_found, timeout=30, interval=0.1, message="the scrubber to find both objects")
    assert _quarantined(store) == {hosted.sha256, dists.bulky.sha256}
    assert _key(hosted.sha256) not in store.keys("ww/blobs/")
    assert hashlib.sha256(store.get(_key(dists.bulky.sha256))).hexdigest() == dists.bulky.sha256
    assert download(hosted_file_url(daemon, hosted)) is None
    assert download(url) == dists.bulky.path.read_bytes()
    assert f"uploaded blob {hosted.sha256} is corrupt" in daemon.log()
    assert (daemon.data_dir / "scrub-s3.json").exists()
    assert metric(daemon, "wheelwell_scrub_bytes_total") > dists.bulky.size
