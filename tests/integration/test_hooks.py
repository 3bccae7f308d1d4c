"""Webhook delivery in-process: signed events in order, retries, hangs, give-ups, the outbox."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.config import HooksConfig, WebhookConfig
from proxy.hosted.outbox import webhook_key
from proxy.web import keys
from tests.fakes.dists import build_sdist, build_wheel
from tests.fakes.index import FakeIndex
from tests.fakes.receiver import Receiver, signature_ok
from tests.integration.conftest import AiohttpClient, AiohttpServer, make_config
from tests.integration.test_api import ROOT, form

SECRET = "integration-hook-secret"
FAST = HooksConfig(timeout=0.5, retry_min=0.02, retry_max=0.1, max_attempts=50)


@dataclasses.dataclass
class Hooked:
    client: TestClient[Any, Any]
    receiver: Receiver
    base: str  #: the receiver's URL

    async def hooks(self, *paths: str, **extra: Any) -> None:
        hooks = [{"url": f"{self.base}{p}", "secret": SECRET, **extra} for p in paths]
        resp = await self.client.patch("/root/public", json={"webhooks": hooks}, headers=ROOT)
        assert resp.status == 200, await resp.text()

    async def upload(self, tmp_path: Path, name: str, version: str, sdist: bool = False) -> int:
        build = build_sdist if sdist else build_wheel
        built = build(tmp_path, name, version)
        resp = await self.client.post("/root/public/", data=form(built), headers=ROOT)
        await resp.read()
        return resp.status

    async def queued(self) -> list[tuple[str, str, str]]:
        app = self.client.app
        assert app is not None
        rows = await app[keys.DB].read(
            lambda c: c.execute("SELECT hook, event, state FROM hook_events ORDER BY id").fetchall()
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def settle(self) -> None:
        """Until no event is pending."""

        async def settled() -> bool:
            return all(state != "pending" for _, _, state in await self.queued())

        await until(settled)

    async def status(self) -> Any:
        resp = await self.client.get("/root/public/+hooks", headers=ROOT)
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll the database until `check` holds (a generous deadline, not a timing claim)."""
    async with asyncio.timeout(30):
        while not await check():  # noqa: ASYNC110 - the db has no event to wait on
            await asyncio.sleep(0.01)


HookedFactory = Callable[..., Awaitable[Hooked]]


@pytest.fixture
def hooked_factory(
    tmp_path: Path,
    fake_index: FakeIndex,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> HookedFactory:
    async def factory(
        hooks: HooksConfig = FAST,
        receiver: Receiver | None = None,
        declared: str | None = None,
        deny: tuple[str, ...] = (),
    ) -> Hooked:
        """`declared`: a webhook path root/public has in the config itself (no save check)."""
        receiver = receiver or Receiver()
        rserver: TestServer = await aiohttp_server(receiver.app)
        upstream = await aiohttp_server(fake_index.app)
        cfg = make_config(str(upstream.make_url("/simple/")), tmp_path / "data", deny=deny)
        cfg = dataclasses.replace(cfg, hooks=hooks)
        if declared is not None:
            url = str(rserver.make_url(declared))
            public = dataclasses.replace(
                cfg.indexes[1], webhooks=(WebhookConfig(url=url, secret=SECRET),)
            )
            cfg = dataclasses.replace(cfg, indexes=(cfg.indexes[0], public))
        client = await aiohttp_client(create_app(cfg))
        return Hooked(client, receiver, str(rserver.make_url("")).rstrip("/"))

    return factory


@pytest.fixture
async def hooked(hooked_factory: HookedFactory) -> Hooked:
    return await hooked_factory()


async def test_each_change_is_one_signed_event_in_order(hooked: Hooked, tmp_path: Path) -> None:
    await hooked.hooks("/hook")
    assert await hooked.upload(tmp_path, "ours", "1.0") == 200
    c = hooked.client
    resp = await c.patch("/root/public/ours/1.0", json={"yanked": True}, headers=ROOT)
    assert resp.status == 200
    resp = await c.patch("/root/public/ours/1.0", json={"yanked": False}, headers=ROOT)
    assert resp.status == 200
    assert (await c.delete("/root/public/ours/1.0", headers=ROOT)).status == 200
    got = await hooked.receiver.wait_for("/hook", 4)
    assert all(signature_ok(SECRET, r) for r in got)
    events = [json.loads(r.body) for r in got]
    assert [e["event"] for e in events] == ["upload", "yank", "unyank", "delete"]
    first = events[0]
    filename = "ours-1.0-py3-none-any.whl"
    assert {k: first[k] for k in ("index", "project", "version", "filename", "uploader")} == {
        "index": "root/public",
        "project": "ours",
        "version": "1.0",
        "filename": filename,
        "uploader": "root",
    }
    assert first["file_url"] == f"/root/public/+f/{first['sha256']}/{filename}"
    serials = [e["serial"] for e in events]
    assert serials == sorted(serials)
    assert [r.headers["X-Wheelwell-Event"] for r in got] == ["upload", "yank", "unyank", "delete"]
    assert [r.headers["X-Wheelwell-Event-Id"] for r in got] == [e["id"] for e in events]
    await hooked.settle()
    key = webhook_key(f"{hooked.base}/hook")
    assert await hooked.queued() == [
        (key, e, "delivered") for e in ("upload", "yank", "unyank", "delete")
    ]


async def test_a_hook_gets_only_the_events_it_asked_for(hooked: Hooked, tmp_path: Path) -> None:
    await hooked.hooks("/yanks", events=["yank"])
    assert await hooked.upload(tmp_path, "ours", "1.0") == 200
    resp = await hooked.client.patch("/root/public/ours/1.0", json={"yanked": True}, headers=ROOT)
    assert resp.status == 200
    got = await hooked.receiver.wait_for("/yanks", 1)
    assert [json.loads(r.body)["event"] for r in got] == ["yank"]
    assert [e for _, e, _ in await hooked.queued()] == ["yank"]


async def test_a_failing_receiver_gets_retries_then_the_rest_in_order(
    hooked: Hooked, tmp_path: Path
) -> None:
    await hooked.hooks("/flaky")
    hooked.receiver.fail("/flaky", 500, 503, 500)
    assert await hooked.upload(tmp_path, "one", "1.0") == 200
    assert await hooked.upload(tmp_path, "two", "1.0") == 200
    got = await hooked.receiver.wait_for("/flaky", 5)
    assert [json.loads(r.body)["project"] for r in got] == ["one", "one", "one", "one", "two"]
    # the same event id on every retry: a receiver that saw it already can tell
    assert len({r.headers["X-Wheelwell-Event-Id"] for r in got[:4]}) == 1
    await hooked.settle()
    hook = (await hooked.status())["webhooks"][0]
    attempts = hook["attempts"]
    assert [a["status"] for a in attempts][:5] == [200, 200, 500, 503, 500]
    assert attempts[2]["error"] == "answered 500"
    assert attempts[2]["excerpt"].startswith("receiver says no")
    assert len(attempts[2]["excerpt"].encode()) <= 1024
    assert hook["pending"] == 0


async def test_a_hanging_receiver_blocks_neither_uploads_nor_other_hooks(
    hooked: Hooked, tmp_path: Path
) -> None:
    release = hooked.receiver.hang("/stuck")
    await hooked.hooks("/stuck", "/fine")
    for n in range(3):
        assert await hooked.upload(tmp_path, f"p{n}", "1.0") == 200
    got = await hooked.receiver.wait_for("/fine", 3)
    assert [json.loads(r.body)["project"] for r in got] == ["p0", "p1", "p2"]

    async def timed_out() -> bool:
        stuck = (await hooked.status())["webhooks"][0]
        return "no answer within 0.5 s" in [a["error"] for a in stuck["attempts"]]

    await until(timed_out)  # the bounded request timeout gave up on the hanging receiver
    release.set()  # which now recovers
    got = await hooked.receiver.wait_for("/stuck", 3)
    assert [json.loads(r.body)["project"] for r in got] == ["p0", "p1", "p2"]
    await hooked.settle()
    assert {s for _, _, s in await hooked.queued()} == {"delivered"}


async def test_an_event_is_given_up_after_max_attempts(
    hooked_factory: HookedFactory, tmp_path: Path
) -> None:
    hooked = await hooked_factory(dataclasses.replace(FAST, max_attempts=2))
    await hooked.hooks("/down")
    hooked.receiver.fail("/down", 500, 500)
    assert await hooked.upload(tmp_path, "lost", "1.0") == 200
    assert await hooked.upload(tmp_path, "next", "1.0") == 200
    got = await hooked.receiver.wait_for("/down", 3)
    assert [json.loads(r.body)["project"] for r in got] == ["lost", "lost", "next"]
    await hooked.settle()
    assert [s for _, _, s in await hooked.queued()] == ["failed", "delivered"]
    assert (await hooked.status())["webhooks"][0]["failed"] == 1
    metrics = await (await hooked.client.get("/+metrics")).text()
    assert 'wheelwell_hook_attempts_total{kind="webhook",outcome="failed"} 1.0' in metrics
    assert 'wheelwell_hook_attempts_total{kind="webhook",outcome="retry"} 1.0' in metrics
    assert 'wheelwell_hook_attempts_total{kind="webhook",outcome="delivered"} 1.0' in metrics


async def test_a_failed_change_queues_nothing(hooked: Hooked, tmp_path: Path) -> None:
    await hooked.hooks("/hook")
    assert await hooked.upload(tmp_path, "ours", "1.0") == 200
    assert await hooked.upload(tmp_path, "ours", "1.0") == 200  # the same bytes: no change
    other = build_wheel(tmp_path / "other", "ours", "1.0", summary="other bytes")
    resp = await hooked.client.post("/root/public/", data=form(other), headers=ROOT)
    assert resp.status == 409  # the same name, other bytes
    resp = await hooked.client.patch("/root/public/ours/9.9", json={"yanked": True}, headers=ROOT)
    assert resp.status == 404
    await hooked.receiver.wait_for("/hook", 1)
    await hooked.settle()
    assert [e for _, e, _ in await hooked.queued()] == ["upload"]


async def test_a_removed_hook_drops_its_pending_events(hooked: Hooked, tmp_path: Path) -> None:
    release = hooked.receiver.hang("/gone")
    await hooked.hooks("/gone")
    assert await hooked.upload(tmp_path, "a", "1.0") == 200
    assert await hooked.upload(tmp_path, "b", "1.0") == 200  # waits behind a, which hangs
    await hooked.hooks("/new")
    release.set()
    assert await hooked.upload(tmp_path, "c", "1.0") == 200
    got = await hooked.receiver.wait_for("/new", 1)
    assert [json.loads(r.body)["project"] for r in got] == ["c"]
    await hooked.settle()
    gone = webhook_key(f"{hooked.base}/gone")
    assert [s for k, e, s in await hooked.queued() if k == gone][1:] == ["dropped"]
    assert "b" not in [json.loads(r.body)["project"] for r in hooked.receiver.at("/gone")]


async def test_the_index_page_shows_hooks_to_whom_may_change_the_index(
    hooked: Hooked, tmp_path: Path
) -> None:
    await hooked.hooks("/page")
    hooked.receiver.fail("/page", 500)
    assert await hooked.upload(tmp_path, "ours", "1.0") == 200
    await hooked.receiver.wait_for("/page", 2)
    await hooked.settle()
    html = {"Accept": "text/html"}
    page = await (await hooked.client.get("/root/public", headers={**ROOT, **html})).text()
    assert 'id="hooks"' in page
    assert f"{hooked.base}/page" in page
    assert "answered 500" in page
    assert "1 delivered" in page
    assert SECRET not in page
    anonymous = await (await hooked.client.get("/root/public", headers=html)).text()
    assert 'id="hooks"' not in anonymous
    assert "answered 500" not in anonymous


# ---- Jenkins, devpi-jenkins compatible -------------------------------------------------------


async def _jenkins(hooked: Hooked, path: str) -> None:
    url = hooked.base.replace("http://", "http://ci:api-token@") + path
    resp = await hooked.client.patch(
        "/root/public", json={"uploadtrigger_jenkins": url}, headers=ROOT
    )
    assert resp.status == 200, await resp.text()


async def test_jenkins_gets_devpi_jenkins_form_with_crumb_and_token(
    hooked_factory: HookedFactory, tmp_path: Path
) -> None:
    hooked = await hooked_factory(receiver=Receiver(crumb=("Jenkins-Crumb", "crumb-1")))
    await _jenkins(hooked, "/ci/job/{pkgname}/buildWithParameters?v={pkgversion}")
    assert await hooked.upload(tmp_path, "ours", "1.0") == 200  # a wheel: no build
    assert await hooked.upload(tmp_path, "ours", "1.0", sdist=True) == 200
    (got,) = await hooked.receiver.wait_for("/ci/job/ours/buildWithParameters", 1)
    assert got.form["Submit"] == "Build"
    assert got.form["name"] == "jobscript.py"
    assert json.loads(got.form["json"]) == {"parameter": {"name": "jobscript.py", "file": "file0"}}
    script = got.form["file0"].decode()
    compile(script, "jobscript.py", "exec")
    assert "PROJECT = 'ours'" in script
    assert "VERSION = '1.0'" in script
    assert "/root/public/+simple/'" in script
    assert got.headers["Jenkins-Crumb"] == "crumb-1"
    assert got.headers["Cookie"] == "JSESSIONID.test=session-1"
    assert got.headers["Authorization"] == "Basic Y2k6YXBpLXRva2Vu"  # ci:api-token
    assert hooked.receiver.crumb_requests == 1
    await hooked.settle()
    status = await hooked.status()
    assert status["jenkins"]["url"].startswith("http://ci:***@127.0.0.1")
    assert status["jenkins"]["delivered"] == 1
    assert "api-token" not in json.dumps(status)


async def test_jenkins_without_crumbs_and_failing_then_recovering(
    hooked: Hooked, tmp_path: Path
) -> None:
    await _jenkins(hooked, "/job/all/build")
    hooked.receiver.fail("/job/all/build", 503)
    assert await hooked.upload(tmp_path, "ours", "1.0", sdist=True) == 200
    got = await hooked.receiver.wait_for("/job/all/build", 2)
    assert all("Jenkins-Crumb" not in r.headers for r in got)  # the issuer said 404: none
    await hooked.settle()
    attempts = (await hooked.status())["jenkins"]["attempts"]
    assert [a["status"] for a in attempts] == [200, 503]


async def test_the_address_rules_apply_at_delivery_too(
    hooked_factory: HookedFactory, tmp_path: Path
) -> None:
    """A hook the config file declares is not checked on save; its connection still is."""
    hooked = await hooked_factory(
        dataclasses.replace(FAST, max_attempts=1), declared="/denied", deny=("127.0.0.0/8",)
    )
    assert await hooked.upload(tmp_path, "ours", "1.0") == 200
    await hooked.settle()
    (hook,) = (await hooked.status())["webhooks"]
    assert hook["failed"] == 1
    assert "127.0.0.1" in hook["attempts"][0]["error"]
    assert "upstream.deny" in hook["attempts"][0]["error"]
    assert hooked.receiver.at("/denied") == []
