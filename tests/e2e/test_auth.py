"""Who may write: passwords, users, API tokens as twine sends them; refusals change nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import Clients, Daemon, Fetched
from tests.e2e.conftest import (
    ROOT,
    ROOT_PASSWORD,
    Credentials,
    call,
    create_index,
    create_token,
    decoded,
    post_upload,
    simple_files,
    stored_files,
    twine_upload,
)
from tests.fakes.dists import build_wheel
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

TOKEN_USER = "__token__"
ALICE: Credentials = ("alice", "alice-e2e-secret")


def public_url(daemon: Daemon) -> str:
    return f"{daemon.url}/root/public/"


def assert_challenge(answer: Fetched) -> None:
    """401 with the Basic challenge twine and pip react to."""
    assert answer.status == 401, answer.body
    assert answer.headers.get("WWW-Authenticate") == 'Basic realm="wheelwell"'


@pytest.mark.parametrize("auth", [("root", "wrong"), ("nobody", ROOT_PASSWORD), None])
def test_bad_credentials_are_401_and_store_nothing(
    auth: Credentials | None, daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    wheel = build_wheel(tmp_path / "dist", "intruder", "1.0")
    stored = stored_files(daemon)
    refused = post_upload(public_url(daemon), wheel, auth=auth)
    assert_challenge(refused)
    if auth is not None:
        result = twine_upload(clients, public_url(daemon), auth, wheel.path, check=False)
        assert result.returncode != 0
        assert "401" in result.stdout + result.stderr
    assert simple_files(daemon, "root/public", "intruder") is None
    assert stored_files(daemon) == stored


@pytest.mark.parametrize("index", [None, "root/public"], ids=["any-index", "this-index"])
def test_token_upload_with_twine(
    index: str | None, daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    wheel = build_wheel(tmp_path / "dist", "tokened", "1.0")
    created = create_token(daemon, ROOT, index=index, description="ci")
    assert (created["user"], created["index"]) == ("root", index)
    twine_upload(clients, public_url(daemon), (TOKEN_USER, created["token"]), wheel.path)
    assert simple_files(daemon, "root/public", "tokened") == {wheel.filename: wheel.sha256}
    listed = decoded(call(daemon, "GET", "/+tokens", auth=ROOT))["tokens"]
    assert created["id"] in [t["id"] for t in listed]
    assert created["token"] not in str(listed)  # the secret is shown once, at creation


def test_token_for_another_index_is_403(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    create_index(daemon, "root/other", ROOT, bases=[])
    wheel = build_wheel(tmp_path / "dist", "fenced", "1.0")
    token = (TOKEN_USER, create_token(daemon, ROOT, index="root/other")["token"])
    stored = stored_files(daemon)
    refused = post_upload(public_url(daemon), wheel, auth=token)
    assert refused.status == 403, refused.body
    assert "root/other" in decoded(refused)["error"]
    result = twine_upload(clients, public_url(daemon), token, wheel.path, check=False)
    assert result.returncode != 0
    assert "403" in result.stdout + result.stderr
    assert simple_files(daemon, "root/public", "fenced") is None
    assert stored_files(daemon) == stored
    twine_upload(clients, f"{daemon.url}/root/other/", token, wheel.path)  # where it may go
    assert simple_files(daemon, "root/other", "fenced") == {wheel.filename: wheel.sha256}


def test_revoked_token_is_401(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    first = build_wheel(tmp_path / "dist", "revoked", "1.0")
    second = build_wheel(tmp_path / "dist", "revoked", "2.0")
    created = create_token(daemon, ROOT, index="root/public")
    token = (TOKEN_USER, created["token"])
    twine_upload(clients, public_url(daemon), token, first.path)
    revoked = call(daemon, "DELETE", f"/+tokens/{created['id']}", auth=ROOT)
    assert revoked.status == 200, revoked.body
    stored = stored_files(daemon)
    refused = post_upload(public_url(daemon), second, auth=token)
    assert_challenge(refused)
    assert twine_upload(clients, public_url(daemon), token, second.path, check=False).returncode
    assert simple_files(daemon, "root/public", "revoked") == {first.filename: first.sha256}
    assert stored_files(daemon) == stored
    listed = decoded(call(daemon, "GET", "/+tokens", auth=ROOT))["tokens"]
    assert created["id"] not in [t["id"] for t in listed]


def test_expired_token_is_401(daemon: Daemon, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "expired", "1.0")
    created = create_token(daemon, ROOT, expires_in=0.05)
    token = (TOKEN_USER, created["token"])
    expires = created["expires"]
    assert isinstance(expires, float)
    # the daemon shares our clock: once it has passed `expires`, the token is dead for the daemon
    wait_until(lambda: time.time() > expires, timeout=10, message=f"the clock to pass {expires}")
    refused = post_upload(public_url(daemon), wheel, auth=token)
    assert_challenge(refused)
    assert simple_files(daemon, "root/public", "expired") is None


def test_login_token_uploads(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "logged-in", "1.0")
    wrong = call(daemon, "POST", "/+login", {"user": "root", "password": "wrong"})
    assert_challenge(wrong)
    login = call(daemon, "POST", "/+login", {"user": "root", "password": ROOT_PASSWORD})
    assert login.status == 200, login.body
    token = decoded(login)["token"]
    twine_upload(clients, public_url(daemon), (TOKEN_USER, token), wheel.path)
    assert simple_files(daemon, "root/public", "logged-in") == {wheel.filename: wheel.sha256}


def test_users_upload_only_where_allowed(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    created = call(daemon, "PUT", "/alice", {"password": ALICE[1]}, auth=ROOT)
    assert created.status == 201, created.body
    assert call(daemon, "PUT", "/mallory", {"password": "x" * 12}, auth=ALICE).status == 403
    wheel = build_wheel(tmp_path / "dist", "alices", "1.0")
    stored = stored_files(daemon)
    refused = post_upload(public_url(daemon), wheel, auth=ALICE)  # root's index: not hers
    assert refused.status == 403, refused.body
    assert simple_files(daemon, "root/public", "alices") is None
    assert stored_files(daemon) == stored
    create_index(daemon, "alice/dev", ALICE, bases=["root/public"])
    assert decoded(call(daemon, "GET", "/alice"))["indexes"] == ["alice/dev"]
    twine_upload(clients, f"{daemon.url}/alice/dev/", ALICE, wheel.path)
    assert simple_files(daemon, "alice/dev", "alices") == {wheel.filename: wheel.sha256}
    # root may always upload, and may open the index to other users through acl_upload
    created = call(daemon, "PATCH", "/root/public", {"acl_upload": ["root", "alice"]}, auth=ROOT)
    assert created.status == 200, created.body
    assert post_upload(public_url(daemon), wheel, auth=ALICE).status == 200
    assert simple_files(daemon, "root/public", "alices") == {wheel.filename: wheel.sha256}


def test_changelog_is_for_root_only(daemon: Daemon) -> None:
    anonymous = call(daemon, "GET", "/+changelog?since=0")
    assert_challenge(anonymous)
    assert call(daemon, "PUT", "/alice", {"password": ALICE[1]}, auth=ROOT).status == 201
    assert call(daemon, "GET", "/+changelog?since=0", auth=ALICE).status == 403
    assert call(daemon, "GET", "/+changelog?since=0", auth=ROOT).status == 200
