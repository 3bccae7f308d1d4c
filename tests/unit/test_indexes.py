"""Resolution: order, first filename wins, shadowing, the whitelist, explain and upstream errors.

The indexes are small in-test implementations of the `Index` protocol: the registry's seam.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from proxy.config import IndexConfig, IndexKind
from proxy.errors import (
    DistributionNotFoundError,
    InvalidInputError,
    ProjectNotFoundError,
    UpstreamError,
    UpstreamUnavailableError,
)
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
from proxy.mirror.sources import FileSource
from proxy.model import Distribution, IndexName, NormalizedName, ProjectPage, normalize
from proxy.simple_api import Format
from proxy.storage.locations import Cached, InMemory

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

    async def project_names(self) -> tuple[str, ...]:
        return tuple(self.pages)

    async def shown_names(self) -> tuple[str, ...]:
        return tuple(self.pages)

    async def locate_file(
        self, project: NormalizedName, key: str, filename: str, *, probe: bool
    ) -> FileSource:
        raise DistributionNotFoundError(filename, self.name)

    async def locate_metadata(
        self, project: NormalizedName, key: str, filename: str
    ) -> Cached | InMemory:
        raise DistributionNotFoundError(filename, self.name)

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
