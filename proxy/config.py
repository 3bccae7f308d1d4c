"""Configuration: a frozen dataclass tree loaded from YAML; every error says file:line:col."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import os
import re
import socket
import string
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml

from proxy.errors import ConfigError, InvalidNameError
from proxy.model import parse_index_name
from proxy.yamlconv import ByteSize, Converter, Seconds, coerce
from proxy.yamlconv import parse_duration as parse_duration
from proxy.yamlconv import parse_size as parse_size


class IndexKind(StrEnum):
    MIRROR = "mirror"
    PRIVATE = "private"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Role(StrEnum):
    """What this server is in a cluster."""

    STANDALONE = "standalone"
    PRIMARY = "primary"  #: replicas may follow its changelog
    REPLICA = "replica"  #: follows replication.primary_url; relays writes to it


class MirrorSource(StrEnum):
    """Where a replica's mirror indexes fetch from."""

    PRIMARY = "primary"  #: the primary's mirror index of the same name (tiered caching)
    UPSTREAM = "upstream"  #: the upstream itself, as the primary does


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 3141
    shutdown_timeout: Seconds = 20.0
    default_index: str = "root/pypi"  #: what /simple/ serves
    #: PEM certificate chain: with tls_key, serve HTTPS (TLS 1.2+); reloaded on SIGHUP
    tls_cert: str = ""
    tls_key: str = ""  #: PEM private key of tls_cert
    #: peers (CIDRs) whose X-Forwarded-Proto/-Host/-For are believed: a TLS-terminating proxy
    trusted_proxies: tuple[str, ...] = ()
    #: where clients reach this server (https://pkgs.example.org); hook events and Jenkins
    #: job scripts name files by it; empty: paths, and the listening address for Jenkins
    public_url: str = ""


class StorageBackend(StrEnum):
    LOCAL = "local"  #: blobs under data_dir/blobs
    S3 = "s3"  #: blobs in an S3-compatible bucket, data_dir/blobs their disk cache


class S3Addressing(StrEnum):
    AUTO = "auto"  #: botocore's choice (virtual-host where the bucket name allows it)
    PATH = "path"  #: http://endpoint/bucket/key (MinIO, SeaweedFS, Ceph RGW)
    VIRTUAL = "virtual"  #: http://bucket.endpoint/key (AWS, R2, GCS)


@dataclass(frozen=True, slots=True)
class S3Config:
    """Where the bytes go with `storage.backend: s3`; credentials come from the AWS chain
    (AWS_ACCESS_KEY_ID…, AWS_PROFILE, ~/.aws, instance roles), never from this file."""

    endpoint: str = ""  #: empty: AWS's own endpoint for `region`
    bucket: str = ""
    prefix: str = ""  #: keys are {prefix}blobs/{sha256[:2]}/{sha256}
    region: str = ""  #: empty: from the AWS config chain
    addressing: S3Addressing = S3Addressing.AUTO
    #: serve files not on this disk by a 302 to a presigned URL instead of streaming them
    redirect: bool = False
    redirect_ttl: Seconds = 300.0  #: how long a presigned URL is valid
    #: larger files are put in parts of this size; a put holds one part in memory at most
    part_size: ByteSize = 16 * 1024**2
    #: the disk copies' bound (hosted files' too: the bucket has them), least recently used
    #: dropped first; 0: unbounded (storage.keep_free still applies)
    cache_size: ByteSize = 0
    connect_timeout: Seconds = 10.0
    read_timeout: Seconds = 60.0
    #: the primary aborts multipart uploads older than this (cut off by a crash); 0: never
    stale_uploads: Seconds = 86400.0


@dataclass(frozen=True, slots=True)
class StorageConfig:
    data_dir: Path = Path("data")
    #: upper bound for cached mirror files (e.g. 50GB); 0 means unbounded. Hosted files never count.
    #: With backend s3 it bounds the bucket (the primary evicts), s3.cache_size this disk
    max_size: ByteSize = 0
    wheelhouse_poll: Seconds = 2.0  #: how often wheelhouse directories are looked at
    #: /+ready answers 503 while the data dir's file system has less free space; 0 disables
    min_free_space: ByteSize = 100 * 1024**2
    scrub: bool = True  #: re-hash stored files in the background and quarantine corrupt ones
    scrub_rate: ByteSize = 20 * 1000**2  #: bytes per second the scrubber reads; 0 disables it
    scrub_interval: Seconds = 86400.0  #: pause between two full scrub passes
    #: least recently used mirror files are evicted while the data dir's file system has less
    #: free space than this, so the cache never fills the disk, bound or no bound; 0 disables
    keep_free: ByteSize = 1024**3
    backend: StorageBackend = StorageBackend.LOCAL
    s3: S3Config = field(default_factory=S3Config)


#: loopback, "this network", link-local, private, CGNAT, unique-local; IPv4-mapped forms of the
#: IPv4 ranges are matched through the address they map to
USER_MIRROR_DENY = (
    "127.0.0.0/8",
    "::1/128",
    "0.0.0.0/8",
    "::/128",
    "169.254.0.0/16",
    "fe80::/10",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
)


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
    #: CIDRs no mirror may connect to (checked after DNS resolution, on every redirect too)
    deny: tuple[str, ...] = ()
    #: CIDRs denied to mirrors of indexes outside root's namespace, on top of `deny`
    user_mirror_deny: tuple[str, ...] = USER_MIRROR_DENY
    #: CIDRs every mirror may connect to although `deny` or `user_mirror_deny` match
    allow: tuple[str, ...] = ()
    #: while an upstream rests, an uncached request probes it at most this often
    probe_interval: Seconds = 1.0
    #: generated metadata of a wheel up to this size reads the whole wheel (still one request)
    #: and stores it: the install that usually follows is then served from disk
    whole_wheel_below: ByteSize = 1024**2


class HookEvent(StrEnum):
    """What a hook may be told of; a webhook's `events` picks some (default: all)."""

    UPLOAD = "upload"
    YANK = "yank"
    UNYANK = "unyank"
    DELETE = "delete"
    WHEELHOUSE_ADD = "wheelhouse-add"
    WHEELHOUSE_REMOVE = "wheelhouse-remove"


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    #: the HMAC-SHA256 key of X-Wheelwell-Signature; never shown
    secret: str = field(repr=False)
    events: tuple[HookEvent, ...] = tuple(HookEvent)


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
    #: who may read (user names, :ANONYMOUS:, :AUTHENTICATED:); root and the owner always may
    acl_read: tuple[str, ...] = (":ANONYMOUS:",)
    #: who may attach tox results to its files (devpi's option and default: anyone)
    acl_toxresult_upload: tuple[str, ...] = (":ANONYMOUS:",)
    #: mirror only: serve PEP 658 metadata for wheels the upstream gives none for (Range reads)
    generate_metadata: bool = True
    #: private only: signed JSON events POSTed on uploads, yanks, deletes (docs/hooks.md)
    webhooks: tuple[WebhookConfig, ...] = ()
    #: private only: devpi-jenkins's option, a Jenkins URL with {pkgname}, {pkgversion},
    #: {file_url}; a user and API token go in its userinfo (https://user:token@host/…)
    uploadtrigger_jenkins: str = ""


ANONYMOUS = ":ANONYMOUS:"  #: in acl_read/acl_upload: everyone, without credentials too
AUTHENTICATED = ":AUTHENTICATED:"  #: in acl_read/acl_upload: every user with valid credentials
#: auth.login_*_delay at most: a longer hold only keeps connections open
MAX_LOGIN_DELAY = 60.0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    #: set from WHEELWELL_ROOT_PASSWORD in load(); empty: generate one at first start
    root_password: str = ""
    max_upload_size: ByteSize = 1024**3
    token_lifetime: Seconds = 90 * 86400.0  #: default lifetime of tokens made by /+login
    #: let index owners set a mirror's upstream URL; false: only root may (SSRF)
    user_mirrors: bool = False
    #: failed logins (passwords and tokens) per client address per login_window; 0: no limit
    login_failures_per_address: int = 10
    #: failed password logins per user name per login_window, from all addresses; 0: no limit
    login_failures_per_user: int = 30
    login_window: Seconds = 60.0  #: the window of both limits; the budget refills evenly over it
    #: addresses and user names remembered at most (each); the least recent are forgotten
    login_tracked: int = 10000
    hash_workers: int = 1  #: threads for password hashing, apart from the one file serving uses
    #: password checks waiting for a hash worker at most; beyond that, logins get 429 at once
    hash_queue: int = 8
    #: a throttled login (429) is answered after min(its Retry-After, this): a flooding
    #: connection gets about one answer a second, not thousands; 0: answer at once
    login_throttled_delay: Seconds = 1.0
    #: a failed credential check (401) is answered no sooner than this after it began (also
    #: hides whether the user exists); 0: at once
    login_failure_delay: Seconds = 0.5
    #: refused logins held back at once at most; beyond that they are answered at once
    login_tarpit_size: int = 1000
    #: set in load(): the environment variable root_password came from (logged, the value never)
    root_password_from: str = ""


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "INFO"
    format: LogFormat = LogFormat.TEXT


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Bounds on the work and memory one client can make the daemon spend."""

    #: a wheel's METADATA / an sdist's PKG-INFO is read to at most this much (zip bombs)
    max_metadata_size: ByteSize = 16 * 1024**2
    #: longer release descriptions are shown as plain text, truncated
    max_description_size: ByteSize = 512 * 1024
    #: a description still rendering after this is shown as plain text instead
    description_render_timeout: Seconds = 2.0
    #: JSON request bodies: deepest nesting of arrays/objects, and longest number literal
    json_max_depth: int = 32
    json_max_number_length: int = 100
    #: project pages each private index keeps built in memory (least recently used dropped)
    private_pages: int = 10_000
    #: remembered upstream 404s in the page cache (least recently used dropped)
    negative_pages: int = 10_000


#: the shortest replication secret accepted (a shared secret, not a password people type)
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    role: Role = Role.STANDALONE
    #: the primary's URL (e.g. http://wheelwell-0.wheelwell-headless:3141); setting it (or
    #: `serve --primary-url`) makes this server a replica of it
    primary_url: str = ""
    #: the shared secret of the replication endpoints: WHEELWELL_REPLICATION_SECRET, else the
    #: contents of secret_file; keep it out of YAML files
    secret: str = ""
    secret_file: str = ""
    replica_id: str = ""  #: this replica's name in the primary's status (default: host name)
    outside_url: str = ""  #: where clients reach this replica, shown in the primary's status
    #: an idle changelog stream carries a heartbeat this often; three missed: the link is dead
    heartbeat: Seconds = 5.0
    #: a write relayed to the primary waits this long for its change to arrive here (then 503)
    write_wait: Seconds = 30.0
    mirror_from: MirrorSource = MirrorSource.PRIMARY
    #: private files copied from the primary at once, in the background; 0: none, a file is
    #: copied when first asked for (a replica that keeps only what its clients use)
    file_copies: int = 4
    #: primary: a snapshot of the whole state this often (when anything changed), for new
    #: replicas and ones away too long; the changelog is compacted behind the oldest one kept
    snapshot_interval: Seconds = 3600.0
    snapshots_keep: int = 2
    compact: bool = True  #: drop changelog entries the oldest snapshot kept already holds


@dataclass(frozen=True, slots=True)
class HooksConfig:
    """Delivery of index hooks (webhooks, uploadtrigger_jenkins; docs/hooks.md)."""

    timeout: Seconds = 10.0  #: one attempt, connecting to reading the answer's first KiB
    retry_min: Seconds = 1.0  #: the first retry's delay; each further one doubles it
    retry_max: Seconds = 600.0  #: the longest delay between two attempts
    #: attempts at one event before it is marked failed (shown in +hooks) and the next goes
    max_attempts: int = 20
    max_age: Seconds = 86400.0  #: an event undelivered this long after its change is failed


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
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    source: str = "<defaults>"  #: where this config came from, for messages

    def index(self, name: str) -> IndexConfig | None:
        return next((i for i in self.indexes if i.name == name), None)

    def upstream_url(self, index: IndexConfig) -> str:
        return index.upstream or self.upstream.url


# ---- validation ------------------------------------------------------------------------------


class IndexRule(StrEnum):
    """The rules an index configuration follows, from the YAML file and from the API alike."""

    NAME = "name"  #: the name is user/index
    DUPLICATE = "duplicate"  #: each name once
    UNKNOWN_BASE = "unknown-base"  #: every base exists
    OWN_BASE = "own-base"  #: no index is its own base
    MIRROR_BASES = "mirror-bases"  #: a mirror has no bases
    BAD_UPSTREAM = "bad-upstream"  #: a mirror's upstream is an http(s) URL
    PRIVATE_UPSTREAM = "private-upstream"  #: only mirrors have an upstream
    CYCLE = "cycle"  #: bases form no cycle
    BAD_ACL = "bad-acl"  #: acl entries are user names, :ANONYMOUS: or :AUTHENTICATED:
    BAD_HOOK = "bad-hook"  #: hooks: private indexes only, http(s) URLs, a secret per webhook


@dataclass(frozen=True, slots=True)
class IndexProblem:
    """One broken rule; `message` is in the words of the YAML check (the API has its own)."""

    rule: IndexRule
    position: int | None  #: which of the configs; None for a cycle
    path: str  #: below `indexes[position]`: "name", "bases[0]", "bases", "upstream"; "" for a cycle
    subject: str  #: what is at fault: the name, a base, the URL, or the cycle's path
    message: str


def check_indexes(configs: Sequence[IndexConfig], only: str | None = None) -> list[IndexProblem]:
    """Every problem of a set of index configs, as it would be; `only`: that index's problems."""
    names = [i.name for i in configs]
    known = set(names)
    problems: list[IndexProblem] = []
    for n, index in enumerate(configs):
        if only is not None and index.name != only:
            continue

        def report(rule: IndexRule, path: str, subject: str, message: str, n: int = n) -> None:
            problems.append(IndexProblem(rule, n, path, subject, message))

        user, _, rest = index.name.partition("/")
        try:
            parse_index_name(user, rest)
        except InvalidNameError:
            report(
                IndexRule.NAME, "name", index.name, f"'{index.name}' is not of the form user/index"
            )
        if names.index(index.name) != n:
            report(IndexRule.DUPLICATE, "name", index.name, f"duplicate index '{index.name}'")
        for b, base in enumerate(index.bases):
            if base not in known:
                close = difflib.get_close_matches(base, names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                report(IndexRule.UNKNOWN_BASE, f"bases[{b}]", base, f"unknown index '{base}'{hint}")
            elif base == index.name:
                report(IndexRule.OWN_BASE, f"bases[{b}]", base, "an index cannot be its own base")
        if index.kind is IndexKind.MIRROR:
            if index.bases:
                report(IndexRule.MIRROR_BASES, "bases", index.name, "a mirror index has no bases")
            if index.upstream and urlsplit(index.upstream).scheme not in {"http", "https"}:
                message = f"'{index.upstream}' is not an http(s) URL"
                report(IndexRule.BAD_UPSTREAM, "upstream", index.upstream, message)
        elif index.upstream:
            message = "only mirror indexes have an upstream"
            report(IndexRule.PRIVATE_UPSTREAM, "upstream", index.upstream, message)
        for key in ("acl_upload", "acl_read", "acl_toxresult_upload"):
            for e, entry in enumerate(getattr(index, key)):
                if not is_acl_entry(entry):
                    message = f"'{entry}' is not a user name, {ANONYMOUS} or {AUTHENTICATED}"
                    report(IndexRule.BAD_ACL, f"{key}[{e}]", entry, message)
        for path, message in hook_problems(index):
            report(IndexRule.BAD_HOOK, path, index.name, message)
    graph = {i.name: i.bases for i in configs}
    cycle = _find_cycle(graph, names if only is None else [only])
    if cycle:
        path = " -> ".join(cycle)
        problems.append(
            IndexProblem(IndexRule.CYCLE, None, "", path, "bases form a cycle: " + path)
        )
    return problems


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


MAX_WEBHOOKS = 16  #: per index: each is a queue and a connection of its own

#: the placeholders of uploadtrigger_jenkins (devpi-jenkins's two and wheelwell's file_url)
JENKINS_FIELDS = frozenset({"pkgname", "pkgversion", "file_url"})


def hook_problems(index: IndexConfig) -> list[tuple[str, str]]:
    """(path, message) per broken hook rule; messages name the key, never a secret."""
    problems: list[tuple[str, str]] = []
    hooks = bool(index.webhooks or index.uploadtrigger_jenkins)
    if hooks and index.kind is not IndexKind.PRIVATE:
        problems.append(("webhooks", "only private indexes have webhooks or uploadtrigger_jenkins"))
    if len(index.webhooks) > MAX_WEBHOOKS:
        problems.append(("webhooks", f"at most {MAX_WEBHOOKS} webhooks per index"))
    for n, hook in enumerate(index.webhooks):
        if not _is_http_url(hook.url):
            problems.append((f"webhooks[{n}].url", "'url' must be an http(s) URL"))
        if not hook.secret:
            problems.append((f"webhooks[{n}].secret", "'secret' is required (HMAC-SHA256 key)"))
        if not hook.events:
            problems.append((f"webhooks[{n}].events", "'events' is empty: the hook never fires"))
    jenkins = index.uploadtrigger_jenkins
    if jenkins:
        if not _is_http_url(jenkins):
            problems.append(
                ("uploadtrigger_jenkins", "'uploadtrigger_jenkins' must be an http(s) URL")
            )
        else:
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(jenkins) if f is not None}
            except ValueError:
                fields = {"{"}
            unknown = fields - JENKINS_FIELDS
            if unknown:
                problems.append(
                    (
                        "uploadtrigger_jenkins",
                        "'uploadtrigger_jenkins' may use {pkgname}, {pkgversion} and "
                        "{file_url} only",
                    )
                )
    return problems


def is_acl_entry(entry: str) -> bool:
    """A user name (the rules of an index name's parts) or one of the two specials."""
    if entry in (ANONYMOUS, AUTHENTICATED):
        return True
    try:
        parse_index_name(entry, "x")
    except InvalidNameError:
        return False
    return True


def validate(
    cfg: Config,
    marks: Mapping[str, yaml.Mark] | None = None,
    variables: Mapping[str, str] | None = None,
) -> list[str]:
    """Cross-field checks; every problem is reported, each with its location when known.

    `variables` maps a key to the environment variable that set it, which is then its location.
    """
    marks = marks or {}
    variables = variables or {}
    problems: list[str] = []

    def report(path: str, message: str) -> None:
        mark = marks.get(path)
        where = cfg.source if mark is None else f"{cfg.source}:{mark.line + 1}:{mark.column + 1}"
        if path in variables:
            where = f"environment: {variables[path]}"
        problems.append(f"{where}: {path}: {message}")

    for problem in check_indexes(cfg.indexes):
        if problem.position is None:
            report("indexes", problem.message)
        else:
            report(f"indexes[{problem.position}].{problem.path}", problem.message)
    names = [i.name for i in cfg.indexes]
    if cfg.server.default_index not in names:
        report("server.default_index", f"unknown index '{cfg.server.default_index}'")
    if not 0 <= cfg.server.port <= 65535:
        report("server.port", f"{cfg.server.port} is not a TCP port")
    _check_server(cfg.server, report)
    _check_s3(cfg.storage, report)
    for key in ("timeout", "retry_min", "retry_max", "max_age"):
        if getattr(cfg.hooks, key) <= 0:
            report(f"hooks.{key}", "must be more than 0")
    if cfg.hooks.max_attempts < 1:
        report("hooks.max_attempts", "must be 1 or more")
    if cfg.upstream.url and urlsplit(cfg.upstream.url).scheme not in {"http", "https"}:
        report("upstream.url", f"'{cfg.upstream.url}' is not an http(s) URL")
    if cfg.upstream.retries < 0:
        report("upstream.retries", "must be 0 or more")
    if cfg.upstream.probe_interval < 0:
        report("upstream.probe_interval", "must be 0 or more")
    for key in ("deny", "user_mirror_deny", "allow"):
        _check_networks(report, f"upstream.{key}", getattr(cfg.upstream, key))
    for key in (
        "max_metadata_size",
        "max_description_size",
        "json_max_depth",
        "json_max_number_length",
        "private_pages",
        "negative_pages",
    ):
        if getattr(cfg.limits, key) < 1:
            report(f"limits.{key}", "must be 1 or more")
    if cfg.limits.description_render_timeout <= 0:
        report("limits.description_render_timeout", "must be more than 0")
    if cfg.logging.level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        report("logging.level", f"unknown level '{cfg.logging.level}'")
    for key, least in (
        ("login_failures_per_address", 0),
        ("login_failures_per_user", 0),
        ("login_tracked", 1),
        ("hash_workers", 1),
        ("hash_queue", 0),
        ("login_tarpit_size", 0),
    ):
        if getattr(cfg.auth, key) < least:
            report(f"auth.{key}", f"must be {least} or more")
    if cfg.auth.login_window <= 0:
        report("auth.login_window", "must be more than 0 s")
    _check_replication(cfg.replication, report)
    for key in ("login_throttled_delay", "login_failure_delay"):
        if not 0 <= getattr(cfg.auth, key) <= MAX_LOGIN_DELAY:
            report(f"auth.{key}", f"must be 0 to {MAX_LOGIN_DELAY:g} s")
    return problems


def _check_replication(rep: ReplicationConfig, report: Callable[[str, str], None]) -> None:
    if rep.primary_url and urlsplit(rep.primary_url).scheme not in {"http", "https"}:
        report("replication.primary_url", f"'{rep.primary_url}' is not an http(s) URL")
    if rep.role is Role.REPLICA and not rep.primary_url:
        report("replication.role", "a replica needs replication.primary_url (or --primary-url)")
    if rep.primary_url and rep.role is Role.PRIMARY:
        report("replication.primary_url", "a primary follows no other server")
    if rep.heartbeat <= 0:
        report("replication.heartbeat", "must be more than 0 s")
    if rep.write_wait <= 0:
        report("replication.write_wait", "must be more than 0 s")
    if rep.file_copies < 0:
        report("replication.file_copies", "must be 0 or more")
    if rep.snapshot_interval <= 0:
        report("replication.snapshot_interval", "must be more than 0 s")
    if rep.snapshots_keep < 1:
        report("replication.snapshots_keep", "must be 1 or more")


def settle_replication(cfg: Config) -> Config:
    """Settle the role (a primary URL means replica) and the secret; ConfigError naming the key.

    Run by `serve` after the command line's --role/--primary-url, which may change both.
    """
    rep = cfg.replication
    if rep.primary_url and rep.role is Role.STANDALONE:
        rep = dataclasses.replace(rep, role=Role.REPLICA)
    problems: list[str] = []
    _check_replication(rep, lambda key, message: problems.append(f"{cfg.source}: {key}: {message}"))
    secret = rep.secret
    if not secret and rep.secret_file:
        try:
            secret = Path(rep.secret_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(
                f"{cfg.source}: replication.secret_file: cannot read '{rep.secret_file}': "
                f"{getattr(exc, 'strerror', None) or exc}"
            )
    if rep.role is not Role.STANDALONE and not problems and len(secret) < MIN_SECRET_LENGTH:
        problems.append(
            f"{cfg.source}: replication.secret: a {rep.role.value} needs a shared secret of "
            f"{MIN_SECRET_LENGTH} characters or more (WHEELWELL_REPLICATION_SECRET or "
            "replication.secret_file)"
        )
    if problems:
        raise ConfigError(problems)
    replica_id = rep.replica_id or (socket.gethostname() if rep.role is Role.REPLICA else "")
    rep = dataclasses.replace(rep, secret=secret, replica_id=replica_id)
    return dataclasses.replace(cfg, replication=rep)


#: S3's own bounds on a bucket's name and a multipart upload's parts
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MIN_PART_SIZE = 5 * 1024**2


def _check_s3(storage: StorageConfig, report: Callable[[str, str], None]) -> None:
    if storage.backend is StorageBackend.S3:
        check_s3(storage.s3, report)


def check_s3(s3: S3Config, report: Callable[[str, str], None]) -> None:
    """A valid bucket name, an http(s) endpoint without credentials, parts S3 takes."""
    if not s3.bucket:
        report("storage.s3.bucket", "storage.backend is s3: name the bucket")
    elif not _BUCKET_NAME.match(s3.bucket):
        report("storage.s3.bucket", f"'{s3.bucket}' is not an S3 bucket name (3-63 of a-z0-9.-)")
    if s3.endpoint and urlsplit(s3.endpoint).scheme not in {"http", "https"}:
        report("storage.s3.endpoint", f"'{s3.endpoint}' is not an http(s) URL")
    if urlsplit(s3.endpoint).username or urlsplit(s3.endpoint).password:
        report("storage.s3.endpoint", "credentials come from the AWS chain, not the URL")
    if s3.prefix.startswith("/"):
        report("storage.s3.prefix", "a key prefix does not start with '/'")
    if s3.part_size < MIN_PART_SIZE:
        report("storage.s3.part_size", f"S3 takes parts of {MIN_PART_SIZE} bytes or more")
    if not 1 <= s3.redirect_ttl <= 7 * 86400:
        report("storage.s3.redirect_ttl", "a presigned URL lives 1 s to 7 days")


def _check_server(server: ServerConfig, report: Callable[[str, str], None]) -> None:
    """TLS files readable and given together; trusted proxies are networks."""
    if bool(server.tls_cert) != bool(server.tls_key):
        given, missing = ("tls_key", "tls_cert") if server.tls_key else ("tls_cert", "tls_key")
        report(f"server.{missing}", f"server.{given} is set: both or neither")
    for key in ("tls_cert", "tls_key"):
        path = getattr(server, key)
        if path and not os.access(path, os.R_OK):
            report(f"server.{key}", f"cannot read '{path}'")
    _check_networks(report, "server.trusted_proxies", server.trusted_proxies)
    if server.public_url and not _is_http_url(server.public_url):
        report("server.public_url", f"'{server.public_url}' is not an http(s) URL")


def _check_networks(report: Callable[[str, str], None], key: str, values: Sequence[str]) -> None:
    """Each entry of an address list is an IP address or network (CIDR)."""
    for n, value in enumerate(values):
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            report(f"{key}[{n}]", f"'{value}' is not an IP address or network (CIDR)")


def _find_cycle(graph: Mapping[str, Sequence[str]], starts: Iterable[str]) -> list[str]:
    """The first cycle a depth-first walk from `starts` meets, as a path; [] when none."""
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

    for name in starts:
        if name in graph and state.get(name) is None:
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
    converter = Converter(source)
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
    """Defaults < YAML (arg, else WHEELWELL_CONFIG) < WHEELWELL_<SECTION>_…_<KEY>; settle upstream.

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
    for variable in ROOT_PASSWORD_VARIABLES:
        if env.get(variable):
            auth = dataclasses.replace(
                cfg.auth, root_password=env[variable], root_password_from=variable
            )
            cfg = dataclasses.replace(cfg, auth=auth)
            break
    return cfg


#: where root's password comes from, first set one wins: ours, then devpi's (its images' habit)
ROOT_PASSWORD_VARIABLES = ("WHEELWELL_ROOT_PASSWORD", "DEVPI_PASSWORD")


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


@functools.cache
def env_settings() -> tuple[tuple[str, tuple[str, ...], Any], ...]:
    """(variable, key path, type hint) of every setting the environment may set.

    Sections nest: storage.s3.bucket is WHEELWELL_STORAGE_S3_BUCKET. The table is walked from
    the types, so a new field or section gets its variable without anything to remember.
    """

    def walk(cls: type, path: tuple[str, ...]) -> Iterator[tuple[str, tuple[str, ...], Any]]:
        hints = typing.get_type_hints(cls, include_extras=True)
        for item in dataclasses.fields(cls):
            key, hint = (*path, item.name), hints[item.name]
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                yield from walk(hint, key)
            elif path:  # the top level holds sections only (not indexes, not source)
                yield "_".join(("WHEELWELL", *key)).upper(), key, hint

    return tuple(s for s in walk(Config, ()) if s[0] != "WHEELWELL_AUTH_ROOT_PASSWORD")


def _replace_at(value: Any, path: tuple[str, ...], new: object) -> Any:
    """`value` with the setting at `path` (a key path into nested dataclasses) set to `new`."""
    if not path:
        return new
    inner = _replace_at(getattr(value, path[0]), path[1:], new)
    return dataclasses.replace(value, **{path[0]: inner})


def _env_overrides(cfg: Config, env: Mapping[str, str]) -> Config:
    """WHEELWELL_<SECTION>_[<SUBSECTION>_]<KEY> sets any scalar setting (containers).

    The result is validated as a file would be; every error names the variable.
    """
    problems: list[str] = []
    variables: dict[str, str] = {}
    for var, path, hint in env_settings():
        if var not in env:
            continue
        kind = None
        if typing.get_origin(hint) is Annotated:
            hint, kind = typing.get_args(hint)[0], typing.get_args(hint)[1]
        try:
            raw = yaml.safe_load(env[var]) if hint is not str else env[var]
            cfg = _replace_at(cfg, path, coerce(raw, hint, kind))
        except (TypeError, ValueError, yaml.YAMLError) as exc:
            problems.append(f"environment: {var}: {exc}")
        variables[".".join(path)] = var
    if not problems and variables:
        problems = validate(cfg, variables=variables)
    if problems:
        raise ConfigError(problems)
    return cfg
