"""FakeApi: the few wheelwell API endpoints the client calls, served on 127.0.0.1 for its tests.

It follows docs/api.md closely enough to prove the client's requests and its handling of
answers; the real server's behaviour is tested against the real server elsewhere.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import BodyPartReader, web

from proxy.client.api import Api
from proxy.client.commands import add_client_commands, run_client_command
from proxy.client.errors import ServerError
from tests.fakes.index import ThreadedServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROOT_PASSWORD = "root-secret"


def run_cli(argv: Sequence[str]) -> int:
    """Parse and run a client command the way `proxy/cli.py` wires it."""
    parser = argparse.ArgumentParser(prog="wheelwell")
    add_client_commands(parser.add_subparsers(dest="command", required=True))
    code = run_client_command(parser.parse_args(list(argv)))
    assert code is not None
    return code


def fail(status: int, reason: str) -> web.Response:
    return web.json_response({"status": status, "error": reason, "request_id": "r1"}, status=status)


@dataclass
class FakeApi:
    """Users, tokens, indexes and uploaded files in memory; every request is recorded."""

    users: dict[str, str] = field(default_factory=lambda: {"root": ROOT_PASSWORD})
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=dict
    )  #: index → name → file
    uploads: list[dict[str, list[str]]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.add_index("root/public")

    def add_index(self, name: str, **config: Any) -> None:
        self.indexes[name] = {"name": name, "type": "private", "bases": [], "volatile": True}
        self.indexes[name].update(config)
        self.files[name] = {}

    def issue_token(self, user: str, index: str | None = None, description: str = "") -> str:
        token_id = str(next(self.ids))
        token = f"tok-{token_id}-{hashlib.sha256(token_id.encode()).hexdigest()[:12]}"
        self.tokens[token_id] = {"id": token_id, "token": token, "user": user, "index": index}
        self.tokens[token_id].update(expires=4102444800, description=description, created="now")
        return token_id

    def user_of(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        if user == "__token__":
            found = [t["user"] for t in self.tokens.values() if t["token"] == password]
            return found[0] if found else None
        return user if self.users.get(user) == password else None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.record])
        app.router.add_post("/+login", self.login)
        app.router.add_route("*", "/+tokens", self.token_collection)
        app.router.add_delete("/+tokens/{id}", self.token_revoke)
        app.router.add_route("*", "/{user}", self.user)
        app.router.add_route("*", "/{user}/{index}", self.index)
        app.router.add_post("/{user}/{index}/", self.upload)
        app.router.add_get("/{user}/{index}/{project}", self.project)
        app.router.add_route("*", "/{user}/{index}/{project}/{version}", self.release)
        return app

    @web.middleware
    async def record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        writes = request.method != "GET" and request.path != "/+login"
        if writes and self.user_of(request) is None:
            return fail(401, "credentials needed")
        return await handler(request)

    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.users.get(body["user"]) != body["password"]:
            return fail(401, "wrong user name or password")
        token_id = self.issue_token(body["user"])
        return web.json_response({**self.tokens[token_id], "user": body["user"]})

    async def token_collection(self, request: web.Request) -> web.Response:
        user = self.user_of(request)
        if request.method == "GET":
            mine = [t for t in self.tokens.values() if user in ("root", t["user"])]
            return web.json_response({"tokens": [{**t, "token": None} for t in mine]})
        body = await request.json()
        token_id = self.issue_token(str(user), body.get("index"), body.get("description", ""))
        self.tokens[token_id]["expires_in"] = body.get("expires_in")
        return web.json_response(self.tokens[token_id], status=201)

    async def token_revoke(self, request: web.Request) -> web.Response:
        if self.tokens.pop(request.match_info["id"], None) is None:
            return fail(404, f"token {request.match_info['id']} not found")
        return web.json_response({})

    async def user(self, request: web.Request) -> web.Response:
        name, actor = request.match_info["user"], self.user_of(request)
        if request.method in ("PUT", "DELETE") and actor != "root":
            return fail(403, f"only root may change user '{name}'")
        if request.method == "PUT":
            self.users[name] = (await request.json())["password"]
            return web.json_response({"user": name}, status=201)
        if request.method == "PATCH":
            self.users[name] = (await request.json())["password"]
        elif request.method == "DELETE":
            del self.users[name]
        return web.json_response({"user": name})

    async def index(self, request: web.Request) -> web.Response:
        name = "{user}/{index}".format_map(request.match_info)
        if request.method == "PUT":
            self.add_index(name, **await request.json())
            return web.json_response(
                {"type": "indexconfig", "result": self.indexes[name]}, status=201
            )
        if name not in self.indexes:
            return fail(404, f"index '{name}' not found")
        if request.method == "PATCH":
            self.indexes[name].update(await request.json())
        elif request.method == "DELETE":
            del self.indexes[name]
            return web.json_response({})
        return web.json_response({"type": "indexconfig", "result": self.indexes[name]})

    async def upload(self, request: web.Request) -> web.Response:
        index = "{user}/{index}".format_map(request.match_info)
        form: dict[str, list[str]] = {}
        content = b""
        async for part in await request.multipart():
            assert isinstance(part, BodyPartReader)
            if part.name == "content":
                content, form["filename"] = await part.read(), [str(part.filename)]
            else:
                form.setdefault(str(part.name), []).append(await part.text())
        self.uploads.append(form)
        sha256, filename = hashlib.sha256(content).hexdigest(), form["filename"][0]
        if form["sha256_digest"] != [sha256]:
            return fail(400, f"sha256 of '{filename}' does not match the form")
        known = self.files[index].get(filename)
        if known is not None and known["sha256"] != sha256:
            return fail(409, f"file '{filename}' exists with different content in {index}")
        self.files[index][filename] = {
            "filename": filename, "sha256": sha256, "project": form["name"][0],
            "version": form["version"][0], "yanked": False, "content": content,
        }  # fmt: skip
        return web.json_response({})

    async def project(self, request: web.Request) -> web.Response:
        index = "{user}/{index}".format_map(request.match_info)
        releases: dict[str, list[dict[str, Any]]] = {}
        for f in self.files.get(index, {}).values():
            if f["project"].lower() == request.match_info["project"]:
                releases.setdefault(f["version"], []).append(
                    {k: f[k] for k in ("filename", "sha256")}
                )
        if not releases:
            return fail(404, f"project '{request.match_info['project']}' not found in '{index}'")
        return web.json_response({"name": request.match_info["project"], "releases": releases})

    async def release(self, request: web.Request) -> web.Response:
        index = "{user}/{index}".format_map(request.match_info)
        version = request.match_info["version"]
        chosen = [f for f in self.files[index].values() if f["version"] == version]
        if request.method == "DELETE":
            if not self.indexes[index]["volatile"]:
                return fail(409, f"{index} is not volatile")
            for f in chosen:
                del self.files[index][f["filename"]]
        else:
            body = await request.json()
            for f in chosen:
                f.update(yanked=body["yanked"], reason=body.get("reason"))
        return web.json_response({})


@contextmanager
def serve_fake_api() -> Iterator[tuple[FakeApi, str]]:
    """A FakeApi listening on a free loopback port, and its URL."""
    fake = FakeApi()
    with ThreadedServer(fake.app()) as server:
        yield fake, server.url


def test_a_write_without_credentials_gets_401_and_a_login_hint() -> None:
    with serve_fake_api() as (fake, url):
        with pytest.raises(ServerError) as caught:
            Api(url).fetch_json("PUT", "/alice", {"password": "pw"})
        assert caught.value.status == 401
        assert str(caught.value) == (
            "401: credentials needed; run `wheelwell login` or pass --user"
        )
        assert "alice" not in fake.users
