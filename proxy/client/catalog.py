"""`index …`, `yank`, `delete` and `upload`: what an index holds and how it behaves."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from proxy.client.errors import UsageError
from proxy.client.session import Session, confirm, index_path
from proxy.client.upload import upload_dir

#: index config keys in the order `index show` prints them
SHOWN_KEYS = (
    "name",
    "type",
    "bases",
    "mirror_url",
    "mirror_whitelist",
    "generate_metadata",
    "volatile",
    "acl_upload",
)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def render_index_body(args: argparse.Namespace) -> dict[str, Any]:
    """The index config keys given on the command line, as the API names them."""
    body: dict[str, Any] = {}
    if args.bases is not None:
        body["bases"] = _split(args.bases)
    if args.mirror_url is not None:
        body["mirror_url"] = args.mirror_url
    if args.whitelist is not None:
        body["mirror_whitelist"] = _split(args.whitelist)
    if args.volatile is not None:
        body["volatile"] = args.volatile
    if args.acl_upload is not None:
        body["acl_upload"] = _split(args.acl_upload)
    if getattr(args, "generate_metadata", None) is not None:
        body["generate_metadata"] = args.generate_metadata
    if getattr(args, "webhooks", None) is not None:
        body["webhooks"] = _webhooks(args.webhooks)
    if getattr(args, "uploadtrigger_jenkins", None) is not None:
        body["uploadtrigger_jenkins"] = args.uploadtrigger_jenkins
    return body


def _webhooks(value: str) -> Any:
    """`--webhooks`: a JSON list, or @FILE holding one (secrets stay out of `ps`)."""
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    try:
        hooks = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--webhooks: not JSON: {exc}") from exc
    if not isinstance(hooks, list):
        raise UsageError('--webhooks: a JSON list, e.g. [{"url": …, "secret": …}]')
    return hooks


def render_index_config(config: dict[str, Any]) -> list[str]:
    """An index's config as `key: value` lines, lists comma-separated."""
    lines = []
    for key in (*SHOWN_KEYS, *sorted(set(config) - set(SHOWN_KEYS))):
        if key not in config:
            continue
        value = config[key]
        if key == "acl_upload" and not value:
            value = "(default: the index's user; root always)"
        elif key == "webhooks" and isinstance(value, list):
            value = "; ".join(_hook_line(h) for h in value) or "(none)"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "(none)"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        lines.append(f"{key}: {value}")
    return lines


def _hook_line(hook: Any) -> str:
    if not isinstance(hook, dict):
        return str(hook)
    return f"{hook.get('url')} ({', '.join(hook.get('events') or [])})"


def _config_of(answer: Any) -> dict[str, Any]:
    result = answer.get("result", answer) if isinstance(answer, dict) else {}
    return result if isinstance(result, dict) else {}


def run_index_create(session: Session) -> int:
    """Create an index; a mirror index must say what it mirrors."""
    index = session.index(session.args.name)
    body = {"type": session.args.type, **render_index_body(session.args)}
    if body["type"] == "mirror" and "mirror_url" not in body:
        raise UsageError("a mirror index needs --mirror-url")
    answer = session.api().fetch_json("PUT", index_path(index), body)
    session.print(f"created index {index}", *render_index_config(_config_of(answer)))
    return 0


def run_index_modify(session: Session) -> int:
    """Change only the settings given, so others stay as they are."""
    index = session.index(session.args.name)
    body = render_index_body(session.args)
    if not body:
        raise UsageError("nothing to change; pass --bases, --whitelist, --volatile, --webhooks, …")
    answer = session.api().fetch_json("PATCH", index_path(index), body)
    session.print(f"changed index {index}", *render_index_config(_config_of(answer)))
    return 0


def run_index_delete(session: Session) -> int:
    """Delete an index after confirmation: its uploads go with it."""
    index = session.index(session.args.name)
    confirm(session, f"delete index {index} and every file uploaded to it")
    session.api().fetch_json("DELETE", index_path(index))
    session.print(f"deleted index {index}")
    return 0


def run_index_show(session: Session) -> int:
    """Show an index's config, the current index by default."""
    index = session.index(session.args.name)
    answer = session.api().fetch_json("GET", index_path(index))
    session.print(*render_index_config(_config_of(answer)))
    return 0


def render_hooks(status: dict[str, Any]) -> list[str]:
    """`index hooks`: each hook, its queue, and its last attempts (newest first)."""
    hooks = [("webhook", h) for h in status.get("webhooks") or []]
    if status.get("jenkins"):
        hooks.append(("jenkins", status["jenkins"]))
    if not hooks:
        return [f"{status.get('index')}: no hooks"]
    lines = []
    for kind, hook in hooks:
        events = ", ".join(hook.get("events") or ["upload"])
        lines.append(f"{kind} {hook.get('url')} ({events})")
        lines.append(
            f"  pending {hook.get('pending', 0)}, delivered {hook.get('delivered', 0)}, "
            f"failed {hook.get('failed', 0)}"
        )
        for attempt in hook.get("attempts") or []:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(attempt.get("at", 0))))
            answer = attempt.get("status") or "-"
            error = attempt.get("error") or "ok"
            lines.append(f"  {when} event {attempt.get('event_id')}: {answer} {error}")
    return lines


def run_index_hooks(session: Session) -> int:
    """Show an index's hooks, what is queued and how the last attempts went."""
    index = session.index(session.args.name)
    status = session.api().fetch_json("GET", index_path(index, "+hooks"))
    session.print(*render_hooks(status if isinstance(status, dict) else {}))
    return 0


def run_yank(session: Session) -> int:
    """Yank (or un-yank) a release: it stays installable by exact pin only (PEP 592)."""
    index = session.index()
    project, version = canonicalize_name(session.args.project), session.args.version
    body: dict[str, Any] = {"yanked": not session.args.undo}
    if session.args.reason and not session.args.undo:
        body["reason"] = session.args.reason
    session.api().fetch_json("PATCH", index_path(index, project, version), body)
    done = "un-yanked" if session.args.undo else "yanked"
    session.print(f"{done} {project} {version} on {index}")
    return 0


def run_delete(session: Session) -> int:
    """Delete a release's files after confirmation (volatile indexes only)."""
    index = session.index()
    project, version = canonicalize_name(session.args.project), session.args.version
    confirm(session, f"delete every file of {project} {version} from {index}")
    session.api().fetch_json("DELETE", index_path(index, project, version))
    session.print(f"deleted {project} {version} from {index}")
    return 0


def run_upload(session: Session) -> int:
    """Upload what a directory holds and the index lacks; 1 when any file failed."""
    index = session.index()
    directory = Path(session.args.from_dir)
    tally = upload_dir(session.api(), index, directory, session.args.recursive, session.out)
    return 1 if tally.failed else 0
