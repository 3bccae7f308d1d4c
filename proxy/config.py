"""Configuration: a frozen dataclass tree loaded from YAML; every error says file:line:col."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml

from proxy.errors import ConfigError, InvalidNameError
from proxy.model import parse_index_name

_DURATION = "duration"
_SIZE = "size"
Seconds = Annotated[float, _DURATION]
ByteSize = Annotated[int, _SIZE]


class IndexKind(StrEnum):
    MIRROR = "mirror"
    PRIVATE = "private"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 3141
    shutdown_timeout: Seconds = 20.0
    default_index: str = "root/pypi"  #: what /simple/ serves


@dataclass(frozen=True, slots=True)
class StorageConfig:
    data_dir: Path = Path("data")
    #: upper bound for cached mirror files (e.g. 50GB); 0 means unbounded. Hosted files never count
    max_size: ByteSize = 0
    wheelhouse_poll: Seconds = 2.0  #: how often wheelhouse directories are looked at


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str = ""  #: empty: the index pip on this machine uses, resolved at start-up
    #: HTTP proxy for upstream requests; empty: HTTPS_PROXY/HTTP_PROXY/NO_PROXY, read at start-up
    proxy: str = ""
    #: never contact the upstream: serve what is cached (stale pages too), 503 for the rest
    offline: bool = False
    #: after this many failures in a row, stop asking the upstream for `offline_retry` seconds
    failure_threshold: int = 3
    offline_retry: Seconds = 30.0
    connect_timeout: Seconds = 10.0
    read_timeout: Seconds = 30.0
    retries: int = 2
    backoff: Seconds = 0.25
    page_ttl: Seconds = 600.0
    not_found_ttl: Seconds = 60.0


@dataclass(frozen=True, slots=True)
class IndexConfig:
    name: str
    kind: IndexKind = IndexKind.PRIVATE
    bases: tuple[str, ...] = ()
    upstream: str = ""  #: mirror only; empty means the top-level upstream.url
    mirror_whitelist: tuple[str, ...] = ()
    volatile: bool = True
    wheelhouse: tuple[Path, ...] = ()
    #: users who may upload besides root; empty means the index's own user
    acl_upload: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthConfig:
    #: set from WHEELWELL_ROOT_PASSWORD in load(); empty: generate one at first start
    root_password: str = ""
    max_upload_size: ByteSize = 1024**3
    token_lifetime: Seconds = 90 * 86400.0  #: default lifetime of tokens made by /+login


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "INFO"
    format: LogFormat = LogFormat.TEXT


def _default_indexes() -> tuple[IndexConfig, ...]:
    return (
        IndexConfig(name="root/pypi", kind=IndexKind.MIRROR),
        IndexConfig(name="root/public", kind=IndexKind.PRIVATE, bases=("root/pypi",)),
    )


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    indexes: tuple[IndexConfig, ...] = field(default_factory=_default_indexes)
    auth: AuthConfig = field(default_factory=AuthConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str = "<defaults>"  #: where this config came from, for messages

    def index(self, name: str) -> IndexConfig | None:
        return next((i for i in self.indexes if i.name == name), None)

    def upstream_url(self, index: IndexConfig) -> str:
        return index.upstream or self.upstream.url


# ---- scalar helpers --------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


def parse_duration(value: object) -> float:
    """`30`, `30s`, `1.5m`, `250ms`, `2h` → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 10m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a duration like 30s, 10m, 250ms; got {value!r}")
        return float(value)
    match = _DURATION_RE.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like 30s, 10m, 250ms; got {value!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: object) -> int:
    """`1024`, `512MB`, `10GiB` → bytes (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 10GiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a size like 500MB or 10GiB; got {value!r}")
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"expected a size like 500MB or 10GiB; got {value!r}")
    unit = (match.group(2) or "B").upper()
    power = "BKMGT".index(unit[0])
    base = 1024 if "I" in unit else 1000
    return int(float(match.group(1)) * base**power)


# ---- the generic YAML → dataclass converter --------------------------------------------------


class _Converter:
    """Walks composed YAML nodes along dataclass type hints, collecting problems with marks."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.marks: dict[str, yaml.Mark] = {}

    def problem(self, node: yaml.Node | None, path: str, message: str) -> None:
        where = self.source
        if node is not None:
            where += f":{node.start_mark.line + 1}:{node.start_mark.column + 1}"
        self.problems.append(f"{where}: {path or '<top>'}: {message}")

    def convert(self, node: yaml.Node, hint: Any, path: str) -> Any:
        self.marks[path] = node.start_mark
        origin = typing.get_origin(hint)
        if origin is Annotated:
            base, *extras = typing.get_args(hint)
            return self._scalar(node, path, base, extras[0])
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return self._dataclass(node, hint, path)
        if origin is tuple:
            item_hint = typing.get_args(hint)[0]
            if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
                return ()
            if not isinstance(node, yaml.SequenceNode):
                self.problem(node, path, "expected a list")
                return ()
            items = (
                self.convert(item, item_hint, f"{path}[{i}]") for i, item in enumerate(node.value)
            )
            return tuple(item for item in items if item is not None)
        return self._scalar(node, path, hint, None)

    def _dataclass(self, node: yaml.Node, cls: type, path: str) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            node = yaml.MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, "expected a mapping")
            return None
        hints = typing.get_type_hints(cls, include_extras=True)
        known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
        values: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint_text = f" (did you mean '{close[0]}'?)" if close else ""
                self.problem(key_node, sub, f"unknown key{hint_text}")
                continue
            values[key] = self.convert(value_node, hints[key], sub)
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        for name in required:
            if name not in values:
                self.problem(node, f"{path}.{name}" if path else name, "missing required key")
                return None
        try:
            return cls(**{k: v for k, v in values.items() if v is not None})
        except (TypeError, ValueError) as exc:
            self.problem(node, path, str(exc))
            return None

    def _scalar(self, node: yaml.Node, path: str, hint: Any, kind: str | None) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, path, "expected a single value")
            return None
        raw = yaml.safe_load(yaml.serialize(node))
        try:
            return _coerce(raw, hint, kind)
        except (TypeError, ValueError) as exc:
            self.problem(node, path, str(exc))
            return None


def _coerce(raw: object, hint: Any, kind: str | None) -> object:
    if raw is None:
        return None
    if kind == _DURATION:
        return parse_duration(raw)
    if kind == _SIZE:
        return parse_size(raw)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        choices = [m.value for m in hint]
        if str(raw) not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}; got {raw!r}")
        return hint(str(raw))
    if hint is bool:
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false; got {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"expected an integer; got {raw!r}")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError(f"expected a number; got {raw!r}")
        return float(raw)
    if hint is Path:
        return Path(str(raw))
    if hint is str:
        if isinstance(raw, dict | list):
            raise ValueError("expected a string")
        return str(raw)
    if isinstance(hint, types.UnionType):
        return raw
    raise TypeError(f"unsupported config type {hint!r}")


# ---- validation ------------------------------------------------------------------------------


def validate(cfg: Config, marks: Mapping[str, yaml.Mark] | None = None) -> list[str]:
    """Cross-field checks; every problem is reported, each with its location when known."""
    marks = marks or {}
    problems: list[str] = []

    def report(path: str, message: str) -> None:
        mark = marks.get(path)
        where = cfg.source if mark is None else f"{cfg.source}:{mark.line + 1}:{mark.column + 1}"
        problems.append(f"{where}: {path}: {message}")

    names = [i.name for i in cfg.indexes]
    for n, index in enumerate(cfg.indexes):
        user, _, rest = index.name.partition("/")
        try:
            parse_index_name(user, rest)
        except InvalidNameError:
            report(f"indexes[{n}].name", f"'{index.name}' is not of the form user/index")
        if names.count(index.name) > 1 and names.index(index.name) != n:
            report(f"indexes[{n}].name", f"duplicate index '{index.name}'")
        for b, base in enumerate(index.bases):
            if base not in names:
                close = difflib.get_close_matches(base, names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                report(f"indexes[{n}].bases[{b}]", f"unknown index '{base}'{hint}")
            elif base == index.name:
                report(f"indexes[{n}].bases[{b}]", "an index cannot be its own base")
        if index.kind is IndexKind.MIRROR:
            if index.bases:
                report(f"indexes[{n}].bases", "a mirror index has no bases")
            if index.upstream and urlsplit(index.upstream).scheme not in {"http", "https"}:
                report(f"indexes[{n}].upstream", f"'{index.upstream}' is not an http(s) URL")
        elif index.upstream:
            report(f"indexes[{n}].upstream", "only mirror indexes have an upstream")
    cycle = _find_cycle(cfg)
    if cycle:
        report("indexes", "bases form a cycle: " + " -> ".join(cycle))
    if cfg.server.default_index not in names:
        report("server.default_index", f"unknown index '{cfg.server.default_index}'")
    if not 0 <= cfg.server.port <= 65535:
        report("server.port", f"{cfg.server.port} is not a TCP port")
    if cfg.upstream.url and urlsplit(cfg.upstream.url).scheme not in {"http", "https"}:
        report("upstream.url", f"'{cfg.upstream.url}' is not an http(s) URL")
    if cfg.upstream.retries < 0:
        report("upstream.retries", "must be 0 or more")
    if cfg.logging.level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        report("logging.level", f"unknown level '{cfg.logging.level}'")
    return problems


def _find_cycle(cfg: Config) -> list[str]:
    graph = {i.name: i.bases for i in cfg.indexes}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str]:
        state[node] = 1
        for base in graph.get(node, ()):
            if state.get(base) == 1:
                return [*trail, node, base]
            if base in graph and state.get(base) is None:
                found = visit(base, [*trail, node])
                if found:
                    return found
        state[node] = 2
        return []

    for name in graph:
        if state.get(name) is None:
            found = visit(name, [])
            if found:
                return found
    return []


# ---- loading ---------------------------------------------------------------------------------


def parse_config(text: str, source: str) -> Config:
    """YAML text → validated Config (the upstream URL is left as written)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from exc
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
        return Config(source=source)
    converter = _Converter(source)
    cfg = converter.convert(node, Config, "")
    if cfg is None:
        raise ConfigError(converter.problems or [f"{source}: not a configuration mapping"])
    cfg = dataclasses.replace(cfg, source=source)
    problems = converter.problems + validate(cfg, converter.marks)
    if problems:
        raise ConfigError(problems)
    return typing.cast(Config, cfg)


def pip_index_url(env: Mapping[str, str]) -> str:
    """The index pip would use here: PIP_INDEX_URL, pip's config files, else pip's default."""
    if env.get("PIP_INDEX_URL"):
        return env["PIP_INDEX_URL"].split()[0]
    from pip._internal.configuration import Configuration
    from pip._internal.exceptions import ConfigurationError
    from pip._internal.models.index import PyPI

    try:
        configuration = Configuration(isolated=False)
        configuration.load()
        values = dict(configuration.items())
    except (ConfigurationError, OSError):
        values = {}
    for key in (":env:.index-url", "install.index-url", "global.index-url"):
        value = values.get(key)
        if isinstance(value, str) and value.strip():
            return value.split()[0]
    return str(PyPI.simple_url)


def load(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults < YAML (arg, else WHEELWELL_CONFIG) < WHEELWELL_<SECTION>_<KEY>; settle upstream.

    The CLI's --host/--port/--data-dir/--upstream are applied after this, so they win.
    """
    env = os.environ if env is None else env
    if path is None and env.get("WHEELWELL_CONFIG"):
        path = Path(env["WHEELWELL_CONFIG"])
    if path is None:
        cfg = Config()
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from exc
        cfg = parse_config(text, str(path))
    cfg = _env_overrides(cfg, env)
    if not cfg.upstream.url:
        upstream = dataclasses.replace(cfg.upstream, url=pip_index_url(env))
        cfg = dataclasses.replace(cfg, upstream=upstream)
    if not cfg.upstream.proxy:
        proxy = env_proxy(cfg.upstream.url, env)
        cfg = dataclasses.replace(cfg, upstream=dataclasses.replace(cfg.upstream, proxy=proxy))
    if env.get("WHEELWELL_ROOT_PASSWORD"):
        auth = dataclasses.replace(cfg.auth, root_password=env["WHEELWELL_ROOT_PASSWORD"])
        cfg = dataclasses.replace(cfg, auth=auth)
    return cfg


def env_proxy(url: str, env: Mapping[str, str]) -> str:
    """The proxy the environment sets for `url`, settled once: per request it costs a thread hop."""
    parts = urlsplit(url)
    lowered = {k.lower(): v for k, v in env.items()}
    no_proxy = lowered.get("no_proxy", "")
    host = parts.hostname or ""
    for entry in (e.strip().lstrip(".") for e in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return ""
    return lowered.get(f"{parts.scheme}_proxy", "") or lowered.get("all_proxy", "")


def _env_overrides(cfg: Config, env: Mapping[str, str]) -> Config:
    """WHEELWELL_<SECTION>_<KEY> sets any scalar setting (containers); errors name the variable."""
    problems: list[str] = []
    sections: dict[str, Any] = {}
    for section in dataclasses.fields(Config):
        value = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            continue
        hints = typing.get_type_hints(type(value), include_extras=True)
        changes: dict[str, Any] = {}
        for item in dataclasses.fields(value):
            var = f"WHEELWELL_{section.name}_{item.name}".upper()
            if var not in env or var == "WHEELWELL_AUTH_ROOT_PASSWORD":
                continue
            hint = hints[item.name]
            kind = None
            if typing.get_origin(hint) is Annotated:
                hint, kind = typing.get_args(hint)[0], typing.get_args(hint)[1]
            try:
                raw = yaml.safe_load(env[var]) if hint is not str else env[var]
                changes[item.name] = _coerce(raw, hint, kind)
            except (TypeError, ValueError, yaml.YAMLError) as exc:
                problems.append(f"environment: {var}: {exc}")
        if changes:
            sections[section.name] = dataclasses.replace(value, **changes)
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(cfg, **sections) if sections else cfg
