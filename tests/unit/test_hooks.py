"""Hooks without a network: the outbox in the change's transaction, backoff, signing, Jenkins."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy import delivery
from proxy.config import HooksConfig, IndexConfig, WebhookConfig
from proxy.errors import NotFoundError
from proxy.hosted import jenkins
from proxy.hosted.hooks import find_hook, retry_delay, sign
from proxy.hosted.outbox import JENKINS, HookOutbox, prune_events, webhook_key
from proxy.indexes.store import to_record
from proxy.storage.changes import (
    FileUploaded,
    HostedRow,
    IndexSaved,
    ReleaseDeleted,
    ReleaseYanked,
    WheelhouseFile,
    WheelhouseScanned,
)
from proxy.storage.db import ChangelogEntry, Database

HOOK = WebhookConfig(url="http://127.0.0.1:9/h", secret="s3")
INDEX = IndexConfig(
    name="root/dev",
    webhooks=(HOOK,),
    uploadtrigger_jenkins="http://127.0.0.1:9/job/{pkgname}/buildWithParameters",
)


def upload(filename: str = "ours-1.0.tar.gz", sha: str = "c" * 64) -> FileUploaded:
    return FileUploaded(
        idx="root/dev", project="ours", version="1.0", filename=filename, sha256=sha, size=5,
        requires_python=None, metadata_sha256=None, summary="s", description="",
        description_type="", uploaded=1.5, uploader="alice",
    )  # fmt: skip


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(tmp_path / "db.sqlite3")
    await db.start()
    db.add_outbox(HookOutbox("https://pkgs.example.org").prepare)
    await db.commit(IndexSaved(name="root/dev", config=to_record(INDEX)))
    yield db
    await db.close()


async def queued(db: Database) -> list[tuple[str, str, int]]:
    rows = await db.read(
        lambda c: c.execute("SELECT hook, event, serial FROM hook_events ORDER BY id").fetchall()
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def test_a_change_queues_its_events_with_its_serial(db: Database) -> None:
    serial = await db.commit(upload())
    rows = await queued(db)
    assert rows == [(webhook_key(HOOK.url), "upload", serial), (JENKINS, "upload", serial)]
    body = await db.read(lambda c: c.execute("SELECT body FROM hook_events").fetchone()[0])
    assert json.loads(body) == {
        "id": f"{serial}.0",
        "event": "upload",
        "index": "root/dev",
        "project": "ours",
        "version": "1.0",
        "filename": "ours-1.0.tar.gz",
        "sha256": "c" * 64,
        "file_url": f"https://pkgs.example.org/root/dev/+f/{'c' * 64}/ours-1.0.tar.gz",
        "uploader": "alice",
        "serial": serial,
        "time": await db.read(lambda c: _time_of(c, serial)),
    }


def _time_of(conn: sqlite3.Connection, serial: int) -> float:
    return float(conn.execute("SELECT at FROM changelog WHERE serial = ?", (serial,)).fetchone()[0])


async def test_jenkins_is_triggered_by_sdists_only(db: Database) -> None:
    await db.commit(upload("ours-1.0-py3-none-any.whl", "d" * 64))
    assert [h for h, _, _ in await queued(db)] == [webhook_key(HOOK.url)]


async def test_a_failed_change_queues_nothing(db: Database) -> None:
    await db.commit(upload())
    before = await queued(db)
    with pytest.raises(NotFoundError):
        await db.commit(
            ReleaseYanked(idx="root/dev", project="ours", version="9", yanked=True, reason=None)
        )
    with pytest.raises(NotFoundError):
        await db.commit(ReleaseDeleted(idx="root/dev", project="nope", version="1"))
    assert await queued(db) == before


async def test_a_delete_names_the_files_it_removed(db: Database) -> None:
    await db.commit(upload())
    await db.commit(upload("ours-1.0-py3-none-any.whl", "d" * 64))
    serial = await db.commit(ReleaseDeleted(idx="root/dev", project="ours", version="1.0"))
    rows = await db.read(
        lambda c: c.execute(
            "SELECT body FROM hook_events WHERE serial = ? ORDER BY id", (serial,)
        ).fetchall()
    )
    assert [json.loads(r[0])["filename"] for r in rows] == [
        "ours-1.0-py3-none-any.whl",
        "ours-1.0.tar.gz",
    ]


async def test_wheelhouse_changes_are_events(db: Database) -> None:
    row = HostedRow("w", "2", "w-2-py3-none-any.whl", "e" * 64, 1, None, None, "", "", "")
    found = WheelhouseFile(path="w-2-py3-none-any.whl", mtime_ns=1, file=row)
    await db.commit(WheelhouseScanned(idx="root/dev", removed=(), added=(found,)))
    await db.commit(WheelhouseScanned(idx="root/dev", removed=(found,), added=()))
    assert [e for _, e, _ in await queued(db)] == ["wheelhouse-add", "wheelhouse-remove"]


async def test_a_replayed_change_queues_nothing(db: Database, tmp_path: Path) -> None:
    """Replicas and import replay changes made (and announced) elsewhere."""
    entry = ChangelogEntry(
        db.serial + 5, 2.0, "upload", "root/dev", json.dumps(dataclasses.asdict(upload())), 1
    )
    await db.replay(entry)
    assert await queued(db) == []


def test_backoff_doubles_up_to_its_cap() -> None:
    cfg = HooksConfig(retry_min=1.0, retry_max=600.0)
    assert [retry_delay(cfg, n) for n in (1, 2, 3, 4, 10, 11, 1000)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        512.0,
        600.0,
        600.0,
    ]


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"event":"upload"}'
    want = hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert sign("key", body) == f"sha256={want}"


def test_a_hook_is_looked_up_as_configured_now() -> None:
    assert find_hook(INDEX, webhook_key(HOOK.url)) == HOOK
    assert find_hook(INDEX, JENKINS) == INDEX.uploadtrigger_jenkins
    assert find_hook(INDEX, webhook_key("http://127.0.0.1:9/other")) is None
    assert find_hook(None, JENKINS) is None


def test_credentials_in_a_url_become_basic_auth_and_never_show() -> None:
    url, auth = delivery.split_credentials("https://ci:t%40k@jenkins.example:8443/job/x")
    assert url == "https://jenkins.example:8443/job/x"
    assert auth == "Basic Y2k6dEBr"  # ci:t@k
    assert delivery.split_credentials("http://h/x") == ("http://h/x", None)


@pytest.mark.parametrize(
    ("trigger", "crumb"),
    [
        ("http://j:8080/job/pkg/buildWithParameters", "http://j:8080/crumbIssuer/api/json"),
        ("https://h/ci/job/a/job/b/build?x=1", "https://h/ci/crumbIssuer/api/json"),
        ("http://u:p@h/generic", "http://u:p@h/crumbIssuer/api/json"),
    ],
)
def test_the_crumb_issuer_is_below_jenkins_root(trigger: str, crumb: str) -> None:
    assert jenkins.crumb_url(trigger) == crumb


def test_the_trigger_url_is_formatted_like_devpi_jenkins() -> None:
    event = {"project": "my-pkg", "version": "1.0+local", "file_url": "http://h/f/x.tar.gz"}
    got = jenkins.render_trigger_url("http://j/job/{pkgname}/x?v={pkgversion}&f={file_url}", event)
    assert got == "http://j/job/my-pkg/x?v=1.0%2Blocal&f=http%3A%2F%2Fh%2Ff%2Fx.tar.gz"


def test_the_crumb_answer_is_parsed_or_ignored() -> None:
    assert jenkins.parse_crumb({"crumbRequestField": "Jenkins-Crumb", "crumb": "c1"}) == (
        "Jenkins-Crumb",
        "c1",
    )
    assert jenkins.parse_crumb({"crumb": "c1"}) is None
    assert jenkins.parse_crumb(None) is None


def test_the_job_script_is_python_naming_the_release_and_index() -> None:
    event = {
        "index": "root/dev",
        "project": "ours",
        "version": "1.0",
        "file_url": "/root/dev/+f/abc/ours-1.0.tar.gz",
    }
    script = jenkins.render_job_script(event, "https://pkgs.example.org/")
    compile(script, "jobscript.py", "exec")
    assert "FILE_URL = 'https://pkgs.example.org/root/dev/+f/abc/ours-1.0.tar.gz'" in script
    assert "INDEX_URL = 'https://pkgs.example.org/root/dev/+simple/'" in script
    assert "PROJECT = 'ours'" in script
    assert "VERSION = '1.0'" in script


async def test_a_snapshot_for_replicas_carries_no_hook_queue(db: Database, tmp_path: Path) -> None:
    """A replica (maybe promoted one day) must not inherit events its primary owes."""
    await db.commit(upload())
    assert await queued(db) != []
    await db.snapshot_to(tmp_path / "snapshot.sqlite3")
    copy = sqlite3.connect(tmp_path / "snapshot.sqlite3")
    try:
        assert copy.execute("SELECT COUNT(*) FROM hook_events").fetchone()[0] == 0
        assert copy.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 1
    finally:
        copy.close()


async def test_finished_events_are_pruned_pending_ones_kept(db: Database) -> None:
    await db.commit(upload())
    await db.commit(upload("ours-1.0-py3-none-any.whl", "d" * 64))
    await db.write_derived(
        lambda c: c.execute("UPDATE hook_events SET state = 'delivered' WHERE id = 1")
    )
    deleted = await db.write_derived(functools.partial(prune_events, before=time.time() + 1))
    assert deleted == 1
    assert len(await queued(db)) == 2  # the pending ones stay, however old
