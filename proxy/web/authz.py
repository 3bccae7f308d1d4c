"""The one place requests are authorized: every route names its operation in ROUTE_OPERATIONS.

The middleware identifies the caller (only when an Authorization header is sent), finds the
index the URL names, and applies `permissions.authorize` before any handler runs. Handlers
read the caller from `request[keys.IDENTITY]`; what depends on the body (a mirror URL, whose
token is revoked) or filters lists asks `permissions` here too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.cluster.protocol import SECRET_HEADER, secret_matches
from proxy.config import IndexConfig
from proxy.config import Role as ServerRole
from proxy.errors import ForbiddenError, IndexNotFoundError, UnauthorizedError
from proxy.hosted.auth import Identity
from proxy.hosted.permissions import PERMISSIONS, Credential, Operation, Role, authorize, may
from proxy.model import parse_index_name
from proxy.web import keys
from proxy.web.common import has_credentials, identify
from proxy.web.relay import relay

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_XML_TYPES = ("text/xml", "application/xml")

Op = Operation
#: every route of the app by name; a route missing here answers 500 (and a test fails first)
ROUTE_OPERATIONS: dict[str, Operation] = {
    # ops
    "health": Op.OPS_READ,
    "ready": Op.OPS_READ,
    "status": Op.OPS_READ,  # lists only readable indexes
    "metrics": Op.OPS_READ,
    "root": Op.OPS_READ,  # lists only readable indexes
    "search": Op.OPS_READ,  # hits only from readable indexes
    "static": Op.OPS_READ,  # the UI's stylesheet and icon
    # simple API and files
    "simple-list": Op.READ,
    "simple-list-noslash": Op.READ,
    "simple-project": Op.READ,
    "simple-project-ns": Op.READ,
    "simple-list-default": Op.READ,
    "simple-list-noslash-default": Op.READ,
    "simple-project-default": Op.READ,
    "simple-project-ns-default": Op.READ,
    "file": Op.READ,
    "file-devpi": Op.READ,  # devpi's /+f/{sha256[:3]}/{sha256[3:16]}/{filename}
    # uploads (an XML-RPC search POSTed to the same URL is a read)
    "upload": Op.UPLOAD,
    "upload-noslash": Op.UPLOAD,
    # devpi push (PUSH, or a JSON body POSTed to the upload URL): reading the source here;
    # the handler checks upload on the target index, or on the source for an external index
    "push": Op.PUSH,
    "push-slash": Op.PUSH,
    "upload-simple": Op.OPS_READ,  # only ever answers 405 with the right URL
    "upload-simple-ns": Op.OPS_READ,
    # users and tokens
    "login": Op.LOGIN,
    "tokens": Op.TOKEN_CREATE,
    "tokens-list": Op.TOKEN_LIST,
    "token": Op.TOKEN_REVOKE,
    "changelog": Op.CHANGELOG,
    "user": Op.USER_CREATE,
    "user-patch": Op.USER_CHANGE,
    "user-get": Op.OPS_READ,  # lists only readable indexes
    "user-delete": Op.USER_DELETE,
    # indexes and releases
    "index": Op.READ,
    "index-put": Op.INDEX_CREATE,
    "index-patch": Op.INDEX_CHANGE,
    "index-delete": Op.INDEX_DELETE,
    "index-hooks": Op.INDEX_CHANGE,  # the hooks' queues and last attempts; secrets masked
    "explain": Op.READ,
    "file-delete": Op.DELETE_FILES,
    "project": Op.READ,
    "release": Op.YANK,
    "release-delete": Op.DELETE_FILES,
    # devpi's API (proxy/web/devpi.py); +api identifies itself: expired credentials are news
    "devpi-api": Op.LOGIN,
    "devpi-api-user": Op.LOGIN,
    "devpi-api-index": Op.LOGIN,  # and checks READ of the index
    "devpi-refresh": Op.READ,
    "devpi-project": Op.READ,
    "devpi-project-delete": Op.DELETE_FILES,
    # tox results (proxy/web/toxresults.py): posting also needs reading the index
    "toxresult-post": Op.TOXRESULT_UPLOAD,
    "toxresult": Op.READ,
    "release-get": Op.READ,
    # replication (a primary's; the shared secret, never a user's credentials)
    "replication-changes": Op.REPLICATE,
    "replication-file": Op.REPLICATE,
    "replication-snapshot": Op.REPLICATE,
}
del Op


#: operations anyone may do with any credential: no index or role to look up
_ANYONE = frozenset(
    op
    for op, rule in PERMISSIONS.items()
    if Role.ANYONE in rule.roles and rule.credentials == frozenset(Credential)
)


#: what a read replica answers itself; everything else changes state, which only its primary does
_READS = frozenset({Operation.READ, Operation.OPS_READ})


def operation_of(request: web.Request) -> Operation:
    name = request.match_info.route.name
    op = ROUTE_OPERATIONS.get(name or "")
    if op is None:
        raise RuntimeError(f"route {name!r} has no entry in ROUTE_OPERATIONS")
    if op is Operation.UPLOAD and request.content_type in _XML_TYPES:
        return Operation.READ  # pip search's XML-RPC call
    if op is Operation.UPLOAD and request.content_type == "application/json":
        return Operation.PUSH  # devpi push POSTed
    return op


def _index_of(request: web.Request, op: Operation) -> IndexConfig | None:
    """The index the URL names (the default index for /simple/), or None."""
    info = request.match_info
    if "user" in info and "index" in info:
        name = str(parse_index_name(info["user"], info["index"]))
    elif op is Operation.READ:
        name = request.app[keys.CONFIG].server.default_index
    else:
        return None
    cfg = request.app[keys.INDEXES].configs.get(name)
    if cfg is None:
        if op is Operation.INDEX_CREATE:
            return IndexConfig(name=name)  # its namespace says who owns it
        raise IndexNotFoundError(name)
    return cfg


def inherited(request: web.Request, index: IndexConfig) -> list[IndexConfig]:
    """The rest of the index's resolution order: reading it needs reading all of them."""
    registry = request.app[keys.INDEXES]
    if index.name not in registry.indexes:
        return []
    order = registry.resolution_order(index.name)
    return [registry.configs[i.name] for i in order if i.name != index.name]


def reach(request: web.Request, who: Identity | None) -> frozenset[str]:
    """The indexes a scoped token's index resolves to (their files are in its pages)."""
    registry = request.app[keys.INDEXES]
    if who is None or who.token_index is None or who.token_index not in registry.indexes:
        return frozenset()
    return frozenset(i.name for i in registry.resolution_order(who.token_index))


def caller(request: web.Request) -> Identity:
    """The authenticated caller of a route whose operation needs credentials."""
    who: Identity | None = request.get(keys.IDENTITY)
    if who is None:
        raise UnauthorizedError("authentication required")
    return who


def check(
    request: web.Request, op: Operation, index: IndexConfig | None = None, user: str | None = None
) -> None:
    """Authorize a further operation a handler finds in the body (a mirror URL, a token)."""
    who = request.get(keys.IDENTITY)
    authorize(
        op,
        who,
        index,
        inherited=inherited(request, index) if index is not None and op is Operation.READ else (),
        user=user,
        reach=reach(request, who),
        user_mirrors=request.app[keys.CONFIG].auth.user_mirrors,
    )


def readable(request: web.Request, index: IndexConfig) -> bool:
    """Whether the caller may read the index (and everything it inherits)."""
    who = request.get(keys.IDENTITY)
    return may(
        Operation.READ,
        who,
        index,
        inherited=inherited(request, index),
        reach=reach(request, who),
    )


def readable_configs(request: web.Request) -> list[IndexConfig]:
    """The index configurations the caller may read, for listings."""
    return [c for c in request.app[keys.INDEXES].configs.values() if readable(request, c)]


def _check_replication_secret(request: web.Request) -> None:
    """Only a primary answers, and only to its secret; Authorization is never looked at."""
    rep = request.app[keys.CONFIG].replication
    given = request.headers.get(SECRET_HEADER)
    if not given:  # a user's credentials are not this kind: 401 for them too
        raise UnauthorizedError(f"the replication secret is required ({SECRET_HEADER})")
    if rep.role is not ServerRole.PRIMARY:
        raise ForbiddenError("this server is not a replication primary (replication.role)")
    if not secret_matches(given, rep.secret):
        raise ForbiddenError("wrong replication secret")


@web.middleware
async def authz_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Identify (when credentials are sent) and authorize, before the handler runs."""
    if request.match_info.http_exception is not None:
        return await handler(request)  # no route: 404/405 as aiohttp decides
    op = operation_of(request)
    if op is Operation.REPLICATE:
        _check_replication_secret(request)
        return await handler(request)
    if op not in _READS and request.app[keys.CONFIG].replication.role is ServerRole.REPLICA:
        return await relay(request)  # the primary authorizes it, as it does everything else
    who: Identity | None = None
    if op is not Operation.LOGIN and has_credentials(request):
        who = await identify(request)
    request[keys.IDENTITY] = who
    if op in _ANYONE:
        return await handler(request)  # the fast path of most requests: nothing to look up
    index = _index_of(request, op)
    registry = request.app[keys.INDEXES]
    public = op is Operation.READ and index is not None and registry.public(index.name)
    if who is None and public:
        return await handler(request)  # anonymous pip on a public index
    check(request, op, index, user=request.match_info.get("user") if index is None else None)
    return await handler(request)
