"""The import-direction rule of STYLE.md: a module imports only from its own layer or lower ones.

Every module under proxy/ must be placed in LAYERS, so a new module fails here until it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROXY = Path(__file__).resolve().parents[1] / "proxy"

#: module name (or "package.*" for every module below a package) → layer
LAYERS: dict[str, int] = {
    "proxy": 0,
    "proxy.errors": 0,
    "proxy.metrics": 0,
    "proxy.tasks": 0,
    "proxy.model": 1,
    "proxy.accept": 1,
    "proxy.httpranges": 1,
    "proxy.distfiles": 1,
    "proxy.simple_api": 1,
    "proxy.config": 1,
    "proxy.yamlconv": 1,
    "proxy.storage": 2,
    "proxy.storage.*": 2,
    "proxy.mirror": 3,
    "proxy.mirror.upstream": 3,
    "proxy.mirror.addresses": 3,
    "proxy.mirror.health": 3,
    "proxy.mirror.fetch": 3,
    "proxy.mirror.sources": 3,
    "proxy.mirror.ranges": 3,
    "proxy.mirror.rootlist": 3,
    "proxy.delivery": 3,
    "proxy.mirror.*": 4,
    "proxy.hosted": 4,
    "proxy.hosted.*": 4,
    "proxy.indexes": 4,
    "proxy.indexes.*": 4,
    "proxy.cluster": 4,
    "proxy.cluster.*": 4,
    "proxy.web": 5,
    "proxy.web.*": 5,
    "proxy.app": 6,
    "proxy.logs": 6,
    "proxy.cli": 6,
    "proxy.servercli": 6,
    "proxy.healthcheck": 6,
    "proxy.__main__": 6,
    "proxy.client": 6,
    "proxy.client.*": 6,
}

#: the CLI's client side runs on users' machines: it may use these shared leaves and itself only
CLIENT_MAY_IMPORT = {"proxy", "proxy.distfiles", "proxy.errors"}
#: the two sides of the house meet only in the index layer: neither imports the other
SEPARATE_SIDES = (("proxy.hosted", "proxy.mirror"), ("proxy.mirror", "proxy.hosted"))

#: the server reads the environment only in config.py (STYLE.md, "Configuration"); the client
#: side of the CLI is a separate program on a user's machine and reads its own settings module
ENVIRONMENT_READERS = {"proxy.config", "proxy.client.settings"}
_ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}

#: index kinds are told apart only in the index layer; elsewhere the Index protocol serves
KIND_CLASSES = {"MirrorIndex", "PrivateIndex"}


def module_name(path: Path, root: Path = PROXY) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path = PROXY) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


MODULES = discover()


def layer_of(module: str) -> int | None:
    if module in LAYERS:
        return LAYERS[module]
    package, _, _ = module.rpartition(".")
    while package:
        if f"{package}.*" in LAYERS:
            return LAYERS[f"{package}.*"]
        package, _, _ = package.rpartition(".")
    return None


def imports_of(module: str, source: str, known: set[str]) -> set[str]:
    """The first-party modules `source` imports, with `from pkg import submodule` resolved."""
    is_package = module in known and any(m.startswith(module + ".") for m in known)
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{node.module}" if node.module else anchor
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {name for name in found if name == "proxy" or name.startswith("proxy.")}


def _reads_environment(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return (
            node.attr in _ENV_NAMES and isinstance(node.value, ast.Name) and node.value.id == "os"
        )
    if isinstance(node, ast.ImportFrom):
        return node.module == "os" and any(alias.name in _ENV_NAMES for alias in node.names)
    return False


def environment_reads(source: str) -> list[int]:
    """Line numbers where `os.environ`, `os.getenv` and friends are used or imported."""
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute | ast.ImportFrom) and _reads_environment(node)
    )


def _names_in(node: ast.expr) -> set[str]:
    """The class names an isinstance() second argument mentions (a name, a tuple or a union)."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
    return found


def kind_checks(source: str) -> list[int]:
    """Line numbers of isinstance(x, MirrorIndex | PrivateIndex) and the like."""
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "isinstance"
        and len(node.args) == 2
        and _names_in(node.args[1]) & KIND_CLASSES
    )


def test_modules_are_found() -> None:
    assert {"proxy", "proxy.errors", "proxy.model", "proxy.app"} <= set(MODULES)


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in MODULES if layer_of(name) is None)
    assert unplaced == [], "add these modules to LAYERS in tests/test_layers.py (and STYLE.md)"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    own = layer_of(module)
    assert own is not None, f"{module} has no layer"
    source = MODULES[module].read_text(encoding="utf-8")
    violations = []
    for imported in sorted(imports_of(module, source, set(MODULES))):
        layer = layer_of(imported)
        if layer is None or layer > own:
            violations.append(f"{module} (L{own}) imports {imported} (L{layer})")
    assert violations == []


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "proxy.client")))
def test_client_never_imports_the_server(module: str) -> None:
    source = MODULES[module].read_text(encoding="utf-8")
    server = sorted(
        imported
        for imported in imports_of(module, source, set(MODULES))
        if not _in(imported, "proxy.client") and imported not in CLIENT_MAY_IMPORT
    )
    assert server == [], f"{module} imports server modules"


@pytest.mark.parametrize(("side", "other"), SEPARATE_SIDES)
def test_hosted_and_mirror_do_not_import_each_other(side: str, other: str) -> None:
    crossing = [
        f"{module} imports {imported}"
        for module in sorted(MODULES)
        if _in(module, side)
        for imported in sorted(imports_of(module, MODULES[module].read_text("utf-8"), set(MODULES)))
        if _in(imported, other)
    ]
    assert crossing == []


@pytest.mark.parametrize("module", sorted(set(MODULES) - ENVIRONMENT_READERS))
def test_only_config_reads_the_environment(module: str) -> None:
    source = MODULES[module].read_text(encoding="utf-8")
    assert environment_reads(source) == [], f"{module} reads the environment"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _in(m, "proxy.indexes")))
def test_index_kinds_are_told_apart_only_in_the_index_layer(module: str) -> None:
    source = MODULES[module].read_text(encoding="utf-8")
    assert kind_checks(source) == [], f"{module}: use the Index protocol or an IndexRegistry method"


# ---- the checker itself can fail -------------------------------------------------------------


KNOWN = {"proxy", "proxy.model", "proxy.web", "proxy.web.keys", "proxy.web.files", "proxy.app"}


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("proxy.model", "import os\nimport packaging.utils\n", set()),
        ("proxy.model", "from proxy import __version__\n", {"proxy"}),
        ("proxy.app", "from proxy.web import keys\n", {"proxy.web.keys"}),
        ("proxy.app", "from proxy.web.keys import CONFIG\n", {"proxy.web.keys"}),
        ("proxy.app", "import proxy.model\n", {"proxy.model"}),
        ("proxy.web.files", "from . import keys\n", {"proxy.web.keys"}),
        ("proxy.web.files", "from ..model import normalize\n", {"proxy.model"}),
        ("proxy.web", "from .keys import X\n", {"proxy.web.keys"}),
        ("proxy.model", "def f() -> None:\n    from proxy.app import create_app\n", {"proxy.app"}),
        (
            "proxy.model",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from proxy import app\n",
            {"proxy.app"},
        ),
    ],
)
def test_imports_of(module: str, source: str, expected: set[str]) -> None:
    assert imports_of(module, source, KNOWN) == expected


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("proxy.storage.blobs", 2),
        ("proxy.storage.db", 2),
        ("proxy.web.simple", 5),
        ("proxy.web.ui.pages", 5),
        ("proxy.hosted.wheelhouse", 4),
        ("proxy.utils", None),
        ("proxy.model.extra", None),
        ("elsewhere", None),
    ],
)
def test_layer_of(module: str, layer: int | None) -> None:
    assert layer_of(module) == layer


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("import os\nos.environ['X']\n", [2]),
        ("import os\nx = os.environ.get('X')\n", [2]),
        ("import os\nos.getenv('X')\n", [2]),
        ("from os import environ\n", [1]),
        ("from os import getenv as g\n", [1]),
        ("import os\nos.access('.', os.W_OK)\n", []),
        ("from os import path\n", []),
    ],
)
def test_environment_reads(source: str, lines: list[int]) -> None:
    assert environment_reads(source) == lines


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("isinstance(i, PrivateIndex)\n", [1]),
        ("x = 1\nif not isinstance(i, MirrorIndex):\n    pass\n", [2]),
        ("isinstance(i, (str, private.PrivateIndex))\n", [1]),
        ("isinstance(i, MirrorIndex | PrivateIndex)\n", [1]),
        ("isinstance(i, Cached)\n", []),
        ("i.kind is IndexKind.MIRROR\n", []),
    ],
)
def test_kind_checks(source: str, lines: list[int]) -> None:
    assert kind_checks(source) == lines


def test_module_name() -> None:
    assert module_name(PROXY / "__init__.py") == "proxy"
    assert module_name(PROXY / "web" / "__init__.py") == "proxy.web"
    assert module_name(PROXY / "storage" / "blobs.py") == "proxy.storage.blobs"
