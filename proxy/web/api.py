"""The JSON API: users, tokens, index configuration, releases, explain and the changelog."""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp import web

from proxy.config import IndexConfig
from proxy.errors import InvalidInputError, NotFoundError, UnauthorizedError
from proxy.hosted.auth import DEFAULT_SCOPES, Token
from proxy.hosted.permissions import Operation, owner_of
from proxy.indexes.store import from_api, to_api
from proxy.model import check_file_key, check_filename, normalize, parse_index_name
from proxy.web import authz, devpi, keys, ui
from proxy.web.authz import caller
from proxy.web.common import index_name, read_json
from proxy.web.hooks import visible_hooks
from proxy.web.toxresults import file_json

_MAX_SECONDS = 10 * 365 * 86400  #: ten years: longer lifetimes are a mistake, or Infinity


def _user_param(request: web.Request) -> str:
    user = request.match_info["user"]
    parse_index_name(user, "x")
    return user


def _password(data: dict[str, Any]) -> str:
    password = data.get("password")
    if not isinstance(password, str) or not password:
        raise InvalidInputError("'password' is required")
    return password


def _seconds(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidInputError(f"'{key}' must be a positive number of seconds")
    if not math.isfinite(value) or value > _MAX_SECONDS:
        raise InvalidInputError(f"'{key}' must be at most {_MAX_SECONDS} seconds (ten years)")
    return float(value)


def _token_json(token: Token) -> dict[str, Any]:
    return {
        "id": token.id,
        "user": token.user,
        "index": token.index,
        "expires": token.expires,
        "description": token.description,
        "created": token.created,
        "scopes": list(token.scopes),
    }


# ---- users and tokens ------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    data = await read_json(request)
    user = data.get("user")
    if not isinstance(user, str):
        raise InvalidInputError("'user' is required")
    auth = request.app[keys.AUTH]
    try:
        who = await auth.authenticate(user, _password(data), client=request.remote)
    except UnauthorizedError:
        if devpi.is_devpi_client(request):  # devpi-client users script against its words
            raise UnauthorizedError(f"user {user!r} could not be authenticated") from None
        raise
    lifetime = devpi.login_lifetime(request, _seconds(data, "expires_in"))
    token, secret = await auth.create_token(who.user, None, lifetime, "login")
    return web.json_response(
        {
            **_token_json(token),
            "token": secret,
            "type": "proxyauth",  # devpi's envelope: devpi-client reads result.password
            "result": devpi.login_result(token, secret),
        }
    )


async def put_user(request: web.Request) -> web.Response:
    name = _user_param(request)
    await request.app[keys.AUTH].create_user(name, _password(await read_json(request)))
    return web.json_response({"user": name}, status=201)


async def patch_user(request: web.Request) -> web.Response:
    name = _user_param(request)
    data = await read_json(request)
    if "password" not in data and data:  # devpi's `user -m NAME email=…`
        raise InvalidInputError(
            f"'password' is required; wheelwell keeps no other user settings "
            f"({', '.join(sorted(data))})"
        )
    await request.app[keys.AUTH].set_password(name, _password(data))
    return web.json_response({"user": name})


async def get_user(request: web.Request) -> web.Response:
    name = _user_param(request)
    if not await request.app[keys.AUTH].user_exists(name):
        raise NotFoundError(f"user '{name}' not found")
    configs = authz.readable_configs(request)
    owned = sorted(c.name for c in configs if owner_of(c) == name)
    return web.json_response(
        {
            "user": name,
            "indexes": owned,
            "type": "userconfig",
            "result": devpi.user_config(request, name),
        }
    )


async def delete_user(request: web.Request) -> web.Response:
    name = _user_param(request)
    configs = request.app[keys.INDEXES].configs.values()
    owned = [c.name for c in configs if owner_of(c) == name]
    await request.app[keys.AUTH].delete_user(name, owned)
    return web.json_response({"user": name, "deleted": True})


def _scopes(data: dict[str, Any], index: str | None) -> list[str]:
    scopes = data.get("scopes")
    if scopes is None:
        return [s.value for s in DEFAULT_SCOPES]
    if index is None:
        raise InvalidInputError("'scopes' needs an 'index'; an unscoped token does everything")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidInputError("'scopes' must be a list of upload, yank, delete, read")
    return scopes


async def create_token(request: web.Request) -> web.Response:
    who = caller(request)
    data = await read_json(request)
    index = data.get("index")
    if index is not None:
        if not isinstance(index, str):
            raise InvalidInputError("'index' must be a user/index name")
        request.app[keys.INDEXES].config(index)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InvalidInputError("'description' must be a string")
    token, secret = await request.app[keys.AUTH].create_token(
        who.user, index, _seconds(data, "expires_in"), description, _scopes(data, index)
    )
    return web.json_response({**_token_json(token), "token": secret}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    tokens = await request.app[keys.AUTH].list_tokens(caller(request))
    return web.json_response({"tokens": [_token_json(t) for t in tokens]})


async def revoke_token(request: web.Request) -> web.Response:
    token_id = request.match_info["token_id"]
    auth = request.app[keys.AUTH]
    authz.check(request, Operation.TOKEN_REVOKE, user=await auth.owner(token_id))
    await auth.revoke_token(token_id)
    return web.json_response({"id": token_id, "revoked": True})


# ---- indexes ---------------------------------------------------------------------------


def _index_response(
    request: web.Request, name: str, status: int = 200, projects: list[str] | None = None
) -> web.Response:
    cfg = request.app[keys.INDEXES].config(name)
    default = request.app[keys.CONFIG].upstream.url
    result = to_api(cfg, default)
    if projects is not None:
        result["projects"] = projects
    return web.json_response({"type": "indexconfig", "result": result}, status=status)


async def get_index(request: web.Request) -> web.Response:
    name = index_name(request)
    if ui.wants_html(request):
        cfg = request.app[keys.INDEXES].config(name)
        data = to_api(cfg, request.app[keys.CONFIG].upstream.url)
        return await ui.render_index(request, name, data, await visible_hooks(request, cfg))
    if "no_projects" in request.query:  # devpi's double negation
        return _index_response(request, name)
    return _index_response(request, name, projects=await devpi.project_names(request, name))


async def put_index(request: web.Request) -> web.Response:
    name = index_name(request)
    registry = request.app[keys.INDEXES]
    if name in registry.configs:
        raise InvalidInputError(f"index '{name}' exists; change it with PATCH")
    cfg = from_api(name, await devpi.read_index_body(request, None), None)
    _check_mirror_url(request, cfg, None)
    await request.app[keys.INDEX_STORE].save(cfg)
    return _index_response(request, name, status=201)


async def patch_index(request: web.Request) -> web.Response:
    name = index_name(request)
    current = request.app[keys.INDEXES].config(name)
    cfg = from_api(name, await devpi.read_index_body(request, current), current)
    _check_mirror_url(request, cfg, current)
    await request.app[keys.INDEX_STORE].save(cfg)
    return _index_response(request, name)


def _check_mirror_url(request: web.Request, cfg: IndexConfig, current: IndexConfig | None) -> None:
    """A mirror's own upstream URL is root's to set, unless `auth.user_mirrors` (SSRF)."""
    before = current.upstream if current is not None else ""
    if cfg.upstream and cfg.upstream != before:
        authz.check(request, Operation.MIRROR_URL, cfg)


async def delete_index(request: web.Request) -> web.Response:
    name = index_name(request)
    await request.app[keys.INDEX_STORE].delete(name)
    return web.json_response({"name": name, "deleted": True})


async def explain(request: web.Request) -> web.Response:
    name = index_name(request)
    project = normalize(request.match_info["project"])
    steps = await request.app[keys.INDEXES].explain(name, project)
    return web.json_response({"project": project, "index": name, "order": steps})


# ---- releases --------------------------------------------------------------------------


async def get_project(request: web.Request) -> web.Response:
    name = index_name(request)
    project = normalize(request.match_info["project"])
    if ui.wants_html(request):
        return await ui.render_project(request, name, project)
    files = await request.app[keys.INDEXES].private(name).files(project)
    if not files:
        raise NotFoundError(f"project '{project}' has no files in index '{name}'")
    found = await request.app[keys.TOXRESULTS].summaries(files)
    releases: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        summaries = found.get((f.index, f.filename, f.sha256), [])
        releases.setdefault(f.version, []).append(file_json(f, summaries))
    return web.json_response({"name": project, "index": name, "releases": releases})


async def patch_release(request: web.Request) -> web.Response:
    name = index_name(request)
    project = normalize(request.match_info["project"])
    version = request.match_info["version"]
    data = await read_json(request)
    yanked = data.get("yanked")
    if not isinstance(yanked, bool):
        raise InvalidInputError("'yanked' (true or false) is required")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidInputError("'reason' must be a string")
    index = request.app[keys.INDEXES].private(name)
    uploads = request.app[keys.UPLOADS]
    if yanked:
        await uploads.yank(index, project, version, reason or None)
    else:
        await uploads.unyank(index, project, version)
    return web.json_response({"project": project, "version": version, "yanked": yanked})


async def delete_release(request: web.Request) -> web.Response:
    name = index_name(request)
    project = normalize(request.match_info["project"])
    version = request.match_info["version"]
    await request.app[keys.UPLOADS].delete_release(
        request.app[keys.INDEXES].private(name), project, version
    )
    return web.json_response({"project": project, "version": version, "deleted": True})


async def delete_file(request: web.Request) -> web.Response:
    name = index_name(request)
    key = check_file_key(request.match_info["key"])
    filename = check_filename(request.match_info["filename"])
    await request.app[keys.UPLOADS].delete_file(
        request.app[keys.INDEXES].private(name), key, filename
    )
    return web.json_response({"filename": filename, "deleted": True})


async def changelog(request: web.Request) -> web.Response:
    try:
        since = int(request.query.get("since", "0"))
    except ValueError as exc:
        raise InvalidInputError("'since' must be an integer serial") from exc
    db = request.app[keys.DB]
    entries = await db.changes_since(since)
    return web.json_response(
        {
            "serial": db.serial,
            "entries": [
                {
                    "serial": c.serial,
                    "at": c.at,
                    "kind": c.kind,
                    "index": c.index,
                    "data": c.public_data(),
                }
                for c in entries
            ],
            "now": time.time(),
        }
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/+login", login, name="login")
    r.add_post("/+tokens", create_token, name="tokens")
    r.add_get("/+tokens", list_tokens, name="tokens-list")
    r.add_delete("/+tokens/{token_id}", revoke_token, name="token")
    r.add_get("/+changelog", changelog, name="changelog")
    r.add_put("/{user}", put_user, name="user")
    r.add_patch("/{user}", patch_user, name="user-patch")
    r.add_get("/{user}", get_user, name="user-get")
    r.add_delete("/{user}", delete_user, name="user-delete")
    r.add_get("/{user}/{index}", get_index, name="index")
    r.add_put("/{user}/{index}", put_index, name="index-put")
    r.add_patch("/{user}/{index}", patch_index, name="index-patch")
    r.add_delete("/{user}/{index}", delete_index, name="index-delete")
    r.add_get("/{user}/{index}/+explain/{project}", explain, name="explain")
    r.add_delete("/{user}/{index}/+f/{key}/{filename}", delete_file, name="file-delete")
    r.add_get("/{user}/{index}/{project}", get_project, name="project")
    r.add_patch("/{user}/{index}/{project}/{version}", patch_release, name="release")
    r.add_delete("/{user}/{index}/{project}/{version}", delete_release, name="release-delete")
