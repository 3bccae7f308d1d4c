"""The primary's replication endpoints; the authz middleware admits only the shared secret."""

from __future__ import annotations

import contextlib

from aiohttp import web

from proxy.cluster.primary import stream_changes
from proxy.cluster.protocol import (
    CONTENT_TYPE,
    REPLICA_ID_HEADER,
    REPLICA_URL_HEADER,
    SERIAL_HEADER,
    SNAPSHOT_SERIAL_HEADER,
    SNAPSHOT_SHA256_HEADER,
    identity_headers,
)
from proxy.errors import ChangelogCompactedError, DistributionNotFoundError, InvalidInputError
from proxy.model import is_sha256
from proxy.web import keys


async def changes(request: web.Request) -> web.StreamResponse:
    """`?since=N`: every changelog entry after N, then new ones as they commit (NDJSON)."""
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        raise InvalidInputError("since must be a serial number") from None
    if since < 0:
        raise InvalidInputError("since must be a serial number")
    app = request.app
    db = app[keys.DB]
    oldest = await db.oldest_serial()
    if since < db.serial and (oldest is None or oldest > since + 1):
        raise ChangelogCompactedError(
            f"the changelog after serial {since} was compacted (oldest kept: "
            f"{oldest if oldest is not None else 'none'}); start from GET /+replication/snapshot"
        )
    replica_id = request.headers.get(REPLICA_ID_HEADER, "")[:200] or (request.remote or "?")
    state = app[keys.REPLICAS].connected(
        replica_id,
        request.headers.get(REPLICA_URL_HEADER, "")[:500],
        request.remote or "",
        since,
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": CONTENT_TYPE,
            "Cache-Control": "no-store",
            SERIAL_HEADER: str(db.serial),
            **identity_headers(db.identity),
        }
    )
    response.force_close()  # one stream per connection: a stopping primary drains at once
    await response.prepare(request)
    heartbeat = app[keys.CONFIG].replication.heartbeat
    stream = stream_changes(db, state, heartbeat, app[keys.STOPPING])
    with contextlib.suppress(ConnectionResetError):
        async with contextlib.aclosing(stream) as lines:
            async for line in lines:
                await response.write(line)
        await response.write_eof()
    return response


async def file(request: web.Request) -> web.StreamResponse:
    """A hosted file's bytes by sha256: an upload's blob, or a wheelhouse file where it lies."""
    sha = request.match_info["sha256"]
    if not is_sha256(sha):
        raise InvalidInputError("not a sha256")
    app = request.app
    stored = await app[keys.BLOBS].locate(sha)
    if stored is not None:
        return web.FileResponse(stored.path)
    row = await app[keys.DB].read(
        lambda c: c.execute(
            "SELECT path FROM wheelhouse WHERE sha256 = ? LIMIT 1", (sha,)
        ).fetchone()
    )
    if row is None:
        raise DistributionNotFoundError(sha, "this primary")
    return web.FileResponse(row[0])


async def snapshot(request: web.Request) -> web.StreamResponse:
    """The newest snapshot of the whole state, with its serial and sha256 in the headers."""
    snapshots = request.app[keys.SNAPSHOTS]
    newest = snapshots.newest()
    if newest is None:  # nothing compacted yet either: take one now
        newest = await snapshots.take()
    return web.FileResponse(
        newest.path,
        headers={
            SNAPSHOT_SERIAL_HEADER: str(newest.serial),
            SNAPSHOT_SHA256_HEADER: newest.sha256,
            "Content-Type": "application/vnd.sqlite3",
        },
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/+replication/changes", changes, name="replication-changes")
    app.router.add_get("/+replication/files/{sha256}", file, name="replication-file")
    app.router.add_get("/+replication/snapshot", snapshot, name="replication-snapshot")
