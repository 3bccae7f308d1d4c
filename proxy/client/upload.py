"""`wheelwell upload --from-dir`: send every wheel and sdist an index lacks, as twine would."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from proxy.client.api import Api, render_path
from proxy.client.dists import (
    CHUNK,
    DistFile,
    compute_digests,
    find_dists,
    load_metadata,
    parse_metadata,
    render_form,
)
from proxy.client.errors import ClientError, ServerError, UnreachableError, UsageError

#: answers after which every further upload would fail the same way
_FATAL_STATUSES = frozenset({401, 403, 404, 405})


@dataclass(frozen=True, slots=True)
class Multipart:
    """A multipart/form-data body whose file part is read from disk while it is sent."""

    boundary: str
    head: bytes  #: every text field, then the file part's headers
    path: Path
    size: int
    tail: bytes

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def length(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def iter_chunks(self) -> Iterator[bytes]:
        """The body in pieces; the file is never held in memory whole."""
        yield self.head
        sent = 0
        try:
            with self.path.open("rb") as stream:
                while chunk := stream.read(CHUNK):
                    sent += len(chunk)
                    if sent > self.size:
                        break
                    yield chunk
        except OSError as exc:
            raise ClientError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if sent != self.size:
            raise ClientError(f"{self.path.name} changed size while it was being uploaded")
        yield self.tail


def _quote(value: str) -> str:
    """Escape a Content-Disposition parameter the way browsers (and the HTML spec) do."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def render_multipart(
    fields: Sequence[tuple[str, str]], file_field: str, path: Path, size: int, boundary: str = ""
) -> Multipart:
    """Encode form fields and one file part; the boundary is random unless given."""
    boundary = boundary or "wheelwell-" + secrets.token_hex(16)
    head = bytearray()
    for name, value in fields:
        head += f"--{boundary}\r\n".encode()
        head += f'Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
        head += value.encode() + b"\r\n"
    head += (
        f"--{boundary}\r\nContent-Disposition: form-data; "
        f'name="{_quote(file_field)}"; filename="{_quote(path.name)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    if boundary.encode() in head.replace(f"--{boundary}\r\n".encode(), b""):
        return render_multipart(fields, file_field, path, size)  # a value held the boundary
    return Multipart(boundary, bytes(head), path, size, f"\r\n--{boundary}--\r\n".encode())


def render_size(size: int) -> str:
    """A file size as pip and twine show it: decimal units, one decimal place."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


class Outcome(enum.StrEnum):
    """What happened to one file."""

    UPLOADED = "uploaded"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(slots=True)
class Tally:
    """How each file went, for the summary line and the exit code."""

    uploaded: int = 0
    skipped: int = 0
    failed: int = 0

    def add(self, outcome: Outcome) -> None:
        if outcome is Outcome.UPLOADED:
            self.uploaded += 1
        elif outcome is Outcome.SKIPPED:
            self.skipped += 1
        else:
            self.failed += 1

    def render(self) -> str:
        return f"{self.uploaded} uploaded, {self.skipped} skipped, {self.failed} failed"


def fetch_existing(api: Api, index: str, project: str) -> dict[str, str]:
    """The index's own files of one project, filename → sha256 (empty when it has none)."""
    try:
        data = api.fetch_json("GET", render_path(*index.split("/"), project))
    except ServerError as exc:
        if exc.status == 404:
            return {}
        raise
    releases = data.get("releases", {}) if isinstance(data, dict) else {}
    return {f["filename"]: f["sha256"] for files in releases.values() for f in files}


def check_upload_index(api: Api, index: str) -> None:
    """Fail before any upload when the index does not exist or cannot take uploads."""
    data = api.fetch_json("GET", render_path(*index.split("/")))
    result = data.get("result", {}) if isinstance(data, dict) else {}
    if result.get("type") == "mirror":
        raise UsageError(f"{index} is a mirror index; upload to a private index")


def upload_one(api: Api, index: str, dist: DistFile, known: dict[str, str], out: TextIO) -> Outcome:
    """Upload one file unless the index has it; the outcome: uploaded, skipped or failed."""
    digests = compute_digests(dist.path)
    print(f"uploading {dist.filename} ({render_size(digests.size)}) ... ", end="", file=out)
    out.flush()
    if known.get(dist.filename) == digests.sha256:
        print(f"skipped: already on {index}", file=out)
        return Outcome.SKIPPED
    if dist.filename in known:
        print(f"failed: {index} has a different file of this name", file=out)
        return Outcome.FAILED
    try:
        raw = parse_metadata(dist, load_metadata(dist))
        body = render_multipart(render_form(dist, raw, digests), "content", dist.path, digests.size)
        path = render_path(*index.split("/")) + "/"
        api.fetch_upload(path, body.iter_chunks(), body.length, body.content_type)
    except ClientError as exc:
        print(f"failed: {exc}", file=out)
        if isinstance(exc, UnreachableError) or (
            isinstance(exc, ServerError) and exc.status in _FATAL_STATUSES
        ):
            raise
        return Outcome.FAILED
    print("done", file=out)
    return Outcome.UPLOADED


def upload_dir(api: Api, index: str, directory: Path, recursive: bool, out: TextIO) -> Tally:
    """Upload what `directory` holds and `index` lacks; stop early only when all would fail."""
    dists = find_dists(directory, recursive)
    tally = Tally()
    if not dists:
        print(f"no wheels or sdists in {directory}", file=out)
        return tally
    check_upload_index(api, index)
    known: dict[str, dict[str, str]] = {}
    try:
        for dist in dists:
            if dist.project not in known:
                known[dist.project] = fetch_existing(api, index, dist.project)
            try:
                tally.add(upload_one(api, index, dist, known[dist.project], out))
            except ClientError:
                tally.add(Outcome.FAILED)
                raise
    finally:
        print(tally.render(), file=out)
    return tally
