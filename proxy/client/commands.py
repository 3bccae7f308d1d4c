"""The client's argparse subcommands, and the one place their failures become exit codes.

`proxy/cli.py` calls `add_client_commands(subparsers)` while building its parser, and
`run_client_command(args)` after parsing: it answers an exit code for our commands, else None.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from proxy.client import account, catalog, releases, selection, toxrun
from proxy.client.errors import ClientError
from proxy.client.session import Session
from proxy.client.settings import load_paths, load_state

Handler = Callable[[Session], int]
_HANDLER = "client_handler"


def _connection() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("server")
    group.add_argument("--url", help="server or index URL to use instead of the stored one")
    return parent


def _auth() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("credentials (default: the token from `wheelwell login`)")
    group.add_argument(
        "--user", dest="auth_user", metavar="USER", help="act as this user (asks for a password)"
    )
    group.add_argument("--password", dest="auth_password", help="password for --user")
    return parent


def _leaf(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help_text: str,
    parents: list[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text, parents=parents)
    parser.set_defaults(**{_HANDLER: handler}, url=None, auth_user=None, auth_password=None)
    return parser


def _yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def _index_option(parser: argparse.ArgumentParser, help_text: str = "USER/INDEX") -> None:
    parser.add_argument("--index", help=f"{help_text} (default: the current index)")


def _add_use(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    use = _leaf(commands, "use", selection.run_use, "select the index to work with", [])
    use.add_argument("target", nargs="?", metavar="URL", help="http://HOST:PORT/USER/INDEX")
    cfg = use.add_mutually_exclusive_group()
    cfg.add_argument("--set-cfg", action="store_true", help="point pip and uv at the index")
    cfg.add_argument("--unset-cfg", action="store_true", help="put pip and uv config back")


def _add_login(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    login = _leaf(
        commands, "login", account.run_login, "log in and keep an API token", [_connection()]
    )
    login.add_argument("name", metavar="USER")
    login.add_argument("--password", help="(default: ask)")
    _leaf(
        commands,
        "logout",
        account.run_logout,
        "revoke and forget the login's token",
        [_connection()],
    )


def _add_user(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = commands.add_parser("user", help="create, change or delete users")
    sub = user.add_subparsers(dest="user_command", required=True, metavar="{create,passwd,delete}")
    for name, handler, text in (
        ("create", account.run_user_create, "create a user (root only)"),
        ("passwd", account.run_user_passwd, "change a password (your own by default)"),
    ):
        leaf = _leaf(sub, name, handler, text, [_connection()])
        leaf.add_argument("name", metavar="NAME", nargs="?" if name == "passwd" else None)
        leaf.add_argument("--password", help="the new password (default: ask twice)")
        leaf.add_argument(
            "--user",
            dest="auth_user",
            metavar="USER",
            help="act as this user (asks for a password)",
        )
    delete = _leaf(sub, "delete", account.run_user_delete, "delete a user (root only)", _common())
    delete.add_argument("name", metavar="NAME")
    _yes(delete)


def _add_token(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser("token", help="create, list or revoke API tokens")
    sub = token.add_subparsers(dest="token_command", required=True, metavar="{create,list,revoke}")
    create = _leaf(sub, "create", account.run_token_create, "create an API token", _common())
    create.add_argument("--index", help="USER/INDEX the token may upload to (default: any)")
    create.add_argument("--expires-in", help="lifetime like 3600, 12h, 30d (default: server's)")
    create.add_argument("--description", help="what the token is for")
    _leaf(sub, "list", account.run_token_list, "list your tokens (root: all)", _common())
    revoke = _leaf(sub, "revoke", account.run_token_revoke, "revoke a token", _common())
    revoke.add_argument("id", metavar="ID")


def _index_settings(parser: argparse.ArgumentParser, create: bool) -> None:
    if create:
        parser.add_argument("--type", choices=("private", "mirror"), default="private")
    parser.add_argument("--bases", help="comma-separated USER/INDEX list to inherit from")
    parser.add_argument("--mirror-url", help="the simple index a mirror index follows")
    parser.add_argument("--whitelist", help="comma-separated projects the mirror may add to")
    parser.add_argument("--acl-upload", help="comma-separated users who may upload")
    parser.add_argument(
        "--volatile", action=argparse.BooleanOptionalAction, help="allow deleting releases"
    )
    parser.add_argument(
        "--generate-metadata",
        action=argparse.BooleanOptionalAction,
        help="mirror: serve PEP 658 metadata for wheels the upstream gives none for",
    )
    parser.add_argument(
        "--webhooks",
        metavar="JSON|@FILE",
        help='private: the hooks, a JSON list of {"url", "secret", "events"}; [] for none',
    )
    parser.add_argument(
        "--uploadtrigger-jenkins",
        metavar="URL",
        help="private: Jenkins buildWithParameters URL with {pkgname}, {pkgversion}; '' for none",
    )


def _add_index(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    index = commands.add_parser("index", help="create, change, delete or show indexes")
    sub = index.add_subparsers(
        dest="index_command", required=True, metavar="{create,modify,delete,show,hooks}"
    )
    create = _leaf(sub, "create", catalog.run_index_create, "create an index", _common())
    create.add_argument("name", metavar="USER/INDEX")
    _index_settings(create, create=True)
    modify = _leaf(sub, "modify", catalog.run_index_modify, "change an index", _common())
    modify.add_argument("name", metavar="USER/INDEX", nargs="?")
    _index_settings(modify, create=False)
    delete = _leaf(sub, "delete", catalog.run_index_delete, "delete an index", _common())
    delete.add_argument("name", metavar="USER/INDEX")
    _yes(delete)
    show = _leaf(sub, "show", catalog.run_index_show, "show an index's config", _common())
    show.add_argument("name", metavar="USER/INDEX", nargs="?")
    hooks = _leaf(
        sub, "hooks", catalog.run_index_hooks, "show an index's hooks and last attempts", _common()
    )
    hooks.add_argument("name", metavar="USER/INDEX", nargs="?")


def _add_releases(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    yank = _leaf(commands, "yank", catalog.run_yank, "yank a release (PEP 592)", _common())
    delete = _leaf(commands, "delete", catalog.run_delete, "delete a release's files", _common())
    for parser in (yank, delete):
        parser.add_argument("project", metavar="PROJECT")
        parser.add_argument("version", metavar="VERSION")
        _index_option(parser)
    yank.add_argument("--reason", help="shown to people who pin the yanked release")
    yank.add_argument("--undo", action="store_true", help="un-yank the release")
    _yes(delete)
    upload = _leaf(
        commands, "upload", catalog.run_upload, "upload missing wheels and sdists", _common()
    )
    upload.add_argument("--from-dir", required=True, metavar="DIR", help="where the files are")
    upload.add_argument("--recursive", action="store_true", help="look in subdirectories too")
    _index_option(upload)


def _add_tests(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    test = _leaf(
        commands, "test", toxrun.run_test, "run tox on a release and post the result", _common()
    )
    test.add_argument("spec", metavar="PROJECT[==VERSION]", help="default: the newest version")
    _index_option(test)
    test.add_argument("-e", dest="envs", metavar="ENVS", help="tox envs to run (tox's -e)")
    test.add_argument(
        "--tox-args", metavar="ARGS", help='more tox arguments, e.g. --tox-args="-- -k fast"'
    )
    test.add_argument("--no-upload", action="store_true", help="do not post the result")
    test.add_argument(
        "-c",
        dest="toxconfig",
        metavar="TOXCONFIG",
        help="tox config to use (required for a release with only wheels)",
    )
    listing = _leaf(
        commands, "list", releases.run_list, "a project's releases, files, tox results", _common()
    )
    listing.add_argument("spec", metavar="PROJECT[==VERSION]")
    _index_option(listing)
    listing.add_argument("--json", action="store_true", help="the releases' JSON instead")


def _common() -> list[argparse.ArgumentParser]:
    return [_connection(), _auth()]


def add_client_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `use`, `login`, `logout`, `user`, `token`, `index`, `yank`, `delete`, `upload`,
    `test`, `list`."""
    for add in (_add_use, _add_login, _add_user, _add_token, _add_index, _add_releases, _add_tests):
        add(subparsers)


def run_client_command(args: argparse.Namespace) -> int | None:
    """Run a client command; None when `args` belong to another command."""
    handler: Handler | None = getattr(args, _HANDLER, None)
    if handler is None:
        return None
    try:
        paths = load_paths()
        session = Session(args, paths, load_state(paths.state))
        return handler(session)
    except ClientError as exc:
        return _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return _fail("interrupted", code=130)


def _fail(message: str, code: int = 1) -> int:
    """Report an expected failure as one line, the way every client command does."""
    sys.stderr.write(f"wheelwell: {message}\n")
    return code
