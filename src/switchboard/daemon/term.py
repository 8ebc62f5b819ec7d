"""``term``: a look into an agent's terminal, and typing into it (``switchboard term``).

Theory of operation
-------------------
Switchboard knows an agent's terminal when the agent runs in a tmux pane:

- a ``spawn --terminal`` task: its tmux window (``task_started.window``), trusted only while
  the pane's process is still the task's wrapper (its pid);
- an agent whose hooks (or MCP server) run inside tmux: they report the pane from the
  variables tmux sets (``TMUX``: the server's socket, ``TMUX_PANE``: ``%N``;
  ``harnesses/hook.terminal``), and the daemon records it in the local table ``terminals``
  with the pane's process (pid and start time), so a pane id that a restarted tmux server
  hands out again is not taken for the old one. The table is never replicated: only the
  agent's own device knows, and uses, its pane.

The screen is ``tmux capture-pane -p`` (scrollback with ``-S``), its size and cursor
``display-message``. Typing is ``tmux send-keys -l -- TEXT`` (literal: no key names, no
shell), then the named keys asked for (``Enter``, ``Escape``, ``C-c`` ...: ``KEYS``). Control
characters in the text are refused: a newline is ``--enter``, an escape sequence could do
anything a keyboard can.

An agent of another device is reached over the directed channel (requests ``term.read`` and
``term.type``); that device decides with its spawn policy (``tasks/policy.may_term``) on the
channel's proven sender: by default another device reads only the screens of the tasks it
started, and types nowhere. Every typing is an event, ``terminal_typed``, written by the
agent's device once tmux took the keys; a screen never enters the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon.agents import agent_name
from switchboard.daemon.params import AgentParams
from switchboard.daemon.registry import Feature
from switchboard.daemon.taskrequest import policy_path
from switchboard.daemon.taskrun import start_time
from switchboard.errors import Forbidden, NotFound, Unreachable, UserError
from switchboard.events import TerminalTyped
from switchboard.store import local, projections
from switchboard.store import tasks as task_store
from switchboard.tasks import policy

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

log = logging.getLogger("switchboard.daemon.term")

# tmux answers in milliseconds; this bounds a wedged server.
TMUX_TIMEOUT: Final = 10.0
# A remote screen or typing answers within this (tmux's time plus the link's).
CALL_TIMEOUT: Final = 30.0
# Most scrollback lines one read returns (tmux's default history is 2000).
MAX_SCROLLBACK: Final = 10_000
# Most characters one typing sends: a prompt's answer, a command, not a file.
MAX_TYPE: Final = 4096
# How much of the typed text its event keeps (the audit names what was typed, not a file).
RECORD_TEXT: Final = 200
#: The named keys ``--key`` may press (tmux's names), after the text.
KEYS: Final = frozenset(
    {"Enter", "Escape", "Tab", "BTab", "BSpace", "Space", "Up", "Down", "Left", "Right",
     "Home", "End", "PPage", "NPage", "DC", "C-c", "C-d", "C-z", "C-l", "C-u", "C-r", "C-o",
     "y", "n"}
)  # fmt: skip
_PANE: Final = re.compile(r"%[0-9]{1,9}")
_INFO: Final = "#{pane_id} #{pane_pid} #{pane_dead} #{socket_path}"
_SIZE: Final = "#{pane_width} #{pane_height} #{cursor_x} #{cursor_y}"

Lines = Annotated[int, msgspec.Meta(ge=0, le=MAX_SCROLLBACK)]


class ReadParams(AgentParams, kw_only=True):
    target: str
    """The agent: ``name`` (this device's, else the only one of that name), ``name:DEV``."""
    lines: Lines = 0
    """Scrollback lines to include above the screen."""


class TypeParams(AgentParams, kw_only=True):
    target: str
    text: str = ""
    """Typed literally (no control characters)."""
    keys: list[str] = msgspec.field(default_factory=list)
    """Named keys pressed after the text (``Enter`` ...; ``KEYS``)."""
    secret: bool = False
    """Keep the text out of the event (its length is recorded)."""


class TermBody(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """``term.read`` and ``term.type``: which agent there, and for typing what; the asking
    agent's name (``by``) on the sender's device (the channel proves the device)."""

    agent: str
    by: str = ""
    lines: int = 0
    text: str = ""
    keys: list[str] = []
    secret: bool = False


@dataclass(frozen=True)
class Pane:
    """A live tmux pane an agent of this device runs in."""

    socket: str
    pane: str
    requested_by: str | None  # the device that started the agent's task, if it is one


class _Noted:
    """The pane last recorded per agent, so a hook call records it only when it changes."""

    def __init__(self, ctx: Context) -> None:
        self.seen: dict[str, tuple[str, str]] = {}


# -- tmux ----------------------------------------------------------------------------------------


def _tmux(socket: str, *args: str) -> str:
    argv = ["tmux", *(("-S", socket) if socket else ()), *args]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=TMUX_TIMEOUT,
            check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NotFound(f"tmux did not answer: {exc}"[:200]) from None
    if done.returncode != 0:
        raise NotFound(f"tmux {args[0]}: {done.stderr.strip()[:200]}")
    return done.stdout


def _info(socket: str, target: str) -> tuple[str, int, bool, str]:
    """``(pane id, pane pid, dead, socket path)`` of a tmux target."""
    out = _tmux(socket, "display-message", "-p", "-t", target, _INFO).strip()
    pane, pid, dead, path = [*out.split(" ", 3), "", "", ""][:4]
    if not _PANE.fullmatch(pane) or not pid.isdigit():
        raise NotFound(f"tmux has no pane {target[:40]}")
    return pane, int(pid), dead == "1", path


def _find(task: dict[str, Any] | None, row: dict[str, Any] | None) -> Pane | None:
    """The live pane of an agent: its ``--terminal`` task's window, else its recorded pane."""
    requested_by = task["requester"].rpartition(":")[2] if task else None
    if task and task["window"] and task["pid"]:
        try:
            pane, pid, dead, path = _info("", task["window"])
        except NotFound:
            pass
        else:
            if pid == task["pid"] and not dead:
                return Pane(path, pane, requested_by)
    if row is not None:
        try:
            pane, pid, dead, _ = _info(row["socket"], row["pane"])
        except NotFound:
            return None
        if pid == row["pane_pid"] and start_time(pid) == row["pane_started"] and not dead:
            return Pane(row["socket"], pane, requested_by)
    return None


def _screen(pane: Pane, scrollback: int) -> dict[str, Any]:
    width, height, x, y = (int(v) for v in _tmux(pane.socket, "display-message", "-p", "-t",
                                                pane.pane, _SIZE).split())  # fmt: skip
    args = ["capture-pane", "-p", "-t", pane.pane]
    if scrollback:
        args += ["-S", f"-{scrollback}"]
    text = _tmux(pane.socket, *args)
    lines = text.removesuffix("\n").split("\n")
    return {"pane": pane.pane, "width": width, "height": height,
            "cursor": {"x": x, "y": y}, "scrollback": max(0, len(lines) - height),
            "lines": lines}  # fmt: skip


def _send(pane: Pane, text: str, keys: list[str]) -> None:
    if text:
        _tmux(pane.socket, "send-keys", "-t", pane.pane, "-l", "--", text)
    for key in keys:
        _tmux(pane.socket, "send-keys", "-t", pane.pane, key)


def check_typing(text: str, keys: list[str]) -> None:
    """Refuse what may not be typed.

    Raises:
        UserError: nothing to type, too long, a control character, or an unknown key.
    """
    if not text and not keys:
        raise UserError("nothing to type: give --type TEXT, --enter or --key KEY")
    if len(text) > MAX_TYPE:
        raise UserError(f"{len(text)} characters exceed the limit of {MAX_TYPE} per typing")
    if "\n" in text or "\r" in text:
        raise UserError("the text has a line break: type one line at a time, with --enter")
    bad = next((c for c in text if (ord(c) < 32 and c != "\t") or 127 <= ord(c) < 160), None)
    if bad is not None:
        raise UserError(f"the text has a control character ({ord(bad):#04x}): use --key")
    for key in keys:
        if key not in KEYS:
            raise UserError(f"unknown key {key[:20]!r}: use one of {', '.join(sorted(KEYS))}")


# -- recording panes (hook calls) ----------------------------------------------------------------


async def note_pane(ctx: Context, name: str, socket: str, pane: str) -> None:
    """Record the tmux pane a local agent's hook (or MCP server) runs in, when it changed.

    Never fails the hook: a pane tmux does not confirm is logged and left out.
    """
    noted = ctx.part(_Noted).seen
    if noted.get(name) == (socket, pane):
        return
    noted[name] = (socket, pane)
    if not _PANE.fullmatch(pane) or not os.path.isabs(socket) or len(socket) > 512:
        log.info("agent %s reported a tmux pane that is none; ignored", name)
        return
    try:
        found, pid, _, _ = await asyncio.to_thread(_info, socket, pane)
    except NotFound as exc:
        log.info("agent %s: its tmux pane %s is not confirmed: %s", name, pane, exc)
        return
    started = await asyncio.to_thread(start_time, pid)
    await ctx.write(lambda conn: local.set_terminal(conn, name, socket, found, pid, started))


# -- finding the agent ---------------------------------------------------------------------------


async def _where(ctx: Context, target: str) -> tuple[str, str, str]:
    """``(device id, short id, name)`` of ``name`` or ``name:DEV``.

    Raises:
        NotFound: no such agent.
        UserError: the name is on several devices and none is this one.
    """
    name_text, _, device = target.strip().removeprefix("@").partition(":")
    name = ids.parse_name(name_text)
    rows = await ctx.read(projections.find_agents, name, device.upper() or None)
    if device and not rows:
        rows = await ctx.read(projections.find_agents, name, device.lower())
    if not rows:
        raise NotFound(f"unknown agent {target[:60]}")
    here = [row for row in rows if row["device_id"] == ctx.device_id]
    if len(rows) > 1 and not here:
        shorts = ", ".join(str(row["short"]) for row in rows)
        raise UserError(f"agent {name} is on {len(rows)} devices ({shorts}): say name:DEV")
    row = (here or rows)[0]
    return str(row["device_id"]), str(row["short"]), name


async def _local_pane(ctx: Context, name: str) -> Pane:
    task = await ctx.read(task_store.task_of_agent, ctx.device_id, name)
    row = await ctx.read(local.get_terminal, name)
    pane = await asyncio.to_thread(_find, task, row)
    if pane is None:
        raise NotFound(
            f"agent {name} runs in no tmux pane known here (spawn --terminal, or a harness "
            "whose hooks run inside tmux)"
        )
    return pane


async def _allowed(ctx: Context, sender: str, name: str, pane: Pane, *, typing: bool) -> None:
    rules = await asyncio.to_thread(policy.load, policy_path(ctx))
    if not policy.may_term(rules, sender, local=False, agent=name,
                           requested_by=pane.requested_by, typing=typing):  # fmt: skip
        what = "type into" if typing else "read"
        flag = "--term-type" if typing else "--term-read"
        raise Forbidden(
            f"device {sender[:8]} may not {what} the terminal of {name} here "
            f"(spawn allow DEVICE {flag} {name} on this device)"
        )


async def _type_here(ctx: Context, name: str, pane: Pane, body: TermBody, by: str) -> int:
    await asyncio.to_thread(_send, pane, body.text, list(body.keys))
    event = TerminalTyped(
        target=name, by=by, text="" if body.secret else body.text[:RECORD_TEXT],
        length=len(body.text), keys=list(body.keys), secret=body.secret,
    )  # fmt: skip
    local_id, _ = await ctx.log.append("", event)
    return local_id


# -- API methods ---------------------------------------------------------------------------------


async def term_read(ctx: Context, p: ReadParams) -> dict[str, Any]:
    """An agent's terminal screen: ``lines``, ``cursor``, size (``term AGENT``)."""
    device, short, name = await _where(ctx, p.target)
    address = ids.format_address(name, short)
    if device != ctx.device_id:
        body = TermBody(agent=name, by=p.agent, lines=p.lines)
        answer = await _call(ctx, device, short, "term.read", body)
        return {"agent": address, **answer}
    pane = await _local_pane(ctx, name)
    return {"agent": address, **await asyncio.to_thread(_screen, pane, p.lines)}


async def term_type(ctx: Context, p: TypeParams) -> dict[str, Any]:
    """Type into an agent's terminal (``term AGENT --type TEXT [--enter]``); one event."""
    check_typing(p.text, p.keys)
    by = agent_name(p.agent)
    device, short, name = await _where(ctx, p.target)
    body = TermBody(agent=name, by=by, text=p.text, keys=list(p.keys), secret=p.secret)
    if device != ctx.device_id:
        answer = await _call(ctx, device, short, "term.type", body)
    else:
        pane = await _local_pane(ctx, name)
        answer = {"event": await _type_here(ctx, name, pane, body, f"{by}:{ctx.device_id}")}
    return {"agent": ids.format_address(name, short), "typed": len(p.text),
            "keys": list(p.keys), **answer}  # fmt: skip


async def _call(ctx: Context, device: str, short: str, kind: str, body: TermBody) -> Any:
    try:
        answer = await ctx.call_device(device, kind, msgspec.json.encode(body),
                                       timeout=CALL_TIMEOUT)  # fmt: skip
    except Unreachable as exc:
        raise Unreachable(short, exc.reason) from exc
    return msgspec.json.decode(answer)


# -- what this device answers --------------------------------------------------------------------


def _decode(body: bytes) -> TermBody:
    try:
        return msgspec.json.decode(body, type=TermBody)
    except msgspec.DecodeError as exc:
        raise Forbidden(f"malformed request: {str(exc)[:100]}") from None


async def answer_read(ctx: Context, sender: str, body: bytes) -> bytes:
    """``term.read``: the screen of an agent here, if this device's policy lets ``sender``."""
    asked = _decode(body)
    name = ids.parse_name(asked.agent)
    pane = await _local_pane(ctx, name)
    await _allowed(ctx, sender, name, pane, typing=False)
    lines = min(max(asked.lines, 0), MAX_SCROLLBACK)
    return msgspec.json.encode(await asyncio.to_thread(_screen, pane, lines))


async def answer_type(ctx: Context, sender: str, body: bytes) -> bytes:
    """``term.type``: type into an agent's terminal here, if the policy lets ``sender``."""
    asked = _decode(body)
    check_typing(asked.text, list(asked.keys))
    name = ids.parse_name(asked.agent)
    pane = await _local_pane(ctx, name)
    await _allowed(ctx, sender, name, pane, typing=True)
    by = f"{ids.parse_name(asked.by)}:{sender}" if asked.by else sender
    return msgspec.json.encode({"event": await _type_here(ctx, name, pane, asked, by)})


FEATURE = Feature(
    "term",
    methods={"term.read": term_read, "term.type": term_type},
    requests={"term.read": answer_read, "term.type": answer_type},
)
