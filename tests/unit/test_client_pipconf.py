"""`use --set-cfg` / `--unset-cfg` on pip.conf and uv.toml: exact restores, safe refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from proxy.client.errors import ConfigEditError
from proxy.client.pipconf import (
    Edit,
    apply_edit,
    plan_set,
    plan_unset,
    render_pip_conf,
    render_uv_toml,
)
from proxy.client.settings import ClientPaths, SavedConfig, Target

HTTP = Target("http://pkgs.example:3141", "root/public")
HTTPS = Target("https://pkgs.example", "team/prod")
PIP_ORIGINAL = """\
# my pip settings
[global]
timeout = 60
trusted-host = build.example

[install]
no-compile = true
"""
UV_ORIGINAL = """\
# my uv settings
native-tls = true

[pip]
compile-bytecode = true
"""


@pytest.fixture
def paths(tmp_path: Path) -> ClientPaths:
    return ClientPaths(tmp_path / "client.json", tmp_path / "pip.conf", tmp_path / "uv" / "uv.toml")


def run_set(paths: ClientPaths, saved: tuple[SavedConfig, ...], target: Target) -> list[Edit]:
    """Plan and apply a --set-cfg; the edits, which must all be possible."""
    edits = [e for e in plan_set(paths, saved, target) if isinstance(e, Edit)]
    assert len(edits) == 2
    for edit in edits:
        apply_edit(edit)
    return edits


def run_unset(saved: tuple[SavedConfig, ...]) -> list[Edit]:
    edits = [e for e in plan_unset(saved) if isinstance(e, Edit)]
    for edit in edits:
        apply_edit(edit)
    return edits


def records(edits: list[Edit]) -> tuple[SavedConfig, ...]:
    return tuple(e.saved for e in edits if e.saved is not None)


def test_pip_conf_for_plain_http_trusts_the_host(tmp_path: Path) -> None:
    text, changes = render_pip_conf(None, HTTP, tmp_path / "pip.conf")
    assert text == (
        "[global]\n"
        "index-url = http://pkgs.example:3141/root/public/+simple/\n"
        "trusted-host = pkgs.example\n\n"
        "[search]\n"
        "index = http://pkgs.example:3141/root/public/\n\n"
    )
    assert [(c.section, c.key, c.previous) for c in changes] == [
        ("global", "index-url", None),
        ("global", "trusted-host", None),
        ("search", "index", None),
    ]


def test_pip_conf_for_https_trusts_nothing(tmp_path: Path) -> None:
    text, _ = render_pip_conf(None, HTTPS, tmp_path / "pip.conf")
    assert "trusted-host" not in text
    assert "index-url = https://pkgs.example/team/prod/+simple/" in text


def test_pip_conf_adds_to_existing_trusted_hosts(tmp_path: Path) -> None:
    text, _ = render_pip_conf(PIP_ORIGINAL, HTTP, tmp_path / "pip.conf")
    assert "trusted-host = build.example\n\tpkgs.example\n" in text
    again, changes = render_pip_conf(text, HTTP, tmp_path / "pip.conf")
    assert (again, changes) == (text, [])


def test_set_then_unset_restores_both_files_exactly(paths: ClientPaths) -> None:
    paths.pip_conf.write_text(PIP_ORIGINAL)
    paths.uv_toml.parent.mkdir()
    paths.uv_toml.write_text(UV_ORIGINAL)
    edits = run_set(paths, (), HTTP)
    uv = tomllib.loads(paths.uv_toml.read_text())
    assert uv["index"] == [{"url": HTTP.simple_url, "default": True}]
    assert uv["pip"] == {"compile-bytecode": True}
    assert paths.uv_toml.read_text().startswith(UV_ORIGINAL)
    assert (
        f"{paths.pip_conf}: [global] trusted-host = build.example pkgs.example (was build.example)"
        in edits[0].report
    )
    run_unset(records(edits))
    assert paths.pip_conf.read_text() == PIP_ORIGINAL
    assert paths.uv_toml.read_text() == UV_ORIGINAL


def test_unset_removes_files_that_did_not_exist(paths: ClientPaths) -> None:
    edits = run_unset(records(run_set(paths, (), HTTP)))
    assert not paths.pip_conf.exists()
    assert not paths.uv_toml.exists()
    assert [e.text for e in edits] == [None, None]


def test_switching_index_keeps_the_first_original(paths: ClientPaths) -> None:
    paths.pip_conf.write_text(PIP_ORIGINAL)
    first = records(run_set(paths, (), HTTP))
    second = records(run_set(paths, first, HTTPS))
    pip_text = paths.pip_conf.read_text()
    assert "pkgs.example:3141" not in pip_text  # the http index and its trusted host are gone
    assert "trusted-host = build.example\n" in pip_text
    assert 'url = "https://pkgs.example/team/prod/+simple/"' in paths.uv_toml.read_text()
    run_unset(second)
    assert paths.pip_conf.read_text() == PIP_ORIGINAL
    assert not paths.uv_toml.exists()


def test_unset_after_the_user_edited_reverts_only_our_keys(paths: ClientPaths) -> None:
    paths.pip_conf.write_text(PIP_ORIGINAL)
    saved = records(run_set(paths, (), HTTP))
    edited = paths.pip_conf.read_text().replace("timeout = 60", "timeout = 5")
    edited = edited.replace(HTTP.index_url + "/\n", "https://elsewhere.example/\n")
    paths.pip_conf.write_text(edited)
    paths.uv_toml.write_text(paths.uv_toml.read_text() + "\n[pip]\nno-cache = true\n")
    edits = run_unset(saved)
    pip_text = paths.pip_conf.read_text()
    assert "timeout = 5" in pip_text
    assert "index-url" not in pip_text
    assert "trusted-host = build.example\n" in pip_text
    assert "index = https://elsewhere.example/" in pip_text  # changed by the user: kept
    assert any("left [search] index" in line for line in edits[0].report)
    assert tomllib.loads(paths.uv_toml.read_text()) == {"pip": {"no-cache": True}}


@pytest.mark.parametrize(
    ("original", "reason"),
    [
        (
            '[[index]]\nurl = "https://mine.example/simple/"\ndefault = true\n',
            r"has a default \[\[index\]\]",
        ),
        ('index-url = "https://mine.example/simple/"\n', "sets index-url already"),
        (
            'index = [{ url = "https://mine.example/simple/" }]\n',
            r"cannot add \[\[index\]\] safely",
        ),
        ("index = 3\n", "not an array of tables"),
        ("native-tls = \n", "not valid TOML"),
    ],
)
def test_uv_toml_we_cannot_edit_safely_is_left_alone(
    paths: ClientPaths, original: str, reason: str
) -> None:
    paths.uv_toml.parent.mkdir()
    paths.uv_toml.write_text(original)
    with pytest.raises(ConfigEditError, match=reason):
        render_uv_toml(original, HTTP, paths.uv_toml)
    plans = plan_set(paths, (), HTTP)
    assert isinstance(plans[0], Edit)
    assert isinstance(plans[1], ConfigEditError)
    assert str(plans[1]).startswith(f"{paths.uv_toml}: ")


def test_uv_toml_keeps_other_indexes_first(tmp_path: Path) -> None:
    original = '[[index]]\nname = "internal"\nurl = "https://internal.example/simple/"\n'
    text, _ = render_uv_toml(original, HTTPS, tmp_path / "uv.toml")
    assert [i["url"] for i in tomllib.loads(text)["index"]] == [
        "https://internal.example/simple/",
        HTTPS.simple_url,
    ]


def test_unparsable_pip_conf_is_left_alone(paths: ClientPaths) -> None:
    paths.pip_conf.write_text("index-url = no section header\n")
    plans = plan_set(paths, (), HTTP)
    assert isinstance(plans[0], ConfigEditError)
    assert "cannot parse it" in str(plans[0])
    assert paths.pip_conf.read_text() == "index-url = no section header\n"


def test_other_index_urls_in_pip_conf_are_pointed_out(paths: ClientPaths) -> None:
    paths.pip_conf.write_text("[install]\nindex_url = https://other.example/simple/\n")
    (pip_edit, _) = run_set(paths, (), HTTPS)
    assert (
        f"note: [install] index_url in {paths.pip_conf} overrides [global] index-url"
        in pip_edit.report
    )
