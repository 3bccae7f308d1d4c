"""A private index: hosted files (uploads and wheelhouses come with the next milestone)."""

from __future__ import annotations

from proxy.config import IndexConfig
from proxy.model import IndexName, NormalizedName, ProjectPage


class PrivateIndex:
    """Holds no files yet; it already takes part in inheritance and shadowing."""

    def __init__(self, name: IndexName, cfg: IndexConfig) -> None:
        self.name = name
        self.cfg = cfg

    async def own_page(self, project: NormalizedName) -> ProjectPage | None:
        return None

    async def own_projects(self) -> tuple[str, ...]:
        return ()
