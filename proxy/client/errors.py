"""Errors the client expects and reports as one line, so commands never show a traceback."""

from __future__ import annotations

from proxy.errors import WheelwellError


class ClientError(WheelwellError):
    """Base of every failure the client reports to the user as `wheelwell: <message>`."""


class UsageError(ClientError):
    """The command line or the stored client state does not say enough to act."""


class ServerError(ClientError):
    """The server answered with an error status; `reason` is its one-line explanation."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")


class UnreachableError(ClientError):
    """No HTTP answer at all: refused, unresolvable, timed out, TLS failure."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach {url}: {reason}")


class ConfigEditError(ClientError):
    """A pip or uv config file we were asked to change cannot be changed safely."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")
