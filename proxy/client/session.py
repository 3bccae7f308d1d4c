"""What every client command needs: its arguments, stored state, server, credentials, prompts."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from proxy.client.api import Api, Credentials, render_path
from proxy.client.errors import UsageError
from proxy.client.settings import (
    ClientPaths,
    ClientState,
    Login,
    Target,
    parse_target,
    save_state,
)

_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INDEX_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(slots=True)
class Session:
    """One client command's run: parsed arguments, stored state and where output goes."""

    args: argparse.Namespace
    paths: ClientPaths
    state: ClientState
    out: TextIO = dataclasses.field(default_factory=lambda: sys.stdout)
    err: TextIO = dataclasses.field(default_factory=lambda: sys.stderr)

    def option(self, name: str) -> str | None:
        """An option that not every command defines (global overrides, mostly)."""
        value = getattr(self.args, name, None)
        return None if value is None else str(value)

    def target(self) -> Target:
        """The server (and index) to talk to: `--url`, else what `wheelwell use` stored."""
        url = self.option("url")
        if url:
            return parse_target(url, self.state.server)
        if self.state.target is None:
            raise UsageError("no server selected; run `wheelwell use URL` or pass --url")
        return self.state.target

    def login(self) -> Login | None:
        return self.state.logins.get(self.target().server)

    def user(self) -> str | None:
        """Who we act as: `--user`, else the stored login."""
        login = self.login()
        return self.option("auth_user") or (login.user if login else None)

    def credentials(self) -> Credentials | None:
        user, password = self.option("auth_user"), self.option("auth_password")
        if user:
            return Credentials(user, password or ask_password(f"password for {user}: "))
        if password:
            raise UsageError("--password needs --user")
        login = self.login()
        return Credentials("__token__", login.token) if login else None

    def api(self) -> Api:
        return Api(self.target().server, self.credentials())

    def index(self, text: str | None = None) -> str:
        """An index as "user/index": given, `--index`, or the current one."""
        text = text or self.option("index")
        if text is None:
            target = self.target()
            if target.index is None:
                raise UsageError(
                    "no index selected; pass --index USER/INDEX or run `wheelwell use`"
                )
            return target.index
        return parse_index_name(text, self.user())

    def save(self, state: ClientState) -> None:
        self.state = state
        save_state(self.paths.state, state)

    def print(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out)

    def warn(self, line: str) -> None:
        """A side note on stderr, so stdout stays what scripts capture."""
        print(line, file=self.err)


def parse_index_name(text: str, user: str | None) -> str:
    """ "user/index", or a bare "index" of the current user."""
    parts = text.strip("/").split("/")
    if len(parts) == 1 and user:
        parts = [user, parts[0]]
    if len(parts) != 2 or not all(_INDEX_SEGMENT.fullmatch(p) for p in parts):
        raise UsageError(f"not an index name: {text!r} (expected USER/INDEX)")
    return "/".join(parts)


def index_path(index: str, *rest: str) -> str:
    """The API path of an index (or something below it)."""
    return render_path(*index.split("/"), *rest)


def ask_password(prompt: str) -> str:
    """Read a password without echo; a closed stdin is a usage error, not a traceback."""
    try:
        password = getpass.getpass(prompt)
    except EOFError:
        raise UsageError("no password given; pass --password") from None
    if not password:
        raise UsageError("empty password")
    return password


def ask_new_password(name: str, given: str | None) -> str:
    """A new password: the option, else asked twice so a typo does not lock anyone out."""
    if given:
        return given
    first = ask_password(f"new password for {name}: ")
    if ask_password("repeat it: ") != first:
        raise UsageError("the passwords do not match")
    return first


def confirm(session: Session, question: str) -> None:
    """Ask before destroying something, unless --yes; without a terminal, --yes is required."""
    if getattr(session.args, "yes", False):
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question}: pass --yes to confirm")
    if input(f"{question}? [y/N] ").strip().lower() not in ("y", "yes"):
        raise UsageError("cancelled")


def parse_duration(text: str) -> int:
    """Seconds from "3600", "90m", "12h", "30d" or "2w"."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match[1]) <= 0:
        raise UsageError(f"not a duration: {text!r} (like 3600, 90m, 12h, 30d, 2w)")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def parse_expiry(value: str | None) -> datetime | None:
    """An expiry as the server sent it (ISO 8601 or epoch seconds); None for never or unknown."""
    if not value:
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def render_expiry(value: str | None) -> str:
    """An expiry for people: ISO 8601 in UTC, or "never"."""
    if not value:
        return "never"
    moment = parse_expiry(value)
    return value if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def render_scalar(value: object) -> str | None:
    """A JSON scalar from the server as we store it (ids and expiries may be numbers)."""
    return None if value is None else str(value)
