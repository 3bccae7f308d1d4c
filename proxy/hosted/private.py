"""A private index: files uploaded into it (SQLite) plus files found in wheelhouse directories.

Pages are built once per change and kept in memory, so a warm private page costs what a warm
mirror page costs; uploads, yanks and deletes call `invalidate`.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from proxy.config import IndexConfig, IndexKind
from proxy.errors import DistributionNotFoundError
from proxy.httpranges import ByteRange
from proxy.model import Distribution, IndexName, NameList, NormalizedName, ProjectPage
from proxy.storage.blobs import BlobLocation, BlobStore, LocalFile, RemoteObject
from proxy.storage.db import Database


@dataclass(frozen=True, slots=True)
class HostedFile:
    """One row of `files`."""

    index: str
    project: str
    version: str
    filename: str
    sha256: str
    size: int
    requires_python: str | None
    metadata_sha256: str | None
    yanked: bool
    yanked_reason: str | None
    uploaded: float
    uploader: str | None
    summary: str
    description: str
    description_type: str
    path: str | None = None  #: a wheelhouse file is served from here; uploads from the store

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> HostedFile:
        return cls(
            index=row["idx"],
            project=row["project"],
            version=row["version"],
            filename=row["filename"],
            sha256=row["sha256"],
            size=row["size"],
            requires_python=row["requires_python"],
            metadata_sha256=row["metadata_sha256"],
            yanked=bool(row["yanked"]),
            yanked_reason=row["yanked_reason"],
            uploaded=row["uploaded"],
            uploader=row["uploader"],
            summary=row["summary"],
            description=row["description"],
            description_type=row["description_type"],
            path=row["path"] if "path" in row.keys() else None,  # noqa: SIM118 - sqlite3.Row
        )

    def distribution(self) -> Distribution:
        uploaded = datetime.fromtimestamp(self.uploaded, UTC)
        return Distribution(
            filename=self.filename,
            url=f"{self.index}/+f/{self.sha256}/{self.filename}",
            hashes={"sha256": self.sha256},
            requires_python=self.requires_python,
            yanked=self.yanked,
            yanked_reason=self.yanked_reason,
            metadata=self.metadata_sha256 is not None,
            metadata_hashes={"sha256": self.metadata_sha256} if self.metadata_sha256 else {},
            size=self.size,
            upload_time=uploaded.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        )


class PrivateIndex:
    """Hosted files of one index; takes part in inheritance and shadows mirrors."""

    kind = IndexKind.PRIVATE

    def __init__(
        self,
        name: IndexName,
        cfg: IndexConfig,
        db: Database,
        blobs: BlobStore,
        *,
        max_pages: int = 10_000,
        local_wheelhouse: bool = True,
    ) -> None:
        self.name = name
        #: False on a replica: wheelhouse rows name the primary's paths, so serve them by sha256
        self.local_wheelhouse = local_wheelhouse
        self.cfg = cfg
        self.db = db
        self.blobs = blobs
        #: built pages and misses (None), least recently used first: any client can ask for
        #: any name, so the memo is capped (limits.private_pages)
        self._pages: OrderedDict[str, ProjectPage | None] = OrderedDict()
        self._max_pages = max_pages
        self._projects: tuple[str, ...] | None = None
        #: files found in wheelhouse directories, by project; kept current by `Wheelhouse`
        self.wheelhouse: dict[str, dict[str, HostedFile]] = {}

    def set_wheelhouse(self, files: dict[str, dict[str, HostedFile]], changed: set[str]) -> None:
        self.wheelhouse = files
        for project in changed:
            self.invalidate(project)

    def invalidate(self, project: str | None = None) -> None:
        """Forget cached views after a change (all of them when `project` is None)."""
        if project is None:
            self._pages.clear()
        else:
            self._pages.pop(project, None)
        self._projects = None

    async def files(self, project: str) -> list[HostedFile]:
        def query(conn: sqlite3.Connection) -> list[HostedFile]:
            rows = conn.execute(
                "SELECT * FROM files WHERE idx = ? AND project = ? ORDER BY uploaded, filename",
                (self.name, project),
            ).fetchall()
            return [HostedFile.from_row(r) for r in rows]

        uploaded = await self.db.read(query)
        names = {f.filename for f in uploaded}
        extra = self.wheelhouse.get(project, {})
        return uploaded + [f for name, f in sorted(extra.items()) if name not in names]

    async def find_file(self, key: str, filename: str) -> HostedFile:
        def query(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM files WHERE idx = ? AND filename = ? AND sha256 = ?",
                (self.name, filename, key),
            ).fetchone()
            return row

        row = await self.db.read(query)
        if row is not None:
            return HostedFile.from_row(row)
        for files in self.wheelhouse.values():
            found = files.get(filename)
            if found is not None and found.sha256 == key:
                return found
        raise DistributionNotFoundError(filename, self.name)

    async def own_page(self, project: NormalizedName) -> ProjectPage | None:
        if project in self._pages:
            self._pages.move_to_end(project)
            return self._pages[project]
        files = await self.files(project)
        page = None
        if files:
            versions = tuple(dict.fromkeys(f.version for f in files))
            dists = tuple(f.distribution() for f in files)
            page = ProjectPage(name=project, files=dists, versions=versions)
        self._pages[project] = page
        while len(self._pages) > self._max_pages:
            self._pages.popitem(last=False)
        return page

    async def own_projects(self) -> tuple[str, ...]:
        if self._projects is None:
            rows = await self.db.read(
                lambda c: c.execute(
                    "SELECT DISTINCT project FROM files WHERE idx = ? ORDER BY project",
                    (self.name,),
                ).fetchall()
            )
            names = {r[0] for r in rows} | {p for p, f in self.wheelhouse.items() if f}
            self._projects = tuple(sorted(names))
        return self._projects

    # ---- the registry's Index protocol ---------------------------------------------------

    async def page(self, project: NormalizedName) -> ProjectPage | None:
        return await self.own_page(project)

    async def shown_names(self) -> tuple[str, ...]:
        return await self.own_projects()

    async def name_list(self) -> NameList:
        """The own projects in memory (few); the tuple is new after every `invalidate`."""
        return NameList(names=await self.own_projects())

    async def locate_file(
        self,
        project: NormalizedName,
        key: str,
        filename: str,
        *,
        probe: bool,
        head: bool = False,
        byte_range: ByteRange | None = None,
    ) -> BlobLocation:
        """An upload from the blob store, a wheelhouse file where it lies; `probe` is moot."""
        hosted = await self.find_file(key, filename)
        if hosted.path is not None and self.local_wheelhouse:
            return LocalFile(Path(hosted.path), hosted.size)
        stored = await self.blobs.locate(hosted.sha256)
        if stored is None:
            raise DistributionNotFoundError(filename, self.name)
        if isinstance(stored, LocalFile | RemoteObject):  # the upload's record is the size
            return dataclasses.replace(stored, size=hosted.size)
        return stored

    async def locate_metadata(
        self, project: NormalizedName, key: str, filename: str
    ) -> BlobLocation:
        """The metadata stored beside the upload (or the scan), by its own recorded sha256."""
        hosted = await self.find_file(key, filename)
        sha = hosted.metadata_sha256
        stored = await self.blobs.locate(sha) if sha else None
        if stored is None:
            raise DistributionNotFoundError(filename + ".metadata", self.name)
        return stored

    def open_stream(self, blob: RemoteObject) -> AsyncIterator[bytes]:
        return self.blobs.open_stream(blob)

    async def close(self) -> None:
        """Nothing runs in the background here; the wheelhouse watcher has its own close."""
