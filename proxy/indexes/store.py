"""Index configurations that outlive a restart: YAML-declared ones plus those made at run time.

At start the YAML's indexes are written over their stored versions (the file is the operator's
word); indexes created through the API live in SQLite. Every change is one changelog entry.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from proxy.config import (
    ANONYMOUS,
    HookEvent,
    IndexConfig,
    IndexKind,
    IndexProblem,
    IndexRule,
    WebhookConfig,
    check_indexes,
)
from proxy.errors import ConflictError, InvalidInputError, InvalidNameError
from proxy.indexes.registry import IndexRegistry
from proxy.model import mask_url, normalize
from proxy.storage.changes import IndexDeleted, IndexSaved
from proxy.storage.db import Database

log = logging.getLogger(__name__)

#: raises InvalidInputError when a mirror's upstream address, or a hook's, is denied
MirrorCheck = Callable[[IndexConfig], Awaitable[None]]

_API_KEYS = {
    "type",
    "bases",
    "mirror_whitelist",
    "volatile",
    "acl_upload",
    "acl_read",
    "acl_toxresult_upload",
    "mirror_url",
    "generate_metadata",
    "webhooks",
    "uploadtrigger_jenkins",
}


def to_record(cfg: IndexConfig) -> dict[str, Any]:
    """The stored (and changelog) form: every field, plain JSON."""
    data = dataclasses.asdict(cfg)
    data["kind"] = cfg.kind.value
    data["wheelhouse"] = [str(p) for p in cfg.wheelhouse]
    return data


def from_record(data: Mapping[str, Any]) -> IndexConfig:
    return IndexConfig(
        name=data["name"],
        kind=IndexKind(data["kind"]),
        bases=tuple(data.get("bases", ())),
        upstream=data.get("upstream", ""),
        mirror_whitelist=tuple(data.get("mirror_whitelist", ())),
        volatile=bool(data.get("volatile", True)),
        wheelhouse=tuple(Path(p) for p in data.get("wheelhouse", ())),
        acl_upload=tuple(data.get("acl_upload", ())),
        acl_read=tuple(data.get("acl_read", (ANONYMOUS,))),
        acl_toxresult_upload=tuple(data.get("acl_toxresult_upload", (ANONYMOUS,))),
        generate_metadata=bool(data.get("generate_metadata", True)),
        webhooks=tuple(_webhook_record(h) for h in data.get("webhooks", ())),
        uploadtrigger_jenkins=data.get("uploadtrigger_jenkins", ""),
    )


def _webhook_record(data: Mapping[str, Any]) -> WebhookConfig:
    return WebhookConfig(
        url=data["url"],
        secret=data["secret"],
        events=tuple(HookEvent(e) for e in data.get("events", tuple(HookEvent))),
    )


#: what GET shows instead of a hook's secret; sent back in a PATCH, it keeps the stored one
MASK = "***"


def show_webhook(hook: WebhookConfig) -> dict[str, Any]:
    """A webhook as responses show it: the secret masked, credentials in the URL too."""
    return {"url": mask_url(hook.url), "secret": MASK, "events": [e.value for e in hook.events]}


def to_api(cfg: IndexConfig, default_upstream: str) -> dict[str, Any]:
    """The devpi-like JSON shape that GET /{user}/{index} returns."""
    data: dict[str, Any] = {
        "name": cfg.name,
        "type": cfg.kind.value,
        "bases": list(cfg.bases),
        "mirror_whitelist": list(cfg.mirror_whitelist),
        "volatile": cfg.volatile,
        "acl_upload": list(cfg.acl_upload),
        "acl_read": list(cfg.acl_read),
    }
    if cfg.kind is IndexKind.PRIVATE:
        data["acl_toxresult_upload"] = list(cfg.acl_toxresult_upload)
    if cfg.kind is IndexKind.MIRROR:
        data["mirror_url"] = mask_url(cfg.upstream or default_upstream)
        data["generate_metadata"] = cfg.generate_metadata
    else:
        data["webhooks"] = [show_webhook(h) for h in cfg.webhooks]
        data["uploadtrigger_jenkins"] = mask_url(cfg.uploadtrigger_jenkins)
    return data


def _str_list(data: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"'{key}' must be a list of strings")
    return tuple(v.strip() for v in value)


def from_api(name: str, data: Any, current: IndexConfig | None) -> IndexConfig:
    """Validate a PUT/PATCH body into a config; `current` is the one being patched."""
    if not isinstance(data, dict):
        raise InvalidInputError("expected a JSON object")
    unknown = set(data) - _API_KEYS
    if unknown:
        raise InvalidInputError(f"unknown keys: {', '.join(sorted(unknown))}")
    cfg = current or IndexConfig(name=name)
    changes: dict[str, Any] = {}
    if "type" in data:
        if current is not None and data["type"] != current.kind.value:
            raise InvalidInputError("an index's type cannot change; delete and create it")
        try:
            changes["kind"] = IndexKind(data["type"])
        except ValueError as exc:
            raise InvalidInputError(
                f"'type' must be private or mirror, not {data['type']!r}"
            ) from exc
    for key in ("bases", "mirror_whitelist", "acl_upload", "acl_read", "acl_toxresult_upload"):
        values = _str_list(data, key)
        if values is not None:
            changes[key] = values
    if "mirror_whitelist" in changes:
        changes["mirror_whitelist"] = tuple(
            v if v == "*" else normalize(v) for v in changes["mirror_whitelist"]
        )
    if "volatile" in data:
        if not isinstance(data["volatile"], bool):
            raise InvalidInputError("'volatile' must be true or false")
        changes["volatile"] = data["volatile"]
    if "generate_metadata" in data:
        if not isinstance(data["generate_metadata"], bool):
            raise InvalidInputError("'generate_metadata' must be true or false")
        changes["generate_metadata"] = data["generate_metadata"]
    if "mirror_url" in data:
        url = data["mirror_url"]
        if not isinstance(url, str) or urlsplit(url).scheme not in {"http", "https"}:
            raise InvalidInputError("'mirror_url' must be an http(s) URL")
        changes["upstream"] = url
    if "webhooks" in data:
        changes["webhooks"] = _webhooks(data["webhooks"], cfg.webhooks)
    if "uploadtrigger_jenkins" in data:
        changes["uploadtrigger_jenkins"] = _jenkins(data["uploadtrigger_jenkins"], cfg)
    cfg = dataclasses.replace(cfg, **changes)
    for problem in check_indexes([cfg]):
        if problem.rule in _OWN_FIELD_RULES:  # the bases are checked against the rest on save
            raise _api_error(problem)
    return cfg


def _webhooks(value: Any, current: tuple[WebhookConfig, ...]) -> tuple[WebhookConfig, ...]:
    """`webhooks`: a list of {url, secret, events} (devpi-client sends it as JSON text).

    A secret sent back masked (as GET shows it) keeps the stored secret of the hook with that
    URL, so a GET edited and PATCHed back never loses or leaks one.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError as exc:
            raise InvalidInputError("'webhooks' must be a JSON list of objects") from exc
    if not isinstance(value, list):
        raise InvalidInputError("'webhooks' must be a list of {url, secret, events} objects")
    kept = {mask_url(h.url): h for h in current}
    hooks = []
    for n, item in enumerate(value):
        where = f"webhooks[{n}]"
        if not isinstance(item, dict):
            raise InvalidInputError(f"'{where}' must be an object with url, secret, events")
        unknown = set(item) - {"url", "secret", "events"}
        if unknown:
            raise InvalidInputError(f"'{where}': unknown keys: {', '.join(sorted(unknown))}")
        url, secret = item.get("url"), item.get("secret")
        if not isinstance(url, str) or urlsplit(url).scheme not in {"http", "https"}:
            raise InvalidInputError(f"'{where}.url' must be an http(s) URL")
        stored = kept.get(url)
        if stored is not None:  # as GET showed it: a masked URL or secret stays as stored
            url, secret = stored.url, stored.secret if secret == MASK else secret
        if not isinstance(secret, str) or not secret or secret == MASK:
            raise InvalidInputError(f"'{where}.secret' is required (the HMAC-SHA256 key)")
        hooks.append(WebhookConfig(url=url, secret=secret, events=_events(item, where)))
    if len({h.url for h in hooks}) != len(hooks):
        raise InvalidInputError("'webhooks': each url once")
    return tuple(hooks)


def _events(item: dict[str, Any], where: str) -> tuple[HookEvent, ...]:
    events = item.get("events")
    if events is None:
        return tuple(HookEvent)
    known = ", ".join(e.value for e in HookEvent)
    if not isinstance(events, list) or not events:
        raise InvalidInputError(f"'{where}.events' must be a non-empty list of: {known}")
    try:
        return tuple(dict.fromkeys(HookEvent(e) for e in events))
    except ValueError as exc:
        raise InvalidInputError(f"'{where}.events': {exc}; known: {known}") from exc


def _jenkins(value: Any, current: IndexConfig) -> str:
    """`uploadtrigger_jenkins`: a URL; its masked form (as GET shows it) keeps the stored one."""
    if not isinstance(value, str):
        raise InvalidInputError("'uploadtrigger_jenkins' must be a URL string (empty: none)")
    if value and value == mask_url(current.uploadtrigger_jenkins):
        return current.uploadtrigger_jenkins
    return value


#: the rules of config.check_indexes a PUT/PATCH body is checked for before any other index
_OWN_FIELD_RULES = {
    IndexRule.MIRROR_BASES,
    IndexRule.PRIVATE_UPSTREAM,
    IndexRule.BAD_UPSTREAM,
    IndexRule.BAD_ACL,
    IndexRule.BAD_HOOK,
}


def _api_error(problem: IndexProblem) -> InvalidInputError:
    """A broken index rule in the API's words (the YAML check words them for a file)."""
    match problem.rule:
        case IndexRule.NAME:
            user, _, index = problem.subject.partition("/")
            return InvalidNameError(f"{user}/{index}", "not a valid user/index name")
        case IndexRule.UNKNOWN_BASE:
            return InvalidInputError(f"unknown base index '{problem.subject}'")
        case IndexRule.OWN_BASE:
            return InvalidInputError("an index cannot be its own base")
        case IndexRule.MIRROR_BASES:
            return InvalidInputError("a mirror index has no bases")
        case IndexRule.PRIVATE_UPSTREAM:
            return InvalidInputError("only mirror indexes have a mirror_url")
        case IndexRule.BAD_UPSTREAM:
            return InvalidInputError("'mirror_url' must be an http(s) URL")
        case IndexRule.CYCLE:
            return InvalidInputError("bases form a cycle: " + problem.subject)
        case IndexRule.BAD_ACL:
            key = problem.path.partition("[")[0]
            return InvalidInputError(
                f"'{key}': '{problem.subject}' is not a user name, :ANONYMOUS: or :AUTHENTICATED:"
            )
        case IndexRule.BAD_HOOK:
            return InvalidInputError(problem.message)
        case IndexRule.DUPLICATE:
            return InvalidInputError(f"index '{problem.subject}' exists; change it with PATCH")


class IndexStore:
    """Validates, persists and applies index configurations."""

    def __init__(
        self, db: Database, registry: IndexRegistry, check_mirror: MirrorCheck | None = None
    ) -> None:
        self.db = db
        self.registry = registry
        self.check_mirror = check_mirror  #: the upstream address policy, for API saves

    async def load(self, declared: tuple[IndexConfig, ...]) -> None:
        rows = await self.db.read(lambda c: c.execute("SELECT config FROM indexes").fetchall())
        stored = {cfg.name: cfg for cfg in (from_record(json.loads(r[0])) for r in rows)}
        for cfg in declared:
            if stored.get(cfg.name) != cfg:
                await self._write(cfg)
                stored[cfg.name] = cfg
        for cfg in stored.values():
            self.registry.put(cfg)

    def check(self, cfg: IndexConfig) -> None:
        """The index rules, against the configs as they would be; the first problem raises."""
        configs = {**self.registry.configs, cfg.name: cfg}
        problems = check_indexes(list(configs.values()), only=cfg.name)
        if problems:
            raise _api_error(problems[0])

    async def _write(self, cfg: IndexConfig) -> None:
        await self.db.commit(IndexSaved(name=cfg.name, config=to_record(cfg)))

    async def reload(self, declared: tuple[IndexConfig, ...]) -> list[str]:
        """Apply the YAML's indexes again (SIGHUP): new and changed ones; never deletes one."""
        changed = [cfg for cfg in declared if self.registry.configs.get(cfg.name) != cfg]
        order = {cfg.name: n for n, cfg in enumerate(declared)}
        for cfg in sorted(changed, key=lambda c: order[c.name]):  # the file's order: bases first
            await self._save(cfg)  # the file is the operator's word: no address check here
        return [cfg.name for cfg in changed]

    async def save(self, cfg: IndexConfig) -> None:
        """An API save: the index rules, then its mirror or hook addresses (400 when denied)."""
        self.check(cfg)
        if self.check_mirror is not None:
            await self.check_mirror(cfg)
        await self._save(cfg)

    async def _save(self, cfg: IndexConfig) -> None:
        self.check(cfg)
        await self._write(cfg)
        self.registry.put(cfg)
        log.info("index %s saved", cfg.name, extra={"index": cfg.name})

    async def delete(self, name: str) -> None:
        self.registry.config(name)
        users = [c.name for c in self.registry.configs.values() if name in c.bases]
        if users:
            raise ConflictError(f"index '{name}' is a base of {', '.join(sorted(users))}")
        await self.db.commit(IndexDeleted(name=name))
        self.registry.remove(name)
        log.info("index %s deleted", name, extra={"index": name})
