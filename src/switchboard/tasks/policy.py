"""The spawn policy: which devices may start which harnesses in which directories of this one.

Theory of operation
-------------------
The receiving device decides. Its policy is ``<home>/spawn.toml`` (``switchboard spawn
allow|deny`` edit it, ``spawn policy`` shows it; hand edits are fine):

.. code-block:: toml

    max_tasks = 4          # tasks running at once on this device, all requesters together
    max_runtime = 14400    # seconds; a task running longer is stopped
    grace = 10             # seconds between a stop's SIGTERM and its SIGKILL

    [local]                # this device's own user: its CLI and its own agents' tools
    harnesses = ["claude", "codex", "gemini", "opencode", "pi"]
    dirs = ["~"]
    answer = ["*"]         # agents (names, globs) whose permission prompts it may answer

    [devices.<device id>]  # another device of the group; refused unless it has a table
    name = "laptop"        # for people; the key decides
    harnesses = ["claude"]
    dirs = ["~/src/api"]
    answer = []            # other agents' prompts it may answer
    answer_own = true      # prompts of the tasks it started (default true)
    transcripts = ["*"]    # agents (names, globs) whose transcripts it may read (default none)
    max_tasks = 2          # optional, within the device-wide limit
    max_runtime = 3600     # optional, within the device-wide limit
    term_read = ["w-*"]    # agents (names, globs) whose terminal screen it may read
    term_type = []         # agents whose terminal it may type into (implies reading)

    [harnesses.cmd]        # a harness's command: cmd needs one; the others may override theirs
    args = ["python3", "/opt/tools/review.py", "{task}"]
    task = "arg"           # "stdin" (default) or "arg" (see tasks/commands.py)
    skip_permissions = false
    env = {}               # extra environment for its programs (no secrets of ours, ever)

Defaults, when the file or a part of it is missing: another device may do nothing. This
device's own user may spawn the five built-in harnesses in any directory under their home
and answer any prompt here: that is what the user can already do in a shell, so refusing it
would protect nothing. ``[local] allowed = false`` turns even that off. Transcripts of this
device's agents are read by this device alone unless a device's table lists them
(``transcripts``, edited by ``switchboard transcript allow|deny``); a table with only
``transcripts`` lets a device read them and nothing else.

Terminals (``switchboard term``, daemon/term.py): this device's own user may always read and
type into its agents' terminals (as with tmux itself). Another device may read the screen of
an agent only if it started that agent's task or a ``term_read`` (or ``term_type``) pattern
names the agent, and type into it only if a ``term_type`` pattern does: by default no other
device types anywhere (``may_term``).

Directories are compared as resolved real paths: a requested directory is expanded (``~`` is
this device's home; ``~user`` is refused), resolved through every symlink and ``..``, must
exist, and must lie inside one allowed directory, itself resolved. A symlink or a ``..`` that
leads out of the allowed tree is therefore outside it. A remote request must give an
absolute path (or ``~/...``): a relative one means nothing on another machine.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from switchboard.errors import UserError
from switchboard.tasks.commands import BUILTIN, HARNESSES, TASK_VIA, check_template

# A 2-core laptop runs about four coding agents before they crowd each other out.
DEFAULT_MAX_TASKS: Final = 4
# Four hours: longer than any honest unattended task; a stuck agent stops burning tokens.
DEFAULT_MAX_RUNTIME: Final = 4 * 3600.0
# Ten seconds lets a harness save its session after SIGTERM; longer only delays a stop.
DEFAULT_GRACE: Final = 10.0
# The task text is a prompt; 64 KiB is the message limit too (daemon/handlers.MAX_TEXT_LENGTH).
MAX_TASK_TEXT: Final = 64 * 1024
#: What ``spawn allow DEVICE`` grants without ``--harness``: the harnesses that keep their own
#: permission prompts (pi has none; cmd runs what the template says).
REMOTE_DEFAULT_HARNESSES: Final = ("claude", "codex", "gemini", "opencode")
LOCAL_DEFAULT_HARNESSES: Final = tuple(BUILTIN)

_TOP_KEYS: Final = {"max_tasks", "max_runtime", "grace", "local", "devices", "harnesses"}
_GRANT_KEYS: Final = {
    "name", "harnesses", "dirs", "answer", "answer_own", "max_tasks", "max_runtime", "allowed",
    "transcripts",
    "term_read", "term_type",
}  # fmt: skip
_HARNESS_KEYS: Final = {"args", "task", "skip_permissions", "env"}


@dataclass(frozen=True)
class Grant:
    """What one requester (a device, or this device's own user) may do here."""

    harnesses: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    answer: tuple[str, ...] = ()
    answer_own: bool = True
    max_tasks: int | None = None
    max_runtime: float | None = None
    name: str = ""
    allowed: bool = True
    transcripts: tuple[str, ...] = ()
    term_read: tuple[str, ...] = ()
    term_type: tuple[str, ...] = ()


@dataclass(frozen=True)
class HarnessRule:
    """How a harness's programs run here: its template (``None``: the built-in one)."""

    args: tuple[str, ...] | None = None
    task_via: str = "stdin"
    skip_permissions: bool = False
    env: tuple[tuple[str, str], ...] = ()


LOCAL_DEFAULT: Final = Grant(harnesses=LOCAL_DEFAULT_HARNESSES, dirs=("~",), answer=("*",))


@dataclass(frozen=True)
class Policy:
    """A device's whole spawn policy."""

    max_tasks: int = DEFAULT_MAX_TASKS
    max_runtime: float = DEFAULT_MAX_RUNTIME
    grace: float = DEFAULT_GRACE
    local: Grant = LOCAL_DEFAULT
    devices: Mapping[str, Grant] = field(default_factory=dict)
    harnesses: Mapping[str, HarnessRule] = field(default_factory=dict)

    def grant_for(self, device: str, *, local: bool) -> Grant | None:
        """The requester's grant, or ``None``: refused."""
        grant = self.local if local else self.devices.get(device)
        return grant if grant is not None and grant.allowed else None

    def rule_for(self, harness: str) -> HarnessRule:
        """The harness's rule (the built-in command when the policy names none)."""
        return self.harnesses.get(harness, HarnessRule())


# -- reading -------------------------------------------------------------------------------------


def _fail(where: str, what: str) -> UserError:
    return UserError(f"spawn policy: {where}: {what}")


def _unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise _fail(where, f"unknown key {extra[0]!r}")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, "expected a list of strings")
    return tuple(value)


def _number(value: Any, where: str, *, whole: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _fail(where, "expected a number above 0")
    if whole and not isinstance(value, int):
        raise _fail(where, "expected a whole number")
    return float(value)


def _grant(table: Any, where: str, default: Grant) -> Grant:
    if not isinstance(table, Mapping):
        raise _fail(where, "expected a table")
    _unknown(table, _GRANT_KEYS, where)
    harnesses = _strings(table.get("harnesses", list(default.harnesses)), f"{where}.harnesses")
    for harness in harnesses:
        if harness not in (*HARNESSES, "*"):
            raise _fail(f"{where}.harnesses", f"unknown harness {harness!r}")
    limit = table.get("max_tasks")
    runtime = table.get("max_runtime")
    for key in ("answer_own", "allowed"):
        if not isinstance(table.get(key, True), bool):
            raise _fail(f"{where}.{key}", "expected true or false")
    name = table.get("name", "")
    if not isinstance(name, str):
        raise _fail(f"{where}.name", "expected a string")
    return Grant(
        harnesses=harnesses,
        dirs=_strings(table.get("dirs", list(default.dirs)), f"{where}.dirs"),
        answer=_strings(table.get("answer", list(default.answer)), f"{where}.answer"),
        answer_own=bool(table.get("answer_own", True)),
        max_tasks=None if limit is None else int(_number(limit, f"{where}.max_tasks", whole=True)),
        max_runtime=None if runtime is None else _number(runtime, f"{where}.max_runtime"),
        name=name,
        allowed=bool(table.get("allowed", True)),
        transcripts=_strings(table.get("transcripts", []), f"{where}.transcripts"),
        term_read=_strings(table.get("term_read", []), f"{where}.term_read"),
        term_type=_strings(table.get("term_type", []), f"{where}.term_type"),
    )


def _harness(name: str, table: Any) -> HarnessRule:
    where = f"harnesses.{name}"
    if name not in HARNESSES:
        raise _fail(where, "unknown harness")
    if not isinstance(table, Mapping):
        raise _fail(where, "expected a table")
    _unknown(table, _HARNESS_KEYS, where)
    via = table.get("task", "stdin")
    if via not in TASK_VIA:
        raise _fail(f"{where}.task", 'expected "stdin" or "arg"')
    skip = table.get("skip_permissions", False)
    if not isinstance(skip, bool):
        raise _fail(f"{where}.skip_permissions", "expected true or false")
    args = None
    if "args" in table:
        args = _strings(table["args"], f"{where}.args")
        check_template(args, name, skip=skip)
    env = table.get("env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise _fail(f"{where}.env", "expected a table of strings")
    if any(key.startswith("SWITCHBOARD_") for key in env):
        raise _fail(f"{where}.env", "SWITCHBOARD_* variables are set by switchboard")
    return HarnessRule(
        args=args, task_via=via, skip_permissions=skip, env=tuple(sorted(env.items()))
    )


def parse(doc: Mapping[str, Any]) -> Policy:
    """Read a policy from a parsed TOML document.

    Raises:
        UserError: a key is unknown or a value of the wrong kind, naming it.
    """
    _unknown(doc, _TOP_KEYS, "top level")
    devices = doc.get("devices", {})
    harnesses = doc.get("harnesses", {})
    if not isinstance(devices, Mapping) or not isinstance(harnesses, Mapping):
        raise _fail("devices/harnesses", "expected tables")
    return Policy(
        max_tasks=int(_number(doc.get("max_tasks", DEFAULT_MAX_TASKS), "max_tasks", whole=True)),
        max_runtime=_number(doc.get("max_runtime", DEFAULT_MAX_RUNTIME), "max_runtime"),
        grace=_number(doc.get("grace", DEFAULT_GRACE), "grace"),
        local=_grant(doc.get("local", {}), "local", LOCAL_DEFAULT),
        devices={
            str(device): _grant(table, f"devices.{device}", Grant())
            for device, table in devices.items()
        },
        harnesses={str(name): _harness(str(name), t) for name, t in harnesses.items()},
    )


def load(path: Path) -> Policy:
    """Read ``spawn.toml`` (missing: the defaults).

    Raises:
        UserError: it is not valid, or others may write it (then nobody may spawn here).
    """
    import tomllib  # noqa: PLC0415 - lazy: only the daemon's spawn path reads it

    try:
        with path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise _fail(path.name, "writable by others; fix with chmod 600")
            return parse(tomllib.load(file))
    except FileNotFoundError:
        return Policy()
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path.name, f"not valid TOML ({exc})") from None


# -- deciding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpawnRequest:
    """What a requester asks of this device."""

    device: str  # the requesting device's id (proved by the link it came over)
    local: bool  # it is this device's own user
    harness: str
    directory: str  # as the requester gave it; "" for the grant's first directory
    text: str


@dataclass(frozen=True)
class Allowed:
    """A request within the policy: where and how long it runs."""

    directory: str  # resolved real path
    rule: HarnessRule
    max_runtime: float
    grace: float


@dataclass(frozen=True)
class Refused:
    """A request outside the policy, and why (shown to the requester)."""

    reason: str


def decide(
    policy: Policy,
    request: SpawnRequest,
    *,
    running: int,
    running_of_device: int,
    home: str,
    realpath: Callable[[str], str] = os.path.realpath,
    isdir: Callable[[str], bool] = os.path.isdir,
) -> Allowed | Refused:
    """Whether this device runs ``request``, given how many tasks run now (in all, and for
    the requesting device).

    ``realpath`` and ``isdir`` read the file system; tests may pass their own.
    """
    grant = policy.grant_for(request.device, local=request.local)
    who = "this device's user" if request.local else f"device {request.device[:8]}"
    if grant is None:
        return Refused(f"{who} may not spawn here (spawn allow DEVICE on this device)")
    problem = _text_problem(request.text)
    if problem:
        return Refused(problem)
    if request.harness not in HARNESSES:
        return Refused(f"unknown harness {request.harness[:20]!r}")
    if request.harness not in grant.harnesses and "*" not in grant.harnesses:
        allowed = ", ".join(grant.harnesses) or "none"
        return Refused(f"harness {request.harness} is not allowed for {who} (allowed: {allowed})")
    rule = policy.rule_for(request.harness)
    if request.harness == "cmd" and rule.args is None:
        return Refused("harness cmd has no command here ([harnesses.cmd] args in spawn.toml)")
    found = resolve_dir(request.directory, grant.dirs, home=home, realpath=realpath, isdir=isdir)
    if isinstance(found, Refused):
        return found
    if running >= policy.max_tasks:
        return Refused(f"this device runs {running} tasks, its limit (max_tasks)")
    if grant.max_tasks is not None and running_of_device >= grant.max_tasks:
        return Refused(f"{who} runs {running_of_device} tasks here, its limit")
    runtime = min(policy.max_runtime, grant.max_runtime or policy.max_runtime)
    return Allowed(directory=found, rule=rule, max_runtime=runtime, grace=policy.grace)


def _text_problem(text: str) -> str:
    if not text.strip():
        return "the task text is empty"
    if len(text) > MAX_TASK_TEXT:
        return f"task text of {len(text)} characters exceeds limit of {MAX_TASK_TEXT}"
    if "\x00" in text:
        return "the task text contains a NUL character"
    return ""


def resolve_dir(
    requested: str,
    allowed: tuple[str, ...],
    *,
    home: str,
    realpath: Callable[[str], str] = os.path.realpath,
    isdir: Callable[[str], bool] = os.path.isdir,
) -> str | Refused:
    """The real path of ``requested`` if it lies inside one of ``allowed``, else why not."""
    if not allowed:
        return Refused("no directory is allowed for this requester (spawn allow --dir PATH)")
    roots = []
    for entry in allowed:
        path = _expand(entry, home)
        if path is not None:
            roots.append(realpath(path))
    if not requested:
        requested = allowed[0]
    if any(ord(c) < 32 for c in requested):
        return Refused("the directory contains control characters")
    path = _expand(requested, home)
    if path is None:
        return Refused(f"directory {requested[:80]!r} must be absolute (or start with ~/)")
    real = realpath(path)
    if not any(_inside(real, root) for root in roots):
        return Refused(f"directory {requested[:80]} is outside the allowed directories")
    if not isdir(real):
        return Refused(f"directory {requested[:80]} does not exist here")
    return real


def _expand(path: str, home: str) -> str | None:
    if path == "~" or path.startswith("~/"):
        return home + path[1:]
    if path.startswith("~") or not os.path.isabs(path):
        return None
    return path


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def may_answer(
    policy: Policy, device: str, *, local: bool, agent: str, requested_by: str | None
) -> bool:
    """Whether ``device`` may answer the permission prompts of this device's agent ``agent``.

    Args:
        policy: this device's policy.
        device: the answering device's id.
        local: it is this device's own user.
        agent: the asking agent's name on this device.
        requested_by: the device that started the agent's task, if it is a task.
    """
    grant = policy.grant_for(device, local=local)
    if grant is None:
        return False
    if grant.answer_own and requested_by is not None and requested_by == device:
        return True
    return any(fnmatch.fnmatchcase(agent, pattern) for pattern in grant.answer)


def may_read_transcript(policy: Policy, device: str, *, local: bool, agent: str) -> bool:
    """Whether ``device`` may read the transcript of this device's agent ``agent``: this
    device always, another only when its grant lists the agent (a name or a glob)."""
    if local:
        return True
    grant = policy.grant_for(device, local=False)
    if grant is None:
        return False
    return any(fnmatch.fnmatchcase(agent, pattern) for pattern in grant.transcripts)


def answerers(policy: Policy, agent: str) -> list[str]:
    """Who may answer the prompts of ``agent``, an agent of this device that runs no task:
    ``"local"`` (this device's user) and the ids of the devices whose ``answer`` matches it."""
    found = ["local"] if may_answer(policy, "", local=True, agent=agent, requested_by=None) else []
    return found + [
        device
        for device in sorted(policy.devices)
        if may_answer(policy, device, local=False, agent=agent, requested_by=None)
    ]


def may_term(
    policy: Policy, device: str, *, local: bool, agent: str, requested_by: str | None, typing: bool
) -> bool:
    """Whether ``device`` may read (``typing``: type into) the terminal of this device's agent
    ``agent`` (the module's docstring: "Terminals").

    Args:
        policy: this device's policy.
        device: the asking device's id (proved by the channel its request came over).
        local: it is this device's own user.
        agent: the agent's name on this device.
        requested_by: the device that started the agent's task, if it is a task.
        typing: typing is asked, not reading.
    """
    if local:
        return True
    grant = policy.grant_for(device, local=False)
    if grant is None:
        return False
    if any(fnmatch.fnmatchcase(agent, pattern) for pattern in grant.term_type):
        return True
    if typing:
        return False
    if requested_by is not None and requested_by == device:
        return True  # it reads the task's output already (task logs)
    return any(fnmatch.fnmatchcase(agent, pattern) for pattern in grant.term_read)
