"""Disk full, damaged blobs and kill -9, against the real daemon (issue 9).

Disk-full cases run the data dir on a small tmpfs (we mount it; skipped where mount is refused).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, DaemonFactory, Dists, http_get
from tests.e2e.conftest import (
    ROOT,
    basic,
    encode_multipart,
    post_upload,
    simple_files,
    stored_files,
    upload_fields,
    wait_until_no_temp_files,
)
from tests.e2e.test_upstream_failures import download, file_url
from tests.fakes.dists import Built, build_wheel
from tests.fakes.index import FakeIndex, ThreadedServer
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

TMPFS_SIZE = 8 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: the data dir of a daemon that is to run out of space."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def disk_daemon(
    small_disk: Path, daemon_factory: DaemonFactory, fake_index_server: ThreadedServer
) -> Daemon:
    """A daemon whose data dir is on the small tmpfs; no free-space check, no scrubber."""
    storage = {"data_dir": str(small_disk / "data"), "min_free_space": 0, "scrub": False}
    return daemon_factory(fake_index_server.url, {"storage": storage})


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(mount: Path, leave: int) -> Path:
    """Take all free space on `mount` but `leave` bytes; delete the file to give it back."""
    filler = mount / "filler"
    with filler.open("ab") as fh:
        os.posix_fallocate(fh.fileno(), fh.tell(), max(free_bytes(mount) - leave, 1))
    return filler


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    """One sample of /+metrics, 0 when absent."""
    text = http_get(daemon.url + "/+metrics").body.decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def deleted_open_files(daemon: Daemon) -> list[str]:
    """Files the daemon holds open that were deleted under its data dir (space not freed)."""
    fds = Path(f"/proc/{daemon.process.pid}/fd")
    found = []
    for fd in fds.iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.endswith(" (deleted)") and target.startswith(str(daemon.data_dir)):
            found.append(target)
    return found


def wait_no_deleted_open_files(daemon: Daemon) -> None:
    wait_until(
        lambda: not deleted_open_files(daemon),
        timeout=10,
        interval=0.1,
        message=lambda: f"deleted temp files to be closed: {deleted_open_files(daemon)}",
    )


def blob_path(daemon: Daemon, sha256: str) -> Path:
    return daemon.data_dir / "blobs" / sha256[:2] / sha256


def stored_blob(daemon: Daemon, sha256: str) -> Path:
    """The blob's path once its commit (behind the response) has landed."""
    path = blob_path(daemon, sha256)
    wait_until(path.exists, timeout=10, message=f"{sha256} to be stored")
    return path


def one_line(body: bytes) -> str:
    text = body.decode().strip()
    assert "\n" not in text, text
    return text


# ---- temp files --------------------------------------------------------------------------


def test_hash_mismatch_closes_its_temp_file_at_once(
    fake_index: FakeIndex, daemon: Daemon, dists: Dists
) -> None:
    fake_index.wrong_hash = True
    assert download(file_url(daemon, "bulky", dists.bulky.filename)) is None
    wait_until_no_temp_files(daemon)
    wait_no_deleted_open_files(daemon)


def test_truncated_upstream_body_closes_its_temp_file_at_once(
    fake_index: FakeIndex, daemon: Daemon, dists: Dists
) -> None:
    url = file_url(daemon, "bulky", dists.bulky.filename)
    fake_index.truncate_files = True
    assert download(url) is None
    wait_until_no_temp_files(daemon)
    wait_no_deleted_open_files(daemon)


# ---- disk full ---------------------------------------------------------------------------


def test_cold_download_larger_than_free_space_streams_uncached(
    small_disk: Path, disk_daemon: Daemon, fake_index: FakeIndex, dists: Dists
) -> None:
    url = file_url(disk_daemon, "bulky", dists.bulky.filename)  # the page is cached first
    fill(small_disk, leave=1024 * 1024)
    assert free_bytes(small_disk) < dists.bulky.size
    body = download(url)
    assert body is not None, disk_daemon.log()
    assert hashlib.sha256(body).hexdigest() == dists.bulky.sha256
    assert metric(disk_daemon, "wheelwell_uncached_downloads_total", reason="full") == 1
    assert not blob_path(disk_daemon, dists.bulky.sha256).exists()
    wait_until_no_temp_files(disk_daemon)
    wait_no_deleted_open_files(disk_daemon)
    assert disk_daemon.log().count("its clients get it uncached") == 1


def test_concurrent_readers_of_a_download_that_cannot_be_stored_all_get_the_file(
    small_disk: Path, disk_daemon: Daemon, fake_index: FakeIndex, dists: Dists
) -> None:
    url = file_url(disk_daemon, "bulky", dists.bulky.filename)
    fill(small_disk, leave=2 * 1024 * 1024)  # the first 2 MiB fit, then the store is full
    fake_index.slow_chunk_delay = 0.005
    bodies: list[bytes | None] = []
    threads = [threading.Thread(target=lambda: bodies.append(download(url))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [hashlib.sha256(b or b"").hexdigest() for b in bodies] == [dists.bulky.sha256] * 3
    wait_until_no_temp_files(disk_daemon)
    wait_no_deleted_open_files(disk_daemon)


def test_upload_on_a_full_disk_is_507_and_leaves_nothing(
    small_disk: Path, disk_daemon: Daemon, tmp_path: Path
) -> None:
    built = build_wheel(tmp_path / "dists", "diskfull", "1.0", payload_size=256 * 1024)
    before = stored_files(disk_daemon)
    filler = fill(small_disk, leave=0)
    sent = post_upload(disk_daemon.url + "/root/public/", built)
    assert sent.status == 507, sent.body
    assert "no space left" in one_line(sent.body)
    assert str(small_disk) not in sent.body.decode()  # no server path in the body
    wait_until_no_temp_files(disk_daemon)
    assert stored_files(disk_daemon) == before
    assert simple_files(disk_daemon, "root/public", "diskfull") is None
    filler.unlink()
    assert post_upload(disk_daemon.url + "/root/public/", built).status == 200


def test_database_write_on_a_full_disk_is_507_and_the_daemon_recovers(
    small_disk: Path, disk_daemon: Daemon, tmp_path: Path
) -> None:
    # METADATA (its blob) fits in what is left; the row, its search entry and changelog do not
    built = build_wheel(tmp_path / "dists", "dbfull", "1.0", description="word " * 60_000)
    filler = fill(small_disk, leave=512 * 1024)
    sent = post_upload(disk_daemon.url + "/root/public/", built)
    assert sent.status == 507, sent.body
    assert "database" in one_line(sent.body)
    assert simple_files(disk_daemon, "root/public", "dbfull") is None
    assert http_get(disk_daemon.url + "/+status").status == 200
    filler.unlink()
    assert post_upload(disk_daemon.url + "/root/public/", built).status == 200, disk_daemon.log()
    assert simple_files(disk_daemon, "root/public", "dbfull") == {built.filename: built.sha256}


def test_ready_is_503_while_free_space_is_under_the_threshold(
    small_disk: Path, daemon_factory: DaemonFactory, fake_index_server: ThreadedServer
) -> None:
    storage = {"data_dir": str(small_disk / "data"), "min_free_space": "4MiB", "scrub": False}
    daemon = daemon_factory(fake_index_server.url, {"storage": storage})
    assert http_get(daemon.url + "/+ready").status == 200
    filler = fill(small_disk, leave=1024 * 1024)
    answer = http_get(daemon.url + "/+ready")
    assert answer.status == 503
    assert "min_free_space" in json.loads(answer.body)["reason"]
    filler.unlink()
    assert http_get(daemon.url + "/+ready").status == 200


# ---- damaged blobs -----------------------------------------------------------------------


def upload_hosted(daemon: Daemon, tmp_path: Path, name: str) -> Built:
    built = build_wheel(tmp_path / "dists", name, "1.0", payload_size=64 * 1024)
    sent = post_upload(daemon.url + "/root/public/", built)
    assert sent.status == 200, sent.body
    return built


def hosted_file_url(daemon: Daemon, built: Built) -> str:
    return f"{daemon.url}/root/public/+f/{built.sha256}/{built.filename}"


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def flip_a_bit(path: Path) -> None:
    with path.open("r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_truncated_mirror_blob_is_fetched_again(
    fake_index: FakeIndex, daemon: Daemon, dists: Dists
) -> None:
    url = file_url(daemon, "bulky", dists.bulky.filename)
    assert download(url) is not None
    truncate(stored_blob(daemon, dists.bulky.sha256))
    body = download(url)
    assert body is not None
    assert hashlib.sha256(body).hexdigest() == dists.bulky.sha256
    assert fake_index.hits(f"/files/{dists.bulky.filename}") == 2
    assert (daemon.data_dir / "quarantine" / dists.bulky.sha256).exists()
    assert metric(daemon, "wheelwell_blob_damaged_total", kind="mirror") == 1
    assert daemon.log().count("quarantined, fetching it again") == 1


def test_truncated_hosted_blob_is_500_and_quarantined(daemon: Daemon, tmp_path: Path) -> None:
    built = upload_hosted(daemon, tmp_path, "shortened")
    truncate(blob_path(daemon, built.sha256))
    answer = http_get(hosted_file_url(daemon, built))
    assert answer.status == 500
    text = one_line(answer.body)
    assert f"file {built.filename} of index root/public is damaged" in text
    assert str(daemon.data_dir) not in text
    assert (daemon.data_dir / "quarantine" / built.sha256).exists()
    assert metric(daemon, "wheelwell_blob_damaged_total", kind="private") == 1


def test_scrubber_quarantines_flipped_blobs(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    fake_index: FakeIndex,
    dists: Dists,
    tmp_path: Path,
) -> None:
    storage: dict[str, Any] = {"scrub_rate": "1GB", "scrub_interval": "200ms"}
    daemon = daemon_factory(fake_index_server.url, {"storage": storage})
    url = file_url(daemon, "bulky", dists.bulky.filename)
    assert download(url) is not None
    hosted = upload_hosted(daemon, tmp_path, "flipped")
    flip_a_bit(stored_blob(daemon, dists.bulky.sha256))
    flip_a_bit(blob_path(daemon, hosted.sha256))

    def both_found() -> bool:
        return all(
            metric(daemon, "wheelwell_scrub_failures_total", kind=kind) == 1
            for kind in ("mirror", "hosted")
        )

    wait_until(both_found, timeout=30, interval=0.1, message="the scrubber to find both flips")
    quarantine = daemon.data_dir / "quarantine"
    assert {p.name for p in quarantine.iterdir()} == {dists.bulky.sha256, hosted.sha256}
    assert metric(daemon, "wheelwell_scrub_bytes_total") > dists.bulky.size
    body = download(url)  # the mirror file comes back from upstream, whole
    assert body is not None
    assert hashlib.sha256(body).hexdigest() == dists.bulky.sha256
    assert "uploaded blob " + hosted.sha256 + " is corrupt" in daemon.log()


# ---- kill -9 -----------------------------------------------------------------------------


def temp_files(daemon: Daemon) -> list[Path]:
    tmp = daemon.data_dir / "tmp"
    return [p for p in tmp.iterdir() if p.stat().st_size > 0] if tmp.exists() else []


def kill(daemon: Daemon) -> None:
    daemon.process.kill()
    daemon.process.wait()


def test_kill_during_a_cold_download_leaves_nothing_partial(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    fake_index: FakeIndex,
    dists: Dists,
) -> None:
    first = daemon_factory(fake_index_server.url)
    url = file_url(first, "bulky", dists.bulky.filename)
    fake_index.slow_chunk_delay = 0.05  # ~4 s for the whole file
    reader = threading.Thread(target=download, args=(url,), daemon=True)
    reader.start()
    wait_until(lambda: temp_files(first), timeout=10, message="the download to reach tmp/")
    kill(first)
    assert temp_files(first)  # the crash left a partial file behind
    again = daemon_factory(fake_index_server.url, {"storage": {"data_dir": str(first.data_dir)}})
    assert not list((again.data_dir / "tmp").iterdir())  # cleaned at start
    assert not blob_path(again, dists.bulky.sha256).exists()
    fake_index.slow_chunk_delay = 0
    body = download(file_url(again, "bulky", dists.bulky.filename))
    assert body is not None
    assert hashlib.sha256(body).hexdigest() == dists.bulky.sha256
    assert fake_index.hits(f"/files/{dists.bulky.filename}") == 2
    reader.join(30)


def test_kill_during_an_upload_leaves_nothing_partial(
    daemon_factory: DaemonFactory, fake_index_server: ThreadedServer, tmp_path: Path
) -> None:
    first = daemon_factory(fake_index_server.url)
    built = build_wheel(tmp_path / "dists", "halfway", "1.0", payload_size=1024 * 1024)
    data = built.path.read_bytes()
    head, content_type, tail = encode_multipart(upload_fields(built), built.filename, data)
    headers = {"Content-Type": content_type, **basic(ROOT)}
    lines = ["POST /root/public/ HTTP/1.1", f"Host: {first.url[7:]}"]
    lines += [f"Content-Length: {len(head) + len(data) + len(tail)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()] + ["", ""]
    port = int(first.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall("\r\n".join(lines).encode() + head + data[: len(data) // 2])
        wait_until(lambda: temp_files(first), timeout=10, message="the upload to reach tmp/")
        kill(first)
    again = daemon_factory(fake_index_server.url, {"storage": {"data_dir": str(first.data_dir)}})
    assert not list((again.data_dir / "tmp").iterdir())
    assert simple_files(again, "root/public", "halfway") is None
    assert not blob_path(again, built.sha256).exists()
