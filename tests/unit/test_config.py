"""proxy.config: problems name file:line:col and key path; the shipped file is the defaults."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from proxy.config import (
    Config,
    IndexConfig,
    IndexKind,
    LogFormat,
    LoggingConfig,
    ServerConfig,
    StorageConfig,
    UpstreamConfig,
    load,
    parse_config,
    parse_duration,
    parse_size,
    pip_index_url,
)
from proxy.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "wheelwell.yaml"
LOCAL_INDEX = "http://127.0.0.1:9/simple/"

MIRROR = "indexes:\n  - name: root/pypi\n    kind: mirror\n"


# ---- scalars ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (0, 0.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("30s", 30.0),
        (" 30 s ", 30.0),
        ("250ms", 0.25),
        ("1.5m", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["", "s", "ten seconds", "5 parsecs", "-5s", "1w", "1.2.3s", True, False, None, -5]
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("1b", 1),
        ("1K", 1000),
        ("1KB", 1000),
        ("1kb", 1000),
        ("1KiB", 1024),
        ("1.5KiB", 1536),
        ("512MB", 512 * 1000**2),
        ("10GiB", 10 * 1024**3),
        ("2 TB", 2 * 1000**4),
        ("3Mi", 3 * 1024**2),
    ],
)
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "GiB", "10 parsecs", "10PB", "-1MB", "1.2.3", True, -1])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


# ---- the shipped file and the defaults agree -------------------------------------------------


def test_shipped_config_is_the_builtin_defaults() -> None:
    cfg = parse_config(SHIPPED.read_text(encoding="utf-8"), "config/wheelwell.yaml")
    assert cfg == dataclasses.replace(Config(), source="config/wheelwell.yaml")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment\n",
        "---\n",  # an explicit empty document is null, like an empty file
        "server:\nstorage:\n  # data_dir: /srv\nupstream: ~\n",  # sections left empty
    ],
)
def test_empty_config_is_the_defaults(text: str) -> None:
    assert parse_config(text, "empty.yaml") == Config(source="empty.yaml")


def test_full_config() -> None:
    text = """\
server:
  host: 0.0.0.0
  port: 8080
  shutdown_timeout: 1.5m
  default_index: team/dev
storage:
  data_dir: /srv/wheelwell
upstream:
  url: http://127.0.0.1:9/simple/
  connect_timeout: 250ms
  read_timeout: 5
  retries: 0
  backoff: 1s
  page_ttl: 1h
  not_found_ttl: 0s
indexes:
  - name: root/pypi
    kind: mirror
    upstream: https://127.0.0.1:8443/simple/
    volatile: false
  - name: team/dev
    bases: [root/pypi]
    mirror_whitelist: [internal-*]
    wheelhouse: [/srv/wheels, ./more]
logging:
  level: debug
  format: json
"""
    assert parse_config(text, "full.yaml") == Config(
        server=ServerConfig(
            host="0.0.0.0", port=8080, shutdown_timeout=90.0, default_index="team/dev"
        ),
        storage=StorageConfig(data_dir=Path("/srv/wheelwell")),
        upstream=UpstreamConfig(
            url="http://127.0.0.1:9/simple/",
            connect_timeout=0.25,
            read_timeout=5.0,
            retries=0,
            backoff=1.0,
            page_ttl=3600.0,
            not_found_ttl=0.0,
        ),
        indexes=(
            IndexConfig(
                name="root/pypi",
                kind=IndexKind.MIRROR,
                upstream="https://127.0.0.1:8443/simple/",
                volatile=False,
            ),
            IndexConfig(
                name="team/dev",
                bases=("root/pypi",),
                mirror_whitelist=("internal-*",),
                wheelhouse=(Path("/srv/wheels"), Path("more")),
            ),
        ),
        logging=LoggingConfig(level="debug", format=LogFormat.JSON),
        source="full.yaml",
    )


# ---- problems: file:line:col, key path, reason; all of them at once --------------------------


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        pytest.param(
            "server:\n  prot: 80\n",
            ["site.yaml:2:3: server.prot: unknown key (did you mean 'port'?)"],
            id="unknown key",
        ),
        pytest.param(
            "servre:\n  port: 1\n",
            ["site.yaml:1:1: servre: unknown key (did you mean 'server'?)"],
            id="unknown section",
        ),
        pytest.param(
            "server:\n  colour: blue\n",
            ["site.yaml:2:3: server.colour: unknown key"],
            id="unknown key without a close match",
        ),
        pytest.param(
            "server:\n  prot: 80\n" + MIRROR + "  - name: root/dev\n    bases: [root/pypy]\n",
            [
                "site.yaml:2:3: server.prot: unknown key (did you mean 'port'?)",
                "site.yaml:7:13: indexes[1].bases[0]: unknown index 'root/pypy'"
                " (did you mean 'root/pypi'?)",
            ],
            id="unknown key and unknown base together",
        ),
        pytest.param(
            MIRROR + "  - name: a/b\n    bases: [a/c]\n  - name: a/c\n    bases: [a/b]\n",
            ["site.yaml:2:3: indexes: bases form a cycle: a/b -> a/c -> a/b"],
            id="cycle",
        ),
        pytest.param(
            MIRROR + "  - name: root/pypi\n    kind: mirror\n",
            ["site.yaml:4:11: indexes[1].name: duplicate index 'root/pypi'"],
            id="duplicate index",
        ),
        pytest.param(
            MIRROR + "  - name: root/m2\n    kind: mirror\n    bases: [root/pypi]\n",
            ["site.yaml:6:12: indexes[1].bases: a mirror index has no bases"],
            id="mirror with bases",
        ),
        pytest.param(
            MIRROR + "  - name: nouser\n",
            ["site.yaml:4:11: indexes[1].name: 'nouser' is not of the form user/index"],
            id="index name without user",
        ),
        pytest.param(
            MIRROR + "  - name: a/b\n    upstream: http://127.0.0.1/\n",
            ["site.yaml:5:15: indexes[1].upstream: only mirror indexes have an upstream"],
            id="private index with upstream",
        ),
        pytest.param(
            "indexes:\n  - name: root/pypi\n    kind: mirorr\n",
            ["site.yaml:3:11: indexes[0].kind: expected one of mirror, private; got 'mirorr'"],
            id="bad kind",
        ),
        pytest.param(
            "indexes:\n  - name: root/pypi\n    kind: mirror\n    basez: []\n",
            ["site.yaml:4:5: indexes[0].basez: unknown key (did you mean 'bases'?)"],
            id="unknown index key",
        ),
        pytest.param(
            "upstream:\n  read_timeout: 5 parsecs\n",
            [
                "site.yaml:2:17: upstream.read_timeout: expected a duration like 30s, 10m, 250ms;"
                " got '5 parsecs'"
            ],
            id="bad duration",
        ),
        pytest.param(
            "upstream:\n  read_timeout: -5\n",
            [
                "site.yaml:2:17: upstream.read_timeout: expected a duration like 30s, 10m, 250ms;"
                " got -5"
            ],
            id="negative duration",
        ),
        pytest.param(
            "upstream:\n  url: ftp://127.0.0.1/simple/\n",
            ["site.yaml:2:8: upstream.url: 'ftp://127.0.0.1/simple/' is not an http(s) URL"],
            id="bad upstream scheme",
        ),
        pytest.param(
            "indexes:\n  - name: root/pypi\n    kind: mirror\n    upstream: file:///srv/x\n",
            ["site.yaml:4:15: indexes[0].upstream: 'file:///srv/x' is not an http(s) URL"],
            id="bad index upstream scheme",
        ),
        pytest.param(
            "server:\n  port: 70000\n",
            ["site.yaml:2:9: server.port: 70000 is not a TCP port"],
            id="port range",
        ),
        pytest.param(
            "server:\n  port: eighty\n",
            ["site.yaml:2:9: server.port: expected an integer; got 'eighty'"],
            id="port type",
        ),
        pytest.param(
            "server:\n  host: {a: 1}\n",
            ["site.yaml:2:9: server.host: expected a single value"],
            id="mapping for a string",
        ),
        pytest.param(
            MIRROR + "  - name: a/b\n    bases: root/pypi\n",
            ["site.yaml:5:12: indexes[1].bases: expected a list"],
            id="string for a list",
        ),
        pytest.param(
            "server:\n  default_index: root/nope\n",
            ["site.yaml:2:18: server.default_index: unknown index 'root/nope'"],
            id="unknown default index",
        ),
        pytest.param(
            "upstream:\n  retries: -1\n",
            ["site.yaml:2:12: upstream.retries: must be 0 or more"],
            id="negative retries",
        ),
        pytest.param(
            "logging:\n  level: LOUD\n",
            ["site.yaml:2:10: logging.level: unknown level 'LOUD'"],
            id="log level",
        ),
        pytest.param(
            "limits:\n  json_max_depth: 0\n  description_render_timeout: 0s\n",
            [
                "site.yaml:2:19: limits.json_max_depth: must be 1 or more",
                "site.yaml:3:31: limits.description_render_timeout: must be more than 0",
            ],
            id="limits",
        ),
        pytest.param(
            "- 1\n",
            ["site.yaml:1:1: <top>: expected a mapping"],
            id="not a mapping",
        ),
        pytest.param(
            "server:\n  default_index: a/b\nindexes:\n  - kind: mirror\n  - name: a/b\n",
            ["site.yaml:4:5: indexes[0].name: missing required key"],
            id="index without a name",
        ),
    ],
)
def test_problems(text: str, problems: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "site.yaml")
    assert info.value.problems == problems
    assert str(info.value) == "\n".join(problems)


def test_invalid_yaml_names_the_file() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("server: [\n", "broken.yaml")
    [problem] = info.value.problems
    assert problem.startswith("broken.yaml: invalid YAML: ")


# ---- pip's index and load() ------------------------------------------------------------------


def test_pip_index_url_prefers_pip_index_url() -> None:
    assert pip_index_url({"PIP_INDEX_URL": LOCAL_INDEX}) == LOCAL_INDEX
    assert pip_index_url({"PIP_INDEX_URL": f"  {LOCAL_INDEX}  \n"}) == LOCAL_INDEX


def test_pip_index_url_falls_back_to_pips_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # ignore this machine's pip.conf
    url = pip_index_url({})
    parts = urlsplit(url)
    assert parts.scheme in {"http", "https"}
    assert parts.netloc


def test_load_reads_the_file_and_settles_the_upstream(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("server:\n  port: 4000\n", encoding="utf-8")
    cfg = load(path, env={"PIP_INDEX_URL": LOCAL_INDEX})
    assert cfg == Config(
        server=ServerConfig(port=4000),
        upstream=UpstreamConfig(url=LOCAL_INDEX),
        source=str(path),
    )


def test_load_uses_wheelwell_config(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("upstream:\n  url: http://127.0.0.1:8/simple/\n", encoding="utf-8")
    cfg = load(env={"WHEELWELL_CONFIG": str(path), "PIP_INDEX_URL": LOCAL_INDEX})
    assert cfg.source == str(path)
    assert cfg.upstream.url == "http://127.0.0.1:8/simple/"


def test_load_without_a_file_is_the_defaults() -> None:
    cfg = load(env={"PIP_INDEX_URL": LOCAL_INDEX})
    assert cfg == Config(upstream=UpstreamConfig(url=LOCAL_INDEX))


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load(path, env={"PIP_INDEX_URL": LOCAL_INDEX})
    [problem] = info.value.problems
    assert problem.startswith(f"{path}: cannot read config file: ")


# ---- storage: free space and scrubber (issue 9) ----------------------------------------------


def test_storage_fault_keys_have_safe_defaults() -> None:
    storage = parse_config("{}\n", "site.yaml").storage
    assert (storage.min_free_space, storage.scrub, storage.scrub_rate) == (
        100 * 1024**2,
        True,
        20 * 10**6,
    )
    assert storage.scrub_interval == 86400.0


def test_storage_fault_keys_parse_sizes_and_durations() -> None:
    text = "storage:\n  min_free_space: 0\n  scrub_rate: 1GB\n  scrub_interval: 200ms\n"
    storage = parse_config(text, "site.yaml").storage
    assert (storage.min_free_space, storage.scrub_rate, storage.scrub_interval) == (0, 10**9, 0.2)


@pytest.mark.parametrize("key", ["min_free_space", "scrub_rate", "scrub_interval", "scrub"])
def test_bad_storage_fault_key_names_key_and_file(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"storage:\n  {key}: lots\n", "site.yaml")
    [problem] = info.value.problems
    assert problem.startswith("site.yaml:2:") and f"storage.{key}:" in problem
