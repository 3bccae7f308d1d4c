"""`wheelwell export` and `wheelwell import`: the whole hosted state, verifiably, at one serial.

An export is `manifest.json` (format, version, serial, and every other file with its size and
sha256), `state.json` (every hosted row: users with their password hashes, tokens as hashes,
indexes, uploaded files, wheelhouse records, yanks; canonical JSON) and `blobs/` (the uploads and
the metadata the rows name, content-addressed). It is read from the database in one read
transaction, so it is consistent while a server keeps serving and writing; blobs never change
once stored, and each is hashed as it is copied. DEST is a directory, a `.tar` or a `.tar.zst`;
the manifest comes first in an archive, so import checks every member as it streams by.

Import builds the new data dir beside the target and renames it into place only when every
file matched the manifest: nothing half-imported is ever visible.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import zstandard

from proxy import __version__
from proxy.cluster import mirrorstate
from proxy.cluster.mirrorstate import MIRROR, Held
from proxy.errors import WheelwellError
from proxy.model import is_sha256
from proxy.storage import identity
from proxy.storage.changes import HOSTED_TABLES, dump_hosted
from proxy.storage.db import SCHEMA, latest_serial, migrate
from proxy.storage.identity import Identity

FORMAT = "wheelwell-export"
VERSION = 1
MANIFEST = "manifest.json"
STATE = "state.json"
CHUNK = 1024 * 1024
#: the manifest and the state are read whole; more is not an export of ours
MAX_JSON = 1024**3
R = TypeVar("R")


class ExportError(WheelwellError):
    """An export or import that cannot go on: one line naming the file, nothing left behind."""


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    size: int
    sha256: str


@dataclass(slots=True)
class Report:
    serial: int
    counts: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)  #: what was skipped, and why

    def lines(self, verb: str, where: Path) -> list[str]:
        rows = ", ".join(f"{n} {table}" for table, n in self.counts.items())
        return [
            f"{verb} {where} at serial {self.serial}: {rows}",
            f"{self.files} files, {self.bytes} bytes, every one sha256-checked",
            *self.notes,
        ]


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _read_state(db_path: Path) -> tuple[int, dict[str, list[dict[str, Any]]], Identity | None]:
    """The hosted rows, serial and identity in one read transaction (a server may write)."""
    if not db_path.exists():
        raise ExportError(f"{db_path}: no wheelwell database here")
    try:
        conn = mirrorstate.open_read_only(db_path)
    except sqlite3.Error as exc:
        raise ExportError(f"{db_path}: cannot read the database: {exc}") from exc
    try:
        conn.execute("BEGIN")
        serial = latest_serial(conn)
        tables = dump_hosted(conn)
        ident = identity.read(conn)
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise ExportError(f"{db_path}: cannot read the database: {exc}") from exc
    finally:
        conn.close()
    return serial, tables, ident


def _named_blobs(tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    named = {row["sha256"] for row in tables["files"]}
    named |= {row["metadata_sha256"] for t in ("files", "wheelhouse") for row in tables[t]}
    return sorted(sha for sha in named if sha)


def _blob_path(sha: str) -> str:
    return f"blobs/{sha[:2]}/{sha}"


# ---- writing --------------------------------------------------------------------------------


class _Writer:
    """A directory or a (zstd-compressed) tar; members are added in order."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        name = dest.name
        self.kind = (
            "tar.zst" if name.endswith(".tar.zst") else "tar" if name.endswith(".tar") else "dir"
        )
        self._stack = contextlib.ExitStack()
        self._tar: tarfile.TarFile | None = None
        if dest.exists() and (dest.is_file() or any(dest.iterdir())):
            raise ExportError(f"{dest}: exists and is not empty; give a new name")
        if self.kind == "dir":
            dest.mkdir(parents=True, exist_ok=True, mode=0o700)
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        raw: IO[bytes] = self._stack.enter_context(dest.open("xb"))
        if self.kind == "tar.zst":
            raw = self._stack.enter_context(
                zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
            )
        self._tar = self._stack.enter_context(tarfile.open(fileobj=raw, mode="w|"))  # noqa: SIM115 - closed by the stack

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data))

    def add_stream(self, name: str, source: IO[bytes], size: int) -> str:
        """Copy `size` bytes of `source` in as `name`; returns their sha256."""
        digest = hashlib.sha256()

        def chunks() -> Iterator[bytes]:
            left = size
            while left > 0:
                chunk = source.read(min(CHUNK, left))
                if not chunk:
                    raise ExportError(f"{name}: shorter than its {size} bytes")
                left -= len(chunk)
                digest.update(chunk)
                yield chunk

        if self._tar is None:
            target = self.dest / name
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with target.open("xb") as out:
                for chunk in chunks():
                    out.write(chunk)
        else:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o600, 0  # reproducible members
            self._tar.addfile(info, _ChunkReader(chunks()))
        return digest.hexdigest()

    def close(self) -> None:
        self._stack.close()

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        if self.kind == "dir":
            shutil.rmtree(self.dest, ignore_errors=True)
        else:
            self.dest.unlink(missing_ok=True)


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of chunks (tarfile reads members through `read`)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _hold_wheelhouse(held: Held, blobs: Path, tables: dict[str, list[dict[str, Any]]]) -> int:
    """Open each wheelhouse file (its copy in the store, else its path); returns those gone."""
    gone = 0
    for row in tables["wheelhouse"]:
        sha = str(row["sha256"])
        if sha in held.blobs or not is_sha256(sha):
            continue
        stored = blobs / sha[:2] / sha
        source = stored if stored.is_file() else Path(row["path"])
        try:
            fh = source.open("rb")
        except FileNotFoundError:  # removed from its directory since it was scanned
            gone += 1
            continue
        held.blobs[sha] = (fh, os.fstat(fh.fileno()).st_size)
    return gone


def export(
    data_dir: Path, dest: Path, *, include_mirror: bool = False, include_wheelhouse: bool = False
) -> Report:
    """Write the data dir's hosted state to `dest` (safe while a server runs on `data_dir`).

    `include_mirror` adds the mirror's cached files, aliases and pages; `include_wheelhouse`
    the wheelhouse files' bytes (by default only their records: the files are the operator's).
    """
    held = Held()
    try:
        return _export(data_dir, dest, held, include_mirror, include_wheelhouse)
    finally:
        held.close()


def _export(
    data_dir: Path, dest: Path, held: Held, include_mirror: bool, include_wheelhouse: bool
) -> Report:
    db_path = data_dir / "wheelwell.sqlite3"
    serial, tables, ident = _read_state(db_path)
    whole: dict[str, Any] = {"serial": serial, "tables": tables}
    if ident is not None:  # a replica started from the export goes on from this serial
        whole["identity"] = ident.as_json()
    state = _canonical(whole)
    entries = [Entry(STATE, len(state), hashlib.sha256(state).hexdigest())]
    blobs = data_dir / "blobs"
    hosted = _named_blobs(tables)
    notes: list[str] = []
    if include_mirror:  # held before the manifest is written: eviction cannot take them now
        named = set(hosted)
        mirrored = [s for s in mirrorstate.stored_blobs(blobs) if s not in named]
        mirrorstate.hold_blobs(held, blobs, mirrored)
        mirrorstate.read_pages(held, data_dir / "pages")
    mirror_files = len(held.blobs)
    if include_wheelhouse:
        gone = _hold_wheelhouse(held, blobs, tables)
        notes.append(f"{len(held.blobs) - mirror_files} wheelhouse files' bytes included")
        if gone:
            notes.append(f"skipped {gone} wheelhouse files gone from their directories")
    mirror_state = b""
    if include_mirror:
        held.aliases = mirrorstate.read_aliases(db_path, set(hosted) | set(held.blobs))
        mirror_state = _canonical({"pages": held.pages, "aliases": held.aliases})
        entries.append(Entry(MIRROR, len(mirror_state), hashlib.sha256(mirror_state).hexdigest()))
        for sha, size in held.body_sizes().items():
            entries.append(Entry(mirrorstate.page_path(sha), size, sha))
        if held.skipped or held.pages_skipped:
            notes.append(
                f"skipped {held.skipped} mirror files evicted and {held.pages_skipped} pages "
                "rewritten while the export ran (cache: fetched again when asked)"
            )
    blob_entries: list[Entry] = []
    for sha in hosted:
        if sha in held.blobs:
            continue
        path = blobs / sha[:2] / sha
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ExportError(f"{path}: named by the database but not in the store") from None
        blob_entries.append(Entry(_blob_path(sha), size, sha))
    blob_entries += [Entry(_blob_path(sha), size, sha) for sha, (_, size) in held.blobs.items()]
    entries += sorted(blob_entries, key=lambda e: e.path)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "serial": serial,
        "wheelwell": __version__,
        "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in entries],
    }
    writer = _Writer(dest)
    try:
        writer.add_bytes(MANIFEST, _canonical(manifest) + b"\n")
        writer.add_bytes(STATE, state)
        for entry in entries[1:]:
            if entry.path == MIRROR:
                writer.add_bytes(MIRROR, mirror_state)
            elif entry.path.startswith(mirrorstate.PAGES):
                writer.add_bytes(entry.path, held.body(entry.sha256))
            elif entry.sha256 in held.blobs:
                fh = held.blobs[entry.sha256][0]
                if writer.add_stream(entry.path, fh, entry.size) != entry.sha256:
                    raise ExportError(
                        f"{entry.path}: changed while it was exported (a wheelhouse file "
                        "rewritten in place?); run the export again"
                    )
            else:
                source = blobs / entry.sha256[:2] / entry.sha256
                with source.open("rb") as fh:
                    if writer.add_stream(entry.path, fh, entry.size) != entry.sha256:
                        raise ExportError(
                            f"{source}: its bytes do not match its sha256 (run cache verify)"
                        )
        writer.close()
    except BaseException:
        writer.discard()
        raise
    report = Report(serial, {t: len(tables[t]) for t in HOSTED_TABLES}, notes=notes)
    if include_mirror:
        report.counts["mirror pages"] = len(held.pages)
        report.counts["mirror files"] = mirror_files
    report.files, report.bytes = len(entries) + 1, sum(e.size for e in entries)
    return report


# ---- reading --------------------------------------------------------------------------------


def _members(src: Path) -> Iterator[tuple[str, IO[bytes], int]]:
    """(name, file, size) of every file of the export, the manifest first."""
    if src.is_dir():
        manifest = src / MANIFEST
        if not manifest.is_file():
            raise ExportError(f"{manifest}: missing; not a wheelwell export")
        names = [MANIFEST] + [
            str(p.relative_to(src)) for p in sorted(src.rglob("*")) if p.is_file()
        ]
        for name in dict.fromkeys(names):
            path = src / name
            with path.open("rb") as fh:
                yield name, fh, path.stat().st_size
        return
    try:
        with contextlib.ExitStack() as stack:
            raw: IO[bytes] = stack.enter_context(src.open("rb"))
            if src.name.endswith(".zst"):
                raw = stack.enter_context(zstandard.ZstdDecompressor().stream_reader(raw))
            tar = stack.enter_context(tarfile.open(fileobj=raw, mode="r|"))
            for member in tar:
                if not member.isfile():
                    raise ExportError(f"{src}: {member.name}: not a regular file")
                member_file = tar.extractfile(member)
                if member_file is None:
                    raise ExportError(f"{src}: {member.name}: unreadable")
                yield member.name, member_file, member.size
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise ExportError(f"{src}: truncated or damaged archive ({exc})") from exc
    except FileNotFoundError:
        raise ExportError(f"{src}: no such file or directory") from None


def _read_json(src: Path, name: str, fh: IO[bytes], size: int) -> Any:
    if size > MAX_JSON:
        raise ExportError(f"{src}: {name}: {size} bytes is too large")
    try:
        return json.loads(fh.read())
    except ValueError as exc:
        raise ExportError(f"{src}: {name}: not JSON ({exc})") from exc


def _check_manifest(src: Path, manifest: Any) -> dict[str, Entry]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{src}: {MANIFEST}: not a wheelwell export manifest")
    if manifest.get("version") != VERSION:
        raise ExportError(
            f"{src}: {MANIFEST}: export format version {manifest.get('version')!r} is not "
            f"supported (this wheelwell reads version {VERSION})"
        )
    entries: dict[str, Entry] = {}
    try:
        for item in manifest["files"]:
            entry = Entry(str(item["path"]), int(item["size"]), str(item["sha256"]))
            blob = entry.path in (_blob_path(entry.sha256), mirrorstate.page_path(entry.sha256))
            if not (blob and is_sha256(entry.sha256)) and entry.path not in (STATE, MIRROR):
                raise ExportError(f"{src}: {MANIFEST}: unexpected file {entry.path!r}")
            entries[entry.path] = entry
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{src}: {MANIFEST}: malformed ({exc})") from exc
    if STATE not in entries:
        raise ExportError(f"{src}: {MANIFEST}: lists no {STATE}")
    return entries


def import_(src: Path, data_dir: Path) -> Report:
    """Build a data dir from an export; every file checked before anything becomes visible."""

    def build(building: Path) -> Report:
        try:
            return _build(src, building)
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:  # inside a member
            raise ExportError(f"{src}: truncated or damaged archive ({exc})") from exc

    return build_into(data_dir, build)


def build_into(data_dir: Path, build: Callable[[Path], R]) -> R:
    """Run `build` on a new dir beside `data_dir`, then rename it into place; on any error the
    target is untouched (imports: nothing half-imported is ever visible)."""
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise ExportError(f"{data_dir}: not empty; import only into a new or empty data dir")
    building = data_dir.parent / f".{data_dir.name}.import-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True, mode=0o700)
    try:
        report = build(building)
        if data_dir.exists():
            data_dir.rmdir()
        building.rename(data_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return report


def _build(src: Path, building: Path) -> Report:
    members = _members(src)
    first = next(members, None)
    if first is None or first[0] != MANIFEST:
        raise ExportError(f"{src}: {MANIFEST} must come first; not a wheelwell export")
    manifest = _read_json(src, *first)
    entries = _check_manifest(src, manifest)
    seen: set[str] = set()
    state: Any = None
    mirror: Any = None
    bodies = building / ".pages"  #: page bodies, until they are stored in the page cache
    for name, fh, size in members:
        entry = entries.get(name)
        if entry is None:
            raise ExportError(f"{src}: {name}: not in the manifest")
        if size != entry.size:
            raise ExportError(f"{src}: {name}: {size} bytes, the manifest says {entry.size}")
        digest = hashlib.sha256()
        if name in (STATE, MIRROR):
            data = fh.read(MAX_JSON + 1)
            digest.update(data)
        else:
            page = name.startswith(mirrorstate.PAGES)
            target = bodies / entry.sha256 if page else building / name
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with target.open("xb") as out:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        if digest.hexdigest() != entry.sha256:
            raise ExportError(f"{src}: {name}: its sha256 differs from the manifest's")
        if name == STATE:
            state = _read_json(src, name, io.BytesIO(data), len(data))
        elif name == MIRROR:
            mirror = _read_json(src, name, io.BytesIO(data), len(data))
        seen.add(name)
    missing = sorted(set(entries) - seen)
    if missing and not src.is_dir():  # a tar cut between members ends without an error
        raise ExportError(
            f"{src}: truncated or damaged archive ({missing[0]}: in the manifest, not in it)"
        )
    if missing:
        raise ExportError(f"{src}: {missing[0]}: in the manifest but not in the export")
    report = write_database(src, building / "wheelwell.sqlite3", state, int(manifest["serial"]))
    if MIRROR in entries:
        _write_mirror(src, building, mirror, entries)
        report.counts["mirror pages"] = len(mirror["pages"])
        shutil.rmtree(bodies, ignore_errors=True)
    report.files = len(entries) + 1
    report.bytes = sum(e.size for e in entries.values())
    return report


def _write_mirror(src: Path, building: Path, mirror: Any, entries: dict[str, Entry]) -> None:
    """The mirror's pages into the page cache and its aliases into the database."""
    blobs = {e.sha256 for e in entries.values() if e.path.startswith("blobs/")}
    bodies = {e.sha256 for e in entries.values() if e.path.startswith(mirrorstate.PAGES)}
    try:
        pages, aliases = mirrorstate.check_mirror(mirror, bodies, blobs)
    except ValueError as exc:
        raise ExportError(f"{src}: {MIRROR}: {exc}") from exc
    mirrorstate.write_pages(building / "pages", pages, building / ".pages")
    conn = sqlite3.connect(building / "wheelwell.sqlite3", isolation_level=None)
    try:
        conn.execute("BEGIN")
        mirrorstate.write_aliases(conn, aliases)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise ExportError(f"{src}: {MIRROR}: aliases do not fit: {exc}") from exc
    finally:
        conn.close()


def _check_wheelhouse_paths(src: Path, tables: dict[str, list[dict[str, Any]]]) -> None:
    """A wheelhouse row is served from its path: it must lie in a directory its index names."""
    try:
        dirs = {
            row["name"]: [Path(d) for d in json.loads(row["config"]).get("wheelhouse", [])]
            for row in tables["indexes"]
        }
        for row in tables["wheelhouse"]:
            where = Path(row["path"])
            inside = any(where.is_relative_to(d) for d in dirs.get(row["idx"], []))
            if not inside or ".." in where.parts:
                raise ExportError(
                    f"{src}: {STATE}: wheelhouse file {row['path']!r} is outside the wheelhouse "
                    f"directories of index {row['idx']!r}"
                )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ExportError(f"{src}: {STATE}: malformed index or wheelhouse rows ({exc})") from exc


def write_database(src: Path, path: Path, state: Any, serial: int) -> Report:
    try:
        tables: dict[str, list[dict[str, Any]]] = state["tables"]
        if int(state["serial"]) != serial or not set(tables) <= set(HOSTED_TABLES):
            raise ValueError("its serial or tables differ from the manifest's")
        # a table newer than the export (toxresults) is empty in it
        tables = {t: tables.get(t, []) for t in HOSTED_TABLES}
        ident = Identity.from_json(state["identity"]) if "identity" in state else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{src}: {STATE}: malformed ({exc})") from exc
    _check_wheelhouse_paths(src, tables)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(SCHEMA)
        migrate(conn)
        conn.execute("BEGIN")
        for table in HOSTED_TABLES:
            known = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            for row in tables[table]:
                if not isinstance(row, dict) or not row or not set(row) <= known:
                    raise ValueError(f"a {table} row has columns this wheelwell does not know")
                columns = ", ".join(row)
                marks = ", ".join("?" for _ in row)
                conn.execute(
                    f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 - names from HOSTED_TABLES and the schema
                    tuple(row.values()),
                )
        conn.execute("DELETE FROM sqlite_sequence WHERE name = 'changelog'")
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('changelog', ?)", (serial,))
        # the exported history's, so a replica may follow on from it; an export made before
        # identities gets a new one (a replica then starts from its primary's snapshot)
        identity.write(conn, ident if ident is not None else Identity.new(serial))
        identity.mark_imported(conn)  # a new epoch once it serves as a primary
        conn.execute("COMMIT")
    except (sqlite3.Error, ValueError, TypeError) as exc:
        raise ExportError(
            f"{src}: {STATE}: rows do not fit this wheelwell's tables: {exc}"
        ) from exc
    finally:
        conn.close()
    return Report(serial, {t: len(tables[t]) for t in HOSTED_TABLES})
