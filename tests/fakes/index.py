"""FakeIndex: a loopback upstream serving test-built dists, so tests never need the public index."""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import shutil
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.fakes.dists import Built

Mode = Literal["json", "html", "both"]
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_V1_TYPE = "application/vnd.pypi.simple.v1+html"
CHUNK = 64 * 1024
_DEFAULT_UPLOAD = datetime(2024, 1, 1, tzinfo=UTC)
_WRONG_SHA256 = "0" * 64
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request the fake received, so tests can prove caching by counting."""

    method: str
    path: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Hosted:
    """A dist file the fake serves, with the page attributes it was registered with."""

    built: Built
    path: Path
    yanked: str | bool
    upload_time: datetime


def parse_accept(header: str) -> list[tuple[str, float]]:
    """Media types with their q-values, best first (stable for equal q)."""
    ranked: list[tuple[str, float]] = []
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media and q > 0:
            ranked.append((media.lower(), q))
    return sorted(ranked, key=lambda item: -item[1])


def negotiate(header: str) -> str:
    """The content type a PEP 691 server picks for this Accept header; HTML by default."""
    for media, _ in parse_accept(header or "*/*"):
        if media in (JSON_TYPE, "application/vnd.pypi.simple.latest+json"):
            return JSON_TYPE
        if media in (HTML_V1_TYPE, "application/vnd.pypi.simple.latest+html"):
            return HTML_V1_TYPE
        if media in ("text/html", "text/*", "*/*"):
            return "text/html"
    return "text/html"


class FakeIndex:
    """A PEP 503/691 upstream with failure knobs that tests flip as plain attributes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mode: Mode = "both"
        self.fail_status: int | None = None
        self.hang = False
        self.slow_chunk_delay = 0.0
        self.truncate_files = False
        self.wrong_hash = False
        self.omit_hashes = False
        self.offer_metadata = True  #: False: no PEP 658 attributes, .metadata answers 404
        self.ranges = True  #: False: Range headers are ignored (200 and the whole file)
        self.range_status: int | None = None  #: answer every Range request with this status
        self.whole_as_200 = False  #: a Range covering the whole file is answered 200
        self.serial = 0
        self.generated_names = 0  #: extra made-up projects on the root list (no pages)
        self.requests: list[Recorded] = []
        self.projects: dict[str, list[Hosted]] = {}
        self._files: dict[str, Hosted] = {}
        self._release: asyncio.Event | None = None
        self.app = web.Application(middlewares=[self._middleware])
        self.app.on_startup.append(self._on_startup)
        self.app.on_shutdown.append(self._on_shutdown)
        self.app.router.add_get("/simple/", self._project_list)
        self.app.router.add_get("/simple/{project}/", self._project_page)
        self.app.router.add_get("/files/{filename}", self._file)

    def add(
        self, built: Built, *, yanked: str | bool = False, upload_time: datetime | None = None
    ) -> Hosted:
        """Register a dist for its project, copied under root so tests may damage it freely."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / built.filename
        shutil.copyfile(built.path, path)
        hosted = Hosted(built, path, yanked, upload_time or _DEFAULT_UPLOAD)
        self.projects.setdefault(canonicalize_name(built.name), []).append(hosted)
        self._files[built.filename] = hosted
        self.serial += 1
        return hosted

    def hits(self, path: str, method: str = "GET") -> int:
        """How many requests for exactly this path the fake has seen."""
        return sum(1 for r in self.requests if r.path == path and r.method == method)

    async def _on_startup(self, app: web.Application) -> None:
        self._release = asyncio.Event()

    async def _on_shutdown(self, app: web.Application) -> None:
        if self._release is not None:
            self._release.set()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(Recorded(request.method, request.path, dict(request.headers)))
        if self.hang:
            assert self._release is not None
            await self._release.wait()  # forever, until the server shuts down
            raise web.HTTPServiceUnavailable(text="fake index shutting down")
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text=f"fake failure {self.fail_status}")
        return await handler(request)

    def _respond_page(self, request: web.Request, render: Callable[[str], bytes]) -> web.Response:
        """Pick HTML or JSON per mode and Accept, then apply ETag/304 and the serial header."""
        if self.mode == "json":
            content_type = JSON_TYPE
        elif self.mode == "html":
            content_type = "text/html"
        else:
            content_type = negotiate(request.headers.get("Accept", ""))
        body = render(content_type)
        etag = '"' + hashlib.sha256(content_type.encode() + body).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "X-PyPI-Last-Serial": str(self.serial), "Vary": "Accept"}
        if etag in (t.strip() for t in request.headers.get("If-None-Match", "").split(",")):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = content_type
        if content_type != JSON_TYPE:
            headers["Content-Type"] += "; charset=utf-8"
        return web.Response(body=body, headers=headers)

    def list_names(self) -> list[str]:
        """The root list: the hosted projects, then `generated_names` made-up ones as given."""
        return sorted(self.projects) + [f"Gen_{i}.Pkg" for i in range(self.generated_names)]

    async def _project_list(self, request: web.Request) -> web.Response:
        names = self.list_names()

        def render(content_type: str) -> bytes:
            if content_type == JSON_TYPE:
                doc = {"meta": self._meta(), "projects": [{"name": n} for n in names]}
                return json.dumps(doc).encode()
            links = "".join(
                f'    <a href="{canonicalize_name(n)}/">{html.escape(n)}</a>\n' for n in names
            )
            return _html_page("Simple index", links, self.serial)

        return self._respond_page(request, render)

    async def _project_page(self, request: web.Request) -> web.Response:
        raw = request.match_info["project"]
        project = canonicalize_name(raw)
        if project != raw:
            raise web.HTTPMovedPermanently(f"/simple/{project}/")
        if project not in self.projects:
            raise web.HTTPNotFound(text=f"project {project!r} not found")
        hosted = self.projects[project]
        origin = str(request.url.origin())

        def render(content_type: str) -> bytes:
            if content_type == JSON_TYPE:
                return json.dumps(self._project_json(project, hosted, origin)).encode()
            links = "".join(self._anchor(h) for h in hosted)
            return _html_page(f"Links for {project}", links, self.serial)

        return self._respond_page(request, render)

    def _meta(self) -> dict[str, Any]:
        return {"api-version": "1.1", "_last-serial": self.serial}

    def _file_sha256(self, hosted: Hosted) -> str | None:
        if self.omit_hashes:
            return None
        return _WRONG_SHA256 if self.wrong_hash else hosted.built.sha256

    def _anchor(self, hosted: Hosted) -> str:
        """One PEP 503 link shaped like a real index: relative href, escaped attributes."""
        built = hosted.built
        href = f"../../files/{built.filename}"
        if (sha256 := self._file_sha256(hosted)) is not None:
            href += f"#sha256={sha256}"
        attrs = [f'href="{html.escape(href)}"']
        if built.requires_python:
            attrs.append(f'data-requires-python="{html.escape(built.requires_python)}"')
        if hosted.yanked is not False:
            reason = "" if hosted.yanked is True else str(hosted.yanked)
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        if built.metadata_sha256 is not None and self.offer_metadata:
            value = "true" if self.omit_hashes else f"sha256={built.metadata_sha256}"
            attrs.append(f'data-dist-info-metadata="{value}" data-core-metadata="{value}"')
        return f"    <a {' '.join(attrs)}>{html.escape(built.filename)}</a><br />\n"

    def _project_json(self, project: str, hosted: list[Hosted], origin: str) -> dict[str, Any]:
        files: list[dict[str, Any]] = []
        for h in hosted:
            sha256 = self._file_sha256(h)
            core: bool | dict[str, str] = False
            if h.built.metadata_sha256 is not None and self.offer_metadata:
                core = True if self.omit_hashes else {"sha256": h.built.metadata_sha256}
            files.append(
                {
                    "filename": h.built.filename,
                    "url": f"{origin}/files/{h.built.filename}",
                    "hashes": {} if sha256 is None else {"sha256": sha256},
                    "requires-python": h.built.requires_python,
                    "yanked": h.yanked,
                    "core-metadata": core,
                    "data-dist-info-metadata": core,
                    "size": h.built.size,
                    "upload-time": h.upload_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                }
            )
        versions = sorted({h.built.version for h in hosted}, key=Version)
        return {"meta": self._meta(), "name": project, "versions": versions, "files": files}

    async def _file(self, request: web.Request) -> web.StreamResponse:
        filename = request.match_info["filename"]
        if filename.endswith(".metadata"):
            hosted = self._files.get(filename.removesuffix(".metadata"))
            if hosted is None or hosted.built.metadata is None or not self.offer_metadata:
                raise web.HTTPNotFound(text=f"no metadata for {filename!r}")
            return await self._send(request, hosted.built.metadata, "text/plain")
        if (hosted := self._files.get(filename)) is None:
            raise web.HTTPNotFound(text=f"no file {filename!r}")
        return await self._send(request, hosted.path.read_bytes(), "application/octet-stream")

    async def _send(
        self, request: web.Request, data: bytes, content_type: str
    ) -> web.StreamResponse:
        """Stream in 64 KiB chunks, honouring one Range (`N-`, `N-M`, `-N`) and the knobs."""
        start, last, status = 0, len(data) - 1, 200
        range_header = request.headers.get("Range", "") if self.ranges else ""
        if range_header and self.range_status is not None:
            return web.Response(status=self.range_status, text="no ranges here")
        if range_header.startswith("bytes="):
            first, _, final = range_header[6:].partition("-")
            if first:
                start, last = int(first), min(int(final or last), last)
            else:
                start = max(0, len(data) - int(final))
            whole = start == 0 and last == len(data) - 1
            status = 200 if whole and self.whole_as_200 else 206
        response = web.StreamResponse(status=status)
        response.content_type = content_type
        response.content_length = last + 1 - start
        if self.ranges:
            response.headers["Accept-Ranges"] = "bytes"
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{last}/{len(data)}"
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        end = start + (last + 1 - start) // 2 if self.truncate_files else last + 1
        for offset in range(start, end, CHUNK):
            if offset > start and self.slow_chunk_delay:
                await asyncio.sleep(self.slow_chunk_delay)
            await response.write(data[offset : min(offset + CHUNK, end)])
        if self.truncate_files:
            assert request.transport is not None
            request.transport.close()  # the client sees fewer bytes than Content-Length
            raise asyncio.CancelledError
        await response.write_eof()
        return response


def _html_page(title: str, links: str, serial: int) -> bytes:
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.1">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{links}  </body>\n</html>\n<!--SERIAL {serial}-->\n"
    ).encode()


class ThreadedServer:
    """Runs an app on its own loop in a thread, for tests that block in `subprocess.run`."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def start(self) -> None:
        """Listen again on the same port (the first start picks a free one)."""
        if self._runner is None:
            self._runner = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()

    def stop(self) -> None:
        """Close the listener and every open connection: the port now refuses connections."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
            self._runner = None

    async def _start(self) -> web.AppRunner:
        runner = web.AppRunner(self.app, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner
