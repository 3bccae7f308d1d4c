"""The client commands end to end against FakeApi: what they send, store and print."""

from __future__ import annotations

import argparse
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.client.api import parse_error_body
from proxy.client.commands import run_client_command
from proxy.client.settings import ClientPaths, load_paths, load_state
from tests.unit.test_client_fakeapi import ROOT_PASSWORD, FakeApi, run_cli, serve_fake_api

PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
)


@pytest.fixture
def client_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClientPaths:
    """HOME and XDG_CONFIG_HOME in a temporary directory, so no real config is touched."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.delenv("PIP_CONFIG_FILE", raising=False)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return load_paths()


@pytest.fixture
def fake_api(client_paths: ClientPaths) -> Iterator[tuple[FakeApi, str]]:
    with serve_fake_api() as served:
        yield served


@pytest.fixture
def as_root(fake_api: tuple[FakeApi, str], capsys: pytest.CaptureFixture[str]) -> FakeApi:
    """The root index selected and root logged in; output so far discarded."""
    fake, url = fake_api
    assert run_cli(["use", f"{url}/root/public"]) == 0
    assert run_cli(["login", "root", "--password", ROOT_PASSWORD]) == 0
    capsys.readouterr()
    return fake


def test_foreign_commands_are_left_to_the_caller() -> None:
    assert run_client_command(argparse.Namespace(command="serve")) is None


def test_use_stores_the_index_and_shows_the_status(
    fake_api: tuple[FakeApi, str], client_paths: ClientPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = fake_api
    assert run_cli(["use", f"{url}/root/public/+simple/"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"current index: {url}/root/public/",
        f"simple index: {url}/root/public/+simple/",
        "not logged in",
        "pip/uv config: not set",
    ]
    state = load_state(client_paths.state)
    assert (state.server, state.index) == (url, "root/public")


def test_a_missing_index_is_one_line_and_nothing_is_stored(
    fake_api: tuple[FakeApi, str], client_paths: ClientPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = fake_api
    assert run_cli(["use", f"{url}/root/nope"]) == 1
    assert capsys.readouterr().err == "wheelwell: 404: index 'root/nope' not found\n"
    assert not client_paths.state.exists()


def test_an_unreachable_server_is_one_line(
    client_paths: ClientPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve_fake_api() as (_, url):
        pass  # the port is closed again now
    assert run_cli(["index", "show", "--url", f"{url}/root/public"]) == 1
    assert capsys.readouterr().err == f"wheelwell: cannot reach {url}: connection refused\n"


def test_set_cfg_then_unset_cfg_leaves_no_trace(
    fake_api: tuple[FakeApi, str], client_paths: ClientPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = fake_api
    assert run_cli(["use", f"{url}/root/public", "--set-cfg"]) == 0
    out = capsys.readouterr().out
    pip_conf = client_paths.pip_conf.read_text()
    assert f"index-url = {url}/root/public/+simple/" in pip_conf
    assert "trusted-host = 127.0.0.1" in pip_conf
    assert f'url = "{url}/root/public/+simple/"' in client_paths.uv_toml.read_text()
    assert f"{client_paths.pip_conf}: [global] index-url = {url}/root/public/+simple/ (new)" in out
    assert f"{client_paths.uv_toml}: [[index]] url (default = true) = {url}" in out
    assert run_cli(["use", "--unset-cfg"]) == 0
    assert not client_paths.pip_conf.exists()
    assert not client_paths.uv_toml.exists()
    assert load_state(client_paths.state).saved == ()


def test_login_keeps_only_a_token_and_logout_revokes_it(
    fake_api: tuple[FakeApi, str], client_paths: ClientPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = fake_api
    assert run_cli(["use", f"{url}/root/public"]) == 0
    assert run_cli(["login", "root", "--password", ROOT_PASSWORD]) == 0
    assert run_cli(["use"]) == 0
    printed = "".join(capsys.readouterr())
    (token,) = fake.tokens.values()
    assert ROOT_PASSWORD not in printed
    assert token["token"] not in printed
    assert "logged in as root (token expires 2100-01-01T00:00:00+00:00)" in printed
    assert load_state(client_paths.state).logins[url].token == token["token"]
    assert stat.S_IMODE(client_paths.state.stat().st_mode) == 0o600
    assert ROOT_PASSWORD not in client_paths.state.read_text()
    assert run_cli(["logout"]) == 0
    assert fake.tokens == {}
    assert load_state(client_paths.state).logins == {}


def test_a_wrong_password_is_one_line(
    fake_api: tuple[FakeApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = fake_api
    assert run_cli(["login", "root", "--password", "nope", "--url", url]) == 1
    assert capsys.readouterr().err == "wheelwell: 401: wrong user name or password\n"


def test_user_create_passwd_delete(as_root: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["user", "create", "alice", "--password", "pw1"]) == 0
    assert as_root.users["alice"] == "pw1"
    assert run_cli(["user", "passwd", "alice", "--password", "pw2"]) == 0
    assert as_root.users["alice"] == "pw2"
    assert run_cli(["user", "delete", "alice"]) == 1
    assert capsys.readouterr().err == "wheelwell: delete user alice: pass --yes to confirm\n"
    assert run_cli(["user", "delete", "alice", "--yes"]) == 0
    assert "alice" not in as_root.users


def test_user_given_on_the_command_line_is_asked_for_a_password(
    fake_api: tuple[FakeApi, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = fake_api
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return ROOT_PASSWORD

    monkeypatch.setattr("getpass.getpass", answer)
    assert (
        run_cli(["user", "create", "bob", "--password", "pw", "--user", "root", "--url", url]) == 0
    )
    assert prompts == ["password for root: "]
    assert fake.users["bob"] == "pw"


def test_a_forbidden_write_is_one_line(
    fake_api: tuple[FakeApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = fake_api
    fake.users["eve"] = "pw"
    argv = ["user", "delete", "root", "--yes", "--url", url, "--user", "eve", "--password", "pw"]
    assert run_cli(argv) == 1
    assert capsys.readouterr().err == "wheelwell: 403: only root may change user 'root'\n"


def test_token_create_prints_the_token_once(
    as_root: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "token",
        "create",
        "--index",
        "root/public",
        "--expires-in",
        "30d",
        "--description",
        "ci",
    ]
    assert run_cli(argv) == 0
    out, err = capsys.readouterr()
    created = next(t for t in as_root.tokens.values() if t["description"] == "ci")
    assert out == created["token"] + "\n"
    assert err.startswith(f"created token {created['id']} for root (index root/public, expires ")
    assert (created["index"], created["expires_in"]) == ("root/public", 30 * 86400)
    assert run_cli(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "tok-" not in listing
    assert listing.splitlines()[0].split() == [
        "ID",
        "USER",
        "INDEX",
        "EXPIRES",
        "CREATED",
        "DESCRIPTION",
    ]
    assert run_cli(["token", "revoke", created["id"]]) == 0
    assert created["id"] not in as_root.tokens


def test_revoking_the_login_token_logs_out(
    as_root: FakeApi, client_paths: ClientPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    (token_id,) = as_root.tokens
    assert run_cli(["token", "revoke", token_id]) == 0
    assert "logged out root" in capsys.readouterr().out
    assert load_state(client_paths.state).logins == {}


def test_index_create_modify_show_delete(
    as_root: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["index", "create", "root/dev", "--bases", "root/public", "--no-volatile"]
    assert run_cli(argv) == 0
    assert as_root.indexes["root/dev"]["bases"] == ["root/public"]
    assert as_root.indexes["root/dev"]["volatile"] is False
    assert run_cli(["index", "modify", "root/dev", "--whitelist", "a, b"]) == 0
    assert as_root.indexes["root/dev"]["mirror_whitelist"] == ["a", "b"]
    capsys.readouterr()
    assert run_cli(["index", "show", "dev"]) == 0  # a bare name is the logged-in user's
    assert capsys.readouterr().out.splitlines() == [
        "name: root/dev",
        "type: private",
        "bases: root/public",
        "mirror_whitelist: a, b",
        "volatile: no",
    ]
    assert run_cli(["index", "modify", "root/dev"]) == 1
    assert "nothing to change" in capsys.readouterr().err
    assert run_cli(["index", "delete", "root/dev", "--yes"]) == 0
    assert "root/dev" not in as_root.indexes


def test_index_modify_generate_metadata(as_root: FakeApi) -> None:
    argv = ["index", "create", "root/up", "--type", "mirror", "--mirror-url", "http://127.0.0.1:9/"]
    assert run_cli([*argv, "--no-generate-metadata"]) == 0
    assert as_root.indexes["root/up"]["generate_metadata"] is False
    assert run_cli(["index", "modify", "root/up", "--generate-metadata"]) == 0
    assert as_root.indexes["root/up"]["generate_metadata"] is True


def test_yank_unyank_and_delete(as_root: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    release = {"filename": "alpha-1.0.tar.gz", "sha256": "0" * 64, "project": "alpha"}
    as_root.files["root/public"]["alpha-1.0.tar.gz"] = {**release, "version": "1.0"}
    assert run_cli(["yank", "Alpha", "1.0", "--reason", "broken"]) == 0
    assert as_root.files["root/public"]["alpha-1.0.tar.gz"]["reason"] == "broken"
    assert run_cli(["yank", "alpha", "1.0", "--undo"]) == 0
    assert as_root.files["root/public"]["alpha-1.0.tar.gz"]["yanked"] is False
    assert capsys.readouterr().out.splitlines() == [
        "yanked alpha 1.0 on root/public",
        "un-yanked alpha 1.0 on root/public",
    ]
    as_root.indexes["root/public"]["volatile"] = False
    assert run_cli(["delete", "alpha", "1.0", "--yes"]) == 1
    assert capsys.readouterr().err == "wheelwell: 409: root/public is not volatile\n"
    as_root.indexes["root/public"]["volatile"] = True
    assert run_cli(["delete", "alpha", "1.0", "--yes", "--index", "root/public"]) == 0
    assert as_root.files["root/public"] == {}


def test_commands_need_a_server(
    client_paths: ClientPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["token", "list"]) == 1
    assert capsys.readouterr().err == (
        "wheelwell: no server selected; run `wheelwell use URL` or pass --url\n"
    )


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("application/json", b'{"status": 409, "error": "exists", "request_id": "x"}', "exists"),
        ("text/plain", b"409: file 'x' exists\n", "file 'x' exists"),
        ("text/html", b"\n<h1>Conflict</h1>\n", "<h1>Conflict</h1>"),
        ("application/json", b"not json", "not json"),
        ("text/plain", b"", "Conflict"),
    ],
)
def test_parse_error_body(content_type: str, body: bytes, reason: str) -> None:
    assert parse_error_body(409, content_type, body, "Conflict") == reason


def test_a_revoked_login_says_how_to_recover(
    as_root: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    as_root.tokens.clear()  # revoked elsewhere, or expired
    assert run_cli(["user", "delete", "nobody", "--yes"]) == 1
    assert capsys.readouterr().err == (
        "wheelwell: 401: credentials needed; the stored login may have expired or been revoked:"
        " run `wheelwell login`\n"
    )
