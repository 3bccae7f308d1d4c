"""The legacy upload API (twine, uv publish): multipart POST to /{user}/{index}/, to disk."""

from __future__ import annotations

import asyncio

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from proxy.config import IndexKind
from proxy.errors import (
    InvalidUploadError,
    UploadNotAllowedError,
    UploadTooLargeError,
)
from proxy.storage.blobs import TempBlob
from proxy.web import keys, push, xmlrpc
from proxy.web.authz import caller
from proxy.web.common import index_name

_FIELD_LIMIT = 1024 * 1024  #: description and friends; the file itself streams to disk
_CHUNK = 256 * 1024


def _upload_url(request: web.Request, name: str) -> str:
    return f"{request.scheme}://{request.host}/{name}/"


async def _read_file(part: BodyPartReader, temp: TempBlob, limit: int) -> None:
    while chunk := await part.read_chunk(_CHUNK):
        if temp.size + len(chunk) > limit:
            raise UploadTooLargeError(limit)
        await temp.write(chunk)


async def _read_form(
    request: web.Request, temp: TempBlob, limit: int
) -> tuple[dict[str, str], str | None]:
    """Fields as text, and the `content` file's name; its bytes go to `temp` as they arrive."""
    fields: dict[str, str] = {}
    filename: str | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.name == "content":
                filename = part.filename
                await _read_file(part, temp, limit)
            else:
                value = await part.read(decode=True)
                if len(value) > _FIELD_LIMIT:
                    raise InvalidUploadError(f"form field '{part.name}' is too large")
                fields[part.name] = value.decode("utf-8", errors="replace")
    except (HttpProcessingError, asyncio.IncompleteReadError, ConnectionError) as exc:
        raise InvalidUploadError(f"upload body broken off or malformed: {exc}") from exc
    except (ValueError, AssertionError) as exc:  # aiohttp's multipart parser raises these
        raise InvalidUploadError(f"malformed multipart upload: {exc}") from exc
    return fields, filename


async def upload(request: web.Request) -> web.StreamResponse:
    name = index_name(request)
    if request.content_type in ("text/xml", "application/xml"):
        return await xmlrpc.handle(request, name)
    if request.content_type == "application/json":
        return await push.push(request)  # devpi-server takes a push POSTed as well
    cfg = request.app[keys.INDEXES].config(name)
    if cfg.kind is not IndexKind.PRIVATE:
        raise UploadNotAllowedError(
            f"'{name}' is a mirror and takes no uploads; upload to a private index, "
            f"e.g. {_upload_url(request, 'root/public')}"
        )
    who = caller(request)  # authorized for this index by the authz middleware
    limit = request.app[keys.CONFIG].auth.max_upload_size
    temp = request.app[keys.BLOBS].create_temp()
    try:
        fields, filename = await _read_form(request, temp, limit)
        action = fields.get(":action", "file_upload")
        if action != "file_upload":
            raise InvalidUploadError(f"unsupported :action '{action}'")
        if not filename:
            raise InvalidUploadError("the upload has no 'content' file")
        uploads = request.app[keys.UPLOADS]
        new = await uploads.accept(
            request.app[keys.INDEXES].private(name), who, filename, fields, temp
        )
    finally:
        temp.close()
    return web.json_response({"status": "ok", "filename": filename, "new": new})


async def upload_to_simple(request: web.Request) -> web.StreamResponse:
    name = index_name(request)
    raise UploadNotAllowedError(
        f"uploads go to the index URL, not its simple page: use {_upload_url(request, name)}"
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/{user}/{index}/", upload, name="upload")
    app.router.add_post("/{user}/{index}", upload, name="upload-noslash")  # as devpi takes it
    app.router.add_post("/{user}/{index}/+simple/", upload_to_simple, name="upload-simple")
    app.router.add_post("/{user}/{index}/+simple", upload_to_simple, name="upload-simple-ns")
