"""`wheelwell list`, and what it shares with `wheelwell test`: a release spec, an index's
versions, a release's files and their tox results as people read them.

Versions come from devpi's `GET /{user}/{index}/{project}/` (JSON): one call lists every version
over the index's resolution order, as `devpi list` and `devpi test` see them. A release's files
and their tox results come from wheelwell's `GET /{user}/{index}/{project}/{version}`, whose
`toxresults` are already summarized by the server (pass/fail per env, the failing command).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from proxy.client.api import Api
from proxy.client.errors import ClientError, ServerError, UsageError
from proxy.client.session import Session, index_path

#: PEP 508's project name
_NAME = re.compile(r"[A-Z0-9]([A-Z0-9._-]*[A-Z0-9])?", re.IGNORECASE)
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")


@dataclass(frozen=True, slots=True)
class Spec:
    """`PROJECT` or `PROJECT==VERSION`: one project, and at most one exact version."""

    project: NormalizedName
    version: str | None = None


def parse_spec(text: str) -> Spec:
    """Read `PROJECT[==VERSION]`; ranges (`>=`, `~=`) are refused, as the test needs one file."""
    name, pinned, version = (part.strip() for part in text.partition("=="))
    if not _NAME.fullmatch(name):
        raise UsageError(f"not a release: {text!r} (expected PROJECT or PROJECT==VERSION)")
    if pinned and not _VERSION.fullmatch(version):
        raise UsageError(f"not a version: {version!r} in {text!r} (expected PROJECT==VERSION)")
    return Spec(canonicalize_name(name), version if pinned else None)


def _sort_key(version: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def sort_versions(versions: list[str]) -> list[str]:
    """Newest first by PEP 440; versions that do not parse go last, by name."""
    parsed = sorted((v for v in versions if _sort_key(v)[0]), key=Version, reverse=True)
    return parsed + sorted(v for v in versions if not _sort_key(v)[0])


def pick_newest(versions: list[str]) -> str:
    """The newest final release, else the newest pre-release (what pip would pick unpinned)."""
    ordered = sort_versions(versions)
    final = [v for v in ordered if _sort_key(v)[0] and not Version(v).is_prerelease]
    return (final or ordered)[0]


def fetch_versions(api: Api, index: str, project: str) -> list[str]:
    """Every version of `project` over `index`'s resolution order, newest first."""
    try:
        answer = api.fetch_json("GET", index_path(index, project) + "/")
    except ServerError as exc:
        if exc.status == 404:
            raise ClientError(f"no release of {project} in {index} (or its bases)") from None
        raise
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, dict) or not result:
        raise ClientError(f"no release of {project} in {index} (or its bases)")
    return sort_versions([str(v) for v in result])


def fetch_release(api: Api, index: str, project: str, version: str) -> dict[str, Any]:
    """The release's files (over the resolution order) with their tox results."""
    try:
        answer = api.fetch_json("GET", index_path(index, project, version))
    except ServerError as exc:
        if exc.status == 404:
            raise ClientError(f"no release {project} {version} in {index} (or its bases)") from None
        raise
    if not isinstance(answer, dict) or not isinstance(answer.get("files"), list):
        raise ClientError(f"{index}: unexpected answer for {project} {version}")
    return answer


def render_time(epoch: object) -> str:
    """A server timestamp (epoch seconds) in UTC, to the second."""
    if not isinstance(epoch, int | float):
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_result(result: dict[str, Any], indent: str = "    ") -> list[str]:
    """One posted tox run: a line per env, and under a failed one its failing command."""
    lines = []
    poster = result.get("poster") or "anonymous"
    for env in result.get("envs", []):
        python = f"python {env['python']}" if env.get("python") else "python ?"
        duration = env.get("duration")
        took = f"{duration:.2f}s" if isinstance(duration, int | float) else "?s"
        lines.append(
            f"{indent}{env.get('name')}: {env.get('status')}  {python}  {took}  "
            f"by {poster}  {render_time(result.get('posted'))}"
        )
        if env.get("failed_command"):
            lines.append(f"{indent}    failed: {env['failed_command']}")
    if not lines:
        lines.append(f"{indent}(a tox run with no envs, by {poster})")
    return lines


def render_release(release: dict[str, Any]) -> list[str]:
    """A release as `wheelwell list` prints it: its files, each with its tox results."""
    lines = [str(release.get("version"))]
    for f in release.get("files", []):
        yanked = "  (yanked)" if f.get("yanked") else ""
        lines.append(f"  {f.get('filename')}  [{f.get('index')}]{yanked}")
        results = f.get("toxresults") or []
        for result in results:
            lines += render_result(result)
        if not results:
            lines.append("    no tox results")
    return lines


def run_list(session: Session) -> int:
    """Print a project's releases (newest first), their files and the files' tox results."""
    spec = parse_spec(session.args.spec)
    index, api = session.index(), session.api()
    versions = [spec.version] if spec.version else fetch_versions(api, index, spec.project)
    releases = [fetch_release(api, index, spec.project, v) for v in versions]
    if session.args.json:
        body = {"name": spec.project, "index": index, "releases": releases}
        session.print(json.dumps(body, indent=2))
        return 0
    session.print(f"{spec.project} on {index}")
    for release in releases:
        session.print(*render_release(release))
    return 0
