"""What the registry and the handlers need of an index, whatever its kind.

MirrorIndex and PrivateIndex satisfy `Index` structurally: neither imports this module (hosted/
and mirror/ sit below indexes/ and never import each other), and tests can pass small fakes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from proxy.config import IndexKind
from proxy.httpranges import ByteRange
from proxy.mirror.sources import FileSource
from proxy.model import IndexName, NameList, NormalizedName, ProjectPage
from proxy.storage.blobs import RemoteObject
from proxy.storage.locations import MetadataSource


class Index(Protocol):
    """One index: its pages, its project names and where its files are."""

    @property
    def name(self) -> IndexName: ...

    @property
    def kind(self) -> IndexKind: ...

    async def page(self, project: NormalizedName) -> ProjectPage | None:
        """The project as this index serves it; None when it has none (UpstreamError raises)."""
        ...

    async def name_list(self) -> NameList:
        """Every project this index lists on its root page: a names file when there are many."""
        ...

    async def shown_names(self) -> tuple[str, ...]:
        """What the web UI lists and counts: own projects, or a mirror's pages in memory."""
        ...

    async def locate_file(
        self,
        project: NormalizedName,
        key: str,
        filename: str,
        *,
        probe: bool,
        head: bool = False,
        byte_range: ByteRange | None = None,
    ) -> FileSource:
        """Where the file's bytes are; DistributionNotFoundError when it is not here."""
        ...

    async def locate_metadata(
        self, project: NormalizedName, key: str, filename: str
    ) -> MetadataSource:
        """Where the file's core metadata (PEP 658) is; DistributionNotFoundError when nowhere."""
        ...

    def open_stream(self, blob: RemoteObject) -> AsyncIterator[bytes]:
        """The bytes of a `RemoteObject` this index located (its blob store streams them)."""
        ...

    async def close(self) -> None:
        """Stop background work at shutdown."""
        ...
