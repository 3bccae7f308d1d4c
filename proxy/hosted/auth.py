"""Users, passwords and API tokens: who is asking, and may they write here.

Passwords are hashed with scrypt (memory-hard, in the standard library). Tokens are random and
stored only as their sha256, so a stolen database holds no usable secret. Nothing here logs a
password or a token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import argon2

from proxy.config import AuthConfig
from proxy.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    TooManyRequestsError,
    UnauthorizedError,
    WheelwellError,
)
from proxy.hosted.throttle import HashingPool, Limit, LoginThrottle, Tarpit
from proxy.metrics import Metrics
from proxy.model import parse_index_name
from proxy.storage.changes import (
    PasswordSet,
    TokenCreated,
    TokenRevoked,
    UserCreated,
    UserDeleted,
)
from proxy.storage.db import Database

log = logging.getLogger(__name__)

TOKEN_USER = "__token__"  # noqa: S105 - a user name, not a secret
TOKEN_PREFIX = "ww_"  # noqa: S105 - a prefix, not a secret
ROOT = "root"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_VERIFIED_CACHE = 256
_VERIFIED_TTL = 300.0


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${b64(salt).decode()}${b64(digest).decode()}"


#: devpi's hashes, kept by `wheelwell import --from-devpi` (hosted/auth verifies, never makes them)
ARGON2_PREFIX = "$argon2"
DEVPI_SHA256 = "devpi-sha256"
_ARGON2 = argon2.PasswordHasher()


def is_scrypt(stored: str) -> bool:
    """Whether a stored hash is wheelwell's own kind (others are rehashed at the next login)."""
    return stored.startswith("scrypt$")


def check_password(password: str, stored: str) -> bool:
    """Whether password matches the stored hash; a malformed stored hash matches nothing.

    Besides wheelwell's scrypt, devpi's argon2 PHC strings and devpi's salted sha256 (before
    devpi 4.2: sha256 of the base64 salt then the password) verify, so imported users log in.
    """
    if stored.startswith(ARGON2_PREFIX):
        try:
            return _ARGON2.verify(stored, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    if stored.startswith(DEVPI_SHA256 + "$"):
        _, devpi_salt, hexdigest = [*stored.split("$"), "", ""][:3]
        if not devpi_salt or not hexdigest:
            return False
        try:
            legacy = hashlib.sha256(devpi_salt.encode("ascii") + password.encode()).hexdigest()
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(legacy.encode(), hexdigest.encode())
    try:
        scheme, n, salt_b64, digest_b64 = stored.split("$")
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        if scheme != "scrypt" or not digest:
            return False
        actual = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=8, p=1, dklen=len(digest))
    except (ValueError, TypeError, binascii.Error):  # a bad n or salt: scrypt refuses them
        return False
    return hmac.compare_digest(actual, digest)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Scope(StrEnum):
    """What an index token may do on its index; any of upload, yank, delete implies read."""

    UPLOAD = "upload"
    YANK = "yank"
    DELETE = "delete"
    READ = "read"


DEFAULT_SCOPES = (Scope.UPLOAD,)


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Stored or requested scope names → Scopes; InvalidInputError names an unknown one."""
    try:
        return frozenset(Scope(v) for v in values)
    except ValueError as exc:
        known = ", ".join(s.value for s in Scope)
        raise InvalidInputError(f"unknown token scope ({exc}); scopes are {known}") from exc


class FailureReason(StrEnum):
    """Why a login failed: the `reason` label of wheelwell_login_failures_total and the log."""

    UNKNOWN_USER = "unknown-user"
    PASSWORD = "password"  # noqa: S105 - a reason, not a secret
    TOKEN = "token"  # noqa: S105 - a reason, not a secret


def _shown(user: str) -> str:
    """A user name as logs show it: attacker-chosen, so quoted and cut."""
    return repr(user if len(user) <= 64 else user[:61] + "...")


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller; `token_index` limits a token to one index and its `scopes`."""

    user: str
    token_index: str | None = None
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    via_token: bool = False  #: a token rather than a password

    @property
    def is_root(self) -> bool:
        return self.user == ROOT

    @property
    def is_scoped(self) -> bool:
        return self.token_index is not None


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    user: str
    index: str | None
    expires: float | None
    description: str
    created: float
    scopes: tuple[str, ...] = ()  #: empty for an unscoped token


class _LoginFailedError(Exception):
    """Internal: why credentials were refused; callers only ever see UnauthorizedError."""

    def __init__(self, reason: FailureReason) -> None:
        self.reason = reason
        super().__init__(reason.value)


def _check_user_name(name: str) -> str:
    parse_index_name(name, "x")  # the same character rules as an index name's parts
    if name == TOKEN_USER:
        raise ForbiddenError(f"'{TOKEN_USER}' is reserved")
    return name


class Auth:
    """Credentials checks and user/token management on top of the database."""

    def __init__(
        self,
        db: Database,
        cfg: AuthConfig,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        password_file: Path | None = None,
    ) -> None:
        self.db = db
        self.cfg = cfg
        #: where a generated root password is written (0600), never to the log
        self.password_file = password_file
        self.metrics = metrics or Metrics()
        #: recently verified (user, sha256(password)) → time, so pip/twine calls skip scrypt
        self._verified: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.throttle = LoginThrottle(
            cfg.login_failures_per_address,
            cfg.login_failures_per_user,
            cfg.login_window,
            cfg.login_tracked,
            clock,
        )
        #: scrypt's own threads: a login flood never queues in front of file serving
        self.hashing = HashingPool(cfg.hash_workers, cfg.hash_queue)
        #: refused logins are answered late, so a flood is cheap sleeping requests
        self.tarpit = Tarpit(cfg.login_tarpit_size, sleep)

    async def close(self) -> None:
        await self.hashing.close()

    async def bootstrap(self) -> None:
        """Create root; WHEELWELL_ROOT_PASSWORD (else DEVPI_PASSWORD), when set, wins each start."""
        row = await self.db.read(
            lambda c: c.execute("SELECT pwhash FROM users WHERE name = ?", (ROOT,)).fetchone()
        )
        password = self.cfg.root_password
        if row is not None:
            if password and not await self._check(password, row["pwhash"]):
                await self.set_password(ROOT, password)
                log.info("root password set from %s", self._password_from())
            return
        if not password:
            password = secrets.token_urlsafe(12)
            self._hand_over(password)
        else:
            log.info("root created with the password from %s", self._password_from())
        await self.create_user(ROOT, password)

    def _password_from(self) -> str:
        return self.cfg.root_password_from or "the configuration"

    def _hand_over(self, password: str) -> None:
        """A generated root password goes to a file only its owner can read, not to the log
        (journals and pod logs are read by many)."""
        if self.password_file is None:
            log.warning("root has a generated password; set one with WHEELWELL_ROOT_PASSWORD")
            return
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        log.warning(
            "root's generated password is in %s (readable by this user only): read it, then "
            "delete the file, or set WHEELWELL_ROOT_PASSWORD",
            self.password_file,
        )

    async def _check(self, password: str, stored: str) -> bool:
        return await self.hashing.run(check_password, password, stored)

    async def authenticate(self, user: str, password: str, client: str | None = None) -> Identity:
        """Basic credentials → Identity, or UnauthorizedError (same message for every failure).

        `client` is the caller's address. The limits are checked before anything else, so a
        throttled flood costs no hashing, and even a right password is refused while throttled:
        answering it would tell a guesser which guess was right, and the limit would slow nothing.
        Refusals are answered late (`Tarpit`); right credentials never wait.
        """
        is_token = user == TOKEN_USER
        started = self.throttle.clock()
        try:
            attempt, exhausted = self.throttle.begin(client, None if is_token else user)
        except TooManyRequestsError as exc:
            self.metrics.login_throttled.labels(exc.limit).inc()
            raise await self._held_back(exc) from None
        try:
            who = await self._authenticate(user, password, is_token)
        except _LoginFailedError as exc:
            self.metrics.login_failures.labels(exc.reason.value).inc()
            log.warning(
                "failed login for user %s from %s: %s",
                _shown(user),
                client or "unknown address",
                exc.reason.value,
                extra={"user": user[:64], "client": client, "reason": exc.reason.value},
            )
            for limit in exhausted:  # once, when this failure used up a budget
                subject = f"address {client}" if limit is Limit.ADDRESS else f"user {_shown(user)}"
                log.warning("login throttled for %s: too many failed logins", subject)
            # padded to a fixed time: an unknown user answers as late as a wrong password
            elapsed = self.throttle.clock() - started
            await self.tarpit.hold(self.cfg.login_failure_delay - elapsed)
            raise UnauthorizedError("invalid credentials") from None
        except TooManyRequestsError as exc:  # the hashing pool is full: not a failure
            self.throttle.succeeded(attempt)
            self.metrics.login_throttled.labels(exc.limit).inc()
            raise await self._held_back(exc) from None
        self.throttle.succeeded(attempt)
        return who

    async def _held_back(self, exc: TooManyRequestsError) -> TooManyRequestsError:
        """Answer a throttled attempt late; its Retry-After then counts from the answer."""
        held = await self.tarpit.hold(min(exc.retry_after, self.cfg.login_throttled_delay))
        return TooManyRequestsError(exc.retry_after - held, exc.limit) if held else exc

    async def _authenticate(self, user: str, password: str, is_token: bool) -> Identity:
        if is_token:
            return await self._authenticate_token(password)
        if password.startswith(TOKEN_PREFIX):  # devpi's user:token (X-Devpi-Auth, pip URLs)
            try:
                who = await self._authenticate_token(password)
            except _LoginFailedError:
                pass  # a password that merely looks like a token: checked as one below
            else:
                if who.user == user:
                    return who
        key = (user, hashlib.sha256(password.encode()).hexdigest())
        seen = self._verified.get(key)
        if seen is not None and time.monotonic() - seen < _VERIFIED_TTL:
            return Identity(user)
        row = await self.db.read(
            lambda c: c.execute("SELECT pwhash FROM users WHERE name = ?", (user,)).fetchone()
        )
        if row is None:
            raise _LoginFailedError(FailureReason.UNKNOWN_USER)
        if not await self._check(password, row["pwhash"]):
            raise _LoginFailedError(FailureReason.PASSWORD)
        if not is_scrypt(row["pwhash"]) and self.db.replica_of is None:
            try:  # an imported devpi hash becomes scrypt; the login stands if this fails
                await self.set_password(user, password)
                log.info("password of user %s rehashed with scrypt", _shown(user))
            except WheelwellError as exc:
                log.warning("password of user %s not rehashed: %s", _shown(user), exc)
        self._verified[key] = time.monotonic()
        while len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return Identity(user)

    async def forget_verified(self) -> None:
        """Drop remembered password checks (a replica's state was replaced by a snapshot)."""
        self._verified.clear()

    async def _authenticate_token(self, token: str) -> Identity:
        digest = _token_hash(token)
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT user, idx, expires, revoked, scopes FROM tokens WHERE hash = ?", (digest,)
            ).fetchone()
        )
        if row is None or row["revoked"] or (row["expires"] and row["expires"] < time.time()):
            raise _LoginFailedError(FailureReason.TOKEN)
        scopes = parse_scopes(json.loads(row["scopes"])) if row["idx"] else frozenset()
        return Identity(row["user"], token_index=row["idx"], scopes=scopes, via_token=True)

    # ---- users ---------------------------------------------------------------------------

    async def create_user(self, name: str, password: str) -> None:
        _check_user_name(name)
        pwhash = await self.hashing.run(hash_password, password)
        await self.db.commit(UserCreated(user=name, pwhash=pwhash, created=time.time()))

    async def set_password(self, name: str, password: str) -> None:
        pwhash = await self.hashing.run(hash_password, password)
        await self.db.commit(PasswordSet(user=name, pwhash=pwhash))
        self._verified = OrderedDict((k, v) for k, v in self._verified.items() if k[0] != name)

    async def delete_user(self, name: str, owned: Iterable[str] = ()) -> None:
        """Delete a user and revoke their tokens; refused while they own indexes (`owned`)."""
        if name == ROOT:
            raise ForbiddenError("root cannot be deleted")
        indexes = sorted(owned)
        if indexes:
            raise ConflictError(
                f"user '{name}' still owns {', '.join(indexes)}; delete those indexes first"
            )
        await self.db.commit(UserDeleted(user=name))
        self._verified = OrderedDict((k, v) for k, v in self._verified.items() if k[0] != name)

    async def user_names(self) -> list[str]:
        """Every user's name, sorted (devpi's user list)."""
        rows = await self.db.read(
            lambda c: c.execute("SELECT name FROM users ORDER BY name").fetchall()
        )
        return [str(r["name"]) for r in rows]

    async def user_exists(self, name: str) -> bool:
        row = await self.db.read(
            lambda c: c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()
        )
        return row is not None

    # ---- tokens --------------------------------------------------------------------------

    async def create_token(
        self,
        user: str,
        index: str | None,
        expires_in: float | None,
        description: str,
        scopes: Iterable[str] = DEFAULT_SCOPES,
    ) -> tuple[Token, str]:
        """A new token; the secret is returned once and only its hash is kept."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        granted = sorted(parse_scopes(scopes)) if index is not None else []
        if index is not None and not granted:
            raise InvalidInputError("an index token needs at least one scope")
        token = Token(
            id=secrets.token_hex(6),
            user=user,
            index=index,
            expires=time.time() + expires_in if expires_in else None,
            description=description,
            created=time.time(),
            scopes=tuple(granted),
        )
        change = TokenCreated(
            id=token.id,
            user=user,
            hash=_token_hash(secret),
            token_index=index,
            expires=token.expires,
            description=description,
            created=token.created,
            scopes=token.scopes,
        )
        await self.db.commit(change)
        return token, secret

    async def list_tokens(self, who: Identity) -> list[Token]:
        def query(conn: sqlite3.Connection) -> list[Token]:
            sql = "SELECT * FROM tokens WHERE revoked = 0"
            args: tuple[str, ...] = ()
            if not who.is_root:
                sql += " AND user = ?"
                args = (who.user,)
            rows = conn.execute(sql + " ORDER BY created", args).fetchall()
            return [
                Token(
                    r["id"],
                    r["user"],
                    r["idx"],
                    r["expires"],
                    r["description"],
                    r["created"],
                    tuple(json.loads(r["scopes"])) if r["idx"] else (),
                )
                for r in rows
            ]

        return await self.db.read(query)

    async def owner(self, token_id: str) -> str:
        """The user a live token belongs to; NotFoundError when there is none."""
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT user FROM tokens WHERE id = ? AND revoked = 0", (token_id,)
            ).fetchone()
        )
        if row is None:
            raise NotFoundError(f"token '{token_id}' not found")
        return str(row["user"])

    async def revoke_token(self, token_id: str) -> None:
        """Revoke a live token; who may was decided by the permission table (see `owner`)."""
        await self.db.commit(TokenRevoked(id=token_id))  # NotFound too if revoked meanwhile
