"""The client's own state (server, index, logins, config backups) and where its files live.

This module is the one place the client reads the environment: `load_paths()` turns
`$XDG_CONFIG_HOME`, `$PIP_CONFIG_FILE` and `$HOME` into paths once, and everything else
receives a `ClientPaths`; `load_child_environment()` gives a child process (tox) the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from proxy.client.errors import ConfigEditError, UsageError

STATE_VERSION = 1
_TARGET_HELP = "expected http[s]://HOST[:PORT] or http[s]://HOST[:PORT]/USER/INDEX"


@dataclass(frozen=True, slots=True)
class ClientPaths:
    """Every file the client reads or writes, resolved from the environment once."""

    state: Path  #: the client's own JSON state, mode 0600 because it holds tokens
    pip_conf: Path  #: $PIP_CONFIG_FILE, else $XDG_CONFIG_HOME/pip/pip.conf
    uv_toml: Path  #: $XDG_CONFIG_HOME/uv/uv.toml


def parse_paths(environ: Mapping[str, str], home: Path) -> ClientPaths:
    """Where pip, uv and the client keep user config, by the rules each tool documents."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    # the XDG spec says relative values are invalid and must be ignored
    config_home = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".config"
    pip_file = environ.get("PIP_CONFIG_FILE", "")
    return ClientPaths(
        state=config_home / "wheelwell" / "client.json",
        pip_conf=Path(pip_file) if pip_file else config_home / "pip" / "pip.conf",
        uv_toml=config_home / "uv" / "uv.toml",
    )


def load_paths() -> ClientPaths:
    """The client's paths for this process's environment."""
    home = os.environ.get("HOME")
    return parse_paths(os.environ, Path(home) if home else Path.home())


def load_child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with `extra` set: what `wheelwell test` runs tox with."""
    return {**os.environ, **extra}


@dataclass(frozen=True, slots=True)
class Target:
    """A server root, and optionally one index on it, as the user named them."""

    server: str  #: scheme://host[:port][/prefix], without a trailing slash
    index: str | None = None  #: "user/index"

    @property
    def index_url(self) -> str:
        """The index's own URL, `SERVER/USER/INDEX` (no trailing slash)."""
        if self.index is None:
            raise UsageError(f"no index selected on {self.server}; run `wheelwell use URL`")
        return f"{self.server}/{self.index}"

    @property
    def simple_url(self) -> str:
        return f"{self.index_url}/+simple/"

    @property
    def host(self) -> str:
        return urlsplit(self.server).hostname or ""

    @property
    def is_plain_http(self) -> bool:
        return self.server.startswith("http://")


def parse_target(text: str, current_server: str | None = None) -> Target:
    """Read a server or index URL; a bare `user/index` means an index on the current server."""
    text = text.strip()
    if "://" not in text:
        parts = text.strip("/").split("/")
        if current_server and len(parts) == 2 and all(_plain_segment(p) for p in parts):
            return Target(current_server, "/".join(parts))
        raise UsageError(f"not a server or index URL: {text!r} ({_TARGET_HELP})")
    url = urlsplit(text)
    if url.scheme.lower() not in ("http", "https") or not url.hostname:
        raise UsageError(f"not a server or index URL: {text!r} ({_TARGET_HELP})")
    if url.username is not None or url.password is not None:
        raise UsageError("remove the credentials from the URL and use `wheelwell login`")
    if url.query or url.fragment:
        raise UsageError(f"unexpected query or fragment in {text!r} ({_TARGET_HELP})")
    segments = [s for s in url.path.split("/") if s]
    if segments and segments[-1] == "+simple":
        segments.pop()
    if len(segments) == 1 or not all(_plain_segment(s) for s in segments):
        raise UsageError(f"not a server or index URL: {text!r} ({_TARGET_HELP})")
    prefix = "".join(f"/{s}" for s in segments[:-2])
    server = f"{url.scheme.lower()}://{url.netloc.lower()}{prefix}"
    return Target(server, "/".join(segments[-2:]) if segments else None)


def _plain_segment(segment: str) -> bool:
    return bool(segment) and not segment.startswith(("+", ".")) and "@" not in segment


@dataclass(frozen=True, slots=True)
class Login:
    """A token the server issued at `wheelwell login`, kept so later commands can write."""

    user: str
    token: str
    token_id: str | None = None
    expires: str | None = None  #: as the server sent it (ISO 8601 or epoch seconds)


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One key `use --set-cfg` wrote, with what was there before (None: absent)."""

    section: str
    key: str
    previous: str | None
    ours: str


@dataclass(frozen=True, slots=True)
class SavedConfig:
    """What a pip/uv config file held before `use --set-cfg`, so `--unset-cfg` can restore it."""

    tool: str  #: "pip" or "uv"
    path: str
    original: str | None  #: the whole file before our first change; None: there was none
    written_sha256: str  #: the file as we left it; a mismatch means the user edited it since
    changes: tuple[KeyChange, ...]


@dataclass(frozen=True, slots=True)
class ClientState:
    """Everything the client remembers between runs."""

    server: str | None = None
    index: str | None = None
    logins: Mapping[str, Login] = field(default_factory=dict)  #: by server root
    saved: tuple[SavedConfig, ...] = ()

    @property
    def target(self) -> Target | None:
        return None if self.server is None else Target(self.server, self.index)

    def with_login(self, server: str, login: Login | None) -> ClientState:
        """A copy with the login for `server` replaced (or forgotten when None)."""
        logins = {k: v for k, v in self.logins.items() if k != server}
        if login is not None:
            logins[server] = login
        return dataclasses.replace(self, logins=logins)


def render_state(state: ClientState) -> str:
    """The state as the JSON we store."""
    data = dataclasses.asdict(state)
    data["logins"] = {k: dataclasses.asdict(v) for k, v in state.logins.items()}
    return json.dumps({"version": STATE_VERSION, **data}, indent=2, sort_keys=True) + "\n"


def parse_state(text: str) -> ClientState:
    """Read stored state; unknown keys are ignored so older clients can read newer files."""
    data: dict[str, Any] = json.loads(text)
    saved = tuple(
        SavedConfig(
            tool=s["tool"],
            path=s["path"],
            original=s["original"],
            written_sha256=s["written_sha256"],
            changes=tuple(KeyChange(**c) for c in s["changes"]),
        )
        for s in data.get("saved", ())
    )
    logins = {k: Login(**v) for k, v in data.get("logins", {}).items()}
    return ClientState(data.get("server"), data.get("index"), logins, saved)


def load_state(path: Path) -> ClientState:
    """The stored state, or an empty one before the first `wheelwell use`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ClientState()
    try:
        return parse_state(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is damaged ({exc}); fix or remove it") from exc


def save_state(path: Path, state: ClientState) -> None:
    """Store the state readable by its owner only, since it holds API tokens."""
    save_text(path, render_state(state), mode=0o600)


def save_text(path: Path, text: str, mode: int | None = None) -> None:
    """Replace a file atomically; keep its current mode unless `mode` is given."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), mode)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


def load_text(path: Path) -> str | None:
    """A config file's text, or None when it does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise ConfigEditError(str(path), f"not UTF-8 text ({exc.reason}); not changed") from exc
