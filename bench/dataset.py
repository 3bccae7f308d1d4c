"""The upstream's content: real wheels and hashes, PEP 503 HTML and PEP 691 JSON pages on disk."""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import random
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from tests.fakes.dists import build_wheel, render_metadata

BIG_PAGE = "bigpage"  #: the 2,000-file project page
TINY = "tiny"  #: a 1-file project page
BIG_WHEEL = "bigwheel"  #: one ~20 MB wheel
DOWNLOAD_SET = tuple(f"dl-{i:02d}" for i in range(20))  #: cold `pip download` of these
GRAPH_SIZE = 100  #: packages in each dependency graph for `uv pip compile`
GRAPH_LAYERS = (1, 9, 20, 30, 40)  #: "graph-*": 5 levels deep, like a real application's tree
GRAPH_VERSIONS = ("1.0", "1.1", "2.0")
GRAPH_SPECS = {"1.0": "<2", "1.1": ">=1.0,<2", "2.0": ">=1.1"}  #: every set admits 1.1
BIG_PAGE_FILES = 2000
BIG_WHEEL_BYTES = 20 * 1024 * 1024
DOWNLOAD_WHEEL_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One link on a project page."""

    filename: str
    sha256: str
    size: int
    requires_python: str | None
    metadata_sha256: str | None  #: PEP 658/714 `core-metadata`, wheels only


@dataclass(frozen=True, slots=True)
class Dataset:
    """Where the upstream's document root is and what the scenarios need to know about it."""

    root: Path  #: nginx document root: simple/ and files/
    big_wheel: FileEntry
    download_requirements: tuple[str, ...]
    graph_requirements: tuple[str, ...]  #: root of the 5-level graph
    chain_requirements: tuple[str, ...]  #: root of the 100-level chain


def _write_file(
    files: Path, filename: str, data: bytes, meta: bytes | None, rp: str | None
) -> FileEntry:
    (files / filename).write_bytes(data)
    meta_sha = None
    if meta is not None:
        (files / f"{filename}.metadata").write_bytes(meta)
        meta_sha = hashlib.sha256(meta).hexdigest()
    return FileEntry(filename, hashlib.sha256(data).hexdigest(), len(data), rp, meta_sha)


def _wheel(
    files: Path,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    requires_python: str | None = None,
    payload_size: int = 0,
) -> FileEntry:
    built = build_wheel(
        files,
        name,
        version,
        requires=requires,
        requires_python=requires_python,
        payload_size=payload_size,
    )
    if built.metadata is not None:
        (files / f"{built.filename}.metadata").write_bytes(built.metadata)
    return FileEntry(
        built.filename, built.sha256, built.size, built.requires_python, built.metadata_sha256
    )


def _big_page(files: Path) -> list[FileEntry]:
    """2,000 small files with real hashes: 500 versions x 4 CPython wheel tags."""
    entries = []
    tags = ("cp310-cp310", "cp311-cp311", "cp312-cp312", "cp313-cp313")
    for i in range(BIG_PAGE_FILES // len(tags)):
        version = f"{i // 100}.{i % 100}.0"
        meta = render_metadata(BIG_PAGE, version, requires_python=">=3.10")
        for tag in tags:
            filename = f"{BIG_PAGE}-{version}-{tag}-manylinux_2_17_x86_64.whl"
            data = f"{filename}\n".encode() * 8
            entries.append(_write_file(files, filename, data, meta, ">=3.10"))
    return entries


def layered_edges(rng: random.Random) -> dict[int, set[int]]:
    """Each package needs 3 of the next level, and every package is needed by one above it."""
    edges: dict[int, set[int]] = {}
    start = 0
    for size, below in itertools.pairwise((*GRAPH_LAYERS, 0)):
        level = range(start, start + size)
        nxt = range(start + size, start + size + below)
        for i in level:
            edges[i] = set(rng.sample(nxt, min(3, below)))
        for n, j in enumerate(nxt):
            edges[level[n % size]].add(j)
        start += size
    return edges


def chain_edges(rng: random.Random) -> dict[int, set[int]]:
    """Package i needs i+1 and two random later ones: 100 levels, so latency adds up."""
    edges = {}
    for i in range(GRAPH_SIZE):
        later = range(i + 1, GRAPH_SIZE)
        edges[i] = {i + 1, *rng.sample(later, min(2, len(later)))} if later else set()
    return edges


def _graph(files: Path, prefix: str, edges: dict[int, set[int]]) -> dict[str, list[FileEntry]]:
    projects: dict[str, list[FileEntry]] = {}
    for i, needs in edges.items():
        name = f"{prefix}-{i:03d}"
        projects[name] = [
            _wheel(
                files,
                name,
                v,
                requires=[f"{prefix}-{j:03d}{GRAPH_SPECS[v]}" for j in sorted(needs)],
                requires_python=">=3.8",
            )
            for v in GRAPH_VERSIONS
        ]
    return projects


def build_dataset(root: Path) -> Dataset:
    """(Re)create the whole upstream tree under `root`."""
    shutil.rmtree(root, ignore_errors=True)
    files = root / "files"
    files.mkdir(parents=True)
    projects: dict[str, list[FileEntry]] = {
        BIG_PAGE: _big_page(files),
        TINY: [_wheel(files, TINY, "1.0")],
        BIG_WHEEL: [_wheel(files, BIG_WHEEL, "1.0", payload_size=BIG_WHEEL_BYTES)],
    }
    for name in DOWNLOAD_SET:
        projects[name] = [_wheel(files, name, "1.0", payload_size=DOWNLOAD_WHEEL_BYTES)]
    rng = random.Random(42)  # noqa: S311 - a reproducible graph, not a secret
    projects.update(_graph(files, "graph", layered_edges(rng)))
    projects.update(_graph(files, "chain", chain_edges(rng)))
    _write_pages(root / "simple", projects)
    return Dataset(
        root=root,
        big_wheel=projects[BIG_WHEEL][0],
        download_requirements=DOWNLOAD_SET,
        graph_requirements=("graph-000",),
        chain_requirements=("chain-000",),
    )


def _write_pages(simple: Path, projects: dict[str, list[FileEntry]]) -> None:
    simple.mkdir(parents=True)
    names = sorted(canonicalize_name(n) for n in projects)
    (simple / "index.html").write_text(render_root_html(names))
    (simple / "index.json").write_text(render_root_json(names))
    for name, entries in projects.items():
        page = simple / canonicalize_name(name)
        page.mkdir()
        (page / "index.html").write_text(render_project_html(name, entries))
        (page / "index.json").write_text(render_project_json(name, entries))


def render_root_html(names: Iterable[str]) -> str:
    links = "".join(f'<a href="{n}/">{n}</a>\n' for n in names)
    return _html_doc("Simple index", links)


def render_root_json(names: Iterable[str]) -> str:
    doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
    return json.dumps(doc)


def _html_doc(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.1">'
        f"<title>{title}</title></head><body><h1>{title}</h1>\n{body}</body></html>\n"
    )


def render_project_html(name: str, entries: Iterable[FileEntry]) -> str:
    links = []
    for e in entries:
        attrs = f'href="/files/{e.filename}#sha256={e.sha256}"'
        if e.requires_python:
            attrs += f' data-requires-python="{html.escape(e.requires_python)}"'
        if e.metadata_sha256:
            meta = f"sha256={e.metadata_sha256}"
            attrs += f' data-dist-info-metadata="{meta}" data-core-metadata="{meta}"'
        links.append(f"<a {attrs}>{e.filename}</a><br/>\n")
    return _html_doc(f"Links for {name}", "".join(links))


def render_project_json(name: str, entries: Iterable[FileEntry]) -> str:
    files = []
    versions = set()
    for e in entries:
        item: dict[str, object] = {
            "filename": e.filename,
            "url": f"/files/{e.filename}",
            "hashes": {"sha256": e.sha256},
            "size": e.size,
        }
        if e.requires_python:
            item["requires-python"] = e.requires_python
        if e.metadata_sha256:
            item["core-metadata"] = {"sha256": e.metadata_sha256}
            item["dist-info-metadata"] = {"sha256": e.metadata_sha256}
        files.append(item)
        versions.add(e.filename.split("-")[1])
    doc = {
        "meta": {"api-version": "1.1"},
        "name": canonicalize_name(name),
        "files": files,
        "versions": sorted(versions),
    }
    return json.dumps(doc)
