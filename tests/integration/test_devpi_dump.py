"""`import_devpi` on small hand-made devpi dumps: the mapping, and each bad input as one line."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from proxy.cluster.devpi_dump import import_devpi
from proxy.cluster.export import ExportError
from tests.fakes.dists import build_wheel

_ARGON2 = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$0mMfRTJtJTsPaZ8AWG0Gjy6ZiQPDzr3W2c3KSW9C2xA"


def _dump(tmp_path: Path) -> Path:
    """A dump as devpi-export 6 writes it: users, a stage on a stage on a mirror, one wheel."""
    dump = tmp_path / "dump"
    built = build_wheel(dump / "alice/dev/ours/1.0", "ours", "1.0", requires_python=">=3.8")
    md5 = hashlib.md5(built.path.read_bytes(), usedforsecurity=False).hexdigest()
    data: dict[str, Any] = {
        "dumpversion": "2",
        "pythonversion": [3, 11, 7, "final", 0],
        "devpi_server": "6.20.3",
        "users": {
            "root": {"pwhash": _ARGON2, "username": "root", "created": "2026-12-01T23:46:44Z"},
            "alice": {"pwhash": _ARGON2, "email": "alice@example.org", "username": "alice"},
            "old": {"pwsalt": "c2FsdA==", "pwhash": "ab" * 32, "username": "old"},
            "nohash": {"username": "nohash"},
        },
        "indexes": {
            "root/pypi": {
                "indexconfig": {
                    "type": "mirror",
                    "volatile": False,
                    "mirror_url": "http://127.0.0.1:9/simple/",
                    "title": "PyPI",
                }
            },
            "alice/dev": {
                "indexconfig": {
                    "type": "stage",
                    "bases": ["root/pypi", "gone/away"],
                    "volatile": False,
                    "acl_upload": ["alice", ":devs:"],
                    "mirror_whitelist": ["Ours"],
                    "mirror_whitelist_inheritance": "intersection",
                },
                "projects": {"ours": {"1.0": {"name": "ours", "version": "1.0"}}},
                "files": [
                    {
                        "type": "releasefile",
                        "projectname": "ours",
                        "version": "1.0",
                        "relpath": f"alice/dev/ours/1.0/{built.filename}",
                        "entrymapping": {
                            "hash_spec": f"sha256={built.sha256}",
                            "hashes": {"sha256": built.sha256, "md5": md5},
                            "last_modified": "Tue, 01 Dec 2026 23:46:54 GMT",
                        },
                        "log": [{"what": "upload", "who": "alice", "when": [2026, 12, 1, 1, 2, 3]}],
                    }
                ],
            },
            "alice/feature": {"indexconfig": {"type": "stage", "bases": ["alice/dev"]}},
        },
    }
    (dump / "dataindex.json").write_text(json.dumps(data))
    return dump


def _rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data_dir / "wheelwell.sqlite3") as conn:
        return conn.execute(sql).fetchall()


def test_mapping_and_report(tmp_path: Path) -> None:
    dump = _dump(tmp_path)
    new = tmp_path / "new"
    lines = import_devpi(dump, new).lines(new)
    text = "\n".join(lines)
    assert "mapped: 4 users, 2 private indexes, 1 mirror indexes, 1 release files" in text
    assert "changed: alice/dev: base gone/away dropped (not in the dump)" in text
    assert "acl_upload :devs: dropped" in text
    assert "alice.email: wheelwell users have no email" in text
    assert "alice/dev.mirror_whitelist_inheritance" in text
    assert any(line.startswith("user nohash: ") for line in lines)
    assert _ARGON2 not in text
    users = dict(_rows(new, "SELECT name, pwhash FROM users"))
    assert users["alice"] == _ARGON2
    assert users["old"] == "devpi-sha256$c2FsdA==$" + "ab" * 32
    assert users["nohash"] == "!"
    configs = {n: json.loads(c) for n, c in _rows(new, "SELECT name, config FROM indexes")}
    assert configs["alice/dev"]["bases"] == ["root/pypi"]
    assert configs["alice/dev"]["volatile"] is False
    assert configs["alice/dev"]["acl_upload"] == ["alice"]
    assert configs["alice/dev"]["mirror_whitelist"] == ["ours"]
    assert configs["root/pypi"]["kind"] == "mirror"
    assert configs["root/pypi"]["upstream"] == "http://127.0.0.1:9/simple/"
    ((filename, sha, meta, rp, uploader),) = _rows(
        new, "SELECT filename, sha256, metadata_sha256, requires_python, uploader FROM files"
    )
    assert (filename, rp, uploader) == ("ours-1.0-py3-none-any.whl", ">=3.8", "alice")
    assert (new / "blobs" / sha[:2] / sha).is_file()
    assert (new / "blobs" / meta[:2] / meta).read_bytes().startswith(b"Metadata-Version")


def _edit(dump: Path, change: Any) -> None:
    path = dump / "dataindex.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _first_file(data: dict[str, Any]) -> dict[str, Any]:
    desc: dict[str, Any] = data["indexes"]["alice/dev"]["files"][0]
    return desc


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (
            lambda d: _edit(d, lambda x: x.update(dumpversion="1")),
            "dataindex.json: devpi dumpversion '1' is not supported",
        ),
        (
            lambda d: _edit(d, lambda x: x.update(dumpversion=None)),
            "dataindex.json: devpi dumpversion None",
        ),
        (lambda d: (d / "dataindex.json").write_text('{"users": '), "dataindex.json: not JSON"),
        (
            lambda d: (d / "dataindex.json").unlink(),
            "dataindex.json: missing; not a devpi-export dump",
        ),
        (
            lambda d: _edit(d, lambda x: x.update(users=[])),
            "dataindex.json: 'users' is not an object",
        ),
        (
            lambda d: next((d / "alice/dev/ours/1.0").glob("*.whl")).unlink(),
            "ours-1.0-py3-none-any.whl: named by dataindex.json but missing from the dump",
        ),
        (
            lambda d: next((d / "alice/dev/ours/1.0").glob("*.whl")).write_bytes(b"other"),
            "ours-1.0-py3-none-any.whl: its ",
        ),
        (
            lambda d: _edit(
                d, lambda x: _first_file(x)["entrymapping"]["hashes"].update(md5="0" * 32)
            ),
            "ours-1.0-py3-none-any.whl: its md5 differs from the dump's dataindex.json",
        ),
        (
            lambda d: _edit(d, lambda x: _first_file(x).update(relpath="../../etc/passwd")),
            "dataindex.json: file '../../etc/passwd' lies outside the dump",
        ),
        (
            lambda d: _edit(
                d, lambda x: x["indexes"]["alice/dev"]["indexconfig"].update(type="odd")
            ),
            "dataindex.json: index 'alice/dev': type 'odd' is neither stage nor mirror",
        ),
    ],
)
def test_bad_dumps_are_one_line_naming_the_file(tmp_path: Path, spoil: Any, expected: str) -> None:
    dump = _dump(tmp_path)
    spoil(dump)
    new = tmp_path / "new"
    with pytest.raises(ExportError) as caught:
        import_devpi(dump, new)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert not new.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["dump"]  # nothing left beside it either


def test_non_empty_target_is_left_alone(tmp_path: Path) -> None:
    dump = _dump(tmp_path)
    new = tmp_path / "new"
    new.mkdir()
    (new / "keep").write_text("mine")
    with pytest.raises(ExportError, match="new: not empty; import only into a new or empty"):
        import_devpi(dump, new)
    assert [p.name for p in new.iterdir()] == ["keep"]


def test_mirrored_files_go_into_the_cache(tmp_path: Path) -> None:
    """A dump made with --include-mirrored-files: the bytes land in blobs/ by their sha256,
    where the mirror finds them when its page lists that hash; no row names them."""
    dump = _dump(tmp_path)
    cached = build_wheel(dump / "root/pypi/six/1.0", "six", "1.0")

    def add(data: dict[str, Any]) -> None:
        data["indexes"]["root/pypi"]["files"] = [
            {
                "type": "releasefile",
                "projectname": "six",
                "version": "1.0",
                "relpath": f"root/pypi/six/1.0/{cached.filename}",
                "entrymapping": {"hash_spec": f"sha256={cached.sha256}"},
            }
        ]

    _edit(dump, add)
    new = tmp_path / "new"
    text = "\n".join(import_devpi(dump, new).lines(new))
    assert "1 mirrored files (into the cache)" in text
    assert (new / "blobs" / cached.sha256[:2] / cached.sha256).read_bytes() == (
        cached.path.read_bytes()
    )
    assert [r[0] for r in _rows(new, "SELECT filename FROM files")] == ["ours-1.0-py3-none-any.whl"]


def test_devpi_jenkins_trigger_carries_over(tmp_path: Path) -> None:
    """devpi-jenkins's `uploadtrigger_jenkins` is the same option here; a bad one is dropped."""
    dump = _dump(tmp_path)
    trigger = "http://127.0.0.1:8080/job/{pkgname}/build"

    def add(data: dict[str, Any]) -> None:
        data["indexes"]["alice/dev"]["indexconfig"]["uploadtrigger_jenkins"] = trigger
        data["indexes"]["alice/feature"]["indexconfig"]["uploadtrigger_jenkins"] = "http://h/{x}"

    _edit(dump, add)
    new = tmp_path / "new"
    text = "\n".join(import_devpi(dump, new).lines(new))
    configs = {n: json.loads(c) for n, c in _rows(new, "SELECT name, config FROM indexes")}
    assert configs["alice/dev"]["uploadtrigger_jenkins"] == trigger
    assert configs["alice/feature"]["uploadtrigger_jenkins"] == ""
    assert "alice/feature: uploadtrigger_jenkins dropped" in text
    assert "alice/dev.uploadtrigger_jenkins" not in text
