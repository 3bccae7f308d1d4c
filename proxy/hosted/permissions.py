"""Who may do what: one declarative table, and `authorize`, the one function that applies it.

The table says, per operation, which kinds of credential are accepted and which roles grant
it. docs/security.md shows the same table (a test compares them), so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from proxy.config import ANONYMOUS, AUTHENTICATED, IndexConfig
from proxy.errors import AuthError, ForbiddenError, UnauthorizedError
from proxy.hosted.auth import Identity, Scope


class Operation(StrEnum):
    READ = "read"  #: simple pages, files, metadata, index/project JSON and pages, explain
    UPLOAD = "upload"
    YANK = "yank"  #: yank and unyank a release
    DELETE_FILES = "delete-files"  #: delete a release or a file
    INDEX_CREATE = "index-create"
    INDEX_CHANGE = "index-change"
    INDEX_DELETE = "index-delete"
    MIRROR_URL = "mirror-url"  #: create a mirror with its own mirror_url, or change that URL
    USER_CREATE = "user-create"
    USER_CHANGE = "user-change"  #: set a password
    USER_DELETE = "user-delete"
    TOKEN_CREATE = "token-create"  # noqa: S105 - an operation, not a secret
    TOKEN_LIST = "token-list"  # noqa: S105
    TOKEN_REVOKE = "token-revoke"  # noqa: S105
    CHANGELOG = "changelog"
    LOGIN = "login"
    OPS_READ = "ops-read"  #: health, status, metrics, home, search, user pages: filtered lists
    REPLICATE = "replicate"  #: a replica reads the primary's changelog stream and files
    #: devpi push of a release from this index; the target's own permission is checked too
    PUSH = "push"
    #: attach a tox result to a hosted file (devpi test, wheelwell test)
    TOXRESULT_UPLOAD = "toxresult-upload"


class Credential(StrEnum):
    ANONYMOUS = "anonymous"
    SCOPED_TOKEN = "scoped-token"  # noqa: S105 - a kind of credential, not a secret
    TOKEN = "token"  # noqa: S105
    PASSWORD = "password"  # noqa: S105
    #: replication.secret in the X-Wheelwell-Replication-Secret header; never a user's credential
    REPLICATION_SECRET = "replication-secret"  # noqa: S105


class Role(StrEnum):
    ANYONE = "anyone"
    READER = "reader"  #: in the index's acl_read (:ANONYMOUS: and :AUTHENTICATED: included)
    UPLOADER = "uploader"  #: in the index's acl_upload; an empty acl_upload means the owner
    TESTER = "tester"  #: in the index's acl_toxresult_upload (default :ANONYMOUS:, as devpi's)
    OWNER = "owner"  #: the user whose namespace the index is in
    SELF = "self"  #: the user the operation is about (a password, one's own tokens)
    ROOT = "root"
    OWNER_IF_USER_MIRRORS = "owner if auth.user_mirrors"
    REPLICA = "replica"  #: the holder of the primary's replication secret


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: accepted credentials, granting roles, and the scope a scoped token needs."""

    credentials: frozenset[Credential]
    roles: frozenset[Role]
    scope: Scope | None = None


#: a user's credentials (and none); the replication secret is no user's
_ALL = frozenset(
    {Credential.ANONYMOUS, Credential.SCOPED_TOKEN, Credential.TOKEN, Credential.PASSWORD}
)
_ACCOUNT = frozenset({Credential.TOKEN, Credential.PASSWORD})
_INDEX_WRITE = frozenset({Credential.SCOPED_TOKEN, Credential.TOKEN, Credential.PASSWORD})


def _rule(credentials: frozenset[Credential], *roles: Role, scope: Scope | None = None) -> Rule:
    return Rule(credentials, frozenset(roles), scope)


#: the permission table (docs/security.md shows it; tests/unit/test_permissions.py compares)
PERMISSIONS: dict[Operation, Rule] = {
    Operation.READ: _rule(_ALL, Role.READER, Role.OWNER, Role.ROOT, scope=Scope.READ),
    Operation.UPLOAD: _rule(_INDEX_WRITE, Role.UPLOADER, Role.ROOT, scope=Scope.UPLOAD),
    Operation.YANK: _rule(_INDEX_WRITE, Role.UPLOADER, Role.ROOT, scope=Scope.YANK),
    Operation.DELETE_FILES: _rule(_INDEX_WRITE, Role.UPLOADER, Role.ROOT, scope=Scope.DELETE),
    Operation.INDEX_CREATE: _rule(_ACCOUNT, Role.OWNER, Role.ROOT),
    Operation.INDEX_CHANGE: _rule(_ACCOUNT, Role.OWNER, Role.ROOT),
    Operation.INDEX_DELETE: _rule(_ACCOUNT, Role.OWNER, Role.ROOT),
    Operation.MIRROR_URL: _rule(_ACCOUNT, Role.OWNER_IF_USER_MIRRORS, Role.ROOT),
    Operation.USER_CREATE: _rule(_ACCOUNT, Role.ROOT),
    Operation.USER_CHANGE: _rule(_ACCOUNT, Role.SELF, Role.ROOT),
    Operation.USER_DELETE: _rule(_ACCOUNT, Role.ROOT),
    Operation.TOKEN_CREATE: _rule(_ACCOUNT, Role.SELF),
    Operation.TOKEN_LIST: _rule(_ACCOUNT, Role.SELF),
    Operation.TOKEN_REVOKE: _rule(_ACCOUNT, Role.SELF, Role.ROOT),
    Operation.CHANGELOG: _rule(_ACCOUNT, Role.ROOT),
    Operation.LOGIN: _rule(_ALL, Role.ANYONE),
    Operation.OPS_READ: _rule(_ALL, Role.ANYONE),
    Operation.REPLICATE: _rule(frozenset({Credential.REPLICATION_SECRET}), Role.REPLICA),
    Operation.PUSH: _rule(_ALL, Role.READER, Role.OWNER, Role.ROOT, scope=Scope.READ),
    Operation.TOXRESULT_UPLOAD: _rule(_ALL, Role.TESTER, Role.OWNER, Role.ROOT, scope=Scope.UPLOAD),
}


def credential_of(who: Identity | None) -> Credential:
    if who is None:
        return Credential.ANONYMOUS
    if who.is_scoped:
        return Credential.SCOPED_TOKEN
    return Credential.TOKEN if who.via_token else Credential.PASSWORD


def owner_of(index: IndexConfig) -> str:
    return index.name.split("/")[0]


def _in_acl(who: Identity | None, acl: Collection[str]) -> bool:
    if ANONYMOUS in acl:
        return True
    return who is not None and (AUTHENTICATED in acl or who.user in acl)


def _grants(
    role: Role, who: Identity | None, index: IndexConfig | None, user: str | None, mirrors: bool
) -> bool:
    """Whether `role` covers the caller for this index (or user)."""
    if role is Role.ANYONE:
        return True
    if who is None:
        if role is Role.TESTER:
            return index is not None and _in_acl(None, index.acl_toxresult_upload)
        return role is Role.READER and index is not None and _in_acl(None, index.acl_read)
    match role:
        case Role.ROOT:
            return who.is_root
        case Role.SELF:
            return user is None or user == who.user
        case Role.READER:
            return index is not None and _in_acl(who, index.acl_read)
        case Role.UPLOADER:
            return index is not None and _in_acl(who, index.acl_upload or (owner_of(index),))
        case Role.TESTER:
            return index is not None and _in_acl(who, index.acl_toxresult_upload)
        case Role.OWNER:
            return index is not None and owner_of(index) == who.user
        case Role.OWNER_IF_USER_MIRRORS:
            return mirrors and index is not None and owner_of(index) == who.user
    return False


def _scope_covers(who: Identity, rule: Rule) -> bool:
    if rule.scope is None:
        return False
    return rule.scope in who.scopes or (rule.scope is Scope.READ and bool(who.scopes))


def authorize(
    op: Operation,
    who: Identity | None,
    index: IndexConfig | None = None,
    *,
    inherited: Sequence[IndexConfig] = (),
    user: str | None = None,
    reach: Collection[str] = (),
    user_mirrors: bool = False,
) -> None:
    """Raise UnauthorizedError (credentials needed) or ForbiddenError unless `who` may do `op`.

    `inherited`: the rest of the index's resolution order (reading needs every one of them);
    `user`: the user an account operation is about (None: the caller); `reach`: the indexes a
    scoped token's index resolves to, whose files its `read` covers; `user_mirrors`: the config.
    """
    rule = PERMISSIONS[op]
    credential = credential_of(who)
    if Role.ANYONE in rule.roles and credential in rule.credentials:
        return
    if who is not None and who.is_scoped:
        covered = index is not None and (index.name == who.token_index or index.name in reach)
        refusal = _scoped_refusal(op, who, rule, covered)
        if refusal is not None:
            if op is not Operation.READ:
                raise refusal
            try:  # outside its scope a token reads what anyone may
                _check_roles(op, rule, None, index, inherited, user, user_mirrors)
            except AuthError:
                raise refusal from None
            return
    if credential not in rule.credentials:
        raise UnauthorizedError("authentication required")
    _check_roles(op, rule, who, index, inherited, user, user_mirrors)


def _check_roles(
    op: Operation,
    rule: Rule,
    who: Identity | None,
    index: IndexConfig | None,
    inherited: Sequence[IndexConfig],
    user: str | None,
    user_mirrors: bool,
) -> None:
    """Some role of the rule covers the caller, for the index and each index it inherits."""
    subjects: Sequence[IndexConfig | None] = [index, *inherited] if index is not None else [None]
    for subject in subjects:
        if not any(_grants(r, who, subject, user, user_mirrors) for r in rule.roles):
            raise _refusal(op, who, subject, user)


def _scoped_refusal(op: Operation, who: Identity, rule: Rule, covered: bool) -> AuthError | None:
    if Credential.SCOPED_TOKEN not in rule.credentials:
        return ForbiddenError(
            f"a token limited to index '{who.token_index}' cannot do '{op}'; "
            "use a password or an unscoped token"
        )
    if not covered:
        return ForbiddenError(f"token is limited to index '{who.token_index}'")
    if not _scope_covers(who, rule):
        return ForbiddenError(f"token lacks the '{rule.scope}' scope")
    return None


def _refusal(
    op: Operation, who: Identity | None, index: IndexConfig | None, user: str | None
) -> AuthError:
    if who is None:
        where = f" on index '{index.name}'" if index is not None else ""
        return UnauthorizedError(f"authentication required for '{op}'{where}")
    if index is not None:
        return ForbiddenError(f"user '{who.user}' may not {op} on index '{index.name}'")
    if user is not None and user != who.user:
        return ForbiddenError(f"user '{who.user}' may not {op} for user '{user}'")
    return ForbiddenError(f"user '{who.user}' may not {op}")


def may(
    op: Operation,
    who: Identity | None,
    index: IndexConfig | None = None,
    *,
    inherited: Sequence[IndexConfig] = (),
    reach: Collection[str] = (),
) -> bool:
    """`authorize` as a test, for filtering lists (search hits, index listings)."""
    try:
        authorize(op, who, index, inherited=inherited, reach=reach)
    except AuthError:
        return False
    return True
