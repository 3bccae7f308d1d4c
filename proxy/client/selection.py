"""`wheelwell use`: choose the current index, and point pip and uv at it or back again."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from proxy.client.api import Api
from proxy.client.errors import ConfigEditError, UsageError
from proxy.client.pipconf import Edit, apply_edit, plan_set, plan_unset
from proxy.client.session import Session, index_path, parse_expiry, render_expiry
from proxy.client.settings import SavedConfig, Target, parse_target


def run_use(session: Session) -> int:
    """Store a new current index (checked on the server first), then edit or show config."""
    if session.args.target:
        target = parse_target(session.args.target, session.state.server)
        if target.index is not None:
            # fail now on a typo, rather than at the next pip install
            Api(target.server).fetch_json("GET", index_path(target.index))
        session.save(dataclasses.replace(session.state, server=target.server, index=target.index))
    failed = False
    if session.args.set_cfg:
        failed = set_configs(session)
    elif session.args.unset_cfg:
        failed = unset_configs(session)
    print_status(session)
    return 1 if failed else 0


def _keep(saved: tuple[SavedConfig, ...], edit: Edit) -> tuple[SavedConfig, ...]:
    """The saved records with the one for `edit`'s file replaced (or dropped)."""
    others = tuple(s for s in saved if (s.tool, Path(s.path)) != (edit.tool, edit.path))
    return others if edit.saved is None else (*others, edit.saved)


def _apply(session: Session, plans: list[Edit | ConfigEditError]) -> bool:
    """Write each planned file and record it at once; True when some file was refused."""
    failed = False
    for plan in plans:
        if isinstance(plan, ConfigEditError):
            session.print(f"not changed: {plan}")
            failed = True
            continue
        apply_edit(plan)
        state = dataclasses.replace(session.state, saved=_keep(session.state.saved, plan))
        session.save(state)
        fallback = f"{plan.path}: updated" if plan.changed else f"{plan.path}: already as wanted"
        session.print(*(plan.report or (fallback,)))
    return failed


def set_configs(session: Session) -> bool:
    """Point pip and uv at the current index, keeping what was there for --unset-cfg."""
    target = session.state.target
    if target is None or target.index is None:
        raise UsageError("no index selected; run `wheelwell use URL --set-cfg`")
    return _apply(session, plan_set(session.paths, session.state.saved, target))


def unset_configs(session: Session) -> bool:
    """Put pip's and uv's config back as it was before --set-cfg."""
    if not session.state.saved:
        session.print("pip and uv config were not changed by wheelwell; nothing to undo")
        return False
    return _apply(session, plan_unset(session.state.saved))


def _login_status(session: Session, target: Target) -> str:
    login = session.state.logins.get(target.server)
    if login is None:
        return "not logged in"
    expires = parse_expiry(login.expires)
    if expires is not None and expires <= datetime.now(UTC):
        return f"login of {login.user} expired; run `wheelwell login {login.user}`"
    return f"logged in as {login.user} (token expires {render_expiry(login.expires)})"


def print_status(session: Session) -> None:
    """Current index, login and which config files point at it."""
    target = session.state.target
    if target is None:
        session.print("no index selected; run `wheelwell use URL`")
        return
    if target.index is None:
        session.print(f"server: {target.server} (no index selected)")
    else:
        session.print(f"current index: {target.index_url}/", f"simple index: {target.simple_url}")
    session.print(_login_status(session, target))
    files = ", ".join(s.path for s in session.state.saved)
    session.print(f"pip/uv config set by wheelwell: {files}" if files else "pip/uv config: not set")
