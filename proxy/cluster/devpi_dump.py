"""`wheelwell import --from-devpi DUMPDIR`: a devpi-export dump (dumpversion 2) as a new data dir.

devpi's dump is `dataindex.json` (users with their password hashes, indexes with their
configuration, projects → versions → metadata, and a list of files) plus the files under
`<user>/<index>/…`. Each file's bytes are checked against every hash the dump gives for it, each
release file is read the way an upload is (`inspect_distribution`: its core metadata becomes the
PEP 658 file), and the rows go into a database built beside the target by `export.build_into`,
so nothing half-imported is ever visible. devpi's password hashes are kept as they are
(argon2 PHC strings, or the salted sha256 of devpi before 4.2) and `hosted/auth.check_password`
verifies them. What has no place in wheelwell is listed in the report, with why.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import hashlib
import json
import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from proxy.cluster.export import MAX_JSON, ExportError, build_into, write_database
from proxy.config import (
    ANONYMOUS,
    AUTHENTICATED,
    IndexConfig,
    IndexKind,
    check_indexes,
    hook_problems,
)
from proxy.errors import InvalidInputError, InvalidNameError, WheelwellError
from proxy.hosted.auth import TOKEN_USER
from proxy.hosted.toxresults import parse_report, render_report, render_summary
from proxy.hosted.uploads import inspect_distribution
from proxy.indexes.store import to_record
from proxy.model import normalize, parse_index_name
from proxy.storage.changes import HOSTED_TABLES

DATAINDEX = "dataindex.json"
DUMPVERSIONS = ("2",)
#: tox results and doc zips, kept beside the database until wheelwell has a place for them
ATTACHMENTS = "devpi"
CHUNK = 1024 * 1024
#: a tox result larger than a POST of one may be is not imported (the app's body limit)
MAX_TOXRESULT = 1024 * 1024
#: devpi's legacy (before 4.2) salted sha256, as hosted/auth.check_password reads it
LEGACY_SCHEME = "devpi-sha256"
#: hash_spec / hashes names hashlib verifies
_HASHES = ("sha256", "sha512", "sha384", "sha224", "sha1", "md5", "blake2b")

#: devpi index options that have no wheelwell equivalent, and why
_SKIPPED_OPTIONS = {
    "title": "wheelwell indexes have no title",
    "description": "wheelwell indexes have no description",
    "custom_data": "wheelwell indexes have no free-form data",
    "mirror_whitelist_inheritance": "wheelwell applies each index's own mirror_whitelist",
    "mirror_web_url_fmt": "wheelwell links no upstream web pages",
    "mirror_cache_expiry": "set upstream.page_ttl in the config instead",
    "mirror_no_project_list": "wheelwell streams the project list itself",
    "mirror_use_external_urls": "wheelwell always serves mirrored files itself",
    "mirror_ignore_serial_header": "wheelwell does not check upstream serials",
    "mirror_ignore_serial": "wheelwell does not check upstream serials",
    "mirror_whitelist": "a mirror has no whitelist in wheelwell (it is a stage's setting)",
    "uploadtrigger_jenkins": "wheelwell has no upload triggers",
    "pypi_whitelist": "renamed mirror_whitelist by devpi 3; old value skipped",
}
#: the order of the report's "mapped" line
_ORDER = (
    "users",
    "private indexes",
    "mirror indexes",
    "release files",
    "PEP 658 metadata files",
    "mirrored files",
    "tox results",
    "doc zips",
)
_MAPPED_OPTIONS = {
    "type",
    "bases",
    "volatile",
    "acl_upload",
    "acl_toxresult_upload",
    "mirror_whitelist",
    "mirror_url",
    "uploadtrigger_jenkins",  # devpi-jenkins's: the same option here (docs/hooks.md)
}


@dataclass(slots=True)
class DevpiReport:
    """What was mapped, changed and skipped, one line per kind of item (the CLI prints it)."""

    dump: Path
    devpi_version: str = "?"
    mapped: Counter[str] = field(default_factory=Counter)
    changed: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    users_to_act: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0

    def skip(self, why: str, what: str) -> None:
        self.skipped.setdefault(why, []).append(what)

    def lines(self, where: Path) -> list[str]:
        kinds = sorted(self.mapped, key=lambda k: (_ORDER.index(k.split(" (")[0]), k))
        mapped = ", ".join(f"{self.mapped[kind]} {kind}" for kind in kinds) or "nothing"
        out = [
            f"imported devpi {self.devpi_version} dump {self.dump} into {where}",
            f"mapped: {mapped}",
            f"{self.files} files, {self.bytes} bytes, every one checked against the dump's hashes",
        ]
        out += [f"changed: {line}" for line in self.changed]
        for why, items in self.skipped.items():
            items = sorted(items)
            shown = ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")
            out.append(f"skipped: {shown}: {why}")
        out += [f"user {line}" for line in self.users_to_act]
        return out


def import_devpi(dump: Path, data_dir: Path) -> DevpiReport:
    """Build a new data dir from a devpi-export dump; the target is untouched on any error."""
    return build_into(data_dir, lambda building: _Build(dump, building).run())


def _fail(where: Path, message: str) -> ExportError:
    return ExportError(f"{where}: {message}")


def _dict(where: Path, value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"{what} is not an object")
    return value


def _list(where: Path, value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(where, f"{what} is not a list")
    return value


def _strings(where: Path, value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    items = _list(where, value, what)
    if not all(isinstance(v, str) for v in items):
        raise _fail(where, f"{what} is not a list of strings")
    return items


def _devpi_time(value: Any) -> float | None:
    """devpi's "2026-12-01T23:46:44Z", "Tue, 01 Dec 2026 23:46:54 GMT" or [Y, M, D, h, m, s]."""
    with contextlib.suppress(ValueError, TypeError, OverflowError, IndexError):
        if isinstance(value, list):
            return float(calendar.timegm((*[int(v) for v in value[:6]], 0, 0, 0)))
        if isinstance(value, str) and value.endswith("Z"):
            return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))
        if isinstance(value, str):
            return parsedate_to_datetime(value).timestamp()
    return None


class _Build:
    """One import: reads the dump, copies and checks its files, writes the rows."""

    def __init__(self, dump: Path, building: Path) -> None:
        self.dump = dump
        self.building = building
        self.json_path = dump / DATAINDEX
        self.report = DevpiReport(dump)
        self.tables: dict[str, list[dict[str, Any]]] = {t: [] for t in HOSTED_TABLES}
        self.attachments: list[dict[str, Any]] = []

    def run(self) -> DevpiReport:
        data = self._read_dataindex()
        self.report.devpi_version = str(data.get("devpi_server", "?"))
        users = _dict(self.json_path, data.get("users"), "'users'")
        indexes = _dict(self.json_path, data.get("indexes"), "'indexes'")
        for name, user in users.items():
            self._user(name, _dict(self.json_path, user, f"user {name!r}"))
        configs = [self._index(name, indexes, set(users)) for name in indexes]
        problems = check_indexes(configs)
        if problems:
            raise _fail(self.json_path, f"index {problems[0].subject!r}: {problems[0].message}")
        for cfg in configs:
            self.tables["indexes"].append(
                {"name": cfg.name, "config": json.dumps(to_record(cfg), sort_keys=True)}
            )
        for cfg in configs:
            self._files(cfg, _dict(self.json_path, indexes[cfg.name], cfg.name))
        self._toxresults()
        if self.attachments:
            where = self.building / ATTACHMENTS / "attachments.json"
            where.write_text(json.dumps(self.attachments, indent=1, sort_keys=True) + "\n")
        write_database(
            self.json_path,
            self.building / "wheelwell.sqlite3",
            {"serial": 0, "tables": self.tables},
            0,
        )
        return self.report

    def _read_dataindex(self) -> dict[str, Any]:
        if not self.dump.is_dir():
            raise _fail(self.dump, "not a directory; give the directory devpi-export wrote")
        try:
            if self.json_path.stat().st_size > MAX_JSON:
                raise _fail(self.json_path, "too large")
            data = json.loads(self.json_path.read_bytes())
        except FileNotFoundError:
            raise _fail(self.json_path, "missing; not a devpi-export dump") from None
        except ValueError as exc:
            raise _fail(self.json_path, f"not JSON ({exc})") from exc
        data = _dict(self.json_path, data, "the dump")
        version = data.get("dumpversion")
        if version not in DUMPVERSIONS:
            raise _fail(
                self.json_path,
                f"devpi dumpversion {version!r} is not supported (this wheelwell reads "
                f"{', '.join(DUMPVERSIONS)}; export with devpi-server 4 or later)",
            )
        return data

    # ---- users -----------------------------------------------------------------------------

    def _user(self, name: str, user: dict[str, Any]) -> None:
        try:
            parse_index_name(name, "x")
            if name == TOKEN_USER:
                raise InvalidNameError(name, "reserved")
        except InvalidNameError as exc:
            raise _fail(self.json_path, f"user {name!r}: not a valid wheelwell user name") from exc
        pwhash, salt = user.get("pwhash"), user.get("pwsalt")
        if isinstance(pwhash, str) and pwhash.startswith("$argon2"):
            stored = pwhash
        elif isinstance(pwhash, str) and isinstance(salt, str) and salt and pwhash:
            stored = f"{LEGACY_SCHEME}${salt}${pwhash}"
        elif isinstance(pwhash, str) and ":" in pwhash:  # devpi's own "salt:hash" form
            salt, _, digest = pwhash.partition(":")
            stored = f"{LEGACY_SCHEME}${salt}${digest}"
        else:
            stored = "!"  # matches no password
            self.report.users_to_act.append(
                f"{name}: no password hash wheelwell can verify; root must set one "
                f"(wheelwell user {name} --password …) before {name} can log in"
            )
        created = _devpi_time(user.get("created")) or 0.0
        self.tables["users"].append({"name": name, "pwhash": stored, "created": created})
        self.report.mapped["users"] += 1
        for key in sorted(set(user) - {"pwhash", "pwsalt", "created", "username", "indexes"}):
            self.report.skip(f"wheelwell users have no {key}", f"{name}.{key}")

    # ---- indexes ---------------------------------------------------------------------------

    def _index(self, name: str, indexes: dict[str, Any], users: set[str]) -> IndexConfig:
        where = self.json_path
        entry = _dict(where, indexes[name], f"index {name!r}")
        ixconfig = _dict(where, entry.get("indexconfig"), f"index {name!r} indexconfig")
        user, _, _ = name.partition("/")
        if user not in users:
            raise _fail(where, f"index {name!r} belongs to no user of the dump")
        kind = ixconfig.get("type")
        if kind not in ("stage", "mirror"):
            raise _fail(where, f"index {name!r}: type {kind!r} is neither stage nor mirror")
        bases = []
        for base in _strings(where, ixconfig.get("bases"), f"{name} bases"):
            if base in indexes:
                bases.append(base)
            else:
                self.report.changed.append(f"{name}: base {base} dropped (not in the dump)")
        acl_upload = self._acl(name, ixconfig.get("acl_upload"), "acl_upload", users)
        testers = ixconfig.get("acl_toxresult_upload", [ANONYMOUS])
        acl_toxresult_upload = self._acl(name, testers, "acl_toxresult_upload", users)
        whitelist = []
        for project in _strings(where, ixconfig.get("mirror_whitelist"), f"{name} whitelist"):
            try:
                whitelist.append(project if project == "*" else normalize(project))
            except InvalidNameError as exc:
                raise _fail(where, f"index {name!r}: mirror_whitelist {project!r}") from exc
        volatile = ixconfig.get("volatile", True)
        if isinstance(volatile, str):
            volatile = volatile.lower() not in ("false", "no", "0", "off")
        mirror = kind == "mirror"
        upstream = ixconfig.get("mirror_url", "") if mirror else ""
        if not isinstance(upstream, str):
            raise _fail(where, f"index {name!r}: mirror_url is not a string")
        if mirror:
            self.report.changed.append(
                f"{name}: mirror of {upstream or 'the default upstream'}; an index the "
                "config declares takes the config's settings at start"
            )
        for key in sorted(set(ixconfig) - _MAPPED_OPTIONS) + (
            ["mirror_whitelist"] if mirror and ixconfig.get("mirror_whitelist") else []
        ):
            why = _SKIPPED_OPTIONS.get(key, "no wheelwell equivalent")
            self.report.skip(f"index option: {why}", f"{name}.{key}")
        self.report.mapped["mirror indexes" if mirror else "private indexes"] += 1
        cfg = IndexConfig(
            name=name,
            kind=IndexKind.MIRROR if mirror else IndexKind.PRIVATE,
            bases=() if mirror else tuple(bases),
            upstream=upstream,
            mirror_whitelist=() if mirror else tuple(whitelist),
            volatile=bool(volatile),
            acl_upload=tuple(acl_upload),
            acl_toxresult_upload=tuple(acl_toxresult_upload),
        )
        return self._jenkins(cfg, ixconfig.get("uploadtrigger_jenkins"))

    def _jenkins(self, cfg: IndexConfig, trigger: Any) -> IndexConfig:
        """devpi-jenkins's trigger URL carries over when wheelwell can call it the same way."""
        if not trigger:
            return cfg
        with_trigger = dataclasses.replace(
            cfg, uploadtrigger_jenkins=trigger if isinstance(trigger, str) else ""
        )
        problems = hook_problems(with_trigger) if with_trigger.uploadtrigger_jenkins else [("", "")]
        if problems:
            self.report.changed.append(
                f"{cfg.name}: uploadtrigger_jenkins dropped ({problems[0][1] or 'not a string'})"
            )
            return cfg
        return with_trigger

    def _acl(self, name: str, value: Any, key: str, users: Collection[str]) -> list[str]:
        """An acl's users of the dump and specials; the rest dropped, each reported."""
        kept = []
        for who in _strings(self.json_path, value, f"{name} {key}"):
            if who in (ANONYMOUS, AUTHENTICATED) or who in users:
                kept.append(who)
            else:
                self.report.changed.append(
                    f"{name}: {key} {who} dropped (not a user of the dump; groups are "
                    "not supported)"
                )
        return kept

    # ---- files -----------------------------------------------------------------------------

    def _files(self, cfg: IndexConfig, entry: dict[str, Any]) -> None:
        where = self.json_path
        projects = _dict(where, entry.get("projects") or {}, f"{cfg.name} projects")
        for desc in _list(where, entry.get("files"), f"{cfg.name} files"):
            desc = _dict(where, desc, f"a file of {cfg.name}")
            kind = desc.get("type")
            relpath = desc.get("relpath")
            if not isinstance(relpath, str) or not relpath:
                raise _fail(where, f"a file of {cfg.name} has no relpath")
            path = self._dump_path(relpath)
            sha256, size = self._copy_checked(path, desc)
            self.report.files += 1
            self.report.bytes += size
            if cfg.kind is IndexKind.MIRROR:
                self.report.mapped["mirrored files (into the cache)"] += 1
                continue
            if kind == "releasefile":
                self._release_file(cfg, desc, path, sha256, size, projects)
            elif kind in ("toxresult", "doczip"):
                self._attachment(cfg, desc, path.name, sha256, str(kind))
            else:
                raise _fail(where, f"{relpath}: unknown file type {kind!r}")
        for project, versions in projects.items():
            listed = {row["project"] for row in self.tables["files"] if row["idx"] == cfg.name}
            if _normalized(project) not in listed:
                for version in _dict(where, versions, project):
                    self.report.skip(
                        "a release without files (wheelwell lists only files)",
                        f"{cfg.name}/{project} {version}",
                    )

    def _dump_path(self, relpath: str) -> Path:
        path = self.dump / relpath
        if ".." in Path(relpath).parts or Path(relpath).is_absolute():
            raise _fail(self.json_path, f"file {relpath!r} lies outside the dump")
        if not path.is_file():
            raise _fail(path, f"named by {DATAINDEX} but missing from the dump")
        return path

    def _copy_checked(self, path: Path, desc: dict[str, Any]) -> tuple[str, int]:
        """Copy into blobs/ (or devpi/ for attachments) and check every hash the dump gives."""
        mapping = desc.get("entrymapping") or {}
        expected: dict[str, str] = {}
        if isinstance(mapping, dict):
            hashes = mapping.get("hashes")
            if isinstance(hashes, dict):
                expected.update({k: str(v) for k, v in hashes.items() if k in _HASHES})
            spec = mapping.get("hash_spec")
            if isinstance(spec, str) and "=" in spec:
                algo, _, value = spec.partition("=")
                if algo in _HASHES:
                    expected[algo] = value
            if isinstance(mapping.get("md5"), str):
                expected["md5"] = mapping["md5"]
        digests = {a: hashlib.new(a) for a in {*expected, "sha256"}}
        temp = self.building / "incoming"
        size = 0
        with path.open("rb") as fh, temp.open("wb") as out:
            while chunk := fh.read(CHUNK):
                size += len(chunk)
                out.write(chunk)
                for digest in digests.values():
                    digest.update(chunk)
        for algo, value in expected.items():
            if digests[algo].hexdigest() != value.lower():
                temp.unlink()
                raise _fail(path, f"its {algo} differs from the dump's {DATAINDEX}")
        sha256 = digests["sha256"].hexdigest()
        kind = desc.get("type")
        home = (
            self.building / ATTACHMENTS / sha256
            if kind in ("toxresult", "doczip")
            else self.building / "blobs" / sha256[:2] / sha256
        )
        home.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp.replace(home)
        return sha256, size

    def _release_file(
        self,
        cfg: IndexConfig,
        desc: dict[str, Any],
        path: Path,
        sha256: str,
        size: int,
        projects: dict[str, Any],
    ) -> None:
        filename = path.name
        try:
            found = inspect_distribution(self.building / "blobs" / sha256[:2] / sha256, filename)
        except WheelwellError as exc:
            self.report.skip(f"wheelwell does not take it as an upload ({exc})", filename)
            return
        metadata_sha = None
        if found.metadata is not None:
            metadata_sha = hashlib.sha256(found.metadata).hexdigest()
            target = self.building / "blobs" / metadata_sha[:2] / metadata_sha
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not target.exists():
                target.write_bytes(found.metadata)
        version = str(desc.get("version") or found.version)
        versiondata = _versiondata(projects, str(desc.get("projectname", "")), version)
        yanked = versiondata.get("yanked")
        log = [e for e in desc.get("log") or [] if isinstance(e, dict)]
        uploads = [e for e in log if e.get("what") == "upload"] or [{}]
        mapping = desc.get("entrymapping") or {}
        uploaded = _devpi_time(uploads[0].get("when")) or _devpi_time(
            mapping.get("last_modified") if isinstance(mapping, dict) else None
        )
        uploader = uploads[0].get("who")
        if any(
            row["filename"] == filename for row in self.tables["files"] if row["idx"] == cfg.name
        ):
            raise _fail(self.json_path, f"{cfg.name}: {filename} is listed twice")
        self.tables["files"].append(
            {
                "idx": cfg.name,
                "project": found.name,
                "version": str(found.version),
                "filename": filename,
                "sha256": sha256,
                "size": size,
                "requires_python": found.requires_python,
                "metadata_sha256": metadata_sha,
                "yanked": 1 if yanked else 0,
                "yanked_reason": yanked if isinstance(yanked, str) and yanked else None,
                "uploaded": uploaded or 0.0,
                "uploader": uploader if isinstance(uploader, str) else None,
                "summary": found.summary,
                "description": found.description,
                "description_type": found.description_type,
            }
        )
        self.report.mapped["release files"] += 1
        if metadata_sha:
            self.report.mapped["PEP 658 metadata files"] += 1

    def _attachment(
        self, cfg: IndexConfig, desc: dict[str, Any], name: str, sha256: str, kind: str
    ) -> None:
        for_entrypath = desc.get("for_entrypath")
        log = [e for e in desc.get("log") or [] if isinstance(e, dict)]
        who = log[0].get("who") if log else None
        self.attachments.append(
            {
                "kind": kind,
                "index": cfg.name,
                "project": normalize(str(desc.get("projectname", ""))),
                "version": str(desc.get("version", "")),
                "name": name,
                "sha256": sha256,
                #: the release file a tox result is for (its file name in this index)
                "for_filename": Path(for_entrypath).name
                if isinstance(for_entrypath, str)
                else None,
                "posted": _devpi_time(log[0].get("when")) if log else None,
                "poster": who if isinstance(who, str) else None,
            }
        )
        if kind == "doczip":
            self.report.mapped[f"doc zips (kept in {ATTACHMENTS}/, not served)"] += 1

    def _toxresults(self) -> None:
        """devpi's tox results become wheelwell's, on the release file each is for."""
        files = {(row["idx"], row["filename"]): row for row in self.tables["files"]}
        numbers: Counter[tuple[str, str]] = Counter()
        for item in self.attachments:
            if item["kind"] != "toxresult":
                continue
            label = f"{item['index']}/{item['for_filename'] or item['name']}"
            row = files.get((item["index"], item["for_filename"]))
            if row is None:
                self.report.skip("a tox result for a file not imported", label)
                continue
            where = self.building / ATTACHMENTS / item["sha256"]
            try:
                if where.stat().st_size > MAX_TOXRESULT:
                    raise InvalidInputError(f"larger than {MAX_TOXRESULT} bytes")
                data = json.loads(where.read_bytes())
                report = parse_report(data)
            except (ValueError, InvalidInputError) as exc:
                self.report.skip(f"a tox result wheelwell cannot read ({exc})", label)
                continue
            key = (row["idx"], row["filename"])
            self.tables["toxresults"].append(
                {
                    "idx": row["idx"],
                    "filename": row["filename"],
                    "n": numbers[key],
                    "sha256": row["sha256"],
                    "project": row["project"],
                    "version": row["version"],
                    "data": render_report(data),
                    "summary": render_summary(report),
                    "posted": item.get("posted") or row["uploaded"],
                    "poster": item.get("poster"),
                }
            )
            numbers[key] += 1
            self.report.mapped["tox results"] += 1


def _normalized(name: str) -> str:
    try:
        return normalize(name)
    except InvalidNameError:
        return name


def _versiondata(projects: dict[str, Any], project: str, version: str) -> dict[str, Any]:
    with contextlib.suppress(InvalidNameError):
        for name, versions in projects.items():
            if isinstance(versions, dict) and normalize(name) == normalize(project):
                data = versions.get(version)
                return data if isinstance(data, dict) else {}
    return {}


def iter_attachments(data_dir: Path) -> Iterator[dict[str, Any]]:
    """The tox results and doc zips an import kept (for the CI issue to take over)."""
    where = data_dir / ATTACHMENTS / "attachments.json"
    if where.exists():
        yield from json.loads(where.read_text())
