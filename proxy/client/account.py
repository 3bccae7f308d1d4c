"""`login`, `logout`, `user …` and `token …`: who may write, and with which API tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proxy.client.api import Api, Credentials, render_path
from proxy.client.errors import ClientError, UsageError
from proxy.client.session import (
    Session,
    ask_new_password,
    ask_password,
    confirm,
    parse_duration,
    render_expiry,
    render_scalar,
)
from proxy.client.settings import Login


def run_login(session: Session) -> int:
    """Trade a password for an API token and keep the token, never the password."""
    target = session.target()
    name: str = session.args.name
    password = session.args.password or ask_password(f"password for {name}: ")
    api = Api(target.server, login_hint=False)
    answer = api.fetch_json("POST", "/+login", {"user": name, "password": password})
    login = Login(
        user=str(answer["user"]),
        token=str(answer["token"]),
        token_id=render_scalar(answer.get("id")),
        expires=render_scalar(answer.get("expires")),
    )
    previous = session.state.logins.get(target.server)
    session.save(session.state.with_login(target.server, login))
    session.print(
        f"logged in as {login.user} on {target.server} "
        f"(token expires {render_expiry(login.expires)})"
    )
    if previous is not None and previous.token_id and previous.token_id != login.token_id:
        _revoke_quietly(Api(target.server, Credentials("__token__", previous.token)), previous)
    return 0


def _revoke_quietly(api: Api, login: Login) -> str | None:
    """Revoke a login's token on the server; the reason when that failed."""
    if not login.token_id:
        return "no token id was stored"
    try:
        api.fetch_json("DELETE", render_path("+tokens", login.token_id))
    except ClientError as exc:
        return str(exc)
    return None


def run_logout(session: Session) -> int:
    """Revoke the stored token on the server (when it answers) and forget it here."""
    target = session.target()
    login = session.state.logins.get(target.server)
    if login is None:
        session.print(f"not logged in on {target.server}")
        return 0
    problem = _revoke_quietly(Api(target.server, Credentials("__token__", login.token)), login)
    session.save(session.state.with_login(target.server, None))
    session.print(f"logged out {login.user} from {target.server}")
    if problem:
        session.warn(f"wheelwell: could not revoke the token on the server: {problem}")
    return 0


def run_user_create(session: Session) -> int:
    """Create a user; the password is asked twice unless given."""
    name: str = session.args.name
    password = ask_new_password(name, session.args.password)
    session.api().fetch_json("PUT", render_path(name), {"password": password})
    session.print(f"created user {name}")
    return 0


def run_user_passwd(session: Session) -> int:
    """Change a password: NAME's, else the current user's."""
    name = session.args.name or session.user()
    if not name:
        raise UsageError("whose password? pass NAME, or log in first")
    password = ask_new_password(name, session.args.password)
    session.api().fetch_json("PATCH", render_path(name), {"password": password})
    session.print(f"changed the password of {name}")
    return 0


def run_user_delete(session: Session) -> int:
    """Delete a user after confirmation."""
    name: str = session.args.name
    confirm(session, f"delete user {name}")
    session.api().fetch_json("DELETE", render_path(name))
    session.print(f"deleted user {name}")
    return 0


def run_token_create(session: Session) -> int:
    """Print a new token once, alone on stdout so scripts can capture it."""
    body: dict[str, Any] = {}
    if session.option("index"):
        body["index"] = session.index()
    if session.args.expires_in:
        body["expires_in"] = parse_duration(session.args.expires_in)
    if session.args.description:
        body["description"] = session.args.description
    answer = session.api().fetch_json("POST", "/+tokens", body)
    scope = f"index {answer.get('index')}" if answer.get("index") else "all indexes"
    session.warn(
        f"created token {answer.get('id')} for {answer.get('user')} ({scope}, "
        f"expires {render_expiry(render_scalar(answer.get('expires')))}); "
        "it is shown only now:"
    )
    session.print(str(answer["token"]))
    return 0


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    """Rows as aligned text columns, for people rather than scripts."""
    cells = [[c.upper() for c in columns]]
    cells += [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return [
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]


def run_token_list(session: Session) -> int:
    """List tokens without their secrets (the server never sends them again)."""
    answer = session.api().fetch_json("GET", "/+tokens")
    tokens = answer.get("tokens", []) if isinstance(answer, dict) else []
    if not tokens:
        session.print("no tokens")
        return 0
    rows = [
        {
            **t,
            "index": t.get("index") or "*",
            "expires": render_expiry(render_scalar(t.get("expires"))),
            "created": render_expiry(render_scalar(t.get("created"))),
        }
        for t in tokens
    ]
    session.print(*render_table(rows, ("id", "user", "index", "expires", "created", "description")))
    return 0


def run_token_revoke(session: Session) -> int:
    """Revoke a token; when it is our own login's, forget the login too."""
    token_id: str = session.args.id
    target = session.target()
    session.api().fetch_json("DELETE", render_path("+tokens", token_id))
    session.print(f"revoked token {token_id}")
    login = session.state.logins.get(target.server)
    if login is not None and login.token_id == token_id:
        session.save(session.state.with_login(target.server, None))
        session.print(f"that was the token of this login; logged out {login.user}")
    return 0
