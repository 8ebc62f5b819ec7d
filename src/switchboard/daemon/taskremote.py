"""Tasks across devices: the directed-channel requests a device answers about its tasks, and
the calls that make them.

Theory of operation
-------------------
Everything about a task that other devices should know is in the log already (its events
replicate). What acts on a task's process or reads its files runs on the device that runs it,
reached over the link's directed channel (``Context.call_device``/``stream_device``), which
proves the sender's device; a body's claims about who sends it are never read.

=================  ===========================================  =============================
request            what it does on the task's device            who may ask
=================  ===========================================  =============================
``task.request``   ``request_task`` with ``local=False``        anyone: the policy decides
``spawn.check``    the policy's verdict on a ``task.request``   anyone (a dry run: it starts
                   body, starting nothing                       nothing, writes nothing)
``task.interrupt`` stop or kill                                 the requester's device, or a
                                                                device that may answer the
                                                                agent's prompts
``task.patch``     the task's patch                             the requester's device, or a
                                                                device allowed to spawn here
``task.logs``      (a stream) the task's output from an offset  as ``task.patch``
=================  ===========================================  =============================

Bodies and answers are JSON. A refusal is an answer (``state: refused`` and the reason), so
the requester shows it as such; anything else a handler refuses is an error the channel
carries back (``RemoteError``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon.taskrequest import (
    TaskRequest,
    check_request,
    interrupt_task,
    policy_path,
    request_task,
    runner,
)
from switchboard.errors import Forbidden, NotFound
from switchboard.store import tasks as task_store
from switchboard.tasks import policy
from switchboard.tasks.lifecycle import FINAL, State

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# A spawn's answer waits for the task's start there (a git snapshot of a big tree included).
REQUEST_TIMEOUT: Final = 60.0
CALL_TIMEOUT: Final = 30.0
# One piece of ``task logs`` output (local or remote), and how often a follower looks for more.
LOG_PIECE: Final = 64 * 1024
LOG_POLL: Final = 0.2


class SpawnBody(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """``task.request``: what the requesting agent asks (its device is the channel's sender)."""

    requester: str
    harness: str
    text: str
    dir: str = ""
    name: str = ""
    tags: list[str] = []
    terminal: bool = False


class TaskBody(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """``task.interrupt``, ``task.patch``, ``task.logs``: which task, and the details."""

    task: str
    how: str = ""  # task.interrupt: stop or kill
    by: str = ""  # task.interrupt: the asking agent's name on the sender's device
    offset: int = 0  # task.logs
    follow: bool = False  # task.logs


_encode = msgspec.json.encode


def _decode(body: bytes, cls: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=cls)
    except msgspec.DecodeError as exc:
        raise Forbidden(f"malformed request: {str(exc)[:100]}") from None


# -- what this device answers --------------------------------------------------------------------


async def answer_request(ctx: Context, sender: str, body: bytes) -> bytes:
    """``task.request``: run a task for another device, if this device's policy allows it."""
    asked: SpawnBody = _decode(body, SpawnBody)
    request = TaskRequest(
        device=sender, local=False, requester=ids.parse_name(asked.requester),
        harness=asked.harness, text=asked.text, dir=asked.dir, name=asked.name,
        tags=tuple(asked.tags), terminal=asked.terminal,
    )  # fmt: skip
    return _encode(await request_task(ctx, request))


async def answer_check(ctx: Context, sender: str, body: bytes) -> bytes:
    """``spawn.check``: whether this device's policy would run that task for the sender."""
    asked: SpawnBody = _decode(body, SpawnBody)
    request = TaskRequest(
        device=sender, local=False, requester=ids.parse_name(asked.requester),
        harness=asked.harness, text=asked.text, dir=asked.dir, name=asked.name,
        tags=tuple(asked.tags), terminal=asked.terminal,
    )  # fmt: skip
    return _encode(await check_request(ctx, request))


async def _own_task(ctx: Context, task: str) -> dict[str, Any]:
    row = await ctx.read(task_store.get_task, task)
    if row is None or row["task"] != task or row["device_id"] != ctx.device_id:
        raise NotFound(f"no task {task[:20]} runs on this device")
    found: dict[str, Any] = row
    return found


async def _check(ctx: Context, sender: str, row: dict[str, Any], *, act: bool) -> None:
    """Refuse ``sender`` unless it requested the task, or the policy lets it (``act``: answer
    the agent's prompts; otherwise: spawn here at all; a grant of terminals only is not one)."""
    requested_by = row["requester"].rpartition(":")[2]
    if sender == requested_by:
        return
    rules = await asyncio.to_thread(policy.load, policy_path(ctx))
    allowed = (
        policy.may_answer(rules, sender, local=False, agent=row["name"], requested_by=None)
        if act
        else bool((rules.grant_for(sender, local=False) or policy.Grant()).harnesses)
    )
    if not allowed:
        raise Forbidden(f"device {sender[:8]} may not touch task {row['task']} here")


async def answer_interrupt(ctx: Context, sender: str, body: bytes) -> bytes:
    """``task.interrupt``: stop or kill a task of this device for another device."""
    asked: TaskBody = _decode(body, TaskBody)
    if asked.how not in ("stop", "kill"):
        raise Forbidden(f"unknown interrupt {asked.how[:20]!r}")
    row = await _own_task(ctx, asked.task)
    await _check(ctx, sender, row, act=True)
    by = f"{ids.parse_name(asked.by)}:{sender}" if asked.by else sender
    return _encode(await interrupt_task(ctx, row["task"], asked.how, by=by))


async def answer_patch(ctx: Context, sender: str, body: bytes) -> bytes:
    """``task.patch``: a task's patch for another device."""
    asked: TaskBody = _decode(body, TaskBody)
    row = await _own_task(ctx, asked.task)
    await _check(ctx, sender, row, act=False)
    path = runner(ctx).folder(row["task"]) / "patch.diff"
    patch = await asyncio.to_thread(_read, path, 0, None)
    return _encode({"id": row["task"], "state": row["state"], "patch": patch.decode()})


async def answer_logs(ctx: Context, sender: str, body: bytes) -> AsyncIterator[bytes]:
    """``task.logs``: a task's output from ``offset``, and with ``follow`` until it ends."""
    asked: TaskBody = _decode(body, TaskBody)
    row = await _own_task(ctx, asked.task)
    await _check(ctx, sender, row, act=False)
    path = runner(ctx).folder(row["task"]) / "output.log"
    offset = max(0, asked.offset)
    while True:
        piece = await asyncio.to_thread(_read, path, offset, LOG_PIECE)
        if piece:
            offset += len(piece)
            yield piece
            continue
        current = await _own_task(ctx, row["task"])
        if not asked.follow or State(current["state"]) in FINAL:
            return
        await asyncio.sleep(LOG_POLL)


def _read(path: Any, offset: int, size: int | None) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read() if size is None else file.read(size)
    except OSError:
        return b""


# -- calling another device ----------------------------------------------------------------------


async def spawn_on(ctx: Context, device: str, body: SpawnBody) -> dict[str, Any]:
    """Ask ``device`` to run a task; its answer (``refused`` with the reason included)."""
    answer = await ctx.call_device(device, "task.request", _encode(body), timeout=REQUEST_TIMEOUT)
    result: dict[str, Any] = msgspec.json.decode(answer)
    return result


async def check_on(ctx: Context, device: str, body: SpawnBody) -> dict[str, Any]:
    """Ask ``device`` what its policy would answer ``body`` (``spawn.check``)."""
    answer = await ctx.call_device(device, "spawn.check", _encode(body), timeout=CALL_TIMEOUT)
    result: dict[str, Any] = msgspec.json.decode(answer)
    return result


async def call_task(ctx: Context, device: str, kind: str, body: TaskBody) -> dict[str, Any]:
    """``task.interrupt`` or ``task.patch`` on the task's device."""
    answer = await ctx.call_device(device, kind, _encode(body), timeout=CALL_TIMEOUT)
    result: dict[str, Any] = msgspec.json.decode(answer)
    return result


async def logs_from(ctx: Context, device: str, body: TaskBody) -> AsyncIterator[bytes]:
    """The output pieces of a task on ``device``."""
    async for piece in ctx.stream_device(device, "task.logs", _encode(body)):
        yield piece


REQUESTS: Final = {
    "task.request": answer_request,
    "spawn.check": answer_check,
    "task.interrupt": answer_interrupt,
    "task.patch": answer_patch,
}
REQUEST_STREAMS: Final = {"task.logs": answer_logs}
