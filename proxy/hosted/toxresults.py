"""Tox results attached to hosted files: what `devpi test` and `wheelwell test` post.

Both post tox's own `--result-json` report (devpi's format) to the file's URL. The report is
kept as posted, bounded by the app's body limit, and numbered per file; a summary (per env:
passed or failed, duration, python, the failing command and its log tail) is parsed once, when
posted, and carried in the change, so a malformed report is refused then, replicas show the
same summary, and listing a project never parses megabytes of logs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from proxy.errors import InvalidInputError, NotFoundError
from proxy.hosted.private import HostedFile, PrivateIndex
from proxy.storage.changes import ToxResultAdded
from proxy.storage.db import Database

#: a summary keeps at most this many envs, and of a failing command this much of its log
MAX_ENVS = 64
LOG_TAIL_LINES = 30
LOG_TAIL_CHARS = 4000


@dataclass(frozen=True, slots=True)
class EnvResult:
    """One tox env of a run, as the UI's badge and `wheelwell list` show it."""

    name: str
    status: str  #: passed, failed or skipped
    duration: float | None
    python: str | None  #: the version, e.g. 3.12.1
    failed_command: str | None  #: the first command that failed (setup or test)
    log_tail: str  #: the last lines of that command's output (or of the last command's)


@dataclass(frozen=True, slots=True)
class ToxSummary:
    """One posted report of one file."""

    n: int
    filename: str
    sha256: str
    posted: float
    poster: str | None
    host: str
    platform: str
    toxversion: str
    envs: tuple[EnvResult, ...]

    @property
    def passed(self) -> bool:
        return all(e.status != "failed" for e in self.envs)

    def to_json(self, index: str) -> dict[str, Any]:
        """What the API and the UI show; `url` is the whole report's, in `index`."""
        data = asdict(self)
        data["passed"] = self.passed
        data["url"] = result_path(index, self.sha256, self.filename, self.n)
        return data


def result_path(index: str, sha256: str, filename: str, n: int) -> str:
    """Where one posted report is read back whole."""
    return f"/{index}/+f/{sha256}/{filename}/+toxresults/{n}"


def _text(value: Any) -> str:
    if isinstance(value, list):  # tox 3 wrote outputs as lists of lines at times
        return "\n".join(str(v) for v in value)
    return value if isinstance(value, str) else ""


def _tail(text: str) -> str:
    lines = text.rstrip("\n").splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(lines)[-LOG_TAIL_CHARS:]


def _commands(env: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    commands = env.get(key, [])
    if not isinstance(commands, list) or not all(isinstance(c, dict) for c in commands):
        raise InvalidInputError(f"not a tox report: '{key}' of an env must be a list of objects")
    return commands


def _failed(command: Mapping[str, Any]) -> bool:
    code = command.get("retcode")
    try:
        return code is not None and int(code) != 0
    except (TypeError, ValueError):
        return True


def _command_line(command: Mapping[str, Any]) -> str:
    words = command.get("command", [])
    return " ".join(str(w) for w in words) if isinstance(words, list) else str(words)


def _output(command: Mapping[str, Any]) -> str:
    return _text(command.get("output")) + _text(command.get("err"))


def _env_result(name: str, env: Mapping[str, Any]) -> EnvResult:
    setup, test = _commands(env, "setup"), _commands(env, "test")
    found = env.get("result")
    result: Mapping[str, Any] = found if isinstance(found, dict) else {}
    failing = next((c for c in [*setup, *test] if _failed(c)), None)
    if result.get("skipped") is True:
        status = "skipped"
    elif failing is not None or result.get("success") is False:
        status = "failed"
    else:
        status = "passed" if test or result.get("success") is True else "failed"
    python = env.get("python")
    version = python.get("version") if isinstance(python, dict) else None
    duration = result.get("duration")
    if not isinstance(duration, int | float):
        elapsed = [c.get("elapsed") for c in [*setup, *test]]
        duration = sum(e for e in elapsed if isinstance(e, int | float)) if elapsed else None
    ran = test or setup
    shown = failing if failing is not None else (ran[-1] if ran else None)
    return EnvResult(
        name=name,
        status=status,
        duration=round(float(duration), 3) if duration is not None else None,
        python=version.split(None, 1)[0] if isinstance(version, str) and version else None,
        failed_command=_command_line(failing) if failing is not None else None,
        log_tail=_tail(_output(shown)) if shown is not None else "",
    )


@dataclass(frozen=True, slots=True)
class Report:
    """What a posted report says, before it has a number."""

    host: str
    platform: str
    toxversion: str
    envs: tuple[EnvResult, ...]


def parse_report(data: Any) -> Report:
    """tox's --result-json (tox 3 and 4) → its summary; InvalidInputError when it is none."""
    if not isinstance(data, dict) or not isinstance(data.get("testenvs"), dict):
        raise InvalidInputError("not a tox report: expected an object with 'testenvs'")
    envs = data["testenvs"]
    if len(envs) > MAX_ENVS:
        raise InvalidInputError(f"a tox report has at most {MAX_ENVS} envs, not {len(envs)}")
    results = []
    for name, env in sorted(envs.items()):
        if not isinstance(env, dict):
            raise InvalidInputError(f"not a tox report: env {name!r} is not an object")
        if name == ".pkg" or name.startswith(".pkg"):  # tox 4's packaging env: not a test run
            continue
        results.append(_env_result(str(name), env))
    return Report(
        host=str(data.get("host", "")),
        platform=str(data.get("platform", "")),
        toxversion=str(data.get("toxversion", "")),
        envs=tuple(results),
    )


def render_summary(report: Report) -> str:
    """The summary as stored with the report (canonical JSON)."""
    return json.dumps(asdict(report), sort_keys=True, separators=(",", ":"))


def render_report(data: Any) -> str:
    """A posted report as stored: canonical JSON."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _summary(row: sqlite3.Row) -> ToxSummary:
    data = json.loads(row["summary"])
    return ToxSummary(
        n=row["n"],
        filename=row["filename"],
        sha256=row["sha256"],
        posted=row["posted"],
        poster=row["poster"],
        host=data["host"],
        platform=data["platform"],
        toxversion=data["toxversion"],
        envs=tuple(EnvResult(**e) for e in data["envs"]),
    )


class ToxResults:
    """Adds reports to hosted files and reads them back, summarized or whole."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self, index: PrivateIndex, key: str, filename: str, data: Any, poster: str | None
    ) -> int:
        """Attach a report to the file `key`/`filename` of `index`; returns its number."""
        hosted = await index.find_file(key, filename)  # DistributionNotFoundError: 404
        report = parse_report(data)
        posted = time.time()
        await self.db.commit(
            ToxResultAdded(
                idx=hosted.index,
                project=hosted.project,
                version=hosted.version,
                filename=hosted.filename,
                sha256=hosted.sha256,
                data=render_report(data),
                summary=render_summary(report),
                posted=posted,
                poster=poster,
            )
        )

        def number(conn: sqlite3.Connection) -> int:
            """Its own row's (`apply` numbered it): another post may have landed since."""
            row = conn.execute(
                "SELECT n FROM toxresults WHERE idx = ? AND filename = ? AND posted = ? "
                "ORDER BY n DESC LIMIT 1",
                (hosted.index, hosted.filename, posted),
            ).fetchone()
            return int(row[0])

        return await self.db.read(number)

    async def summaries(
        self, files: Iterable[HostedFile]
    ) -> dict[tuple[str, str, str], list[ToxSummary]]:
        """(index, filename, sha256) → its reports' summaries, oldest first."""
        files = list(files)
        wanted = {(f.index, f.filename, f.sha256) for f in files}
        places = sorted({(f.index, f.project) for f in files})

        def query(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            rows: list[sqlite3.Row] = []
            for index, project in places:
                rows += conn.execute(
                    "SELECT idx, filename, n, sha256, posted, poster, summary FROM toxresults "
                    "WHERE idx = ? AND project = ? ORDER BY filename, n",
                    (index, project),
                ).fetchall()
            return rows

        found: dict[tuple[str, str, str], list[ToxSummary]] = {}
        if not places:
            return found
        for row in await self.db.read(query):
            where = (row["idx"], row["filename"], row["sha256"])
            if where in wanted:
                found.setdefault(where, []).append(_summary(row))
        return found

    async def report(self, index: str, key: str, filename: str, n: int) -> str:
        """One posted report, whole, as the JSON text it was stored as."""

        def query(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT data FROM toxresults WHERE idx = ? AND filename = ? AND sha256 = ? "
                "AND n = ?",
                (index, filename, key, n),
            ).fetchone()
            return row

        row = await self.db.read(query)
        if row is None:
            raise NotFoundError(f"tox result {n} of '{filename}' not found in index '{index}'")
        text: str = row["data"]
        return text
