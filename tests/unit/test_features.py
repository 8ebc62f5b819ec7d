"""The daemon's feature registry: one table of methods, typed params, reactions by phase, and
daemon modules that import no circle (and never ``service``)."""

from __future__ import annotations

import ast
import asyncio
import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest

import switchboard
from switchboard.daemon.features import FEATURES, REGISTRY
from switchboard.daemon.params import AgentParams
from switchboard.daemon.registry import Feature, Phase, Registry, after_commit, in_txn
from switchboard.errors import UserError
from switchboard.events import Event, StatusChanged

DAEMON = Path(switchboard.__file__).parent / "daemon"


class EchoParams(AgentParams):
    times: int = 1


async def echo(ctx: Any, p: EchoParams) -> dict[str, Any]:
    return {"agent": p.agent, "times": p.times, "ctx": ctx}


async def untyped(ctx: Any, params: Any) -> None:
    return None


def _event(seq: int, type_: str) -> tuple[int, Event]:
    return seq, Event(
        origin="o", seq=seq, ts="2024-05-01T10:12:11Z", type=type_, agent="a", data={}
    )


def test_registry_merges_tables_and_refuses_a_name_declared_twice() -> None:
    """Two features may not declare one method; every method of the daemon has one owner."""
    with pytest.raises(ValueError, match="method echo is declared by a and b"):
        Registry([Feature("a", methods={"echo": echo}), Feature("b", methods={"echo": echo})])
    owned = [name for f in FEATURES for name in (*f.methods, *f.streams)]
    assert sorted(owned) == sorted(REGISTRY.names)


def test_registry_refuses_a_method_without_a_params_struct() -> None:
    """A method's second parameter must name its params Struct: that is its one declaration."""
    with pytest.raises(TypeError, match="must take"):
        Registry([Feature("a", methods={"untyped": untyped})])
    assert all(issubclass(cls, msgspec.Struct) for cls in REGISTRY.params.values())
    assert set(REGISTRY.params) == REGISTRY.names


def test_registry_validates_params_at_the_door() -> None:
    """A bound method gets its params as the Struct; bad input is a UserError naming the field."""
    table = Registry([Feature("a", methods={"echo": echo})]).bind("the context")
    call, streaming = table["echo"]
    assert streaming is False
    result = asyncio.run(call({"agent": "luna", "times": 2}))
    assert result == {"agent": "luna", "times": 2, "ctx": "the context"}
    with pytest.raises(UserError, match="parameter times"):
        call({"times": "many"})


def test_reactions_run_by_phase_and_see_only_their_types(caplog: pytest.LogCaptureFixture) -> None:
    """An in-transaction reaction sees its types and answers; one that raises is logged and
    skipped while the others still answer; after-commit reactions see only their types."""
    seen: list[tuple[str, list[int]]] = []

    def answer(ctx: Any, conn: Any, stored: list[tuple[int, Event]]) -> list[tuple[str, Any]]:
        seen.append(("in_txn", [i for i, _ in stored]))
        return [("", StatusChanged(status="idle"))]

    def broken(ctx: Any, conn: Any, stored: list[tuple[int, Event]]) -> list[tuple[str, Any]]:
        raise RuntimeError("a bug")

    def after(ctx: Any, stored: list[tuple[int, Event]]) -> None:
        seen.append(("after", [i for i, _ in stored]))

    registry = Registry(
        [
            Feature("x", reactions=[in_txn(broken, "message_posted")]),
            Feature("y", reactions=[in_txn(answer, "message_posted"), after_commit(after, "b")]),
        ]
    )
    stored = [_event(1, "message_posted"), _event(2, "b"), _event(3, "message_posted")]
    with caplog.at_level(logging.ERROR, logger="switchboard.daemon.registry"):
        answered = registry.react_in_txn(None, None, stored)  # type: ignore[arg-type]
    assert answered == [("", StatusChanged(status="idle"))]
    assert "broken" in caplog.text
    registry.react_after_commit(None, stored)  # type: ignore[arg-type]
    registry.react_after_commit(None, [_event(4, "c")])  # type: ignore[arg-type]
    assert seen == [("in_txn", [1, 3]), ("after", [2])]
    assert in_txn(answer).types is None  # no types: every event
    assert after_commit(after).phase is Phase.AFTER_COMMIT


def test_daemon_reactions_are_declared_by_features() -> None:
    """The delivered receipt runs in the transaction; receipt waits and coordination after."""
    declared = {(f.name, r.phase, r.fn.__name__) for f in FEATURES for r in f.reactions}
    assert ("messages", Phase.IN_TXN, "deliver_received") in declared
    assert ("messages", Phase.AFTER_COMMIT, "_wake_receipt_waiters") in declared
    assert ("coordination", Phase.AFTER_COMMIT, "_on_stored") in declared


def _daemon_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in DAEMON.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "switchboard.daemon":
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[path.stem] = {
            name.removeprefix("switchboard.daemon.")
            for name in found
            if name.startswith("switchboard.daemon.")
        } | {name for name in found if (DAEMON / f"{name}.py").exists()}
    return graph


def test_daemon_modules_import_no_circle_and_features_never_the_service() -> None:
    """Among daemon modules imports form no cycle (lazy and type-only ones included), no
    daemon module imports ``service``, and ``service`` names no feature module."""
    graph = _daemon_imports()
    assert not {name for name, deps in graph.items() if "service" in deps}
    # direct: the directed channel's wiring (handlers from the registry, which link to call).
    assert graph["service"] <= {"features", "api", "context", "process", "direct"}
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        assert state.get(name) != 1, f"import circle: {' -> '.join([*path, name])}"
        state[name] = 1
        for dep in sorted(graph.get(name, ())):
            visit(dep, [*path, name])
        state[name] = 2

    for name in sorted(graph):
        visit(name, [])
