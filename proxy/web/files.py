"""File handlers: turn where the bytes are (a blob, a download, the upstream) into a response."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from proxy.config import IndexKind
from proxy.errors import DistributionNotFoundError, StorageError
from proxy.httpranges import parse_range
from proxy.indexes.registry import Index
from proxy.mirror.sources import CachedRange, FileSource, InFlight, KnownSize, Passthrough
from proxy.model import check_file_key, check_filename, project_of
from proxy.storage.blobs import BlobLocation, LocalFile, Redirect, RemoteObject
from proxy.storage.locations import MetadataSource
from proxy.web import keys
from proxy.web.common import index_name

IMMUTABLE = "max-age=31536000, public, immutable"
_METADATA_SUFFIX = ".metadata"
_PASSTHROUGH_HEADERS = ("Content-Length", "Content-Range", "Accept-Ranges", "Last-Modified")

log = logging.getLogger(__name__)


def _file_headers() -> dict[str, str]:
    return {
        "Cache-Control": IMMUTABLE,
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
    }


async def serve_file(request: web.Request) -> web.StreamResponse:
    name = index_name(request)
    key = check_file_key(request.match_info["key"])
    filename = check_filename(request.match_info["filename"])
    return await _serve(request, request.app[keys.INDEXES].get(name), key, filename)


async def serve_devpi_file(request: web.Request) -> web.StreamResponse:
    """devpi's file URL, `+f/{sha256[:3]}/{sha256[3:16]}/{filename}`, in requirements and locks:
    the file of that name on the index's own page, when its sha256 starts with those digits."""
    name = index_name(request)
    prefix = request.match_info["hash_a"] + request.match_info["hash_b"]
    filename = check_filename(request.match_info["filename"])
    is_metadata = filename.endswith(_METADATA_SUFFIX)
    dist_filename = filename[: -len(_METADATA_SUFFIX)] if is_metadata else filename
    project = project_of(dist_filename)
    index = request.app[keys.INDEXES].get(name)
    page = await index.page(project) if project is not None else None
    for dist in page.files if page is not None else ():
        sha = dist.sha256
        if dist.filename == dist_filename and sha is not None and sha.startswith(prefix):
            return await _serve(request, index, check_file_key(sha), filename)
    raise DistributionNotFoundError(filename, name)


async def _serve(request: web.Request, index: Index, key: str, filename: str) -> web.StreamResponse:
    name = index.name
    is_metadata = filename.endswith(_METADATA_SUFFIX)
    dist_filename = filename[: -len(_METADATA_SUFFIX)] if is_metadata else filename
    project = project_of(dist_filename)
    if project is None:
        raise DistributionNotFoundError(filename, name)
    head = request.method == "HEAD"
    probe = head or "Range" in request.headers
    byte_range = parse_range(request.headers["Range"]) if "Range" in request.headers else None
    source: MetadataSource | FileSource
    for _ in range(2):  # a damaged mirror file is dropped, then located (fetched) again
        if is_metadata:
            source = await index.locate_metadata(project, key, dist_filename)
        else:
            source = await index.locate_file(
                project, key, filename, probe=probe, head=head, byte_range=byte_range
            )
        if not isinstance(source, LocalFile) or not _damaged(request, index, source):
            break
    mirrored = not is_metadata and index.kind is IndexKind.MIRROR
    if mirrored and isinstance(source, LocalFile | RemoteObject):
        request.app[keys.METRICS].bytes_from_cache.inc(source.size)  # hosted files are not
    match source:
        case InFlight():
            return await _follow(request, source)
        case Passthrough():
            return await _passthrough(request, source)
        case LocalFile() | RemoteObject() | Redirect():
            return await _blob(request, source, index.open_stream)
        case KnownSize():
            return await _head(request, source.size)
        case CachedRange():
            return _range(source)
        case _:
            return web.Response(body=source.body, headers=_file_headers())


def _damaged(request: web.Request, index: Index, blob: LocalFile) -> bool:
    """Refuse a stored file whose size is not the recorded one (a stat, no hashing).

    A mirror file is quarantined and True tells the caller to fetch it again; a hosted file
    cannot be fetched again, so it is quarantined and the request fails.
    """
    blobs = request.app[keys.BLOBS]
    actual = blobs.wrong_size(blob)
    sha = blobs.sha_of(blob.path)
    if actual is None or sha is None:
        return False
    blobs.quarantine(sha)
    request.app[keys.METRICS].damaged_served.labels(index.kind.value).inc()
    filename = request.match_info["filename"]
    if index.kind is IndexKind.MIRROR:
        log.warning(
            "stored %s of %s was %d bytes, not %d: quarantined, fetching it again",
            filename,
            index.name,
            actual,
            blob.size,
            extra={"file": filename, "index": index.name},
        )
        return True
    raise StorageError(f"file {filename} of index {index.name} is damaged")


async def _blob(
    request: web.Request, blob: BlobLocation, stream: Callable[[RemoteObject], AsyncIterator[bytes]]
) -> web.StreamResponse:
    """A stored blob: sendfile when local, a stream from the store, or a redirect to it."""
    match blob:
        case LocalFile():
            return web.FileResponse(blob.path, headers=_file_headers())
        case Redirect():
            raise web.HTTPFound(location=blob.url, headers={"Cache-Control": "no-store"})
        case RemoteObject():
            response = web.StreamResponse(headers=_file_headers())
            response.content_length = blob.size
            part = parse_range(request.headers["Range"]) if "Range" in request.headers else None
            if blob.ranged and part is not None:
                bounds = part.resolve(blob.size)
                if bounds is None:
                    raise web.HTTPRequestRangeNotSatisfiable(
                        headers={"Content-Range": f"bytes */{blob.size}"}
                    )
                first, last = bounds
                blob = dataclasses.replace(blob, first=first, last=last)
                response.set_status(206)
                response.headers["Content-Range"] = f"bytes {first}-{last}/{blob.size}"
                response.content_length = last - first + 1
            await response.prepare(request)
            if request.method != "HEAD":
                chunks = stream(blob)
                try:
                    async for chunk in chunks:
                        await response.write(chunk)
                finally:  # a client gone mid-way: the stream's own cleanup runs now
                    aclose = getattr(chunks, "aclose", None)
                    if aclose is not None:
                        await aclose()
            await response.write_eof()
            return response


async def _follow(request: web.Request, source: InFlight) -> web.StreamResponse:
    """Stream a download to this client as its bytes arrive."""
    download = source.download
    await download.wait_started()
    response = web.StreamResponse(headers=_file_headers())
    if download.content_length is not None:
        response.content_length = download.content_length
    await response.prepare(request)
    async with contextlib.aclosing(download.stream()) as chunks:
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


async def _head(request: web.Request, size: int) -> web.StreamResponse:
    """A HEAD answered from the size the page gives: no upstream request."""
    response = web.StreamResponse(headers=_file_headers())
    response.content_length = size
    await response.prepare(request)
    return response


def _range(source: CachedRange) -> web.Response:
    """A Range answered from bytes read from upstream before (for metadata or a client)."""
    last = source.start + len(source.data) - 1
    headers = _file_headers()
    headers["Content-Range"] = f"bytes {source.start}-{last}/{source.total}"
    return web.Response(status=206, body=source.data, headers=headers)


async def _passthrough(request: web.Request, source: Passthrough) -> web.StreamResponse:
    """HEAD and Range on an uncached file go upstream as they are: no whole-file download."""
    upstream = request.app[keys.UPSTREAM]
    headers = {"Range": request.headers["Range"]} if "Range" in request.headers else {}
    async with upstream.open_file(
        source.url, method=request.method, headers=headers, index=source.index
    ) as resp:
        response = web.StreamResponse(status=resp.status, headers=_file_headers())
        for header in _PASSTHROUGH_HEADERS:
            if header in resp.headers:
                response.headers[header] = resp.headers[header]
        if request.method == "HEAD":
            if "Content-Length" not in resp.headers and source.size is not None:
                response.headers["Content-Length"] = str(source.size)
            await response.prepare(request)
            return response
        await response.prepare(request)
        async for chunk in resp.content.iter_chunked(256 * 1024):
            await response.write(chunk)
        await response.write_eof()
        return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/{user}/{index}/+f/{key}/{filename}", serve_file, name="file")
    app.router.add_get(
        "/{user}/{index}/+f/{hash_a:[0-9a-f]{3}}/{hash_b:[0-9a-f]{13}}/{filename}",
        serve_devpi_file,
        name="file-devpi",
    )
