"""Layers: no module imports from a layer above its own (the order of ``docs/internals.md``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import switchboard

SRC = Path(switchboard.__file__).parent
INTERNALS = SRC.parents[1] / "docs" / "internals.md"


def layers() -> dict[str, int]:
    """Read the numbered list under "## Layers": each top-level name, and its layer's number."""
    text = INTERNALS.read_text()
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    found: dict[str, int] = {}
    for number, rest in re.findall(r"^(\d+)\. (.*)$", section, re.MULTILINE):
        for name in re.findall(r"`([\w.]+)`", rest):
            assert name not in found, f"{name} is listed twice in docs/internals.md"
            found[name] = int(number)
    return found


def top_name(module: str) -> str:
    """``switchboard.links.relay`` -> ``links``; the root package is ``switchboard``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "switchboard"


def own_module(path: Path) -> str:
    """The dotted name of a file under ``src/switchboard``."""
    relative = path.relative_to(SRC.parent).with_suffix("")
    return ".".join(relative.parts).removesuffix(".__init__")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every first-party module a file imports, at any depth (lazy and type-only included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "switchboard":
            found += [(node.lineno, f"switchboard.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] == "switchboard"]


def is_module(dotted: str) -> bool:
    """Whether ``switchboard.x`` names a module or package (not ``__version__``)."""
    relative = Path(*dotted.split(".")[1:])
    return (SRC / relative).is_dir() or (SRC / relative).with_suffix(".py").exists()


SOURCES = sorted(SRC.rglob("*.py"))


def test_layers_list_every_package_and_module() -> None:
    """Every package and top-level module of src/switchboard has a layer in docs/internals.md."""
    names = {p.stem for p in SRC.glob("*.py")} | {p.name for p in SRC.iterdir() if p.is_dir()}
    names -= {"__init__", "__pycache__"}
    names.add("switchboard")  # the root package: its lazy public names
    assert names == set(layers())


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_layers_module_imports_nothing_above_its_layer(path: Path) -> None:
    """A module imports only from its own layer and the layers below it."""
    order = layers()
    mine = own_module(path)
    level = order[top_name(mine)]
    above = [
        f"line {line}: {name} (layer {order[top_name(name)]})"
        for line, name in imports_of(path)
        if is_module(name) and order[top_name(name)] > level
    ]
    assert not above, f"{mine} (layer {level}) imports from above: {above}"


def test_layers_check_sees_lazy_imports(tmp_path: Path) -> None:
    """An import inside a function counts as much as one at the top of the module."""
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from switchboard.daemon.client import Client\n")
    assert imports_of(source) == [(2, "switchboard.daemon.client")]
