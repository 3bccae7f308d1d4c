"""Uploads with real twine and uv publish, and every way an upload can go wrong leaving no trace."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Clients, Daemon, DaemonFactory, http_get
from tests.e2e.conftest import (
    ROOT,
    ROOT_PASSWORD,
    basic,
    call,
    create_token,
    decoded,
    download_file,
    encode_multipart,
    installed_versions,
    pip_install,
    post_body,
    post_raw,
    post_upload,
    simple_files,
    stored_files,
    twine_upload,
    upload_fields,
    wait_until_no_temp_files,
)
from tests.fakes.dists import Built, build_sdist, build_wheel
from tests.fakes.index import ThreadedServer

pytestmark = pytest.mark.e2e


def upload_url(daemon: Daemon, index: str = "root/public") -> str:
    return f"{daemon.url}/{index}/"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_twine_uploads_wheel_and_sdist_then_pip_installs(
    daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    wheel = build_wheel(tmp_path / "dist", "shipped", "1.0", requires=["beta>=1"])
    sdist = build_sdist(tmp_path / "dist", "shipped", "1.0", requires=["beta>=1"])
    twine_upload(clients, upload_url(daemon), ROOT, wheel.path, sdist.path)
    files = simple_files(daemon, "root/public", "shipped")
    assert files == {wheel.filename: wheel.sha256, sdist.filename: sdist.sha256}
    assert sha256(download_file(daemon, "root/public", "shipped", sdist.filename)) == sdist.sha256
    target = tmp_path / "target"
    pip_install(clients, daemon, "root/public", target, "shipped")
    assert installed_versions(clients, target, "shipped", "beta") == ["1.0", "2.0"]
    assert simple_files(daemon, "root/pypi", "shipped") is None  # the mirror knows nothing of it


def test_uv_publish(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "published", "1.0")
    args = ("--publish-url", upload_url(daemon), "--username", "root")
    clients.uv("publish", *args, "--password", ROOT_PASSWORD, str(wheel.path))
    assert simple_files(daemon, "root/public", "published") == {wheel.filename: wheel.sha256}
    target = tmp_path / "target"
    pip_install(clients, daemon, "root/public", target, "published")
    assert installed_versions(clients, target, "published") == ["1.0"]


def test_identical_reupload_is_accepted(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "again", "1.0")
    twine_upload(clients, upload_url(daemon), ROOT, wheel.path)
    stored = stored_files(daemon)
    twine_upload(clients, upload_url(daemon), ROOT, wheel.path)
    # twine 7 allows --skip-existing only for the public index; uv's --check-url is the equivalent
    check = ("--check-url", daemon.index_url("root/public"))
    args = ("--publish-url", upload_url(daemon), "--username", "root", "--password", ROOT_PASSWORD)
    clients.uv("publish", *args, *check, str(wheel.path))
    clients.uv("publish", *args, str(wheel.path))
    assert post_upload(upload_url(daemon), wheel).status == 200
    assert simple_files(daemon, "root/public", "again") == {wheel.filename: wheel.sha256}
    assert stored_files(daemon) == stored


def test_same_filename_with_other_bytes_is_409(
    daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    original = build_wheel(tmp_path / "one", "clash", "1.0")
    other = build_wheel(tmp_path / "two", "clash", "1.0", summary="different bytes")
    assert (other.filename, other.sha256 != original.sha256) == (original.filename, True)
    twine_upload(clients, upload_url(daemon), ROOT, original.path)
    stored = stored_files(daemon)
    refused = post_upload(upload_url(daemon), other)
    assert refused.status == 409, refused.body
    assert original.filename in decoded(refused)["error"]
    assert twine_upload(clients, upload_url(daemon), ROOT, other.path, check=False).returncode
    assert simple_files(daemon, "root/public", "clash") == {original.filename: original.sha256}
    served = download_file(daemon, "root/public", "clash", original.filename)
    assert sha256(served) == original.sha256
    assert stored_files(daemon) == stored


def test_multipart_cut_inside_the_file_is_400(daemon: Daemon, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "chopped", "1.0", payload_size=256 * 1024)
    data = wheel.path.read_bytes()
    head, content_type, _ = encode_multipart(upload_fields(wheel), wheel.filename, data)
    headers = {"Content-Type": content_type, "Accept": "application/json", **basic(ROOT)}
    stored = stored_files(daemon)
    # A complete HTTP request whose form stops half-way through the file: no closing boundary.
    refused = post_body(upload_url(daemon), head + data[: len(data) // 2], headers)
    assert refused.status == 400, refused.body
    wait_until_no_temp_files(daemon)
    assert simple_files(daemon, "root/public", "chopped") is None
    assert stored_files(daemon) == stored


def test_connection_closed_mid_upload_leaves_nothing(daemon: Daemon, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "dropped", "1.0", payload_size=1024 * 1024)
    data = wheel.path.read_bytes()
    head, content_type, tail = encode_multipart(upload_fields(wheel), wheel.filename, data)
    body = head + data + tail
    headers = {"Content-Type": content_type, **basic(ROOT)}
    stored = stored_files(daemon)
    # Content-Length promises the whole form, half of it arrives, then the client hangs up.
    answer = post_raw(upload_url(daemon), headers, body[: len(body) // 2], declared=len(body))
    if answer:  # the daemon may answer before it sees the socket close, or just drop it
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
    wait_until_no_temp_files(daemon)
    assert simple_files(daemon, "root/public", "dropped") is None
    assert stored_files(daemon) == stored
    assert http_get(daemon.url + "/+health").status == 200


def test_wrong_sha256_digest_is_400(daemon: Daemon, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "misdigested", "1.0")
    stored = stored_files(daemon)
    refused = post_upload(upload_url(daemon), wheel, form={"sha256_digest": "0" * 64})
    assert refused.status == 400, refused.body
    assert "sha256" in decoded(refused)["error"].lower()
    assert simple_files(daemon, "root/public", "misdigested") is None
    wait_until_no_temp_files(daemon)
    assert stored_files(daemon) == stored


@pytest.mark.parametrize(
    ("field", "value"), [("name", "someone-else"), ("version", "2.0")], ids=["name", "version"]
)
def test_form_disagreeing_with_the_file_is_400(
    field: str, value: str, daemon: Daemon, tmp_path: Path
) -> None:
    wheel = build_wheel(tmp_path / "dist", "mislabelled", "1.0")
    stored = stored_files(daemon)
    refused = post_upload(upload_url(daemon), wheel, form={field: value})
    assert refused.status == 400, refused.body
    assert simple_files(daemon, "root/public", "mislabelled") is None
    assert simple_files(daemon, "root/public", "someone-else") is None
    assert stored_files(daemon) == stored


@pytest.mark.parametrize(
    "path", ["/root/public/+simple/", "/root/pypi/"], ids=["simple-url", "mirror"]
)
def test_upload_to_a_read_only_url_names_the_upload_url(
    path: str, daemon: Daemon, tmp_path: Path
) -> None:
    wheel = build_wheel(tmp_path / "dist", "misdirected", "1.0")
    stored = stored_files(daemon)
    refused = post_upload(daemon.url + path, wheel)
    assert refused.status == 405, refused.body
    assert f"{daemon.url}/root/public/" in decoded(refused)["error"]
    assert simple_files(daemon, "root/public", "misdirected") is None
    assert stored_files(daemon) == stored


def test_uploads_survive_a_restart(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    wheel = build_wheel(tmp_path / "dist", "durable", "1.0", requires=["beta>=1"])
    first = daemon_factory(fake_index_server.url)
    twine_upload(clients, upload_url(first), ROOT, wheel.path)
    token = ("__token__", create_token(first, ROOT, index="root/public")["token"])
    assert first.stop() == 0
    second = daemon_factory(fake_index_server.url, {"storage": {"data_dir": str(first.data_dir)}})
    assert simple_files(second, "root/public", "durable") == {wheel.filename: wheel.sha256}
    target = tmp_path / "target"
    pip_install(clients, second, "root/public", target, "durable")
    assert installed_versions(clients, target, "durable", "beta") == ["1.0", "2.0"]
    # tokens survive too, and the changelog's serial numbering goes on where it stopped
    again = build_wheel(tmp_path / "dist", "durable", "1.1")
    twine_upload(clients, upload_url(second), token, again.path)
    serials = [e["serial"] for e in changelog(second)["entries"]]
    assert serials == sorted(set(serials))


STABLE_INDEXES: list[dict[str, Any]] = [
    {"name": "root/pypi", "kind": "mirror"},
    {"name": "root/public", "kind": "private", "bases": ["root/pypi"]},
    {"name": "root/stable", "kind": "private", "bases": ["root/pypi"], "volatile": False},
]


def test_non_volatile_index_refuses_overwrite_and_delete(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    daemon = daemon_factory(fake_index_server.url, {"indexes": STABLE_INDEXES})
    original = build_wheel(tmp_path / "one", "carved", "1.0")
    other = build_wheel(tmp_path / "two", "carved", "1.0", summary="different bytes")
    twine_upload(clients, upload_url(daemon, "root/stable"), ROOT, original.path)
    assert post_upload(upload_url(daemon, "root/stable"), other).status == 409
    by_version = call(daemon, "DELETE", "/root/stable/carved/1.0", auth=ROOT)
    assert by_version.status == 409, by_version.body
    file_path = f"/root/stable/+f/{original.sha256}/{original.filename}"
    by_file = call(daemon, "DELETE", file_path, auth=ROOT)
    assert by_file.status == 409, by_file.body
    assert simple_files(daemon, "root/stable", "carved") == {original.filename: original.sha256}
    served = download_file(daemon, "root/stable", "carved", original.filename)
    assert sha256(served) == original.sha256


def test_volatile_index_deletes(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    old = build_wheel(tmp_path / "dist", "fleeting", "1.0")
    new = build_wheel(tmp_path / "dist", "fleeting", "2.0")
    twine_upload(clients, upload_url(daemon), ROOT, old.path, new.path)
    deleted = call(daemon, "DELETE", "/root/public/fleeting/2.0", auth=ROOT)
    assert deleted.status == 200, deleted.body
    assert simple_files(daemon, "root/public", "fleeting") == {old.filename: old.sha256}
    file_path = f"/root/public/+f/{old.sha256}/{old.filename}"
    deleted = call(daemon, "DELETE", file_path, auth=ROOT)
    assert deleted.status == 200, deleted.body
    assert simple_files(daemon, "root/public", "fleeting") is None


def test_yanked_release_is_skipped(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    good = build_wheel(tmp_path / "dist", "yankee", "1.0")
    bad = build_wheel(tmp_path / "dist", "yankee", "2.0")
    twine_upload(clients, upload_url(daemon), ROOT, good.path, bad.path)
    yanked = call(
        daemon, "PATCH", "/root/public/yankee/2.0", {"yanked": True, "reason": "bad"}, auth=ROOT
    )
    assert yanked.status == 200, yanked.body
    page = http_get(daemon.index_url("root/public") + "yankee/", {"Accept": "text/html"})
    lines = {
        name: line
        for line in page.body.decode().splitlines()
        for name in (good.filename, bad.filename)
        if name in line
    }
    assert 'data-yanked="bad"' in lines[bad.filename]
    assert "data-yanked" not in lines[good.filename]
    release = decoded(call(daemon, "GET", "/root/public/yankee"))["releases"]
    assert (release["2.0"][0]["yanked"], release["2.0"][0]["yanked_reason"]) == (True, "bad")
    pip_install(clients, daemon, "root/public", tmp_path / "latest", "yankee")
    assert installed_versions(clients, tmp_path / "latest", "yankee") == ["1.0"]
    pip_install(clients, daemon, "root/public", tmp_path / "pinned", "yankee==2.0")  # PEP 592
    assert installed_versions(clients, tmp_path / "pinned", "yankee") == ["2.0"]
    restored = call(daemon, "PATCH", "/root/public/yankee/2.0", {"yanked": False}, auth=ROOT)
    assert restored.status == 200, restored.body
    pip_install(clients, daemon, "root/public", tmp_path / "restored", "yankee")
    assert installed_versions(clients, tmp_path / "restored", "yankee") == ["2.0"]


def changelog(daemon: Daemon, since: int = 0) -> dict[str, Any]:
    got = call(daemon, "GET", f"/+changelog?since={since}", auth=ROOT)
    assert got.status == 200, got.body
    result: dict[str, Any] = decoded(got)
    return result


def test_changelog_lists_uploads_in_serial_order(
    daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    built: list[Built] = [
        build_wheel(tmp_path / "dist", "logged", "1.0"),
        build_sdist(tmp_path / "dist", "logged", "1.0"),
        build_wheel(tmp_path / "dist", "logged-too", "0.1"),
    ]
    for dist in built:
        twine_upload(clients, upload_url(daemon), ROOT, dist.path)
    log = changelog(daemon)
    entries = log["entries"]
    serials = [e["serial"] for e in entries]
    assert serials == sorted(set(serials))
    assert log["serial"] == serials[-1]
    uploads = [e for e in entries if e["kind"] == "upload"]
    assert [e["index"] for e in uploads] == ["root/public"] * len(built)
    assert [(e["data"]["filename"], e["data"]["sha256"]) for e in uploads] == [
        (d.filename, d.sha256) for d in built
    ]
    # `since` skips what a follower has already seen
    later = changelog(daemon, since=uploads[0]["serial"])["entries"]
    assert [e["serial"] for e in later] == [s for s in serials if s > uploads[0]["serial"]]


def test_upload_over_the_size_limit_is_413(
    daemon_factory: DaemonFactory, fake_index_server: ThreadedServer, tmp_path: Path
) -> None:
    daemon = daemon_factory(fake_index_server.url, {"auth": {"max_upload_size": "64KiB"}})
    small = build_wheel(tmp_path / "dist", "hefty", "1.0")
    large = build_wheel(tmp_path / "dist", "hefty", "2.0", payload_size=256 * 1024)
    stored = stored_files(daemon)
    refused = post_upload(upload_url(daemon), large)
    assert refused.status == 413, refused.body
    wait_until_no_temp_files(daemon)
    assert simple_files(daemon, "root/public", "hefty") is None
    assert stored_files(daemon) == stored
    assert post_upload(upload_url(daemon), small).status == 200  # the limit, not the index


@pytest.mark.parametrize(
    "filename",
    [
        "../../escape-1.0-py3-none-any.whl",
        "..%2Fescape-1.0-py3-none-any.whl",
        "sub/escape-1.0-py3-none-any.whl",
        "escape-1.0.exe",
        "other-1.0-py3-none-any.whl",  # a fine name, for another project than the form and file
    ],
)
def test_bad_file_name_is_400(filename: str, daemon: Daemon, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "escape", "1.0")
    data = wheel.path.read_bytes()
    head, content_type, tail = encode_multipart(upload_fields(wheel), filename, data)
    headers = {"Content-Type": content_type, "Accept": "application/json", **basic(ROOT)}
    stored = stored_files(daemon)
    refused = post_body(upload_url(daemon), head + data + tail, headers)
    assert refused.status == 400, refused.body
    assert simple_files(daemon, "root/public", "escape") is None
    assert simple_files(daemon, "root/public", "other") is None
    wait_until_no_temp_files(daemon)
    assert stored_files(daemon) == stored
    assert not [p for p in daemon.data_dir.parent.rglob("*escape*")]  # nothing outside either


def test_upload_to_an_unknown_index_is_404(daemon: Daemon, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "homeless", "1.0")
    stored = stored_files(daemon)
    refused = post_upload(upload_url(daemon, "root/nowhere"), wheel)
    assert refused.status == 404, refused.body
    assert "root/nowhere" in decoded(refused)["error"]
    assert stored_files(daemon) == stored


def test_racing_uploads_of_one_file_name_keep_one(daemon: Daemon, tmp_path: Path) -> None:
    contenders = [
        build_wheel(tmp_path / str(i), "raced", "1.0", payload_size=512 * 1024) for i in range(2)
    ]
    barrier = threading.Barrier(len(contenders))

    def send(built: Built) -> int:
        barrier.wait()
        return post_upload(upload_url(daemon), built).status

    with ThreadPoolExecutor(len(contenders)) as pool:
        statuses = list(pool.map(send, contenders))
    assert sorted(statuses) == [200, 409]
    winner, loser = (contenders[statuses.index(status)] for status in (200, 409))
    assert simple_files(daemon, "root/public", "raced") == {winner.filename: winner.sha256}
    assert sha256(download_file(daemon, "root/public", "raced", winner.filename)) == winner.sha256
    wait_until_no_temp_files(daemon)
    assert not [path for path in stored_files(daemon) if loser.sha256 in path]  # refused: no trace
