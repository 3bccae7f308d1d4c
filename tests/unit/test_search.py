"""Search ranking and scoping on a real SQLite database in a temp dir."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.hosted.search import (
    HitKind,
    SearchHit,
    SearchIndex,
    build_match,
    index_release,
    remove_release,
    remove_release_if_empty,
)
from proxy.model import ProjectPage
from proxy.storage.db import Database

RELEASES = [
    ("root/public", "requests-toolbelt", "1.0", "Utilities for requests", "A toolbelt."),
    ("root/public", "requests-toolbelt", "1.2", "A toolbelt for requests", "Newer."),
    ("root/public", "httpclient", "0.1", "Talks HTTP; uses requests inside", "client"),
    ("root/public", "requests", "2.0", "Our own fork", "Patched."),
    ("alice/dev", "requests-mock", "3.0", "Mock out requests", "mocking"),
    ("alice/dev", "other", "1.0", "Unrelated", "This description mentions requests once."),
]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "db.sqlite3")
    await database.start()
    yield database
    await database.close()


@pytest.fixture
async def search(db: Database) -> AsyncIterator[SearchIndex]:
    index = SearchIndex(db)
    await index.start()

    def fill(conn: sqlite3.Connection) -> None:
        for release in RELEASES:
            index_release(conn, *release)

    await db.write_derived(fill)
    yield index
    await index.close()


def names(hits: list[SearchHit]) -> list[tuple[str, str]]:
    return [(h.index, h.project) for h in hits]


@pytest.mark.parametrize(
    ("fields", "operator", "expected"),
    [
        ({"": ["requests"]}, "AND", '"requests"*'),
        ({"": ["a", "b"]}, "AND", '"a"* AND "b"*'),
        ({"name": ["x"], "summary": ["x"]}, "OR", 'name : "x"* OR summary : "x"*'),
        ({"": ['say "hi"', "  "]}, "AND", '"say ""hi"""*'),
        ({"": []}, "AND", ""),
    ],
)
def test_build_match_quotes_terms(
    fields: dict[str, list[str]], operator: str, expected: str
) -> None:
    assert build_match(fields, operator) == expected


async def test_exact_name_first_then_prefix_then_bm25(search: SearchIndex) -> None:
    hits = await search.search("requests", None)
    assert names(hits)[:3] == [
        ("root/public", "requests"),
        ("alice/dev", "requests-mock"),
        ("root/public", "requests-toolbelt"),
    ]
    assert set(names(hits)[3:]) == {("root/public", "httpclient"), ("alice/dev", "other")}
    assert names(hits)[3] == ("root/public", "httpclient")  # a summary outweighs a description


async def test_hit_carries_latest_release_and_its_summary(search: SearchIndex) -> None:
    hits = await search.search("toolbelt", None)
    assert hits == [
        SearchHit(
            "root/public", "requests-toolbelt", HitKind.PRIVATE, "1.2", "A toolbelt for requests"
        )
    ]


async def test_unnormalized_query_finds_exact_name(search: SearchIndex) -> None:
    hits = await search.search("Requests_Toolbelt", None)
    assert names(hits) == [("root/public", "requests-toolbelt")]


async def test_prefix_of_a_word_matches(search: SearchIndex) -> None:
    assert names(await search.search("httpcl", None)) == [("root/public", "httpclient")]


async def test_every_term_must_match(search: SearchIndex) -> None:
    assert names(await search.search("requests mock", None)) == [("alice/dev", "requests-mock")]


async def test_scope_limits_to_the_given_indexes(search: SearchIndex) -> None:
    hits = await search.search("requests", ["alice/dev"])
    assert names(hits) == [("alice/dev", "requests-mock"), ("alice/dev", "other")]


async def test_shadowing_keeps_the_first_index_in_order(search: SearchIndex) -> None:
    search.note_mirror_project("root/pypi", "requests", "9.0")
    search.note_mirror_project("root/pypi", "urllib3", "2.0")
    await search.close()
    scope = ["root/public", "root/pypi"]
    hits = await search.search("requests", scope, shadow=True)
    assert hits[0] == SearchHit("root/public", "requests", HitKind.PRIVATE, "2.0", "Our own fork")
    assert ("root/pypi", "requests") not in names(hits)
    unshadowed = await search.search("requests", scope)
    assert names(unshadowed)[:2] == [("root/public", "requests"), ("root/pypi", "requests")]


async def test_mirror_names_are_written_behind_and_updated(
    db: Database, search: SearchIndex
) -> None:
    page = ProjectPage(name="urllib3", versions=("1.26.0", "2.0.1", "2.0.0"))
    search.note_mirror_page("root/pypi", "urllib3", page)
    search.note_mirror_page("root/pypi", "urllib3", page)
    await search.close()
    hits = await search.search("urllib3", None)
    assert hits == [SearchHit("root/pypi", "urllib3", HitKind.MIRROR, "2.0.1", "")]
    search.note_mirror_project("root/pypi", "urllib3", "2.1.0")
    await search.close()
    assert [h.version for h in await search.search("urllib3", None)] == ["2.1.0"]
    again = SearchIndex(db)  # a restart remembers what is indexed: no rewrite of a known name
    await again.start()
    again.note_mirror_project("root/pypi", "urllib3", "2.1.0")
    assert len(again._writes) == 0


async def test_remove_release_and_last_file(db: Database, search: SearchIndex) -> None:
    def remove(conn: sqlite3.Connection) -> None:
        remove_release(conn, "root/public", "requests-toolbelt", "1.2")
        remove_release_if_empty(conn, "alice/dev", "requests-mock", "3.0")  # no files row

    await db.write_derived(remove)
    hits = await search.search("toolbelt", None)
    assert [(h.project, h.version, h.summary) for h in hits] == [
        ("requests-toolbelt", "1.0", "Utilities for requests")
    ]
    assert await search.search("mock", None) == []


async def test_existing_uploads_are_indexed_when_the_table_is_new(tmp_path: Path) -> None:
    database = Database(tmp_path / "old.sqlite3")
    await database.start()

    def upload(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO files (idx, project, version, filename, sha256, size, uploaded, summary)"
            " VALUES ('root/public', 'ours', '1.0', 'ours-1.0.tar.gz', '0', 1, 0, 'ours!')"
        )

    await database.write_derived(upload)  # a row from before the search table
    index = SearchIndex(database)
    await index.start()
    assert await index.search("ours", None) == [
        SearchHit("root/public", "ours", HitKind.PRIVATE, "1.0", "ours!")
    ]
    await database.close()


@pytest.mark.parametrize("query", ['"', "AND", "NOT x", "*", "name:", "(", "-", "a OR"])
async def test_fts_syntax_in_a_query_is_just_text(search: SearchIndex, query: str) -> None:
    assert isinstance(await search.search(query, None), list)


async def test_search_fields_or_over_name_and_summary(search: SearchIndex) -> None:
    hits = await search.search_fields({"name": ["mock"], "summary": ["fork"]}, "or", None)
    assert set(names(hits)) == {("alice/dev", "requests-mock"), ("root/public", "requests")}
    both = await search.search_fields({"name": ["mock"], "summary": ["fork"]}, "and", None)
    assert both == []
    ignored = await search.search_fields({"keywords": ["x"]}, "and", None)
    assert ignored == []


async def test_limit(search: SearchIndex) -> None:
    assert len(await search.search("requests", None, limit=2)) == 2
