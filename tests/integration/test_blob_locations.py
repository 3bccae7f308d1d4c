"""web/files.py turns every kind of blob location into a response: sendfile, a stream, a 302."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from proxy.metrics import Metrics
from proxy.storage.blobs import BlobLocation, LocalBlobStore, LocalFile, Redirect, RemoteObject
from proxy.web import files, keys
from proxy.web.middleware import error_middleware
from tests.integration.conftest import AiohttpClient

BODY = b"0123456789" * 1000


class ObjectStore(LocalBlobStore):
    """Serves one remote object from memory: the seam an S3 backend fills."""

    async def open_stream(self, blob: RemoteObject) -> AsyncIterator[bytes]:
        for start in range(0, blob.size, 4096):
            yield BODY[start : start + 4096]


def app_for(tmp_path: Path, location: BlobLocation) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await files._blob(request, location, request.app[keys.BLOBS].open_stream)

    app = web.Application(middlewares=[error_middleware])
    app[keys.METRICS] = Metrics()
    app[keys.BLOBS] = ObjectStore(tmp_path)
    app.router.add_get("/blob", handler)
    return app


async def test_local_file_remote_object_and_redirect(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(BODY)
    for location in (LocalFile(path, len(BODY)), RemoteObject("k", len(BODY))):
        client = await aiohttp_client(app_for(tmp_path, location))
        resp = await client.get("/blob")
        assert resp.status == 200 and await resp.read() == BODY
        assert resp.headers["Content-Length"] == str(len(BODY))
        head = await client.head("/blob")
        assert head.status == 200 and head.headers["Content-Length"] == str(len(BODY))
    client = await aiohttp_client(app_for(tmp_path, Redirect("http://127.0.0.1:9/x", 1)))
    resp = await client.get("/blob", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "http://127.0.0.1:9/x"
