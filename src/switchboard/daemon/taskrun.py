"""Running tasks on this device: start them under the wrapper, watch them, stop them, re-attach.

Theory of operation
-------------------
A task accepted here gets a folder ``<home>/tasks/<id>/`` (mode 0700) and runs as
``python -m switchboard.tasks.wrapper <folder>`` in a session of its own: headless with its
output appended to ``output.log``, or (``--terminal``) as the command of a new window of the
tmux session ``switchboard``. The wrapper's pid leads the task's process group, so a stop
signals every process of the task at once, and it is the pid the task's agent registers
with: presence follows it. ``run.json`` records what a restarted daemon needs to re-attach
(the wrapper's pid and start time, the git snapshot); ``exit.json``, written by the wrapper,
says how the program ended even when no daemon saw it.

One loop (``switchboard[tasks].monitor_loop``) looks at every live task each
``MONITOR_INTERVAL``: new output (a ``task_progress`` at most every ``PROGRESS_INTERVAL``),
the runtime limit (a stop), the grace after a stop (then SIGKILL), and the end, which it
reports with ``task_ended``: outcome, exit status, the output's tail, and for a git
directory the diff against the snapshot taken at the start (the patch stays here, in
``patch.diff``). Tasks outlive the daemon: stopping the daemon stops only the watching.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from switchboard.daemon import taskgit
from switchboard.daemon.coordination import anchor_alive
from switchboard.events import (
    StatusChanged,
    TaskEnded,
    TaskInterrupted,
    TaskProgress,
    TaskStarted,
    TaskUnblocked,
)
from switchboard.store import tasks as task_store
from switchboard.tasks import wrapper
from switchboard.tasks.lifecycle import outcome
from switchboard.wrapping import clean

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

log = logging.getLogger("switchboard.daemon.tasks")

# Often enough that an ended task is reported at once for a person watching, rarely enough to
# cost nothing (a stat and a poll per live task).
MONITOR_INTERVAL: Final = 0.1
# A live progress line for followers without flooding the log: one event per task per 2 s.
PROGRESS_INTERVAL: Final = 2.0
# The output kept as a task's result in the log; the whole output stays in output.log here.
RESULT_CHARS: Final = 4000
MAX_PROGRESS_CHARS: Final = 200
# How much new output one look reads (the rest waits for the next look).
READ_CHUNK: Final = 256 * 1024


@dataclass
class Run:
    """A live task as this daemon watches it; ``run.json`` holds the persistent part."""

    task: str
    agent: str
    harness: str
    cwd: str
    requester_device: str
    max_runtime: float
    grace: float
    wrapper: tuple[int, str]  # pid and start time of the wrapper (the process group leader)
    started_wall: float
    git_root: str | None = None
    base_tree: str | None = None
    window: str = ""
    # Not persisted:
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    stop_asked: bool = False
    kill_asked: bool = False
    how: str = ""  # the first interrupt asked: stop, kill or max_runtime
    force_at: float | None = None
    offset: int = 0
    last_line: str = ""
    shown_line: str = ""
    progress_at: float = 0.0

    def saved(self) -> dict[str, Any]:
        """The fields ``run.json`` keeps."""
        return {key: getattr(self, key) for key in _SAVED}


_SAVED: Final = (
    "task", "agent", "harness", "cwd", "requester_device", "max_runtime", "grace",
    "wrapper", "started_wall", "git_root", "base_tree", "window",
)  # fmt: skip


def started_of(run: Run) -> TaskStarted:
    """The ``task_started`` event of a run."""
    pid, started = run.wrapper
    return TaskStarted(task=run.task, pid=pid, started=started, agent=run.agent,
                       window=run.window)  # fmt: skip


def start_time(pid: int) -> str:
    """A process's start time (field 22 of ``/proc/PID/stat``), ``""`` if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return file.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def write_private(path: Path, data: bytes) -> None:
    """Write a file only this user can read, whole (by a rename)."""
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(temp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, or ``None`` if it is missing or broken."""
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class TaskRunner:
    """The tasks this daemon runs: the monitor loop and the signals."""

    def __init__(self, ctx: Context) -> None:
        self.d = ctx
        self.root = ctx.settings.home / "tasks"
        self.runs: dict[str, Run] = {}
        self.lock = asyncio.Lock()  # held while a request is decided and started
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()  # set once the tasks of before a restart are re-attached

    def folder(self, task: str) -> Path:
        """The task's folder on this device."""
        return self.root / task

    # -- lifecycle of the runner -----------------------------------------------------------------

    def start(self) -> None:
        """Start the monitor loop, which first re-attaches to the tasks of before a restart."""
        self._wake = asyncio.Event()
        self._loop_task = asyncio.get_running_loop().create_task(
            self._monitor_loop(), name="switchboard[tasks].monitor_loop"
        )

    async def stop(self) -> None:
        """Stop watching (idempotent); the tasks themselves keep running."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def save(self, run: Run) -> None:
        """Keep what a restarted daemon needs to re-attach to the task (``run.json``)."""
        write_private(self.folder(run.task) / "run.json", json.dumps(run.saved()).encode())

    def watch(self, run: Run) -> None:
        """Watch a task that has started (and whose ``task_started`` is in the log)."""
        self.runs[run.task] = run
        if self._wake is not None:
            self._wake.set()

    async def _reattach(self) -> None:
        rows = await self.d.read(task_store.live_tasks_of, self.d.device_id)
        for row in rows:
            folder = self.folder(row["task"])
            saved = read_json(folder / "run.json")
            if saved is None:
                reason = "the daemon stopped before the task started"
                ended = TaskEnded(task=row["task"], state="lost", reason=reason)
                await self.d.log.append("", ended)
                continue
            if row["state"] == "blocked":  # whoever asked lost its call with the old daemon
                reason = "the daemon restarted while the prompt was pending"
                prompt = (row["prompt"] or {}).get("id", "")
                body = TaskUnblocked(task=row["task"], prompt=prompt, answer="timeout",
                                     reason=reason)  # fmt: skip
                await self.d.log.append("", body)
            saved["wrapper"] = tuple(saved["wrapper"])
            run = Run(**saved)
            if row["state"] == "accepted":  # the daemon stopped between start and its event
                await self.d.log.append("", started_of(run))
            hows = await self.d.read(_interrupts, self.d.device_id, row["task"])
            run.stop_asked = bool(hows & {"stop", "max_runtime"})
            run.kill_asked = "kill" in hows
            run.how = "max_runtime" if "max_runtime" in hows else ""
            with contextlib.suppress(OSError):
                run.offset = max(0, (folder / "output.log").stat().st_size - RESULT_CHARS)
            if self._alive(run) or (folder / "exit.json").exists():
                log.info("= task %s re-attached (pid %d)", run.task, run.wrapper[0])
                self.runs[run.task] = run  # an ended one is reported by the first look
            else:
                await self._finish(run, lost="the process ended while the daemon was down, "
                                   "with no exit status recorded")  # fmt: skip

    # -- the loop --------------------------------------------------------------------------------

    async def _monitor_loop(self) -> None:
        assert self._wake is not None
        try:
            await self._reattach()
        except Exception:  # one bad folder must not leave every other task unwatched
            log.exception("! re-attaching to tasks failed")
        self.ready.set()
        while True:
            if not self.runs:
                await self._wake.wait()
            self._wake.clear()
            for run in list(self.runs.values()):
                # One task's trouble (a vanished folder, a full disk) must not end the watch
                # of the others; it is logged and looked at again next round.
                try:
                    await self._look(run)
                except Exception:
                    log.exception("! watching task %s failed", run.task)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), MONITOR_INTERVAL)

    async def _look(self, run: Run) -> None:
        await self._read_output(run)
        if not self._alive(run):
            await self._finish(run)
            return
        now = time.time()
        if not run.stop_asked and not run.kill_asked and now - run.started_wall > run.max_runtime:
            await self.interrupt(run.task, "max_runtime", by="")
        elif run.force_at is not None and time.monotonic() >= run.force_at:
            log.info("= task %s: stopped after grace, killing", run.task)
            run.force_at = None
            self._signal(run, signal.SIGKILL)

    def _alive(self, run: Run) -> bool:
        if run.proc is not None:
            return run.proc.poll() is None
        pid, started = run.wrapper
        return anchor_alive(f"{pid}:{started}" if started else str(pid))

    async def _read_output(self, run: Run) -> None:
        try:
            with (self.folder(run.task) / "output.log").open("rb") as file:
                file.seek(run.offset)
                chunk = file.read(READ_CHUNK)
        except OSError:
            return
        run.offset += len(chunk)
        lines = [line.strip() for line in clean(chunk.decode("utf-8", "replace")).splitlines()]
        lines = [line for line in lines if line]
        if lines:
            run.last_line = lines[-1][:MAX_PROGRESS_CHARS]
        now = time.monotonic()
        if run.last_line != run.shown_line and now - run.progress_at >= PROGRESS_INTERVAL:
            run.shown_line, run.progress_at = run.last_line, now
            await self.d.log.append("", TaskProgress(task=run.task, text=run.last_line))

    # -- signals ---------------------------------------------------------------------------------

    async def interrupt(self, task: str, how: str, by: str) -> None:
        """Stop (``stop``, ``max_runtime``: SIGTERM, SIGKILL after the grace) or kill a task."""
        run = self.runs[task]
        await self.d.log.append("", TaskInterrupted(task=task, how=how, by=by))
        run.how = run.how or how
        if how == "kill":
            run.kill_asked = True
            self._signal(run, signal.SIGKILL)
        else:
            run.stop_asked = True
            run.force_at = time.monotonic() + run.grace
            self._signal(run, signal.SIGTERM)
        if self._wake is not None:
            self._wake.set()

    def _signal(self, run: Run, signum: int) -> None:
        pid, started = run.wrapper
        # Only while the leader is the process we started: a recycled pid is someone else's.
        if run.proc is not None or anchor_alive(f"{pid}:{started}"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signum)

    # -- the end ---------------------------------------------------------------------------------

    async def _finish(self, run: Run, lost: str = "") -> None:
        self.runs.pop(run.task, None)
        folder = self.folder(run.task)
        ended = read_json(folder / "exit.json") or {}
        status = ended.get("status")
        status = status if isinstance(status, int) else None
        state = outcome(status, stop_asked=run.stop_asked, kill_asked=run.kill_asked)
        reason = lost if state == "lost" and lost else _reason(state, ended, run)
        stat = ""
        if run.git_root and run.base_tree:
            stat, patch = await asyncio.to_thread(_diff, run.git_root, run.base_tree)
            if patch:
                write_private(folder / "patch.diff", patch.encode())
        body = TaskEnded(
            task=run.task, state=state, exit_status=status, reason=reason,
            result=_tail(folder / "output.log"), diff_stat=stat,
            runtime=round(max(0.0, time.time() - run.started_wall), 3),
        )  # fmt: skip
        offline = StatusChanged(status="offline", reason=f"task {state}")
        await self.d.log.append_many([("", body), (run.agent, offline)])
        log.info("= task %s %s (exit status %s)", run.task, state, status)


def _reason(state: str, ended: dict[str, Any], run: Run) -> str:
    if ended.get("error"):
        return f"cannot start {run.harness}: {ended['error']}"[:300]
    if state == "lost":
        return "the wrapper ended without recording an exit status"
    if state == "stopped" and run.how == "max_runtime":
        return f"ran longer than max_runtime ({run.max_runtime:g} s)"
    return ""


def _diff(root: str, base: str) -> tuple[str, str]:
    after = taskgit.snapshot(root)
    return taskgit.diff(root, base, after) if after else ("", "")


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - RESULT_CHARS * 4))
            text = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return clean(text).strip()[-RESULT_CHARS:]


def _interrupts(conn: Any, device: str, task: str) -> set[str]:
    rows = conn.execute(
        "SELECT json_extract(data, '$.how') FROM events WHERE origin = ? AND type ="
        " 'task_interrupted' AND json_extract(data, '$.task') = ?",
        (device, task),
    ).fetchall()
    return {str(row[0]) for row in rows}


def wrapper_command(folder: Path) -> list[str]:
    """The wrapper's argv: the script by its path (stdlib only, so it needs no PYTHONPATH in
    a tmux server's environment); -P keeps its folder off ``sys.path``."""
    return [sys.executable, "-P", wrapper.__file__, str(folder)]
