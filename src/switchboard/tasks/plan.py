"""Plans (task graphs): the plan file read and checked, the order of its tasks, and the rule
that says which task starts next and which are skipped.

Theory of operation
-------------------
A plan is a TOML file of tasks, each one ``switchboard spawn`` in a file:

.. code-block:: toml

    name = "release"            # optional; the file's name otherwise

    [[task]]
    name = "build"              # unique in the plan
    prompt = "build the wheel"
    harness = "claude"          # optional (claude)
    device = "vps"              # optional: a short id or name; absent: this device
    dir = "~/src/app"           # optional: the device's policy default; ~ is that device's home
    depends_on = []             # names of tasks that must complete first

Everything is checked before anything runs (``parse``): unknown keys, missing fields, a
duplicate name, a dependency on an unknown task and a cycle are each one ``UserError``
naming the task and the line of its ``[[task]]``. ``next_steps`` is the scheduling rule as
a pure function of the steps' states: a step whose dependencies all completed starts; a step
one of whose dependencies ended any other way is skipped, with the reason, and so on down
the graph. The daemon's runner (``daemon/plans.py``) applies it; the report shapes are here
so the CLI's ``--json`` and the daemon agree.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from switchboard.errors import UserError
from switchboard.events import PlanStep
from switchboard.tasks.commands import HARNESSES
from switchboard.tasks.policy import MAX_TASK_TEXT

# A plan is a handful of tasks a person wrote; a hundred is already a script's job.
MAX_PLAN_TASKS: Final = 100
# Names appear in reasons and on every report line.
MAX_NAME_LENGTH: Final = 64
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TOP_KEYS: Final = {"name", "task"}
_TASK_KEYS: Final = {"name", "prompt", "harness", "device", "dir", "depends_on"}
_HEADER_RE: Final = re.compile(r"^[ \t]*\[\[[ \t]*task[ \t]*\]\]", re.MULTILINE)

#: A step's states: waiting, its task running, or how it ended.
PENDING: Final = "pending"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
SKIPPED: Final = "skipped"
#: How a step may end (its task's final state, or skipped).
ENDED: Final = frozenset({COMPLETED, "failed", "refused", "stopped", "killed", "lost", SKIPPED})


class Plan(msgspec.Struct, frozen=True):
    """A checked plan: its name and its steps in the file's order (devices as written)."""

    name: str
    steps: list[PlanStep]


def _fail(where: str, what: str) -> UserError:
    return UserError(f"plan: {where}: {what}")


def _lines_of_tasks(text: str) -> list[int]:
    """The line (from 1) of each ``[[task]]`` header, in order."""
    return [text.count("\n", 0, m.start()) + 1 for m in _HEADER_RE.finditer(text)]


def parse(text: str, *, default_name: str = "plan") -> Plan:
    """Read and check a plan file's text.

    Raises:
        UserError: it is not valid TOML, or a task is not valid, naming it and its line.
    """
    import tomllib  # noqa: PLC0415 - only plans read it

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"plan: not valid TOML ({exc})") from None
    extra = sorted(set(doc) - _TOP_KEYS)
    if extra:
        hint = " (tasks are [[task]] tables)" if extra[0] in ("tasks", "step", "steps") else ""
        raise _fail("top level", f"unknown key {extra[0]!r}{hint}")
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise _fail("name", f"expected a string of 1 to {MAX_NAME_LENGTH} characters")
    tables = doc.get("task", [])
    if not isinstance(tables, list) or not tables:
        raise _fail("top level", "no tasks (add [[task]] tables)")
    if len(tables) > MAX_PLAN_TASKS:
        raise _fail("top level", f"{len(tables)} tasks exceed the limit of {MAX_PLAN_TASKS}")
    lines = _lines_of_tasks(text)
    steps: list[PlanStep] = []
    where_of: dict[str, str] = {}
    for index, table in enumerate(tables):
        line = f" (line {lines[index]})" if index < len(lines) else ""
        step = _step(table, f"task {index + 1}{line}", line)
        where = f"task {step.name!r}{line}"
        if step.name in where_of:
            raise _fail(where, f"duplicate name, also {where_of[step.name]}")
        where_of[step.name] = where
        steps.append(step)
    for step in steps:
        for dep in step.depends_on:
            if dep not in where_of:
                raise _fail(where_of[step.name], f"depends on unknown task {dep[:40]!r}")
            if dep == step.name:
                raise _fail(where_of[step.name], "depends on itself")
    cycle = find_cycle(steps)
    if cycle:
        raise _fail(where_of[cycle[0]], "its dependencies form a cycle: " + " -> ".join(cycle))
    return Plan(name=name.strip(), steps=steps)


def _string(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise _fail(where, f"missing {key!r}")
    if not isinstance(value, str):
        raise _fail(f"{where}.{key}", "expected a string")
    return value


def _step(table: Any, where: str, line: str) -> PlanStep:
    if not isinstance(table, Mapping):
        raise _fail(where, "expected a table")
    extra = sorted(set(table) - _TASK_KEYS)
    if extra:
        raise _fail(where, f"unknown key {extra[0]!r}")
    name = _string(table, "name", where)
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
        raise _fail(f"{where}.name", "a letter or digit, then letters, digits, '_', '.' or '-'")
    where = f"task {name!r}{line}"
    prompt = _string(table, "prompt", where)
    if not prompt.strip():
        raise _fail(f"{where}.prompt", "is empty")
    if len(prompt) > MAX_TASK_TEXT:
        raise _fail(f"{where}.prompt", f"{len(prompt)} characters exceed {MAX_TASK_TEXT}")
    harness = _string(table, "harness", where, "claude")
    if harness not in HARNESSES:
        raise _fail(f"{where}.harness", f"unknown harness {harness[:20]!r}: {', '.join(HARNESSES)}")
    deps = table.get("depends_on", [])
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise _fail(f"{where}.depends_on", "expected a list of task names")
    return PlanStep(
        name=name, prompt=prompt, harness=harness, dir=_string(table, "dir", where, ""),
        device=_string(table, "device", where, "").strip(), depends_on=list(dict.fromkeys(deps)),
    )  # fmt: skip


def local_dir(directory: str, base: str) -> str:
    """A local task's directory: a relative one is taken from the plan file's folder ``base``
    (``~`` and absolute paths stay, for the policy to resolve)."""
    if not directory or not base or directory.startswith("~") or posixpath.isabs(directory):
        return directory
    return posixpath.normpath(posixpath.join(base, directory))


def is_remote_dir(directory: str) -> bool:
    """Whether a directory can mean something on another device: absolute, or ``~/...``."""
    return directory == "~" or directory.startswith("~/") or posixpath.isabs(directory)


def find_cycle(steps: Sequence[PlanStep]) -> list[str]:
    """A dependency cycle as names (first repeated at the end), or ``[]`` when there is none."""
    deps = {step.name: step.depends_on for step in steps}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for dep in deps.get(name, ()):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return []

    for step in steps:
        if step.name not in state:
            found = visit(step.name)
            if found:
                return found
    return []


def order(steps: Sequence[PlanStep]) -> list[str]:
    """The steps' names so that each comes after its dependencies (the file's order otherwise)."""
    done: list[str] = []
    left = list(steps)
    while left:
        ready = [s for s in left if all(d in done for d in s.depends_on)]
        assert ready, "a cycle: parse refuses those"
        done.extend(s.name for s in ready)
        left = [s for s in left if s.name not in done]
    return done


class StepState(msgspec.Struct, frozen=True):
    """Where one step stands, as the scheduling rule reads it."""

    state: str = PENDING
    reason: str = ""


def next_steps(
    steps: Sequence[PlanStep], states: Mapping[str, StepState]
) -> tuple[list[str], list[tuple[str, str]]]:
    """The pending steps to start now, and those to skip now with the reason.

    A step starts once every dependency completed; it is skipped as soon as one dependency
    ended any other way (skips travel down the graph one call at a time).
    """
    start: list[str] = []
    skip: list[tuple[str, str]] = []
    for step in steps:
        if states.get(step.name, StepState()).state != PENDING:
            continue
        blocked = ""
        ready = True
        for dep in step.depends_on:
            dep_state = states.get(dep, StepState())
            if dep_state.state == COMPLETED:
                continue
            ready = False
            if dep_state.state in ENDED:
                blocked = f"depends on {dep}, which {_ended_text(dep_state)}"
                break
        if blocked:
            skip.append((step.name, blocked))
        elif ready:
            start.append(step.name)
    return start, skip


def _ended_text(state: StepState) -> str:
    verb = "was" if state.state in (SKIPPED, "refused", "stopped", "killed", "lost") else ""
    said = f"{verb} {state.state}".strip()
    if state.state == SKIPPED:
        return said
    return f"{said} ({state.reason[:200]})" if state.reason else said


def is_finished(steps: Sequence[PlanStep], states: Mapping[str, StepState]) -> bool:
    """Whether every step has ended."""
    return all(states.get(s.name, StepState()).state in ENDED for s in steps)


def outcome(steps: Sequence[PlanStep], states: Mapping[str, StepState]) -> str:
    """A finished plan's state: ``completed`` when every step completed, else ``failed``."""
    done = all(states.get(s.name, StepState()).state == COMPLETED for s in steps)
    return COMPLETED if done else "failed"


# -- reports (the daemon builds them; ``run --json`` and ``plan show --json`` print them) --------


class StepReport(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a plan report."""

    name: str
    device: str  # short id
    harness: str
    depends_on: list[str]
    state: str  # pending, running, completed, failed, refused, ..., skipped
    task: str = ""
    agent: str = ""
    dir: str = ""
    reason: str = ""  # why it was refused, failed or skipped
    result: str = ""  # the tail of its output, once it ended
    verdict: str = ""  # --dry-run: allowed, refused or unreachable (with the reason)


class PlanReport(msgspec.Struct, frozen=True, kw_only=True):
    """A plan and where each of its steps stands."""

    id: str  # "" for a dry run
    name: str
    state: str  # dry_run, running, completed, failed
    requester: str  # the agent's display address
    started: str | None = None
    ended: str | None = None
    version: int = 0  # grows with each of the plan's events (``plan show --after``)
    steps: list[StepReport] = []
