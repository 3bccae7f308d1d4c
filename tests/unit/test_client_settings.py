"""The client's URL parsing, file locations, stored state and small parsers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from proxy.client.errors import UsageError
from proxy.client.session import parse_duration, parse_index_name, render_expiry
from proxy.client.settings import (
    ClientPaths,
    ClientState,
    KeyChange,
    Login,
    SavedConfig,
    Target,
    load_state,
    parse_paths,
    parse_target,
    save_state,
)

SERVER = "http://pkgs.example:3141"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{SERVER}/root/public", Target(SERVER, "root/public")),
        (f"{SERVER}/root/public/", Target(SERVER, "root/public")),
        (f"{SERVER}/root/public/+simple/", Target(SERVER, "root/public")),
        (f"{SERVER}/root/public/+simple", Target(SERVER, "root/public")),
        (SERVER, Target(SERVER)),
        (f"{SERVER}/", Target(SERVER)),
        (
            "HTTPS://Pkgs.Example/pypi/root/public",
            Target("https://pkgs.example/pypi", "root/public"),
        ),
        ("  alice/dev ", Target(SERVER, "alice/dev")),  # an index on the current server
    ],
)
def test_parse_target(text: str, expected: Target) -> None:
    assert parse_target(text, current_server=SERVER) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://pkgs.example/root/public", "not a server or index URL"),
        (f"{SERVER}/root", "not a server or index URL"),
        (f"{SERVER}/root/+simple/extra", "not a server or index URL"),
        ("http://alice:pw@pkgs.example/root/public", "remove the credentials"),
        (f"{SERVER}/root/public?x=1", "unexpected query"),
        ("root/public", "not a server or index URL"),  # no current server to put it on
        ("http:///root/public", "not a server or index URL"),
    ],
)
def test_parse_target_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_target(text)


def test_target_urls() -> None:
    target = Target(SERVER, "root/public")
    assert target.index_url == f"{SERVER}/root/public"
    assert target.simple_url == f"{SERVER}/root/public/+simple/"
    assert (target.host, target.is_plain_http) == ("pkgs.example", True)
    assert not Target("https://pkgs.example").is_plain_http
    with pytest.raises(UsageError, match="no index selected"):
        _ = Target(SERVER).index_url


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {},
            ClientPaths(
                Path("/h/.config/wheelwell/client.json"),
                Path("/h/.config/pip/pip.conf"),
                Path("/h/.config/uv/uv.toml"),
            ),
        ),
        (
            {"XDG_CONFIG_HOME": "/x", "PIP_CONFIG_FILE": "/etc/p.conf"},
            ClientPaths(
                Path("/x/wheelwell/client.json"), Path("/etc/p.conf"), Path("/x/uv/uv.toml")
            ),
        ),
        (
            {"XDG_CONFIG_HOME": "relative/is/ignored", "PIP_CONFIG_FILE": ""},
            ClientPaths(
                Path("/h/.config/wheelwell/client.json"),
                Path("/h/.config/pip/pip.conf"),
                Path("/h/.config/uv/uv.toml"),
            ),
        ),
    ],
)
def test_parse_paths(environ: dict[str, str], expected: ClientPaths) -> None:
    assert parse_paths(environ, Path("/h")) == expected


def test_state_round_trips_and_is_private(tmp_path: Path) -> None:
    state = ClientState(
        server=SERVER,
        index="root/public",
        logins={SERVER: Login("alice", "tok", "7", "2030-01-01T00:00:00+00:00")},
        saved=(
            SavedConfig(
                "pip",
                "/h/pip.conf",
                None,
                "ab" * 32,
                (KeyChange("global", "index-url", None, "u"),),
            ),
        ),
    )
    path = tmp_path / "wheelwell" / "client.json"
    save_state(path, state)
    assert load_state(path) == state
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_missing_state_is_empty_and_damaged_state_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "client.json"
    assert load_state(path) == ClientState()
    path.write_text("{not json")
    with pytest.raises(UsageError, match="is damaged"):
        load_state(path)


def test_with_login_replaces_and_forgets() -> None:
    state = ClientState(SERVER).with_login(SERVER, Login("alice", "t1"))
    assert state.with_login(SERVER, Login("bob", "t2")).logins == {SERVER: Login("bob", "t2")}
    assert state.with_login(SERVER, None).logins == {}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600), ("90m", 5400), ("12h", 43200), ("30d", 2592000), ("2w", 1209600), ("5S", 5)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1d", "1y", "d", "1.5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "never"),
        ("4102444800", "2100-01-01T00:00:00+00:00"),
        ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00+00:00"),
        ("soon", "soon"),
    ],
)
def test_render_expiry(value: str | None, shown: str) -> None:
    assert render_expiry(value) == shown


def test_parse_index_name() -> None:
    assert parse_index_name("root/public", None) == "root/public"
    assert parse_index_name("dev", "alice") == "alice/dev"
    for bad in ("dev", "a/b/c", "../x", "a/+simple"):
        with pytest.raises(UsageError, match="not an index name"):
            parse_index_name(bad, None)
