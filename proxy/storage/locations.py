"""Where a requested file's bytes are, for either kind of index: a blob, or a body in memory."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.storage.blobs import BlobLocation


@dataclass(frozen=True, slots=True)
class InMemory:
    """A small body (core metadata) just fetched, answered while it is being stored."""

    body: bytes


MetadataSource = BlobLocation | InMemory
