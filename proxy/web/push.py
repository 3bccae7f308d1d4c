"""devpi's push: a release's files to another index here, or uploaded to an external index.

devpi-client sends `PUSH /{user}/{index}` (proxy/web/pushmethod.py lets it through) with a JSON
body; devpi-server takes the same body POSTed, and so do we. The answer is devpi's actionlog:
`{"type": "actionlog", "result": [[status, what, ...], ...]}`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from packaging.version import InvalidVersion, Version

from proxy.config import IndexKind
from proxy.errors import (
    IndexNotFoundError,
    InvalidInputError,
    NotFoundError,
    UploadNotAllowedError,
    UpstreamError,
)
from proxy.hosted.permissions import Operation
from proxy.hosted.private import HostedFile, PrivateIndex
from proxy.mirror.addresses import AddressPolicy, resolve_denied, scope_of
from proxy.mirror.upstream import post_upload
from proxy.model import IndexName, mask_url, normalize, parse_index_name
from proxy.storage.blobs import LocalFile, RemoteObject
from proxy.web import keys
from proxy.web.authz import caller, check
from proxy.web.common import index_name, read_json

log = logging.getLogger(__name__)

Action = list[Any]  #: one actionlog entry: [status, what, details...]
_OK = (200, 201)


def devpi_file_path(index: str, sha256: str, filename: str) -> str:
    """devpi's file path: `{index}/+f/{sha256[:3]}/{sha256[3:16]}/{filename}`."""
    return f"{index}/+f/{sha256[:3]}/{sha256[3:16]}/{filename}"


def _text(body: dict[str, Any], key: str) -> str:
    value = body.pop(key, None)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"push: '{key}' must be a non-empty string")
    return value


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


async def _release_files(index: PrivateIndex, project: str, version: str) -> list[HostedFile]:
    files = await index.files(normalize(project))
    found = sorted(
        (f for f in files if _same_version(f.version, version)), key=lambda f: f.filename
    )
    if not found:
        raise NotFoundError(f"no release/files found for {project} {version} in '{index.name}'")
    return found


async def push(request: web.Request) -> web.StreamResponse:
    name = index_name(request)
    body = await read_json(request)
    project, version = _text(body, "name"), _text(body, "version")
    body.pop("no_docs", None)  # wheelwell keeps no documentation zips: nothing to leave out
    only_docs = bool(body.pop("only_docs", False))
    registry = request.app[keys.INDEXES]
    if registry.config(name).kind is not IndexKind.PRIVATE:
        raise InvalidInputError(f"'{name}' is a mirror: push releases from a private index")
    source = registry.private(name)
    files = [] if only_docs else await _release_files(source, project, version)
    if not files:
        raise NotFoundError(f"no documentation for {project} {version}: wheelwell keeps none")
    target = body.pop("targetindex", None)
    if target is None:
        actions = await _push_external(request, source, files, body)
    else:
        if body:
            raise InvalidInputError(f"unknown additional options: {', '.join(sorted(body))}")
        actions = await _push_internal(request, source, files, target)
    status = 200 if int(actions[-1][0]) in _OK else 502
    return web.json_response({"type": "actionlog", "result": actions}, status=status)


def _target_name(target: object) -> IndexName:
    if not isinstance(target, str) or target.count("/") != 1:
        raise InvalidInputError("targetindex not in format user/index")
    user, _, index = target.partition("/")
    return parse_index_name(user, index)


async def _push_internal(
    request: web.Request, source: PrivateIndex, files: list[HostedFile], target: object
) -> list[Action]:
    """Copy the files to another index here: read on the source (checked), upload on the target."""
    registry = request.app[keys.INDEXES]
    name = str(_target_name(target))
    cfg = registry.configs.get(name)
    if cfg is None:
        raise IndexNotFoundError(name)
    check(request, Operation.UPLOAD, cfg)
    if cfg.kind is not IndexKind.PRIVATE:
        raise UploadNotAllowedError(f"'{name}' is a mirror and takes no pushes")
    who = caller(request)
    into = registry.private(name)
    first = files[0]
    actions: list[Action] = [[200, "register", first.project, first.version, "->", name]]
    uploads = request.app[keys.UPLOADS]
    for hosted in files:
        await uploads.copy(into, who, hosted)
        actions.append(
            [200, "store_releasefile", devpi_file_path(name, hosted.sha256, hosted.filename)]
        )
    return actions


def _fields(hosted: HostedFile) -> dict[str, str]:
    """The legacy upload API's form for one file, from what the upload recorded."""
    sdist = not hosted.filename.endswith(".whl")
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "name": hosted.project,
        "version": hosted.version,
        "filetype": "sdist" if sdist else "bdist_wheel",
        "pyversion": "source" if sdist else hosted.filename.split("-")[-3],
        "sha256_digest": hosted.sha256,
        "summary": hosted.summary,
        "description": hosted.description,
        "description_content_type": hosted.description_type,
    }
    if hosted.requires_python:
        fields["requires_python"] = hosted.requires_python
    return fields


async def _content(source: PrivateIndex, hosted: HostedFile) -> Path | AsyncIterator[bytes]:
    located = await source.locate_file(
        normalize(hosted.project), hosted.sha256, hosted.filename, probe=False
    )
    match located:
        case LocalFile():
            return located.path
        case RemoteObject():
            return source.open_stream(located)
    raise InvalidInputError(f"file {hosted.filename} of '{source.name}' cannot be read here")


async def _check_posturl(request: web.Request, source: PrivateIndex, url: str) -> None:
    """The external index obeys the mirrors' address rules (upstream.deny/allow)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError("push: 'posturl' must be an http(s) URL")
    cfg = request.app[keys.CONFIG].upstream
    policy = AddressPolicy.for_mirrors(cfg, root=scope_of(source.name) == "root")
    denied = await resolve_denied(policy, parts.hostname)
    if denied is not None:
        raise InvalidInputError(f"push: 'posturl': address {denied} is denied by {policy.source}")


async def _push_external(
    request: web.Request, source: PrivateIndex, files: list[HostedFile], body: dict[str, Any]
) -> list[Action]:
    """Upload the files to `posturl` with the given credentials, as devpi-server does.

    Sending an index's files elsewhere publishes them: it takes upload on the source index
    (devpi asks read only). The password is used for the request and dropped.
    """
    url, user, password = _text(body, "posturl"), _text(body, "username"), _text(body, "password")
    body.pop("register_project", None)  # the legacy API registers on the first upload
    if body:
        raise InvalidInputError(f"unknown additional options: {', '.join(sorted(body))}")
    check(request, Operation.UPLOAD, source.cfg)
    who = caller(request)
    await _check_posturl(request, source, url)
    upstream = request.app[keys.UPSTREAM]
    actions: list[Action] = []
    for hosted in files:
        path = devpi_file_path(str(source.name), hosted.sha256, hosted.filename)
        try:
            posted = await post_upload(
                upstream,
                url,
                index=str(source.name),
                credentials=(user, password),
                fields=_fields(hosted),
                filename=hosted.filename,
                content=await _content(source, hosted),
            )
        except UpstreamError as exc:
            actions.append([-1, "exception on release upload:", str(exc)])
            break
        actions.append([posted.status, "upload", path, posted.text])
        if posted.status not in _OK:
            break
    log.info(
        "pushed %d of %d files of %s %s from %s to %s by %s",
        sum(1 for a in actions if a[0] in _OK),
        len(files),
        files[0].project,
        files[0].version,
        source.name,
        mask_url(url),
        who.user,
        extra={"index": str(source.name), "project": files[0].project},
    )
    return actions


def add_routes(app: web.Application) -> None:
    app.router.add_route("PUSH", "/{user}/{index}", push, name="push")
    app.router.add_route("PUSH", "/{user}/{index}/", push, name="push-slash")
