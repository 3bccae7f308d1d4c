"""YAML → typed dataclasses, generically: type hints drive conversion, nodes keep their marks.

Kept apart from config.py, which holds the configuration's shape and rules; this module knows
nothing about wheelwell's settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml

DURATION = "duration"
SIZE = "size"
Seconds = Annotated[float, DURATION]
ByteSize = Annotated[int, SIZE]


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


class Converter:
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
            return coerce(raw, hint, kind)
        except (TypeError, ValueError) as exc:
            self.problem(node, path, str(exc))
            return None


def coerce(raw: object, hint: Any, kind: str | None) -> object:
    if raw is None:
        return None
    if kind == DURATION:
        return parse_duration(raw)
    if kind == SIZE:
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
