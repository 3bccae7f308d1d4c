"""devpi's JSON API where it differs from wheelwell's, so devpi-client works unchanged.

devpi-client reads `{"type": …, "result": …}` envelopes, the `X-Devpi-Api-Version` header and
`message` on errors; it authenticates with `X-Devpi-Auth` (base64 of `user:token`, the token
from `POST /+login`). wheelwell's own answers on the shared URLs keep their keys and gain the
envelope keys (see docs/devpi.md); the URLs only devpi uses (`+api`, `{project}/` with its
trailing slash, `+simple/{project}/refresh`) are answered here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from proxy.config import IndexConfig, IndexKind
from proxy.errors import InvalidInputError, NotFoundError, UnauthorizedError
from proxy.hosted.auth import Identity, Token
from proxy.hosted.permissions import Operation, owner_of
from proxy.hosted.private import HostedFile
from proxy.hosted.toxresults import ToxSummary, result_path
from proxy.indexes.store import to_api
from proxy.model import normalize
from proxy.web import authz, keys
from proxy.web.common import (
    DEVPI_AUTH_HEADER,
    decode_devpi_auth,
    has_credentials,
    identify,
    index_name,
    read_json_value,
)

API_VERSION_HEADER = "X-Devpi-Api-Version"
SERIAL_HEADER = "X-Devpi-Serial"
API_VERSION = "2"  #: the only one devpi-client 7 accepts
LOGIN_LIFETIME = 10 * 3600.0  #: devpi-server's default for a login's credentials: 10 hours
#: `key+=value` edits are sent to the server as a list and applied here
FEATURES = ("server-keyvalue-parsing",)
_BOOL_KEYS = frozenset({"volatile", "generate_metadata"})
_LIST_KEYS = frozenset(
    {"bases", "mirror_whitelist", "acl_upload", "acl_read", "acl_toxresult_upload"}
)
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})
#: keys devpi's GET returns that wheelwell derives, never sets: dropped from a PUT/PATCH body
_DERIVED = frozenset({"projects", "name"})


def is_devpi_client(request: web.Request) -> bool:
    """devpi-client names itself in User-Agent (devpi_common.request) and sends X-Devpi-Auth."""
    agent = request.headers.get("User-Agent", "")
    return agent.startswith("devpi-client/") or DEVPI_AUTH_HEADER in request.headers


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """devpi-client warns on an answer without the API version; the serial is devpi's too."""
    response.headers[API_VERSION_HEADER] = API_VERSION
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("application/json;") and is_devpi_client(request):
        # devpi-client reads `message` only from exactly this type (JSON has no charset)
        response.headers["Content-Type"] = "application/json"
    if keys.DB in request.app:
        response.headers[SERIAL_HEADER] = str(request.app[keys.DB].serial)


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def login_result(token: Token, secret: str) -> dict[str, Any]:
    """The `proxyauth` result devpi-client stores: the secret and its lifetime in seconds."""
    expiration = round(token.expires - token.created) if token.expires is not None else 0
    return {"password": secret, "expiration": expiration}


def login_lifetime(request: web.Request, asked: float | None) -> float:
    """A devpi client gets devpi's 10 hours unless it asked; others the configured lifetime."""
    if asked is not None:
        return asked
    if is_devpi_client(request):
        return LOGIN_LIFETIME
    return request.app[keys.CONFIG].auth.token_lifetime


# ---- users -----------------------------------------------------------------------------


def user_config(request: web.Request, name: str) -> dict[str, Any]:
    """devpi's `userconfig`: the user's readable indexes by their short name."""
    default = request.app[keys.CONFIG].upstream.url
    indexes = {
        c.name.partition("/")[2]: to_api(c, default)
        for c in sorted(authz.readable_configs(request), key=lambda c: c.name)
        if owner_of(c) == name
    }
    return {"username": name, "indexes": indexes}


async def user_list(request: web.Request) -> dict[str, Any]:
    """devpi's `list:userconfig` (GET / as JSON): every user with their readable indexes."""
    names = await request.app[keys.AUTH].user_names()
    return {name: user_config(request, name) for name in names}


# ---- +api ------------------------------------------------------------------------------


async def _auth_status(request: web.Request) -> tuple[list[Any], Identity | None]:
    """devpi's authstatus: the +api route identifies itself, so expired credentials are news."""
    if not has_credentials(request):
        return ["noauth", "", []], None
    try:
        who = await identify(request)
    except UnauthorizedError:
        user = ""
        if DEVPI_AUTH_HEADER in request.headers:
            with contextlib.suppress(UnauthorizedError):
                user = decode_devpi_auth(request.headers[DEVPI_AUTH_HEADER])[0]
        return ["expired", user, []], None
    request[keys.IDENTITY] = who
    return ["ok", who.user, []], who


async def api_config(request: web.Request) -> web.Response:
    """`GET [/{user}[/{index}]]/+api`: where devpi-client logs in, installs and uploads."""
    status, _ = await _auth_status(request)
    base = _base(request)
    result: dict[str, Any] = {
        "login": f"{base}/+login",
        "authstatus": status,
        "features": list(FEATURES),
    }
    if "index" in request.match_info:
        name = index_name(request)
        cfg = request.app[keys.INDEXES].config(name)
        authz.check(request, Operation.READ, cfg)
        result["index"] = f"{base}/{name}"
        result["simpleindex"] = f"{base}/{name}/+simple/"
        if cfg.kind is IndexKind.PRIVATE:
            result["pypisubmit"] = f"{base}/{name}/"
    return web.json_response({"type": "apiconfig", "result": result})


# ---- index configuration ---------------------------------------------------------------


def _coerce(key: str, value: Any) -> Any:
    """devpi-client sends every `key=value` as a string: booleans and types are devpi's words."""
    if key in _BOOL_KEYS and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise InvalidInputError(f"'{key}' must be true or false, not {value!r}")
    if key == "type" and value == "stage":
        return IndexKind.PRIVATE.value  # devpi's name for an index that takes uploads
    return value


def _as_list(current: dict[str, Any], key: str) -> list[Any]:
    if key not in _LIST_KEYS:
        raise InvalidInputError(f"'{key}' is not a list: use {key}=VALUE")
    return list(current.get(key, []))


def _apply_edits(edits: list[Any], current: dict[str, Any]) -> dict[str, Any]:
    """devpi's `key=value`, `key+=value`, `key-=value`, `key-=` edits on the current config."""
    config = dict(current)
    touched: set[str] = set()
    for item in edits:
        if not isinstance(item, str) or "=" not in item:
            raise InvalidInputError(f"an edit must be a 'key=value' string, not {item!r}")
        key, _, value = item.partition("=")
        if key.endswith("+"):
            key = key[:-1]
            values = _as_list(config, key)
            config[key] = values if value in values else [*values, value]
        elif key.endswith("-"):
            key = key[:-1]
            values = _as_list(config, key)
            if value == "":
                config[key] = []
            elif value not in values:
                raise InvalidInputError(f"The '{key}' setting doesn't have value '{value}'")
            else:
                config[key] = [v for v in values if v != value]
        else:
            config[key] = value
        touched.add(key)
    return {key: config[key] for key in touched}


def index_body(
    data: Any, current: dict[str, Any] | None, *, strings: bool = False
) -> dict[str, Any]:
    """A PUT/PATCH body in devpi's forms → the body `store.from_api` validates.

    Accepted besides wheelwell's own object: a list of devpi edits, devpi's envelope
    `{"type": "indexconfig", "result": …}`, what GET returns (`name`, `projects`, an unchanged
    masked `mirror_url`) and, with `strings` (devpi-client's), `volatile=False` and `type=stage`.
    """
    if isinstance(data, list):
        data = _apply_edits(data, current or {})
        strings = True  # edits are strings by their nature
    if not isinstance(data, dict):
        raise InvalidInputError("body must be a JSON object or a list of 'key=value' edits")
    if data.get("type") == "indexconfig" and isinstance(data.get("result"), dict):
        data = data["result"]
    body: dict[str, Any] = {}
    for key, value in data.items():
        if strings:
            value = _coerce(key, value)
        if key == "name" and current is not None and value != current.get("name"):
            raise InvalidInputError(
                f"'name' is the URL's ({current.get('name')}); it cannot change"
            )
        if key in _DERIVED:
            continue
        if current is not None and current.get(key) == value:
            continue  # unchanged: a GET sent back whole (its mirror_url is masked)
        body[key] = value
    return body


async def read_index_body(request: web.Request, current: IndexConfig | None) -> dict[str, Any]:
    """The request's JSON (object or edit list) within limits.json_*, as `index_body` makes it."""
    data = await read_json_value(request)
    if data is None:
        return {}
    default = request.app[keys.CONFIG].upstream.url
    shown = to_api(current, default) if current is not None else None
    return index_body(data, shown, strings=is_devpi_client(request))


async def project_names(request: web.Request, name: str) -> list[str]:
    """devpi's `projects` of an index: what it hosts itself (a mirror: none listed)."""
    registry = request.app[keys.INDEXES]
    if registry.config(name).kind is not IndexKind.PRIVATE:
        return []
    return sorted(await registry.private(name).own_projects())


# ---- projects --------------------------------------------------------------------------


def _link(base: str, f: HostedFile) -> dict[str, Any]:
    return {
        "rel": "releasefile",
        "href": f"{base}/{f.index}/+f/{f.sha256}/{f.filename}",
        "hash_spec": f"sha256={f.sha256}",
        "log": [{"what": "upload", "who": f.uploader, "when": f.uploaded, "dst": f.index}],
    }


def _toxresult_link(base: str, f: HostedFile, summary: ToxSummary) -> dict[str, Any]:
    return {
        "rel": "toxresult",
        "href": base + result_path(f.index, f.sha256, f.filename, summary.n),
        "for_href": _link(base, f)["href"],
        "log": [{"what": "upload", "who": summary.poster, "when": summary.posted}],
    }


def version_data(
    base: str, files: list[HostedFile], results: Mapping[tuple[str, str, str], list[ToxSummary]]
) -> dict[str, dict[str, Any]]:
    """devpi's `projectconfig` result: version → metadata and `+links` (first index first),
    a file's tox results as links of rel `toxresult` after it (devpi list -f reads them)."""
    result: dict[str, dict[str, Any]] = {}
    for f in files:
        entry = result.setdefault(
            f.version,
            {
                "name": f.project,
                "version": f.version,
                "summary": f.summary,
                "requires_python": f.requires_python or "",
                "+links": [],
            },
        )
        entry["+links"].append(_link(base, f))
        for summary in results.get((f.index, f.filename, f.sha256), []):
            entry["+links"].append(_toxresult_link(base, f, summary))
    return result


async def _files(request: web.Request, name: str, project: str) -> list[HostedFile]:
    registry = request.app[keys.INDEXES]
    if "ignore_bases" in request.query:
        if registry.config(name).kind is not IndexKind.PRIVATE:
            return []
        return await registry.private(name).files(project)
    return await registry.hosted_files(name, project)


async def get_project(request: web.Request) -> web.Response:
    """`GET /{user}/{index}/{project}/` (`?ignore_bases`): devpi list, remove, test read it."""
    name = index_name(request)
    project = normalize(request.match_info["project"])
    files = await _files(request, name, project)
    if not files:
        raise NotFoundError(f"project '{project}' has no files in index '{name}'")
    results = await request.app[keys.TOXRESULTS].summaries(files)
    return web.json_response(
        {"type": "projectconfig", "result": version_data(_base(request), files, results)}
    )


async def delete_project(request: web.Request) -> web.Response:
    """`DELETE /{user}/{index}/{project}/`: every release of the project in this index."""
    name = index_name(request)
    project = normalize(request.match_info["project"])
    index = request.app[keys.INDEXES].private(name)
    files = await index.files(project)
    if not files:
        raise NotFoundError(f"project '{project}' has no files in index '{name}'")
    uploads = request.app[keys.UPLOADS]
    for version in sorted({f.version for f in files}):
        await uploads.delete_release(index, project, version)
    message = f"project {project} deleted from stage {name}"
    return web.json_response({"message": message, "project": project, "deleted": True})


async def refresh(request: web.Request) -> web.Response:
    """`POST …/+simple/{project}/refresh`: the mirrors ask upstream again, then the page."""
    name = index_name(request)
    project = normalize(request.match_info["project"])
    await request.app[keys.INDEXES].refresh(name, project)
    raise web.HTTPFound(f"/{name}/+simple/{project}/")


def add_routes(app: web.Application) -> None:
    """Before api.add_routes: `/{user}/+api` would otherwise be read as the index '+api'."""
    r = app.router
    r.add_get("/+api", api_config, name="devpi-api")
    r.add_get("/{user}/+api", api_config, name="devpi-api-user")
    r.add_get("/{user}/{index}/+api", api_config, name="devpi-api-index")
    r.add_post("/{user}/{index}/+simple/{project}/refresh", refresh, name="devpi-refresh")
    r.add_get("/{user}/{index}/{project}/", get_project, name="devpi-project")
    r.add_delete("/{user}/{index}/{project}/", delete_project, name="devpi-project-delete")
