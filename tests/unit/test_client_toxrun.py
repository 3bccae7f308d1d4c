"""The pure parts of `wheelwell test` and `wheelwell list`: specs, versions, file choice,
safe unpacking, the tox command line, and what a report shows before it is posted."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from packaging.utils import canonicalize_name as normalize

from proxy.client.api import Api, Credentials
from proxy.client.errors import ClientError, UsageError
from proxy.client.releases import Spec, parse_spec, pick_newest, render_release, sort_versions
from proxy.client.toxrun import (
    ReleaseFile,
    fit_report,
    load_report,
    parse_tox_args,
    pick_file,
    render_index_url,
    render_local_summary,
    render_tox_argv,
)
from proxy.client.unpack import (
    UnsafeArchiveError,
    check_member_name,
    find_tox_config,
    unpack_sdist,
)
from proxy.distfiles import DistKind
from tests.fakes.index import ThreadedServer


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("tested", Spec(normalize("tested"))),
        ("Tested_Thing==1.0", Spec(normalize("tested-thing"), "1.0")),
        (" tested == 2.0rc1 ", Spec(normalize("tested"), "2.0rc1")),
        ("a==1.0+local.1", Spec(normalize("a"), "1.0+local.1")),
    ],
)
def test_parse_spec(text: str, spec: Spec) -> None:
    assert parse_spec(text) == spec


@pytest.mark.parametrize(
    "text", ["", "tested>=1.0", "tested~=1.0", "tested==", "tested==1.0/..", "../x", "a b"]
)
def test_parse_spec_refuses_what_is_not_one_release(text: str) -> None:
    with pytest.raises(UsageError, match="not a"):
        parse_spec(text)


def test_versions_newest_first_and_newest_is_final() -> None:
    versions = ["1.0", "10.0rc1", "2.0", "not-pep440", "1.10"]
    assert sort_versions(versions) == ["10.0rc1", "2.0", "1.10", "1.0", "not-pep440"]
    assert pick_newest(versions) == "2.0"
    assert pick_newest(["1.0a1", "1.0b2"]) == "1.0b2"


def _file(filename: str, index: str = "root/public") -> dict[str, Any]:
    return {"filename": filename, "index": index, "sha256": "ab" * 32, "size": 10}


def test_pick_file_prefers_the_sdist_then_a_universal_wheel() -> None:
    files = [_file("p-1.0-cp311-cp311-linux_x86_64.whl"), _file("p-1.0.tar.gz", "root/base")]
    assert pick_file(files, have_config=False) == ReleaseFile(
        "p-1.0.tar.gz", "root/base", "ab" * 32, 10, DistKind.SDIST
    )
    wheels = [_file("p-1.0-cp311-cp311-linux_x86_64.whl"), _file("p-1.0-py3-none-any.whl")]
    assert pick_file(wheels, have_config=True).filename == "p-1.0-py3-none-any.whl"
    with pytest.raises(UsageError, match="-c TOXCONFIG"):
        pick_file(wheels, have_config=False)
    with pytest.raises(ClientError, match="neither an sdist nor a wheel"):
        pick_file([_file("../p-1.0.exe")], have_config=True)
    assert pick_file([_file("p-1.0.zip")], False).path == (f"/root/public/+f/{'ab' * 32}/p-1.0.zip")


def test_index_url_carries_the_login_quoted() -> None:
    url = "http://127.0.0.1:3141/root/dev/+simple/"
    assert render_index_url(url, None) == url
    assert render_index_url(url, Credentials("__token__", "a/b@c")) == (
        "http://__token__:a%2Fb%40c@127.0.0.1:3141/root/dev/+simple/"
    )


def test_tox_argv_is_devpis() -> None:
    tox_args = parse_tox_args("-- -k 'a b'")
    argv = render_tox_argv(
        "tox", Path("p.tar.gz"), Path("r.json"), Path("tox.ini"), "py,lint", tox_args
    )
    assert argv == [
        *("tox", "--installpkg", "p.tar.gz", "--recreate", "--result-json", "r.json"),
        *("-c", "tox.ini", "-e", "py,lint", "--", "-k", "a b"),
    ]
    with pytest.raises(UsageError, match="--tox-args: No closing quotation"):
        parse_tox_args("-k 'a")


def _tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    "member",
    [
        _member("../evil.txt"),
        _member("p-1.0/../../evil.txt"),
        _member("/tmp/evil.txt"),
        _member("p-1.0/link", tarfile.SYMTYPE, "../../outside"),
        _member("p-1.0/link", tarfile.SYMTYPE, "/etc/passwd"),
        _member("p-1.0/hard", tarfile.LNKTYPE, "../../outside"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out"],
)
def test_unpack_refuses_tar_members_that_escape(tmp_path: Path, member: tarfile.TarInfo) -> None:
    archive = _tar(tmp_path / "p-1.0.tar.gz", [_member("p-1.0/PKG-INFO"), member])
    with pytest.raises(UnsafeArchiveError, match=r"refusing to unpack p-1\.0\.tar\.gz"):
        unpack_sdist(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/evil.txt", "p/../../evil.txt", "C:/evil.txt"])
def test_unpack_refuses_zip_members_that_escape(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "p-1.0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("p-1.0/PKG-INFO", "x")
        zf.writestr(zipfile.ZipInfo(name), "evil")
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        unpack_sdist(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_unpack_refuses_zip_symlinks(tmp_path: Path) -> None:
    archive = tmp_path / "p-1.0.zip"
    link = zipfile.ZipInfo("p-1.0/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="is a link"):
        unpack_sdist(archive, tmp_path / "out")


def test_check_member_name_keeps_plain_paths() -> None:
    assert check_member_name("p.zip", "p-1.0/src/p/__init__.py").parts[-1] == "__init__.py"


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_unpack_gives_the_top_directory_and_its_tox_config(tmp_path: Path, suffix: str) -> None:
    archive = tmp_path / f"p-1.0{suffix}"
    files = {"p-1.0/PKG-INFO": b"x", "p-1.0/setup.cfg": b"[tox:tox]\nenvlist = py\n"}
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(archive, "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    root = unpack_sdist(archive, tmp_path / "out")
    assert root == tmp_path / "out" / "p-1.0"
    assert find_tox_config(root) == root / "setup.cfg"
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")  # no [tool.tox]: not it
    assert find_tox_config(root) == root / "setup.cfg"
    (root / "tox.ini").write_text("[tox]\n")
    assert find_tox_config(root) == root / "tox.ini"


def test_unpack_refuses_a_broken_archive(tmp_path: Path) -> None:
    archive = tmp_path / "p-1.0.tar.gz"
    archive.write_bytes(b"not a tar")
    with pytest.raises(ClientError, match=r"cannot unpack p-1\.0\.tar\.gz"):
        unpack_sdist(archive, tmp_path / "out")


def test_report_hides_our_secret_and_summarizes_locally(tmp_path: Path) -> None:
    report = {
        "testenvs": {
            ".pkg": {"test": []},
            "lint": {"setup": [{"retcode": 0}], "test": [{"retcode": 2, "output": "tok3n"}]},
            "py": {"test": [{"retcode": 0, "command": ["pip", "--index-url", "x:tok3n@h"]}]},
        }
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    loaded = load_report(path, ["tok3n", ""])
    assert "tok3n" not in json.dumps(loaded) and "x:***@h" in json.dumps(loaded)
    assert render_local_summary(loaded) == ["    lint: failed", "    py: passed"]
    with pytest.raises(ClientError, match="wrote no result report"):
        load_report(tmp_path / "missing.json", [])


def test_render_release_shows_each_file_and_env() -> None:
    release = {
        "version": "2.0",
        "files": [
            {
                **_file("p-2.0.tar.gz"),
                "yanked": True,
                "toxresults": [
                    {
                        "poster": None,
                        "posted": 0,
                        "envs": [
                            {
                                "name": "py",
                                "status": "failed",
                                "python": "3.12.1",
                                "duration": 1.5,
                                "failed_command": "pytest -x",
                            }
                        ],
                    }
                ],
            },
            {**_file("p-2.0-py3-none-any.whl"), "toxresults": []},
        ],
    }
    assert render_release(release) == [
        "2.0",
        "  p-2.0.tar.gz  [root/public]  (yanked)",
        "    py: failed  python 3.12.1  1.50s  by anonymous  1970-01-01 00:00:00Z",
        "        failed: pytest -x",
        "  p-2.0-py3-none-any.whl  [root/public]",
        "    no tox results",
    ]


@pytest.mark.parametrize(
    ("size", "sha256", "error"),
    [
        (5, hashlib.sha256(b"sdist").hexdigest(), None),
        (5, "00" * 32, "does not match its sha256"),
        (4, hashlib.sha256(b"sdist").hexdigest(), "sent more than 4 bytes"),
        (6, hashlib.sha256(b"sdist").hexdigest(), "does not match its sha256"),
    ],
    ids=["verified", "other-bytes", "longer", "shorter"],
)
def test_download_is_checked_against_size_and_sha256(
    tmp_path: Path, size: int, sha256: str, error: str | None
) -> None:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=b"sdist")

    app = web.Application()
    app.router.add_get("/root/dev/+f/{key}/{name}", serve)
    dest = tmp_path / "p-1.0.tar.gz"
    with ThreadedServer(app) as server:
        api = Api(server.url)
        if error is None:
            api.fetch_file(f"/root/dev/+f/{sha256}/p-1.0.tar.gz", dest, sha256, size)
            assert dest.read_bytes() == b"sdist"
        else:
            with pytest.raises(ClientError, match=error):
                api.fetch_file(f"/root/dev/+f/{sha256}/p-1.0.tar.gz", dest, sha256, size)


def test_a_huge_report_is_cut_to_its_logs_tails() -> None:
    log = "".join(f"line {i}\n" for i in range(200_000))  # about 2 MB
    report: dict[str, Any] = {
        "testenvs": {"py": {"test": [{"retcode": 1, "output": log, "err": ["a", "b"]}]}}
    }
    assert fit_report(report, limit=100_000) is True
    assert len(json.dumps(report)) <= 100_000
    output = report["testenvs"]["py"]["test"][0]["output"]
    assert output.startswith("…") and output.endswith("line 199999\n")
    small: dict[str, Any] = {"testenvs": {"py": {"test": [{"retcode": 0, "output": "ok"}]}}}
    assert fit_report(small, limit=100_000) is False
    assert small["testenvs"]["py"]["test"][0]["output"] == "ok"
