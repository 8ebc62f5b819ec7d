"""Structure: the sans-IO core imports no I/O, clock or randomness (trio ``test_exports.py``)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import switchboard

SRC = Path(switchboard.__file__).parent
PROTO = SRC / "proto"
BANNED = frozenset({"asyncio", "socket", "sqlite3", "time", "random"})
# What the runtime check can promise: ``time`` is loaded by the interpreter itself, and
# ``random`` by ``secrets``, which ``crypto`` (not the core) uses to make group secrets.
BANNED_AT_RUNTIME = ("asyncio", "socket", "sqlite3")


def imported_modules(path: Path) -> set[str]:
    """Return every absolute module name a Python file imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            assert node.module is not None
            names.add(node.module)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "__import__", f"{path.name}: __import__ hides an import"
    return names


def module_path(name: str) -> Path:
    """Return the file of a first-party module."""
    relative = Path(*name.split(".")[1:])
    package = SRC / relative / "__init__.py"
    return package if package.exists() else SRC / relative.with_suffix(".py")


def core_modules() -> dict[str, Path]:
    """Every module under proto/, plus every first-party module they import, transitively."""
    found = {f"switchboard.proto.{p.stem}".removesuffix(".__init__"): p for p in PROTO.glob("*.py")}
    pending = list(found.values())
    while pending:
        for name in imported_modules(pending.pop()):
            if name.startswith("switchboard.") and name not in found:
                found[name] = module_path(name)
                pending.append(found[name])
    return found


@pytest.mark.parametrize("path", sorted(PROTO.glob("*.py")), ids=lambda path: path.name)
def test_structure_proto_module_imports_no_io(path: Path) -> None:
    """No module under switchboard.proto imports asyncio, socket, sqlite3, time or random."""
    roots = {name.partition(".")[0] for name in imported_modules(path)}
    assert not roots & BANNED


def test_structure_core_dependencies_import_no_io() -> None:
    """The first-party modules the core reaches (crypto, errors, ...) import none of them either."""
    modules = core_modules()
    assert {"switchboard.crypto", "switchboard.errors", "switchboard.proto.session"} <= set(modules)
    for name, path in modules.items():
        roots = {imported.partition(".")[0] for imported in imported_modules(path)}
        assert not roots & BANNED, f"{name} imports {sorted(roots & BANNED)}"


def test_structure_importing_session_loads_no_io_modules() -> None:
    """A fresh interpreter that imports the session has no asyncio, socket or sqlite3 loaded."""
    code = (
        "import sys, json\n"
        "import switchboard.proto.session, switchboard.proto.framing, switchboard.proto.cursors\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(result.stdout))
    assert "switchboard.proto.session" in loaded
    assert not loaded & set(BANNED_AT_RUNTIME)


BROKER_LIBRARIES = frozenset({"aiomqtt", "paho", "nats", "websockets"})


@pytest.mark.parametrize("path", sorted((SRC / "links").glob("*.py")), ids=lambda path: path.name)
def test_structure_links_see_no_network_library(path: Path) -> None:
    """Links reach brokers and the relay through transports/: no aiomqtt, paho, nats, websockets."""
    roots = {name.partition(".")[0] for name in imported_modules(path)}
    assert not roots & BROKER_LIBRARIES
