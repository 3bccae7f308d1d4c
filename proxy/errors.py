"""The whole exception hierarchy: structured fields, messages that name the thing and the place.

Free of HTTP on purpose; `web/middleware.py` maps these to responses in one table.
"""

from __future__ import annotations

import math


class WheelwellError(Exception):
    """Base of every error wheelwell raises on purpose."""


class ConfigError(WheelwellError):
    """One or more configuration problems, each naming file, key and reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class NotFoundError(WheelwellError):
    """Something asked for does not exist."""


class IndexNotFoundError(NotFoundError):
    def __init__(self, index: str) -> None:
        self.index = index
        super().__init__(f"index '{index}' not found")


class ProjectNotFoundError(NotFoundError):
    def __init__(self, project: str, index: str) -> None:
        self.project = project
        self.index = index
        super().__init__(f"project '{project}' not found in index '{index}'")


class DistributionNotFoundError(NotFoundError):
    def __init__(self, filename: str, index: str) -> None:
        self.filename = filename
        self.index = index
        super().__init__(f"file '{filename}' not found in index '{index}'")


class InvalidInputError(WheelwellError):
    """The request itself is wrong; repeating it will not help."""


class InvalidNameError(InvalidInputError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        shown = name if len(name) <= 60 else name[:57] + "..."
        super().__init__(f"invalid name '{shown}': {reason}")


class UnsafePathError(InvalidInputError):
    def __init__(self, segment: str) -> None:
        self.segment = segment
        super().__init__(f"unsafe path segment {segment[:60]!r}")


class NotAcceptableError(InvalidInputError):
    def __init__(self, accept: str, offered: list[str]) -> None:
        self.accept = accept
        self.offered = offered
        super().__init__(f"none of {', '.join(offered)} is acceptable to Accept: {accept[:200]}")


class InvalidUploadError(InvalidInputError):
    """An upload is malformed or inconsistent."""


class UploadTooLargeError(InvalidUploadError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"upload is larger than the limit of {limit} bytes (auth.max_upload_size)")


class UploadMetadataTooLargeError(InvalidUploadError):
    """A METADATA / PKG-INFO that inflates past the cap (a zip bomb, or simply absurd)."""

    def __init__(self, filename: str, member: str, limit: int) -> None:
        self.filename = filename
        self.member = member
        self.limit = limit
        super().__init__(
            f"'{filename}': {member} is larger than the limit of {limit} bytes"
            " (limits.max_metadata_size)"
        )


class UploadNotAllowedError(InvalidUploadError):
    """An upload sent to a URL that takes none (a simple page, a mirror); names the right one."""


class ConflictError(WheelwellError):
    """The request contradicts state already stored."""


class AuthError(WheelwellError):
    """Authentication or authorisation failed."""


class UnauthorizedError(AuthError):
    pass


class ForbiddenError(AuthError):
    pass


class StorageError(WheelwellError):
    """Local storage failed; messages reach clients, so they name things relative to the data dir
    ("blobs/", "database wheelwell.sqlite3"), never absolute server paths."""


class StorageFullError(StorageError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"no space left on device while writing under {path}")


class ObjectStoreError(StorageError):
    """The object store (storage.backend: s3) failed or cannot be reached; 503, naming it."""

    def __init__(self, store: str, reason: str) -> None:
        self.store = store
        self.reason = reason
        super().__init__(f"object store {store} is unavailable ({reason})")


class UpstreamError(WheelwellError):
    """The upstream index failed us; `upstream` is the URL (credentials masked)."""

    def __init__(self, upstream: str, reason: str) -> None:
        self.upstream = upstream
        self.reason = reason
        super().__init__(f"upstream {upstream}: {reason}")


class UpstreamUnavailableError(UpstreamError):
    """Could not connect, or the connection broke."""


class UpstreamOfflineError(UpstreamError):
    """Not asked at all: offline mode, or the upstream failed repeatedly and rests for a while."""


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer in time."""


class UpstreamStatusError(UpstreamError):
    def __init__(self, upstream: str, status: int) -> None:
        self.status = status
        super().__init__(upstream, f"answered HTTP {status}")


class UpstreamProtocolError(UpstreamError):
    """The upstream answered something we cannot parse."""


class HashMismatchError(UpstreamError):
    def __init__(self, upstream: str, filename: str, expected: str, actual: str) -> None:
        self.filename = filename
        self.expected = expected
        self.actual = actual
        super().__init__(
            upstream, f"sha256 mismatch for '{filename}': expected {expected}, got {actual}"
        )


class UpstreamAddressError(UpstreamError):
    """The upstream's address is denied by the mirror address policy (SSRF protection)."""

    def __init__(self, upstream: str, address: str, keys: str) -> None:
        self.address = address
        self.keys = keys
        super().__init__(upstream, f"address {address} is denied by {keys}")


class UpstreamConcealedError(UpstreamError):
    """Any upstream failure of a user's mirror, in words that reveal no connection details.

    `detail` is the real failure, for the log only.
    """

    def __init__(self, index: str, detail: UpstreamError) -> None:
        self.index = index
        self.detail = detail
        super().__init__(detail.upstream, "unavailable")

    def __str__(self) -> str:
        return f"upstream of index '{self.index}' is unavailable"


_TOO_MANY = {
    "address": "too many failed logins from this address",
    "user": "too many failed logins for this user",
    "busy": "too many logins in progress",
}


class TooManyRequestsError(WheelwellError):
    """A login limit refused the attempt; `limit` says which, `retry_after` is in seconds."""

    def __init__(self, retry_after: float, limit: str) -> None:
        self.retry_after = retry_after
        self.limit = limit
        why = _TOO_MANY.get(limit, "too many requests")
        super().__init__(f"{why}; retry in {self.retry_seconds} s")

    @property
    def retry_seconds(self) -> int:
        """Whole seconds for Retry-After, never 0 (that would invite an immediate retry)."""
        return max(1, math.ceil(self.retry_after))


class ReplicaWriteError(WheelwellError):
    """A write reached a read replica that cannot relay it (the primary is gone, or too slow)."""

    def __init__(self, primary: str, why: str) -> None:
        self.primary = primary
        super().__init__(f"this is a read replica of {primary}: {why}")


class ChangelogCompactedError(WheelwellError):
    """The changelog entries asked for were compacted away: start from a snapshot (410)."""
