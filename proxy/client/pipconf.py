"""Point pip and uv at an index (`use --set-cfg`) and put their config back (`--unset-cfg`).

Each file's original text is kept in the client state. When the file is still exactly as we
left it, `--unset-cfg` writes the original back byte for byte (or removes the file we
created); when the user edited it since, only the keys that still hold our values are reverted.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.client.errors import ConfigEditError
from proxy.client.settings import (
    ClientPaths,
    KeyChange,
    SavedConfig,
    Target,
    load_text,
    save_text,
)

PIP_KEYS = (("global", "index-url"), ("global", "trusted-host"), ("search", "index"))
UV_MARK = "# added by `wheelwell use --set-cfg`; `wheelwell use --unset-cfg` removes it"


@dataclass(frozen=True, slots=True)
class Edit:
    """One planned change to one tool's config file, and what to tell the user about it."""

    tool: str
    path: Path
    text: str | None  #: the new content; None removes the file
    saved: SavedConfig | None  #: the record to keep for `--unset-cfg` (None after unset)
    report: tuple[str, ...]  #: one line per changed key, for the user
    changed: bool


def digest(text: str | None) -> str:
    """The fingerprint we compare to tell whether the user edited a file since we wrote it."""
    return hashlib.sha256(b"" if text is None else text.encode()).hexdigest()


# ---- pip.conf ---------------------------------------------------------------------------


class _PipConfig(configparser.RawConfigParser):
    """pip's own parser class; option names keep their case so rewrites change little."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def _parse_pip(text: str | None, path: Path) -> _PipConfig:
    parser = _PipConfig()
    try:
        parser.read_string(text or "", source=str(path))
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise ConfigEditError(str(path), f"cannot parse it ({first}); not changed") from exc
    return parser


def _render_pip(parser: _PipConfig) -> str:
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def _pip_values(text: str | None, path: Path) -> dict[tuple[str, str], str]:
    parser = _parse_pip(text, path)
    return {(s, k): parser.get(s, k) for s, k in PIP_KEYS if parser.has_option(s, k)}


def render_pip_conf(base: str | None, target: Target, path: Path) -> tuple[str, list[KeyChange]]:
    """pip.conf text pointing at `target`, and the keys changed relative to `base`."""
    parser = _parse_pip(base, path)
    wanted = {("global", "index-url"): target.simple_url}
    hosts = parser.get("global", "trusted-host", fallback="")
    if target.is_plain_http and target.host not in hosts.split():
        wanted[("global", "trusted-host")] = f"{hosts.strip()}\n{target.host}".strip()
    wanted[("search", "index")] = target.index_url + "/"
    changes: list[KeyChange] = []
    for (section, key), value in wanted.items():
        previous = parser.get(section, key, fallback=None)
        if previous == value:
            continue
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, key, value)
        changes.append(KeyChange(section, key, previous, value))
    return _render_pip(parser), changes


def revert_pip_keys(
    current: str, changes: tuple[KeyChange, ...], path: Path
) -> tuple[str, list[str]]:
    """Undo our keys in a file the user edited since; keys they changed are left alone."""
    parser = _parse_pip(current, path)
    notes = []
    for change in changes:
        value = parser.get(change.section, change.key, fallback=None)
        if value != change.ours:
            notes.append(f"left [{change.section}] {change.key} in {path}: changed since --set-cfg")
        elif change.previous is None:
            parser.remove_option(change.section, change.key)
            if not parser.options(change.section):
                parser.remove_section(change.section)
        else:
            parser.set(change.section, change.key, change.previous)
    return _render_pip(parser), notes


def pip_overrides(text: str | None, path: Path) -> list[str]:
    """Other places in pip.conf that set an index, which would hide ours for some commands."""
    parser = _parse_pip(text, path)
    found = []
    for section in parser.sections():
        for option in parser.options(section):
            name = option.lstrip("-").replace("_", "-")
            if name == "index-url" and (section, option) != ("global", "index-url"):
                found.append(f"note: [{section}] {option} in {path} overrides [global] index-url")
    return found


# ---- uv.toml ----------------------------------------------------------------------------


def render_uv_block(url: str) -> str:
    """The one `[[index]]` table we manage, marked so a person sees where it came from."""
    return f"{UV_MARK}\n[[index]]\nurl = {json.dumps(url)}\ndefault = true\n"


def _parse_uv(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigEditError(str(path), f"not valid TOML ({exc}); not changed") from exc


def _check_uv(data: dict[str, Any], path: Path) -> None:
    if "index-url" in data:
        raise ConfigEditError(str(path), "sets index-url already; not changed")
    indexes = data.get("index", [])
    if not isinstance(indexes, list) or not all(isinstance(i, dict) for i in indexes):
        raise ConfigEditError(str(path), "`index` is not an array of tables; not changed")
    for entry in indexes:
        if entry.get("default") is True:
            url = entry.get("url", "?")
            raise ConfigEditError(str(path), f"has a default [[index]] ({url}); not changed")


def render_uv_toml(base: str | None, target: Target, path: Path) -> tuple[str, list[KeyChange]]:
    """uv.toml text with our default `[[index]]` added after everything already there."""
    block = render_uv_block(target.simple_url)
    if base is None or not base.strip():
        return block, [KeyChange("index", "default", None, block)]
    data = _parse_uv(base, path)
    _check_uv(data, path)
    text = base.rstrip("\n") + "\n\n" + block
    try:
        new = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigEditError(
            str(path), f"cannot add [[index]] safely ({exc}); not changed"
        ) from exc
    added = new.get("index", [])[len(data.get("index", [])) :]
    if added != [{"url": target.simple_url, "default": True}]:
        raise ConfigEditError(str(path), "cannot add [[index]] safely; not changed")
    return text, [KeyChange("index", "default", None, block)]


def revert_uv_keys(
    current: str, changes: tuple[KeyChange, ...], path: Path
) -> tuple[str, list[str]]:
    """Remove our `[[index]]` block from a file the user edited since, if it is still intact."""
    notes = []
    for change in changes:
        if "\n" + change.ours in current:
            current = current.replace("\n" + change.ours, "", 1)
        elif change.ours in current:
            current = current.replace(change.ours, "", 1)
        else:
            notes.append(f"left [[index]] in {path}: changed since --set-cfg")
    return current, notes


def uv_default(text: str | None, path: Path) -> str | None:
    """The default index a uv.toml names, for reporting what changed."""
    if not text:
        return None
    entries = _parse_uv(text, path).get("index", [])
    urls = [e.get("url") for e in entries if isinstance(e, dict) and e.get("default") is True]
    return str(urls[0]) if urls else None


# ---- planning and applying ----------------------------------------------------------------

_Render = Callable[[str | None, Target, Path], tuple[str, list[KeyChange]]]
_Revert = Callable[[str, tuple[KeyChange, ...], Path], tuple[str, list[str]]]
_Values = Callable[[str | None, Path], dict[str, str]]


@dataclass(frozen=True, slots=True)
class _Tool:
    name: str
    render: _Render
    revert: _Revert
    values: _Values


def _pip_labelled(text: str | None, path: Path) -> dict[str, str]:
    return {f"[{s}] {k}": v for (s, k), v in _pip_values(text, path).items()}


def _uv_labelled(text: str | None, path: Path) -> dict[str, str]:
    url = uv_default(text, path)
    return {} if url is None else {"[[index]] url (default = true)": url}


TOOLS = {
    "pip": _Tool("pip", render_pip_conf, revert_pip_keys, _pip_labelled),
    "uv": _Tool("uv", render_uv_toml, revert_uv_keys, _uv_labelled),
}


def _describe(path: Path, before: dict[str, str], after: dict[str, str]) -> list[str]:
    lines = []
    for label in sorted(set(before) | set(after)):
        old, new = before.get(label), after.get(label)
        if old == new:
            continue
        shown_old = " ".join((old or "").split())
        if new is None:
            lines.append(f"{path}: removed {label} (was {shown_old})")
        else:
            was = f" (was {shown_old})" if old is not None else " (new)"
            lines.append(f"{path}: {label} = {' '.join(new.split())}{was}")
    return lines


def _restore(current: str | None, saved: SavedConfig, tool: _Tool) -> tuple[str | None, list[str]]:
    """What the file should hold without our changes."""
    path = Path(saved.path)
    if current is not None and digest(current) == saved.written_sha256:
        return saved.original, []
    if current is None:
        return None, [f"{path} was removed since --set-cfg; left as it is"]
    text, notes = tool.revert(current, saved.changes, path)
    if saved.original is None and not text.strip():
        return None, notes
    return text, notes


def _plan_set_one(tool: _Tool, path: Path, prior: SavedConfig | None, target: Target) -> Edit:
    current = load_text(path)
    base, notes = _restore(current, prior, tool) if prior else (current, [])
    text, changes = tool.render(base, target, path)
    record = SavedConfig(tool.name, str(path), base, digest(text), tuple(changes))
    report = notes + _describe(path, tool.values(current, path), tool.values(text, path))
    if tool.name == "pip":
        report += pip_overrides(text, path)
    return Edit(tool.name, path, text, record, tuple(report), changed=text != current)


def plan_set(
    paths: ClientPaths, saved: tuple[SavedConfig, ...], target: Target
) -> list[Edit | ConfigEditError]:
    """The edits that point pip and uv at `target`; a file we cannot edit safely is an error."""
    plans: list[Edit | ConfigEditError] = []
    for name, path in (("pip", paths.pip_conf), ("uv", paths.uv_toml)):
        prior = next((s for s in saved if s.tool == name and Path(s.path) == path), None)
        try:
            plans.append(_plan_set_one(TOOLS[name], path, prior, target))
        except ConfigEditError as exc:
            plans.append(exc)
    return plans


def plan_unset(saved: tuple[SavedConfig, ...]) -> list[Edit | ConfigEditError]:
    """The edits that undo every earlier `--set-cfg`, wherever its files were."""
    plans: list[Edit | ConfigEditError] = []
    for record in saved:
        tool, path = TOOLS[record.tool], Path(record.path)
        try:
            current = load_text(path)
            text, notes = _restore(current, record, tool)
            report = notes + _describe(path, tool.values(current, path), tool.values(text, path))
        except ConfigEditError as exc:
            plans.append(exc)
            continue
        plans.append(Edit(tool.name, path, text, None, tuple(report), changed=text != current))
    return plans


def apply_edit(edit: Edit) -> None:
    """Write (or remove) the file an edit describes."""
    if not edit.changed:
        return
    if edit.text is None:
        edit.path.unlink(missing_ok=True)
    else:
        save_text(edit.path, edit.text)
