"""The pure parts of auth: password hashing and the permission rules, as tables."""

from __future__ import annotations

import base64
import hashlib

import pytest

from proxy.config import IndexConfig
from proxy.errors import ForbiddenError
from proxy.hosted.auth import Identity, Scope, check_password, hash_password
from proxy.hosted.permissions import Operation, authorize

ROOT = Identity("root")
ALICE = Identity("alice")
BOB = Identity("bob")


def test_password_round_trip() -> None:
    stored = hash_password("correct horse")
    assert check_password("correct horse", stored)
    assert not check_password("correct horse ", stored)
    assert not check_password("", stored)


def test_hashes_are_salted_and_keep_no_password() -> None:
    first, second = hash_password("secret-pw"), hash_password("secret-pw")
    assert first != second
    assert "secret-pw" not in first
    scheme, n, salt, digest = first.split("$")
    assert (scheme, n) == ("scrypt", str(2**14))
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(digest)) == 32


def _with(part: int, value: str) -> str:
    parts = hash_password("pw").split("$")
    parts[part] = value
    return "$".join(parts)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "scrypt",
        "plain-text-password",
        "scrypt$16384$AAAA",
        "scrypt$16384$AAAA$AAAA$AAAA",
        _with(0, "md5"),
        _with(0, "SCRYPT"),
        _with(1, "x"),
        _with(1, "3"),  # not a power of two
        _with(1, "0"),
        _with(1, "-1"),
        _with(1, str(2**40)),  # beyond scrypt's memory limit
        _with(2, "!!not base64!!"),
        _with(3, "!!not base64!!"),
        _with(3, ""),
        _with(3, base64.b64encode(b"\0" * 32).decode()),  # well-formed, wrong digest
    ],
)
def test_bad_stored_hashes_match_nothing(stored: str) -> None:
    assert check_password("pw", stored) is False


def test_check_password_reads_n_from_the_stored_string() -> None:
    salt = b"s" * 16
    digest = hashlib.scrypt(b"pw", salt=salt, n=2**10, r=8, p=1, dklen=16)
    b64 = base64.b64encode
    stored = f"scrypt${2**10}${b64(salt).decode()}${b64(digest).decode()}"
    assert check_password("pw", stored)
    assert not check_password("pW", stored)


# ---- permissions (proxy.hosted.permissions.authorize; the whole table is in test_permissions) --


def _scoped(user: str, index: str, *scopes: Scope) -> Identity:
    return Identity(user, index, frozenset(scopes or (Scope.UPLOAD,)), via_token=True)


@pytest.mark.parametrize(
    ("who", "allowed"), [(ROOT, True), (ALICE, False), (Identity("Root"), False)]
)
def test_root_only(who: Identity, allowed: bool) -> None:
    if allowed:
        authorize(Operation.USER_CREATE, who)
    else:
        with pytest.raises(ForbiddenError, match=f"user '{who.user}' may not user-create"):
            authorize(Operation.USER_CREATE, who)


@pytest.mark.parametrize(
    ("who", "index", "error"),
    [
        (ROOT, "alice/dev", None),
        (ROOT, "root/public", None),
        (ALICE, "alice/dev", None),
        (ALICE, "alice/other", None),
        (ALICE, "bob/dev", "user 'alice' may not index-change on index 'bob/dev'"),
        (ALICE, "root/public", "user 'alice' may not index-change on index 'root/public'"),
        # issue 9: a scoped token never changes an index, not even its own
        (_scoped("alice", "alice/dev"), "alice/dev", "cannot do 'index-change'"),
        (_scoped("root", "alice/dev"), "alice/dev", "cannot do 'index-change'"),
    ],
)
def test_index_owner(who: Identity, index: str, error: str | None) -> None:
    if error is None:
        authorize(Operation.INDEX_CHANGE, who, IndexConfig(name=index))
    else:
        with pytest.raises(ForbiddenError) as info:
            authorize(Operation.INDEX_CHANGE, who, IndexConfig(name=index))
        assert error in str(info.value)


OWN = IndexConfig(name="alice/dev")
SHARED = IndexConfig(name="alice/shared", acl_upload=("bob", "carol"))


@pytest.mark.parametrize(
    ("who", "index", "error"),
    [
        (ROOT, OWN, None),
        (ROOT, SHARED, None),
        (ALICE, OWN, None),
        (BOB, OWN, "user 'bob' may not upload on index 'alice/dev'"),
        # an upload ACL replaces the owner's own right
        (BOB, SHARED, None),
        (Identity("carol"), SHARED, None),
        (ALICE, SHARED, "user 'alice' may not upload on index 'alice/shared'"),
        (_scoped("alice", "alice/dev"), OWN, None),
        (_scoped("alice", "alice/other"), OWN, "token is limited to index 'alice/other'"),
        (_scoped("root", "alice/shared"), OWN, "token is limited to index 'alice/shared'"),
        (_scoped("bob", "alice/shared"), SHARED, None),
        (_scoped("alice", "alice/dev", Scope.READ), OWN, "token lacks the 'upload' scope"),
    ],
)
def test_upload(who: Identity, index: IndexConfig, error: str | None) -> None:
    if error is None:
        authorize(Operation.UPLOAD, who, index)
    else:
        with pytest.raises(ForbiddenError) as info:
            authorize(Operation.UPLOAD, who, index)
        assert str(info.value) == error


def test_identity_is_root() -> None:
    assert ROOT.is_root
    assert Identity("root", "root/public").is_root
    assert not ALICE.is_root
