"""`wheelwell test`: run real tox on a release from the index and post its report there.

Done the way `devpi test` does it, so the results read the same: download the release's sdist
(sha256 checked), unpack it, run `tox --installpkg FILE --recreate --result-json REPORT -c
CONFIG` in it with pip pointed at the index, then POST tox's report to the file's URL. With
only a wheel, the wheel is the package and the tox config must be given with `-c`.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from proxy.client.api import Api, Credentials, render_path
from proxy.client.errors import ClientError, UsageError
from proxy.client.releases import (
    fetch_release,
    fetch_versions,
    parse_spec,
    pick_newest,
    render_result,
)
from proxy.client.session import Session
from proxy.client.settings import load_child_environment
from proxy.client.unpack import find_tox_config, unpack_sdist
from proxy.distfiles import DistFileError, DistKind, parse_filename

#: the most of tox's report read back, and the most posted (the server's body limit, 1 MiB)
MAX_REPORT_SIZE = 16 * 1024 * 1024
MAX_POSTED_SIZE = 1024 * 1024 - 4096


@dataclass(frozen=True, slots=True)
class ReleaseFile:
    """The file of a release that is tested, as the release JSON lists it."""

    filename: str
    index: str  #: the index that holds it (the posted result goes there)
    sha256: str
    size: int
    kind: DistKind

    @property
    def path(self) -> str:
        return render_path(*self.index.split("/")) + "/+f" + render_path(self.sha256, self.filename)

    @property
    def is_sdist(self) -> bool:
        return self.kind is DistKind.SDIST


def _release_file(f: dict[str, Any]) -> ReleaseFile | None:
    """A file of the release JSON; None for a name that is no wheel or sdist (never used)."""
    try:
        kind = parse_filename(str(f["filename"])).kind
        return ReleaseFile(
            str(f["filename"]), str(f["index"]), str(f["sha256"]), int(f["size"]), kind
        )
    except DistFileError:
        return None
    except (KeyError, TypeError, ValueError) as exc:
        raise ClientError(f"the server's release JSON lacks a file's {exc}") from None


def pick_file(files: list[dict[str, Any]], have_config: bool) -> ReleaseFile:
    """The sdist, else (with a tox config given) a universal wheel, else any wheel."""
    found = [r for r in map(_release_file, files) if r is not None]
    sdists = [f for f in found if f.is_sdist]
    if sdists:
        return sdists[0]
    wheels = sorted(
        (f for f in found if f.kind is DistKind.WHEEL),
        key=lambda f: not f.filename.endswith("-none-any.whl"),
    )
    if not wheels:
        raise ClientError("the release has neither an sdist nor a wheel to test")
    if not have_config:
        raise UsageError(
            f"the release has no sdist, so no tox config; to test {wheels[0].filename}, "
            "pass its project's tox config with -c TOXCONFIG"
        )
    return wheels[0]


def find_tox() -> str:
    """The tox installed next to this Python (the same venv), else the one on PATH."""
    here = Path(sys.executable).parent
    for name in ("tox", "tox.exe"):
        if (here / name).is_file():
            return str(here / name)
    found = shutil.which("tox")
    if found is None:
        raise ClientError(f"tox not found next to {sys.executable} or on PATH; install tox")
    return found


def render_index_url(simple_url: str, credentials: Credentials | None) -> str:
    """The index's simple URL for pip, with the login's credentials in it (never printed)."""
    if credentials is None:
        return simple_url
    parts = urlsplit(simple_url)
    auth = f"{quote(credentials.user, safe='')}:{quote(credentials.password, safe='')}"
    return parts._replace(netloc=f"{auth}@{parts.netloc}").geturl()


def parse_tox_args(text: str | None) -> list[str]:
    """--tox-args split as a shell would."""
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise UsageError(f"--tox-args: {exc}") from None


def render_tox_argv(
    tox: str, package: Path, report: Path, config: Path, envs: str | None, tox_args: list[str]
) -> list[str]:
    """The tox command line devpi test runs (options after the config: -e, then --tox-args)."""
    argv = [tox, "--installpkg", str(package), "--recreate", "--result-json", str(report)]
    argv += ["-c", str(config)]
    if envs:
        argv += ["-e", envs]
    return argv + tox_args


def _prepare(session: Session, dist: Path, chosen: ReleaseFile, work: Path) -> tuple[Path, Path]:
    """The tox config to use and the directory to run tox in."""
    given = session.args.toxconfig
    config = Path(given).resolve() if given else None
    if config is not None and not config.is_file():
        raise UsageError(f"no tox config at {given}")
    if not chosen.is_sdist:
        if config is None:
            raise UsageError(f"{chosen.filename} has no tox config; pass it with -c TOXCONFIG")
        return config, config.parent
    root = unpack_sdist(dist, work / "unpacked")
    config = config or find_tox_config(root)
    if config is None:
        raise UsageError(
            f"{chosen.filename} has no tox.ini, [tool.tox] in pyproject.toml or [tox:tox] "
            "in setup.cfg; pass a tox config with -c TOXCONFIG"
        )
    return config, root


def load_report(path: Path, secrets: list[str]) -> dict[str, Any]:
    """tox's report as posted: JSON, with any secret of ours blanked out should tox echo it."""
    if not path.is_file():
        raise ClientError("tox wrote no result report (see its output above)")
    if path.stat().st_size > MAX_REPORT_SIZE:
        raise ClientError(f"tox's report is over {MAX_REPORT_SIZE} bytes; not posted")
    text = path.read_text(encoding="utf-8", errors="replace")
    for secret in filter(None, secrets):
        text = text.replace(secret, "***")
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise ClientError(f"tox's report is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ClientError("tox's report is not a JSON object")
    return data


def _commands(report: dict[str, Any]) -> list[dict[str, Any]]:
    envs = report.get("testenvs")
    found: list[dict[str, Any]] = []
    for env in envs.values() if isinstance(envs, dict) else []:
        for key in ("setup", "test"):
            commands = env.get(key) if isinstance(env, dict) else None
            found += [c for c in commands or [] if isinstance(c, dict)]
    return found


def fit_report(report: dict[str, Any], limit: int = MAX_POSTED_SIZE) -> bool:
    """Cut the commands' output to their tails until the report fits `limit`; True if cut.

    A verbose test run can log megabytes; the server keeps the tail of a failing command's
    output anyway, so the tail is what is worth posting.
    """
    keep, cut = limit, False
    while len(json.dumps(report).encode()) > limit and keep > 256:
        keep //= 2
        for command in _commands(report):
            for key in ("output", "err"):
                text = command.get(key)
                if isinstance(text, list):  # tox 3 wrote lines at times
                    text = "\n".join(str(line) for line in text)
                if isinstance(text, str) and len(text) > keep:
                    command[key], cut = "…" + text[-keep:], True
    return cut


def render_local_summary(report: dict[str, Any]) -> list[str]:
    """Per env passed or failed, from the report itself (--no-upload: no server summary)."""
    lines = []
    envs = report.get("testenvs")
    for name, env in sorted(envs.items() if isinstance(envs, dict) else []):
        if name.startswith(".pkg") or not isinstance(env, dict):
            continue
        commands = [c for k in ("setup", "test") for c in env.get(k) or [] if isinstance(c, dict)]
        failed = any(c.get("retcode") not in (0, None) for c in commands)
        lines.append(f"    {name}: {'failed' if failed else 'passed'}")
    return lines


def _post(
    session: Session, api: Api, chosen: ReleaseFile, report: dict[str, Any], version: str
) -> None:
    """POST the report to the file's URL; print where, and the server's per-env summary."""
    answer = api.fetch_json("POST", chosen.path, report)
    n = answer.get("n") if isinstance(answer, dict) else None
    where = answer.get("result") if isinstance(answer, dict) else None
    session.print(f"posted tox result {n} of {chosen.filename} to {api.server}{where}")
    project = parse_spec(session.args.spec).project
    release = fetch_release(api, chosen.index, project, version)
    for f in release["files"]:
        if f.get("filename") == chosen.filename:
            for result in f.get("toxresults") or []:
                if result.get("n") == n:
                    session.print(*render_result(result))


def _run_tox(session: Session, argv: list[str], cwd: Path, index_url: str) -> int:
    session.print(f"running: {shlex.join(argv)}  (in {cwd})")
    session.out.flush()
    env = load_child_environment({"PIP_INDEX_URL": index_url})
    code = subprocess.run(argv, cwd=cwd, env=env, check=False).returncode  # noqa: S603
    return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it


def run_test(session: Session) -> int:
    """Test a release with tox; tox's exit code (0: every env passed)."""
    spec, tox_args = parse_spec(session.args.spec), parse_tox_args(session.args.tox_args)
    index, credentials = session.index(), session.credentials()  # asked for once, if at all
    api = Api(session.target().server, credentials)
    version = spec.version or pick_newest(fetch_versions(api, index, spec.project))
    release = fetch_release(api, index, spec.project, version)
    chosen = pick_file(release["files"], have_config=bool(session.args.toxconfig))
    tox = find_tox()
    with tempfile.TemporaryDirectory(prefix="wheelwell-test-") as tmp:
        work = Path(tmp)
        (work / "dist").mkdir()
        dist = work / "dist" / chosen.filename  # a wheel's or sdist's name: no "/" or ".."
        session.print(f"testing {chosen.filename} from {chosen.index}")
        api.fetch_file(chosen.path, dist, chosen.sha256, chosen.size)
        config, cwd = _prepare(session, dist, chosen, work)
        report_path = work / "toxreport.json"
        argv = render_tox_argv(tox, dist, report_path, config, session.args.envs, tox_args)
        simple_url = f"{api.server}{render_path(*index.split('/'))}/+simple/"
        code = _run_tox(session, argv, cwd, render_index_url(simple_url, credentials))
        secret = credentials.password if credentials else ""
        report = load_report(report_path, [s for s in (secret, quote(secret, safe="")) if s])
    if session.args.no_upload:
        session.print("tox result not posted (--no-upload)", *render_local_summary(report))
        return code
    if fit_report(report):
        session.warn(f"tox's report is over {MAX_POSTED_SIZE} bytes: posting its logs' tails")
    _post(session, api, chosen, report, version)
    return code
