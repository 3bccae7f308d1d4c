"""devpi's password hashes, as `wheelwell import --from-devpi` keeps them, verify in hosted/auth."""

from __future__ import annotations

import hashlib

import argon2
import pytest

from proxy.hosted.auth import check_password, is_scrypt

#: devpi's passlib context makes argon2id PHC strings; low costs keep the test fast
_HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_devpi_argon2_hash_verifies() -> None:
    stored = _HASHER.hash("alice-pw")
    assert stored.startswith("$argon2id$")
    assert check_password("alice-pw", stored)
    assert not check_password("alice-pw ", stored)
    assert not is_scrypt(stored)


def test_devpi_legacy_salted_sha256_verifies() -> None:
    """devpi before 4.2: pwhash = sha256(salt + password) hex, pwsalt kept beside it."""
    salt = "c2FsdHNhbHRzYWx0c2FsdA=="
    digest = hashlib.sha256(salt.encode("ascii") + "ünïcode-pw".encode()).hexdigest()
    stored = f"devpi-sha256${salt}${digest}"
    assert check_password("ünïcode-pw", stored)
    assert not check_password("unicode-pw", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "$argon2id$v=19$m=65536,t=3,p=4$bm90IGEgaGFzaA",
        "$argon2id$",
        "devpi-sha256$",
        "devpi-sha256$salt$",
        "devpi-sha256$$abcd",
        "!",
    ],
)
def test_broken_devpi_hashes_match_nothing(stored: str) -> None:
    assert not check_password("pw", stored)
    assert not check_password("", stored)
