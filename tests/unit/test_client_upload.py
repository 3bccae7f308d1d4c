"""`upload --from-dir`: file discovery, twine-shaped forms, streamed multipart, skip logic."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.client.dists import (
    CHUNK,
    InvalidDistError,
    compute_digests,
    find_dists,
    load_metadata,
    parse_dist_path,
    parse_metadata,
    render_form,
)
from proxy.client.upload import render_multipart, render_size
from tests.fakes.dists import build_sdist, build_wheel
from tests.unit.test_client_fakeapi import ROOT_PASSWORD, FakeApi, run_cli, serve_fake_api


@pytest.fixture
def fake_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeApi, str]]:
    """FakeApi, with root logged in on root/public and the client's files under tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with serve_fake_api() as (fake, url):
        assert run_cli(["use", f"{url}/root/public"]) == 0
        assert run_cli(["login", "root", "--password", ROOT_PASSWORD]) == 0
        yield fake, url


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("alpha-1.0-py3-none-any.whl", ("alpha", "1.0", "bdist_wheel", "py3")),
        (
            "Zope.Interface-5.0-cp311-cp311-linux_x86_64.whl",
            ("zope-interface", "5.0", "bdist_wheel", "cp311"),
        ),
        ("six-1.16-1-py2.py3-none-any.whl", ("six", "1.16", "bdist_wheel", "py2.py3")),
        ("alpha-1.0.tar.gz", ("alpha", "1.0", "sdist", "source")),
        ("beta_two-2.0rc1.zip", ("beta-two", "2.0rc1", "sdist", "source")),
        ("notes.txt", None),
        ("data.tar.gz", None),
    ],
)
def test_parse_dist_path(name: str, expected: tuple[str, str, str, str] | None) -> None:
    dist = parse_dist_path(Path(name))
    found = (
        None if dist is None else (dist.project, str(dist.version), dist.filetype, dist.pyversion)
    )
    assert found == expected


def test_a_bad_wheel_name_is_an_error() -> None:
    with pytest.raises(InvalidDistError, match="not a valid wheel file name"):
        parse_dist_path(Path("alpha.whl"))


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (999, "999 B"), (12_300, "12.3 kB"), (5_000_000, "5.0 MB"), (10**13, "10.0 TB")],
)
def test_render_size(size: int, shown: str) -> None:
    assert render_size(size) == shown


def test_form_carries_metadata_like_twine(tmp_path: Path) -> None:
    built = build_wheel(
        tmp_path, "Alpha", "1.0", requires=["beta>=1", "gamma"], requires_python=">=3.8",
        summary="the first", description="# Alpha\nlong text",
    )  # fmt: skip
    dist = parse_dist_path(built.path)
    assert dist is not None
    raw = parse_metadata(dist, load_metadata(dist))
    form = render_form(dist, raw, compute_digests(built.path))
    assert form[:7] == [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("name", "Alpha"),
        ("version", "1.0"),
        ("filetype", "bdist_wheel"),
        ("pyversion", "py3"),
        ("sha256_digest", built.sha256),
    ]
    assert (
        "md5_digest",
        hashlib.md5(built.path.read_bytes(), usedforsecurity=False).hexdigest(),
    ) in form
    assert [v for k, v in form if k == "requires_dist"] == ["beta>=1", "gamma"]
    assert ("summary", "the first") in form
    assert ("requires_python", ">=3.8") in form
    assert ("metadata_version", "2.1") in form
    assert ("description", "# Alpha\nlong text\n") in form


def test_sdist_metadata_comes_from_pkg_info(tmp_path: Path) -> None:
    built = build_sdist(tmp_path, "gamma", "0.9", summary="sdist only")
    dist = parse_dist_path(built.path)
    assert dist is not None
    raw = parse_metadata(dist, load_metadata(dist))
    assert (raw.get("name"), raw.get("summary")) == ("gamma", "sdist only")


def test_metadata_that_contradicts_the_file_name_is_refused(tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "alpha", "1.0")
    renamed = built.path.rename(tmp_path / "alpha-2.0-py3-none-any.whl")
    dist = parse_dist_path(renamed)
    assert dist is not None
    with pytest.raises(InvalidDistError, match=r"metadata says version '1\.0'"):
        parse_metadata(dist, load_metadata(dist))


def test_multipart_parses_back_and_streams_the_file(tmp_path: Path) -> None:
    payload = tmp_path / "big.whl"
    payload.write_bytes(bytes(range(256)) * (3 * CHUNK // 256 + 7))
    fields = [(":action", "file_upload"), ("summary", 'quotes " and ünïcode'), ("classifiers", "a")]
    fields.append(("classifiers", "b"))
    body = render_multipart(fields, "content", payload, payload.stat().st_size)
    chunks = list(body.iter_chunks())
    assert max(len(c) for c in chunks[1:-1]) <= CHUNK  # the file went in pieces
    raw = b"".join(chunks)
    assert len(raw) == body.length
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {body.content_type}\r\n\r\n".encode() + raw
    )
    parts = [
        (
            p.get_param("name", header="content-disposition"),
            p.get_filename(),
            p.get_payload(decode=True),
        )
        for p in message.iter_parts()
    ]
    assert parts == [
        (":action", None, b"file_upload"),
        ("summary", None, 'quotes " and ünïcode'.encode()),
        ("classifiers", None, b"a"),
        ("classifiers", None, b"b"),
        ("content", "big.whl", payload.read_bytes()),
    ]


def test_find_dists_is_flat_unless_recursive(tmp_path: Path) -> None:
    build_wheel(tmp_path, "alpha", "1.0")
    build_sdist(tmp_path / "sub", "beta", "2.0")
    (tmp_path / "README.txt").write_text("not a dist")
    assert [d.filename for d in find_dists(tmp_path, recursive=False)] == [
        "alpha-1.0-py3-none-any.whl"
    ]
    assert [d.filename for d in find_dists(tmp_path, recursive=True)] == [
        "alpha-1.0-py3-none-any.whl",
        "beta-2.0.tar.gz",
    ]


def test_upload_sends_what_is_missing_and_skips_the_rest(
    fake_api: tuple[FakeApi, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = fake_api
    dists = tmp_path / "dists"
    wheel = build_wheel(dists, "alpha", "1.0", summary="a")
    sdist = build_sdist(dists, "alpha", "1.0")
    capsys.readouterr()
    assert run_cli(["upload", "--from-dir", str(dists)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"uploading alpha-1.0-py3-none-any.whl ({render_size(wheel.size)}) ... done",
        f"uploading alpha-1.0.tar.gz ({render_size(sdist.size)}) ... done",
        "2 uploaded, 0 skipped, 0 failed",
    ]
    stored = fake.files["root/public"]
    assert stored[wheel.filename]["content"] == wheel.path.read_bytes()
    assert stored[sdist.filename]["sha256"] == sdist.sha256
    build_wheel(dists, "beta", "2.0")
    assert run_cli(["upload", "--from-dir", str(dists), "--index", "root/public"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("... skipped: already on root/public")
    assert out[-1] == "1 uploaded, 2 skipped, 0 failed"
    assert len(fake.uploads) == 3
    assert fake.requests.count("GET /root/public/alpha") == 2  # one look per project and run


def test_upload_reports_a_conflict_and_goes_on(
    fake_api: tuple[FakeApi, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = fake_api
    build_wheel(tmp_path / "one", "alpha", "1.0", summary="one")
    assert run_cli(["upload", "--from-dir", str(tmp_path / "one")]) == 0
    other = build_wheel(tmp_path / "two", "alpha", "1.0", summary="two")  # same name, new bytes
    beta = build_wheel(tmp_path / "two", "beta", "1.0")
    capsys.readouterr()
    assert run_cli(["upload", "--from-dir", str(tmp_path / "two")]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"uploading {other.filename} ({render_size(other.size)}) ... "
        "failed: root/public has a different file of this name",
        f"uploading {beta.filename} ({render_size(beta.size)}) ... done",
        "1 uploaded, 0 skipped, 1 failed",
    ]
    assert len(fake.uploads) == 2


def test_upload_without_login_stops_at_the_first_file(
    fake_api: tuple[FakeApi, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = fake_api
    build_wheel(tmp_path, "alpha", "1.0")
    build_wheel(tmp_path, "beta", "1.0")
    assert run_cli(["logout"]) == 0
    capsys.readouterr()
    assert run_cli(["upload", "--from-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "0 uploaded, 0 skipped, 1 failed"
    assert err == ("wheelwell: 401: credentials needed; run `wheelwell login` or pass --user\n")
    assert fake.uploads == []


def test_upload_to_a_mirror_index_is_refused_before_sending(
    fake_api: tuple[FakeApi, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = fake_api
    fake.add_index("root/pypi", type="mirror")
    build_wheel(tmp_path, "alpha", "1.0")
    assert run_cli(["upload", "--from-dir", str(tmp_path), "--index", "root/pypi"]) == 1
    assert capsys.readouterr().err == (
        "wheelwell: root/pypi is a mirror index; upload to a private index\n"
    )
    assert fake.uploads == []
