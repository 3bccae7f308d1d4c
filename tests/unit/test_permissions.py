"""The permission table: every route has an operation, docs/security.md shows the code's table."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from proxy.app import create_app
from proxy.config import Config, IndexConfig, parse_config
from proxy.errors import ConfigError, ForbiddenError, UnauthorizedError
from proxy.hosted.auth import Identity, Scope
from proxy.hosted.permissions import PERMISSIONS, Credential, Operation, Role, authorize, may
from proxy.storage.db import SCHEMA_VERSION, Database
from proxy.web.authz import ROUTE_OPERATIONS

SECURITY_MD = Path(__file__).parents[2] / "docs" / "security.md"


def test_every_route_has_an_operation() -> None:
    app = create_app(Config())
    names = {route.name for route in app.router.routes()}
    assert None not in names, "every route needs a name (and an entry in ROUTE_OPERATIONS)"
    assert names <= set(ROUTE_OPERATIONS), names - set(ROUTE_OPERATIONS)
    assert set(ROUTE_OPERATIONS) <= names, "stale entries in ROUTE_OPERATIONS"


def _doc_table() -> dict[str, tuple[set[str], set[str], str]]:
    """The first markdown table of docs/security.md: operation → credentials, roles, scope."""
    rows: dict[str, tuple[set[str], set[str], str]] = {}
    lines = SECURITY_MD.read_text(encoding="utf-8").splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("| operation"))
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        op, credentials, roles, scope = cells[:4]

        def split(cell: str) -> set[str]:
            return {v.strip().strip("`") for v in cell.split(",") if v.strip()}

        rows[op] = (split(credentials), split(roles), "" if scope == "-" else scope)
    return rows


def test_docs_table_is_the_code_table() -> None:
    code = {
        op.value: (
            {c.value for c in rule.credentials},
            {r.value for r in rule.roles},
            rule.scope.value if rule.scope else "",
        )
        for op, rule in PERMISSIONS.items()
    }
    assert _doc_table() == code


def test_table_covers_every_operation() -> None:
    assert set(PERMISSIONS) == set(Operation)
    for rule in PERMISSIONS.values():
        assert rule.roles
        if Credential.SCOPED_TOKEN in rule.credentials and Role.ANYONE not in rule.roles:
            assert rule.scope is not None


SECRET = IndexConfig(name="alice/secret", acl_read=("bob",))
MEMBERS = IndexConfig(name="alice/members", acl_read=(":AUTHENTICATED:",))
CHILD = IndexConfig(name="carol/child", bases=("alice/secret",))


@pytest.mark.parametrize(
    ("who", "index", "inherited", "allowed"),
    [
        (None, SECRET, (), False),
        (Identity("bob"), SECRET, (), True),
        (Identity("alice"), SECRET, (), True),  # the owner always reads
        (Identity("root"), SECRET, (), True),
        (Identity("carol"), SECRET, (), False),
        (None, MEMBERS, (), False),
        (Identity("carol"), MEMBERS, (), True),
        (Identity("carol"), CHILD, (), True),
        (Identity("carol"), CHILD, (SECRET,), False),  # inherits protection
        (Identity("bob"), CHILD, (SECRET,), True),
        (Identity("bob", "alice/secret", frozenset({Scope.UPLOAD}), True), SECRET, (), True),
        (Identity("bob", "alice/other", frozenset({Scope.READ}), True), SECRET, (), False),
    ],
)
def test_read(
    who: Identity | None,
    index: IndexConfig,
    inherited: tuple[IndexConfig, ...],
    allowed: bool,
) -> None:
    assert may(Operation.READ, who, index, inherited=inherited) is allowed
    if not allowed:
        error = UnauthorizedError if who is None else ForbiddenError
        with pytest.raises(error):
            authorize(Operation.READ, who, index, inherited=inherited)


def test_mirror_url_needs_root_unless_user_mirrors() -> None:
    mirror = IndexConfig(name="alice/m")
    with pytest.raises(ForbiddenError):
        authorize(Operation.MIRROR_URL, Identity("alice"), mirror)
    authorize(Operation.MIRROR_URL, Identity("alice"), mirror, user_mirrors=True)
    authorize(Operation.MIRROR_URL, Identity("root"), mirror)
    with pytest.raises(ForbiddenError):
        authorize(Operation.MIRROR_URL, Identity("bob"), mirror, user_mirrors=True)


@pytest.mark.parametrize(
    ("yaml_acl", "where"),
    [
        ("acl_upload: ['bad name']", "indexes[0].acl_upload[0]"),
        ("acl_read: [bob, ':NOBODY:']", "indexes[0].acl_read[1]"),
    ],
)
def test_config_acl_entries_are_checked(yaml_acl: str, where: str) -> None:
    text = f"indexes:\n  - name: root/pypi\n    kind: mirror\n    {yaml_acl}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "acl.yaml")
    assert "acl.yaml" in str(info.value) and where in str(info.value)


def test_config_acl_read_and_user_mirrors() -> None:
    text = (
        "indexes:\n  - name: root/pypi\n    kind: mirror\n"
        "    acl_read: [':AUTHENTICATED:', bob]\n"
        "auth:\n  user_mirrors: true\n"
    )
    cfg = parse_config(text, "ok.yaml")
    assert cfg.indexes[0].acl_read == (":AUTHENTICATED:", "bob")
    assert cfg.auth.user_mirrors is True
    assert Config().indexes[0].acl_read == (":ANONYMOUS:",)


async def test_migration_gives_old_index_tokens_the_upload_scope(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE tokens (id TEXT PRIMARY KEY, user TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,"
        " idx TEXT, expires REAL, description TEXT NOT NULL DEFAULT '', created REAL NOT NULL,"
        " revoked INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO tokens (id, user, hash, idx, created) VALUES ('t', 'a', 'h', 'a/dev', 1);"
        "PRAGMA user_version = 2;"
    )
    conn.commit()
    conn.close()
    db = Database(path)
    await db.start()
    try:
        row = await db.read(lambda c: c.execute("SELECT scopes FROM tokens").fetchone())
        version = await db.read(lambda c: c.execute("PRAGMA user_version").fetchone())
    finally:
        await db.close()
    assert json.loads(row[0]) == ["upload"]
    assert version[0] == SCHEMA_VERSION == 4
