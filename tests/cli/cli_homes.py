"""Homes for real CLI runs: ``python -m switchboard`` in subprocesses, one SWITCHBOARD_HOME each.

The processes themselves (relay, foreground daemons) come from ``tests/integration/cluster.py``;
this module adds a ``Home`` that runs CLI commands against a home and stops whatever daemon those
commands started, a wait for a process that is not our child, and the DESIGN.md §5 JSON shapes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# cluster.py lives beside the L3 tests; test helpers are imported by bare name (no packages).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

import msgspec
from cluster import PY, Device, Relay, _Lines, free_port, timeout

from switchboard.config import load_settings
from switchboard.daemon import process, shapes
from switchboard.errors import SwitchboardError

__all__ = [
    "LINK_KEYS",
    "PY",
    "Device",
    "Home",
    "Lines",
    "Relay",
    "check_agent",
    "check_event",
    "check_keys",
    "check_link",
    "check_message",
    "check_send_result",
    "check_shape",
    "check_time",
    "free_port",
    "interrupt",
    "one_error_line",
    "temporary_home",
    "timeout",
    "wait_gone",
]

Lines = _Lines

# DESIGN.md §5: fields may be added, never renamed or removed, so these are minimum key sets.
AGENT_KEYS = frozenset(
    {"address", "name", "device", "local", "status", "harness", "cwd", "summary", "last_seen"}
)
MESSAGE_KEYS = frozenset({"id", "ts", "from", "to", "text", "thread"})
EVENT_KEYS = frozenset({"id", "ts", "type", "agent", "device", "data"})
SEND_KEYS = frozenset({"id", "result", "recipients"})
LINK_KEYS = frozenset({"url", "state", "lag", "last_push"})


class Home:
    """One SWITCHBOARD_HOME; runs the real ``switchboard`` against it in subprocesses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {**os.environ, "SWITCHBOARD_HOME": str(path)}
        self.env.pop("SWITCHBOARD_AGENT", None)
        self.settings = load_settings(self.env)

    def _env(self, agent: str | None) -> dict[str, str]:
        return {**self.env, "SWITCHBOARD_AGENT": agent} if agent else self.env

    def run(
        self,
        *args: str,
        agent: str | None = None,
        stdin: str | None = None,
        code: int | None = 0,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run one command to its end; check its exit status unless ``code`` is ``None``.

        ``stdin`` is piped in (else stdin is /dev/null); ``env`` adds variables.
        """
        result = subprocess.run(
            [PY, "-m", "switchboard", *args],
            env={**self._env(agent), **(env or {})},
            cwd=cwd,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout(60),
            check=False,
        )
        if code is not None and result.returncode != code:
            raise AssertionError(
                f"switchboard {' '.join(args)} exited {result.returncode}, not {code}: "
                f"stdout={result.stdout!r} stderr={result.stderr!r}"
            )
        return result

    def json(self, *args: str, agent: str | None = None) -> Any:
        """Run a command with ``--json`` and parse its output as one JSON document."""
        return json.loads(self.run(*args, "--json", agent=agent).stdout)

    def json_lines(self, *args: str, agent: str | None = None) -> list[Any]:
        """Run a command with ``--json`` and parse its output as JSON Lines."""
        out = self.run(*args, "--json", agent=agent).stdout
        return [json.loads(line) for line in out.splitlines()]

    def popen(self, *args: str, agent: str | None = None) -> subprocess.Popen[str]:
        """Start a command in the background with its stdout and stderr piped."""
        return subprocess.Popen(
            [PY, "-m", "switchboard", *args],
            env=self._env(agent),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def daemon_pid(self) -> int | None:
        """The running daemon's pid, from ``daemon status --json``."""
        status = self.json("daemon", "status")
        return int(status["pid"]) if status["running"] else None

    def close(self) -> None:
        """Stop a daemon that commands started in the background (SIGKILL if it won't stop)."""
        status = process.read_status(self.settings)
        running, pid = status["running"], status["pid"]
        if not running:
            return
        try:
            process.stop(self.settings, timeout=timeout(10))
        except SwitchboardError:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_gone(pid)


@contextlib.contextmanager
def temporary_home() -> Iterator[Home]:
    """A new, empty home with a short path (unix socket paths are limited to ~107 bytes).

    Any daemon its commands start is stopped when the block ends.
    """
    root = Path(tempfile.mkdtemp(prefix="sbcli-", dir="/tmp"))
    home = Home(root / "home")
    try:
        yield home
    finally:
        home.close()
        shutil.rmtree(root, ignore_errors=True)


def wait_gone(pid: int, seconds: float = 20) -> None:
    """Wait until process ``pid`` (not necessarily our child) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout(seconds))
        assert ready, f"process {pid} still runs after {seconds} s"
    finally:
        os.close(fd)


def interrupt(proc: subprocess.Popen[str], seconds: float = 20) -> tuple[int, str, str]:
    """Send Ctrl-C (SIGINT) to ``proc``; return its exit status and remaining output."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout(seconds))
    return proc.returncode, out, err


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Assert a failed command printed nothing but one ``switchboard: `` line; return it."""
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("switchboard: ")
    return lines[0]


def check_time(ts: Any) -> None:
    """Assert an ISO 8601 UTC time as the daemon writes it (``2024-05-01T10:12:11.123Z``)."""
    assert isinstance(ts, str)
    assert ts.endswith("Z"), ts
    moment = dt.datetime.fromisoformat(ts.removesuffix("Z") + "+00:00")
    assert moment.tzinfo is not None


def check_keys(obj: Any, keys: frozenset[str], what: str) -> None:
    """Assert ``obj`` is a JSON object holding at least ``keys``."""
    assert isinstance(obj, dict), f"{what} is not a JSON object: {obj!r}"
    missing = keys - obj.keys()
    assert not missing, f"{what} lacks {sorted(missing)}: {obj!r}"


def check_shape(obj: Any, cls: type[msgspec.Struct]) -> None:
    """Assert ``obj`` is exactly a ``daemon/shapes.py`` Struct as JSON: every field of it has
    its declared type, and it holds no field the Struct does not declare."""
    typed = msgspec.convert(obj, cls, strict=True)
    assert msgspec.to_builtins(typed) == obj, f"{cls.__name__} does not declare all of {obj!r}"


def check_agent(agent: Any) -> None:
    """Assert the DESIGN.md §5 agent shape."""
    check_keys(agent, AGENT_KEYS, "agent")
    check_shape(agent, shapes.Agent)
    assert agent["address"] == f"{agent['name']}:{agent['device']}"
    assert isinstance(agent["local"], bool)
    assert isinstance(agent["status"], str)
    if agent["last_seen"] is not None:
        check_time(agent["last_seen"])


def check_event(event: Any) -> None:
    """Assert the DESIGN.md §5 event shape."""
    check_keys(event, EVENT_KEYS, "event")
    check_shape(event, shapes.EventRow)
    assert isinstance(event["id"], int)
    check_time(event["ts"])
    assert isinstance(event["type"], str)
    assert isinstance(event["agent"], str)  # "" for events no agent made (receipts)
    assert isinstance(event["device"], str)
    assert isinstance(event["data"], dict)


def check_message(message: Any) -> None:
    """Assert the DESIGN.md §5 inbox message shape."""
    check_keys(message, MESSAGE_KEYS, "message")
    check_shape(message, shapes.Message)
    assert isinstance(message["id"], int)
    check_time(message["ts"])
    assert isinstance(message["from"], str)
    assert isinstance(message["to"], list)
    assert isinstance(message["text"], str)


def check_link(link: Any) -> None:
    """Assert the DESIGN.md §5 link shape (in ``status`` groups and in ``link`` listings)."""
    check_keys(link, LINK_KEYS, "link")
    assert isinstance(link["url"], str)
    assert isinstance(link["state"], str)
    assert link["lag"] is None or isinstance(link["lag"], int)
    if link["last_push"] is not None:
        check_time(link["last_push"])


def check_send_result(result: Any) -> None:
    """Assert the DESIGN.md §5 send result shape."""
    check_keys(result, SEND_KEYS, "send result")
    check_shape(result, shapes.SendResult)
    assert result["result"] in ("delivered", "queued")
    for recipient in result["recipients"]:
        check_keys(recipient, frozenset({"address", "state"}), "recipient")
        assert recipient["state"] in ("delivered", "queued", "read")
