"""Resolution: order, first filename wins, shadowing, the whitelist, explain and upstream errors.

The indexes are small in-test implementations of the `Index` protocol: the registry's seam.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from proxy.config import IndexConfig, IndexKind, IndexProblem, IndexRule, check_indexes
from proxy.errors import (
    DistributionNotFoundError,
    InvalidInputError,
    ProjectNotFoundError,
    UpstreamError,
    UpstreamUnavailableError,
)
from proxy.httpranges import ByteRange
from proxy.indexes.base import Index
from proxy.indexes.registry import (
    Hiding,
    IndexRegistry,
    Listed,
    Resolution,
    Step,
    merge_pages,
    render_explain,
)
from proxy.indexes.store import IndexStore, from_api
from proxy.mirror.sources import FileSource
from proxy.model import (
    Distribution,
    IndexName,
    NameList,
    NormalizedName,
    ProjectPage,
    normalize,
)
from proxy.simple_api import Format
from proxy.storage.blobs import RemoteObject
from proxy.storage.db import Database
from proxy.storage.locations import MetadataSource

MIRROR, PRIVATE = IndexKind.MIRROR, IndexKind.PRIVATE
FOO = normalize("foo")


@dataclass
class FakeIndex:
    """Pages from a dict; an optional error for every page; records what it was asked."""

    name: IndexName
    kind: IndexKind
    pages: dict[str, ProjectPage] = field(default_factory=dict)
    error: UpstreamError | None = None
    asked: list[str] = field(default_factory=list)

    async def page(self, project: NormalizedName) -> ProjectPage | None:
        self.asked.append(project)
        if self.error is not None:
            raise self.error
        return self.pages.get(project)

    async def name_list(self) -> NameList:
        return NameList(names=tuple(self.pages))

    async def shown_names(self) -> tuple[str, ...]:
        return tuple(self.pages)

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
        raise DistributionNotFoundError(filename, self.name)

    async def locate_metadata(
        self, project: NormalizedName, key: str, filename: str
    ) -> MetadataSource:
        raise DistributionNotFoundError(filename, self.name)

    def open_stream(self, blob: RemoteObject) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def _page(*filenames: str, name: str = "foo") -> ProjectPage:
    return ProjectPage(name=name, files=tuple(Distribution(f, f"x/+f/k/{f}") for f in filenames))


def _registry(
    configs: Iterable[IndexConfig], pages: dict[str, dict[str, ProjectPage]] | None = None
) -> tuple[IndexRegistry, dict[str, FakeIndex]]:
    built: dict[str, FakeIndex] = {}

    def build(cfg: IndexConfig) -> Index:
        index = FakeIndex(IndexName(cfg.name), cfg.kind, dict((pages or {}).get(cfg.name, {})))
        built[cfg.name] = index
        return index

    return IndexRegistry(configs, build), built


def _private(name: str, *bases: str, whitelist: tuple[str, ...] = ()) -> IndexConfig:
    return IndexConfig(name=name, kind=PRIVATE, bases=bases, mirror_whitelist=whitelist)


def _mirror(name: str) -> IndexConfig:
    return IndexConfig(name=name, kind=MIRROR)


def test_order_is_breadth_first_each_index_once_mirrors_last() -> None:
    registry, _ = _registry(
        [
            _mirror("m/one"),
            _mirror("m/two"),
            _private("a/p3"),
            _private("a/p2", "m/two"),
            _private("a/p1", "a/p3", "a/p2"),
            _private("a/top", "a/p1", "m/one", "a/p2"),
        ]
    )
    order = [i.name for i in registry.resolution_order("a/top")]
    assert order == ["a/top", "a/p1", "a/p2", "a/p3", "m/one", "m/two"]


async def test_first_index_to_list_a_filename_wins() -> None:
    first, second = _page("foo-1.0.tar.gz"), _page("foo-1.0.tar.gz", "foo-2.0.tar.gz")
    registry, _ = _registry(
        [_private("a/base"), _private("a/top", "a/base")],
        {"a/top": {"foo": first}, "a/base": {"foo": second}},
    )
    resolution = await registry.resolve("a/top", FOO)
    assert resolution == Resolution(
        index=IndexName("a/top"),
        project=FOO,
        steps=(
            Step(IndexName("a/top"), PRIVATE, first, files=("foo-1.0.tar.gz",)),
            Step(
                IndexName("a/base"),
                PRIVATE,
                second,
                files=("foo-2.0.tar.gz",),
                hidden=("foo-1.0.tar.gz",),
                hiding=Hiding.SHADOWED,
            ),
        ),
        hosted_in=IndexName("a/top"),
    )
    view = await registry.view("a/top", FOO)
    assert view.files == (first.files[0], second.files[1])


async def test_private_project_hides_the_mirror_without_asking_it() -> None:
    hosted, mirrored = _page("foo-1.0.tar.gz"), _page("foo-9.0.tar.gz")
    registry, built = _registry(
        [_mirror("m/up"), _private("a/top", "m/up")],
        {"a/top": {"foo": hosted}, "m/up": {"foo": mirrored}},
    )
    resolution = await registry.resolve("a/top", FOO)
    assert resolution.steps == (
        Step(IndexName("a/top"), PRIVATE, hosted, files=("foo-1.0.tar.gz",)),
        Step(IndexName("m/up"), MIRROR, None, hiding=Hiding.PRIVATE),
    )
    assert resolution.pages() == (hosted,)
    assert await registry.view_parts("a/top", FOO) == (hosted,)
    assert built["m/up"].asked == []


@pytest.mark.parametrize("whitelist", [("*",), ("Foo",), ("other", "foo")])
async def test_whitelist_lets_the_mirror_through(whitelist: tuple[str, ...]) -> None:
    hosted, mirrored = _page("foo-1.0.tar.gz"), _page("foo-1.0.tar.gz", "foo-9.0.tar.gz")
    registry, _ = _registry(
        [_mirror("m/up"), _private("a/top", "m/up", whitelist=whitelist)],
        {"a/top": {"foo": hosted}, "m/up": {"foo": mirrored}},
    )
    resolution = await registry.resolve("a/top", FOO)
    assert resolution.steps[1] == Step(
        IndexName("m/up"),
        MIRROR,
        mirrored,
        files=("foo-9.0.tar.gz",),
        hidden=("foo-1.0.tar.gz",),
        hiding=Hiding.SHADOWED,
    )
    assert resolution.pages() == (hosted, mirrored)


async def test_whitelist_of_the_viewed_index_counts_not_a_bases() -> None:
    hosted, mirrored = _page("foo-1.0.tar.gz"), _page("foo-9.0.tar.gz")
    registry, _ = _registry(
        [
            _mirror("m/up"),
            _private("a/base", "m/up", whitelist=("*",)),
            _private("a/top", "a/base"),
        ],
        {"a/base": {"foo": hosted}, "m/up": {"foo": mirrored}},
    )
    assert await registry.view_parts("a/top", FOO) == (hosted,)
    assert await registry.view_parts("a/base", FOO) == (hosted, mirrored)


async def test_unhosted_project_comes_from_the_mirror() -> None:
    mirrored = _page("foo-9.0.tar.gz")
    registry, _ = _registry(
        [_mirror("m/up"), _private("a/top", "m/up")], {"m/up": {"foo": mirrored}}
    )
    resolution = await registry.resolve("a/top", FOO)
    assert resolution == Resolution(
        IndexName("a/top"),
        FOO,
        (
            Step(IndexName("a/top"), PRIVATE, None),
            Step(IndexName("m/up"), MIRROR, mirrored, files=("foo-9.0.tar.gz",)),
        ),
    )


async def test_explain_asks_the_hidden_mirror_and_lists_its_files() -> None:
    hosted = _page("foo-1.0.tar.gz")
    base = _page("foo-1.0.tar.gz", "foo-1.1.tar.gz")
    mirrored = _page("foo-9.0.tar.gz")
    registry, built = _registry(
        [_mirror("m/up"), _private("a/base"), _private("a/top", "a/base", "m/up")],
        {"a/top": {"foo": hosted}, "a/base": {"foo": base}, "m/up": {"foo": mirrored}},
    )
    resolution = await registry.resolve("a/top", FOO, fetch_hidden=True)
    assert resolution.steps[2] == Step(
        IndexName("m/up"), MIRROR, mirrored, hidden=("foo-9.0.tar.gz",), hiding=Hiding.PRIVATE
    )
    assert built["m/up"].asked == ["foo"]
    assert await registry.explain("a/top", FOO) == [
        {"index": "a/top", "type": "private", "files": ["foo-1.0.tar.gz"], "hidden": []},
        {
            "index": "a/base",
            "type": "private",
            "files": ["foo-1.1.tar.gz"],
            "hidden": ["foo-1.0.tar.gz"],
            "reason": "an index earlier in the order lists the same file names",
        },
        {
            "index": "m/up",
            "type": "mirror",
            "files": [],
            "hidden": ["foo-9.0.tar.gz"],
            "reason": (
                "'foo' is hosted privately in a/top; mirror files are hidden "
                "(dependency-confusion protection) unless whitelisted"
            ),
        },
    ]


async def test_upstream_error_in_one_mirror_while_another_part_answers() -> None:
    mirrored = _page("foo-9.0.tar.gz")
    error = UpstreamUnavailableError("http://127.0.0.1:9/simple/", "connection refused")
    registry, built = _registry(
        [_mirror("m/down"), _mirror("m/up"), _private("a/top", "m/down", "m/up")],
        {"m/up": {"foo": mirrored}},
    )
    built["m/down"].error = error
    resolution = await registry.resolve("a/top", FOO)
    assert resolution.steps == (
        Step(IndexName("a/top"), PRIVATE, None),
        Step(IndexName("m/down"), MIRROR, None, error=error),
        Step(IndexName("m/up"), MIRROR, mirrored, files=("foo-9.0.tar.gz",)),
    )
    assert resolution.pages() == (mirrored,)
    assert render_explain(resolution)[1] == {
        "index": "m/down",
        "type": "mirror",
        "error": str(error),
        "files": [],
        "hidden": [],
    }


async def test_mirror_error_with_no_other_part_raises_it() -> None:
    error = UpstreamUnavailableError("http://127.0.0.1:9/simple/", "connection refused")
    registry, built = _registry([_mirror("m/down"), _private("a/top", "m/down")])
    built["m/down"].error = error
    with pytest.raises(UpstreamUnavailableError) as raised:
        await registry.view_parts("a/top", FOO)
    assert raised.value is error


async def test_no_index_has_the_project() -> None:
    registry, _ = _registry([_mirror("m/up"), _private("a/top", "m/up")])
    with pytest.raises(ProjectNotFoundError):
        await registry.view("a/top", FOO)
    assert await registry.explain("a/top", FOO) == [
        {"index": "a/top", "type": "private", "files": [], "hidden": []},
        {"index": "m/up", "type": "mirror", "files": [], "hidden": []},
    ]


async def test_listing_shows_each_project_once_from_the_first_index() -> None:
    registry, _ = _registry(
        [_mirror("m/up"), _private("a/top", "m/up")],
        {
            "a/top": {"foo": _page("foo-1.0.tar.gz")},
            "m/up": {"foo": _page(), "bar": _page(), "baz": _page()},
        },
    )
    assert await registry.listing("a/top", mirror_limit=2) == (
        Listed("foo", IndexName("a/top"), PRIVATE),
        Listed("bar", IndexName("m/up"), MIRROR),
    )


def test_private_refuses_a_mirror() -> None:
    registry, built = _registry([_mirror("m/up"), _private("a/top", "m/up")])
    with pytest.raises(
        InvalidInputError, match="'m/up' is a mirror index; this needs a private index"
    ):
        registry.private("m/up")
    assert registry.privates() == ()  # the fakes are no PrivateIndex
    assert built["m/up"].kind is MIRROR


@pytest.mark.parametrize("count", [3, 450])
async def test_render_is_the_same_inline_and_on_a_thread(count: int) -> None:
    files = [f"foo-1.{n}.tar.gz" for n in range(count)]
    top, base = _page(*files[: count // 2]), _page(*files[count // 3 :])
    registry, _ = _registry(
        [_private("a/base"), _private("a/top", "a/base")],
        {"a/top": {"foo": top}, "a/base": {"foo": base}},
    )
    rendered = await registry.render("a/top", FOO, Format.JSON, "../../")
    merged = merge_pages((top, base))
    assert len(merged.files) == count
    assert rendered.body.count(b'"filename"') == count
    assert await registry.render("a/top", FOO, Format.JSON, "../../") is rendered


# ---- one set of index rules: the API's words (the YAML's are pinned in test_config.py) ------


def _store(tmp_path: Path, configs: Iterable[IndexConfig]) -> IndexStore:
    registry, _ = _registry(configs)
    return IndexStore(Database(tmp_path / "unused.sqlite3"), registry)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "mirror", "bases": ["root/pypi"]}, "a mirror index has no bases"),
        ({"type": "mirror", "bases": ["root/nope"]}, "a mirror index has no bases"),
        ({"mirror_url": "http://127.0.0.1:9/simple/"}, "only mirror indexes have a mirror_url"),
        ({"type": "mirror", "mirror_url": "ftp://x/"}, "'mirror_url' must be an http(s) URL"),
    ],
)
def test_api_body_rules(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        from_api("team/dev", body, None)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (_private("team/dev", "root/pypy"), "unknown base index 'root/pypy'"),
        (_private("team/dev", "root/pypi", "team/dev"), "an index cannot be its own base"),
        (_private("root/pypi", "team/a"), "bases form a cycle: root/pypi -> team/a -> root/pypi"),
        (
            _private("team/a", "team/b"),
            "bases form a cycle: team/a -> team/b -> root/pypi -> team/a",
        ),
    ],
)
def test_api_rules_against_the_other_indexes(
    tmp_path: Path, cfg: IndexConfig, message: str
) -> None:
    store = _store(
        tmp_path, [_private("root/pypi"), _private("team/a", "root/pypi"), _private("team/b")]
    )
    if cfg.name == "team/a":
        store.registry.put(_private("root/pypi", "team/a"))
        store.registry.put(_private("team/b", "root/pypi"))
    with pytest.raises(InvalidInputError) as raised:
        store.check(cfg)
    assert str(raised.value) == message


def test_api_rules_accept_a_good_index(tmp_path: Path) -> None:
    store = _store(tmp_path, [_mirror("root/pypi"), _private("team/a", "root/pypi")])
    store.check(_private("team/dev", "team/a", "root/pypi"))
    store.check(_private("team/a", "root/pypi", whitelist=("*",)))


def test_check_indexes_reports_every_problem_with_its_place() -> None:
    configs = [
        _mirror("root/pypi"),
        IndexConfig(name="root/pypi", kind=MIRROR, bases=("a/b",), upstream="ftp://x/"),
        _private("a/b", "a/c", "root/pypy", "a/b"),
        _private("a/c", "a/b"),
    ]
    assert check_indexes(configs) == [
        IndexProblem(IndexRule.DUPLICATE, 1, "name", "root/pypi", "duplicate index 'root/pypi'"),
        IndexProblem(
            IndexRule.MIRROR_BASES, 1, "bases", "root/pypi", "a mirror index has no bases"
        ),
        IndexProblem(
            IndexRule.BAD_UPSTREAM, 1, "upstream", "ftp://x/", "'ftp://x/' is not an http(s) URL"
        ),
        IndexProblem(
            IndexRule.UNKNOWN_BASE,
            2,
            "bases[1]",
            "root/pypy",
            "unknown index 'root/pypy' (did you mean 'root/pypi'?)",
        ),
        IndexProblem(IndexRule.OWN_BASE, 2, "bases[2]", "a/b", "an index cannot be its own base"),
        IndexProblem(
            IndexRule.CYCLE,
            None,
            "",
            "root/pypi -> a/b -> a/c -> a/b",  # the walk's path to the cycle, as it always was
            "bases form a cycle: root/pypi -> a/b -> a/c -> a/b",
        ),
    ]
    assert [p.rule for p in check_indexes(configs, only="a/c")] == [IndexRule.CYCLE]
