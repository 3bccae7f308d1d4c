"""The hook options of an index: set like any option, validated, and their secrets never shown."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.config import IndexConfig
from proxy.web import keys
from tests.integration.conftest import Mirror
from tests.integration.test_api import ROOT, BasicAuth

SECRET = "hook-secret-3f9a"
TOKEN = "jenkins-token-77c1"
HOOK = {"url": "http://127.0.0.1:9/hook", "secret": SECRET, "events": ["upload", "yank"]}
JENKINS = f"http://ci:{TOKEN}@127.0.0.1:9/job/{{pkgname}}/buildWithParameters"


async def _patch(mirror: Mirror, body: Any, index: str = "root/public", **kw: Any) -> Any:
    headers = {**kw.get("headers", ROOT), "Accept": "application/json"}
    resp = await mirror.client.patch(f"/{index}", json=body, headers=headers)
    return resp.status, await resp.json()


def _stored(mirror: Mirror) -> IndexConfig:
    app = mirror.client.app
    assert app is not None
    cfg: IndexConfig = app[keys.INDEXES].config("root/public")
    return cfg


async def _everything_shown(mirror: Mirror) -> str:
    """Every place an index's config shows up: its JSON, its page, the changelog."""
    c = mirror.client
    parts = [
        await (await c.get("/root/public", headers=ROOT)).text(),
        await (await c.get("/root/public", headers={**ROOT, "Accept": "text/html"})).text(),
        await (await c.get("/+changelog", headers=ROOT)).text(),
    ]
    return "\n".join(parts)


async def test_hooks_are_set_shown_masked_and_kept_when_sent_back(mirror: Mirror) -> None:
    status, answer = await _patch(mirror, {"webhooks": [HOOK], "uploadtrigger_jenkins": JENKINS})
    assert status == 200, answer
    shown = answer["result"]
    assert shown["webhooks"] == [{**HOOK, "secret": "***"}]
    assert shown["uploadtrigger_jenkins"] == (
        "http://ci:***@127.0.0.1:9/job/{pkgname}/buildWithParameters"
    )
    text = await _everything_shown(mirror)
    assert SECRET not in text
    assert TOKEN not in text
    # what GET showed, sent back whole (devpi-client does this), keeps the stored secrets
    status, _ = await _patch(mirror, shown)
    assert status == 200
    stored = _stored(mirror)
    assert stored.webhooks[0].secret == SECRET
    assert stored.uploadtrigger_jenkins == JENKINS
    # and the masked values in an edited hook list too
    more = [{**HOOK, "secret": "***"}, {"url": "http://127.0.0.1:9/two", "secret": "other"}]
    status, answer = await _patch(mirror, {"webhooks": more})
    assert status == 200, answer
    stored = _stored(mirror)
    assert [h.secret for h in stored.webhooks] == [SECRET, "other"]
    assert [e.value for e in stored.webhooks[1].events] == [
        "upload",
        "yank",
        "unyank",
        "delete",
        "wheelhouse-add",
        "wheelhouse-remove",
    ]


async def test_devpi_edits_set_the_jenkins_trigger(mirror: Mirror) -> None:
    """devpi-client's `devpi index root/public uploadtrigger_jenkins=URL` sends an edit list."""
    status, answer = await _patch(mirror, [f"uploadtrigger_jenkins={JENKINS}"])
    assert status == 200, answer
    assert TOKEN not in json.dumps(answer)
    hooks = json.dumps([HOOK])
    status, answer = await _patch(mirror, [f"webhooks={hooks}"])
    assert status == 200, answer
    assert answer["result"]["webhooks"][0]["url"] == HOOK["url"]
    status, answer = await _patch(mirror, ["uploadtrigger_jenkins=", "webhooks=[]"])
    assert status == 200, answer
    assert answer["result"]["webhooks"] == []
    assert answer["result"]["uploadtrigger_jenkins"] == ""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"webhooks": [{"url": "ftp://127.0.0.1/x", "secret": "s"}]}, "'webhooks[0].url'"),
        ({"webhooks": [{"url": "http://127.0.0.1/x"}]}, "'webhooks[0].secret' is required"),
        ({"webhooks": [{"url": "http://127.0.0.1/x", "secret": "***"}]}, "'webhooks[0].secret'"),
        (
            {"webhooks": [{"url": "http://127.0.0.1/x", "secret": "s", "events": ["push"]}]},
            "'webhooks[0].events'",
        ),
        ({"webhooks": [{"url": "http://127.0.0.1/x", "secret": "s", "x": 1}]}, "unknown keys: x"),
        ({"webhooks": {"url": "http://127.0.0.1/x"}}, "'webhooks' must be a list"),
        ({"webhooks": [HOOK, HOOK]}, "each url once"),
        ({"uploadtrigger_jenkins": "http://127.0.0.1/{job}"}, "{pkgname}, {pkgversion}"),
        ({"uploadtrigger_jenkins": "file:///etc/passwd"}, "'uploadtrigger_jenkins' must be"),
        ({"uploadtrigger_jenkins": 5}, "'uploadtrigger_jenkins' must be a URL"),
    ],
)
async def test_bad_hook_options_are_refused_naming_the_key(
    mirror: Mirror, body: Any, message: str
) -> None:
    status, answer = await _patch(mirror, body)
    assert status == 400
    assert message in answer["message"]
    assert SECRET not in answer["message"]
    stored = _stored(mirror)
    assert stored.webhooks == ()
    assert stored.uploadtrigger_jenkins == ""


async def test_a_mirror_has_no_hooks(mirror: Mirror) -> None:
    status, answer = await _patch(mirror, {"webhooks": [HOOK]}, index="root/pypi")
    assert status == 400
    assert "only private indexes" in answer["message"]


async def test_a_users_hook_obeys_the_user_mirror_address_rules(mirror: Mirror) -> None:
    c = mirror.client
    assert (await c.put("/alice", json={"password": "a-pw"}, headers=ROOT)).status == 201
    alice = BasicAuth("alice", "a-pw")
    assert (await c.put("/alice/dev", json={}, headers=alice)).status == 201
    status, answer = await _patch(mirror, {"webhooks": [HOOK]}, "alice/dev", headers=alice)
    assert status == 400
    assert (
        "'webhooks[0].url' of index 'alice/dev': address 127.0.0.1 is denied" in (answer["message"])
    )
    status, answer = await _patch(
        mirror, {"uploadtrigger_jenkins": JENKINS}, "alice/dev", headers=alice
    )
    assert status == 400
    assert "'uploadtrigger_jenkins'" in answer["message"]
