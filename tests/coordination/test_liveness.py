"""Liveness: dead agent processes, silent devices and expiry, across two devices."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cluster import Device, timeout
from coord_cluster import Sleeper, cluster, wait_agent, wait_notice, wait_room_event, wait_until


def _status(device: Device, address: str, **params: object) -> str | None:
    shown = {x["address"]: x["status"] for x in device.call("agents", **params)}
    return shown.get(address)


def test_liveness_killed_agent_process_goes_offline_on_both_devices(tmp_path: Path) -> None:
    """An agent whose process dies is marked offline by its device within 10 s, on both."""
    with cluster(tmp_path, "laptop", "server") as ((a, b), _):
        worker = Sleeper()
        try:
            b.call("register", agent="worker", pid=worker.pid)
            wait_agent(a, f"worker:{b.short}")
            assert _status(a, f"worker:{b.short}") == "active"
            worker.kill()
            offline = "json_extract(data, '$.status') = 'offline'"
            b.wait_events(1, seconds=10, type="status_changed", where=offline)
            a.wait_events(1, seconds=10, type="status_changed", where=offline)
            for device in (a, b):
                assert _status(device, f"worker:{b.short}") == "offline"
            reason = a.call("events", type="status_changed", where=offline)[0]["data"]["reason"]
            assert reason == "process exited"
        finally:
            worker.close()


def test_liveness_silent_device_goes_offline_then_expires(tmp_path: Path) -> None:
    """A device whose link is cut has its agents shown offline after the offline timeout (its
    room mates are told), and gone from listings after the expiry, history kept."""
    env = {"laptop": {"SWITCHBOARD_OFFLINE_TIMEOUT": "2", "SWITCHBOARD_EXPIRE_AFTER": "3"}}
    with cluster(tmp_path, "laptop", "server", env=env, via_proxy=("server",)) as (
        (a, b),
        proxies,
    ):
        a.call("register", agent="luna")
        a.call("room.create", agent="luna", name="ops")
        b.call("register", agent="nova")
        wait_room_event(b, "room_created", "ops")
        b.call("room.join", agent="nova", name="ops")
        b.call("send", agent="nova", to=["#ops"], text="still here")
        wait_room_event(a, "room_joined", "ops")
        a.wait_events(1, type="message_posted", where="data LIKE '%still here%'")
        nova = f"nova:{b.short}"
        assert _status(a, nova) == "active"

        proxies["server"].stall()
        proxies["server"].cut()
        wait_until(lambda: _status(a, nova) == "offline", 20, "nova shown offline")
        wait_notice(a, "luna", a, "member_status", f"{nova} is now offline")
        wait_until(lambda: _status(a, nova) is None, 20, "nova gone from listings")
        assert _status(a, nova, all=True) == "offline"
        history = a.call("room.read", agent="luna", name="ops", last=5)
        assert [m["text"] for m in history] == ["still here"]
        assert [m["text"] for m in a.call("search", agent="luna", query="still")] == ["still here"]

        proxies["server"].resume()
        b.call("link.sync", timeout=30)
        wait_until(lambda: _status(a, nova) == "active", 30, "nova back when its device is")


# A stand-in for a harness: it runs our SessionStart hook and our MCP server as its children, as
# Claude Code does, then lives until its stdin closes or it is killed. Its first line of output
# is the MCP child's pid.
_HARNESS = """
import json, subprocess, sys
payload = {"session_id": sys.argv[1], "cwd": sys.argv[2], "hook_event_name": "SessionStart",
           "source": "startup"}
hook = [sys.executable, "-m", "switchboard", "hook", "claude", "SessionStart"]
subprocess.run(hook, input=json.dumps(payload).encode(), capture_output=True, check=True)
mcp = subprocess.Popen([sys.executable, "-m", "switchboard", "mcp"], stdin=subprocess.PIPE,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(mcp.pid, flush=True)
sys.stdin.read()
"""


class StandInHarness:
    """A real harness-shaped process on ``device`` whose agent is ``agent``."""

    def __init__(self, device: Device, agent: str, session: str, cwd: Path) -> None:
        env = {**device.env, "SWITCHBOARD_AGENT": agent}
        env.pop("SWITCHBOARD_HARNESS_PID", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HARNESS, session, str(cwd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), f"the stand-in harness did not start: {line!r}"
        self.mcp_pid = int(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout(10))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.mcp_pid, signal.SIGKILL)


def _stays(check: Callable[[], bool], seconds: float) -> bool:
    """Whether ``check()`` holds at every look for ``seconds`` (liveness rounds run every 2 s)."""
    deadline = time.monotonic() + seconds
    idle = threading.Event()
    while time.monotonic() < deadline:
        if not check():
            return False
        idle.wait(0.2)
    return True


def _mcp_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            return file.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_liveness_killed_harness_takes_its_agent_offline_and_its_mcp_child_does_not(
    tmp_path: Path,
) -> None:
    """An agent registered through hooks and MCP (no pid) follows its harness process: the MCP
    server child dying leaves it alive; the harness killed with SIGKILL takes it offline on both
    devices within 10 s; a message sent to it then says ``offline`` and is delivered when the
    agent comes back."""
    with cluster(tmp_path, "laptop", "server") as ((a, b), _):
        a.call("register", agent="luna")
        harness = StandInHarness(b, "kilo", "s-1", tmp_path)
        try:
            kilo = f"kilo:{b.short}"
            wait_agent(a, kilo)
            assert _status(b, kilo) == "active"
            assert _status(a, kilo) == "active"

            os.kill(harness.mcp_pid, signal.SIGKILL)
            wait_until(lambda: _mcp_gone(harness.mcp_pid), 10, "the MCP child gone")
            assert _stays(lambda: _status(b, kilo) == "active", 5), "kilo went offline with MCP"

            harness.kill()
            offline = "json_extract(data, '$.status') = 'offline'"
            b.wait_events(1, seconds=10, type="status_changed", where=offline, agent=kilo)
            wait_until(lambda: _status(a, kilo) == "offline", 10, "kilo offline on the laptop")
            assert _status(b, kilo) == "offline"

            sent = a.call("send", agent="luna", to=[kilo], text="are you there?")
            assert sent["result"] == "offline"
            assert sent["recipients"] == [{"address": kilo, "state": "offline"}]
            everyone = a.call("send", agent="luna", to=["@all"], text="roll call")
            assert {r["address"]: r["state"] for r in everyone["recipients"]}[kilo] == "offline"
        finally:
            harness.close()

        back = StandInHarness(b, "kilo", "s-2", tmp_path)
        try:
            wait_until(lambda: _status(a, kilo) == "active", 10, "kilo back on the laptop")

            def delivered() -> bool:
                rows = a.call("sent", agent="luna")
                return any(
                    r["text"] == "are you there?" and any(x["delivered"] for x in r["recipients"])
                    for r in rows
                )

            wait_until(delivered, 10, "the message to kilo delivered once it returned")
        finally:
            back.close()


def test_liveness_cut_link_shows_unreachable_then_offline(tmp_path: Path) -> None:
    """A device whose link is cut has its agents ``unreachable`` (with when it was last seen) on
    the other device within 2 s, sends to them say ``queued``, and they turn ``offline`` after
    the configured timeout."""
    env = {"laptop": {"SWITCHBOARD_OFFLINE_TIMEOUT": "6"}}
    with cluster(tmp_path, "laptop", "server", env=env, via_proxy=("server",)) as (
        (a, b),
        proxies,
    ):
        a.call("register", agent="luna")
        b.call("register", agent="nova")
        nova = f"nova:{b.short}"
        wait_agent(a, nova)
        assert _status(a, nova) == "active"

        proxies["server"].stall()
        proxies["server"].cut()
        wait_until(lambda: _status(a, nova) == "unreachable", 2, "nova shown unreachable")
        row = next(x for x in a.call("agents") if x["address"] == nova)
        assert row["device_last_seen"]
        sent = a.call("send", agent="luna", to=[nova], text="when you are back")
        assert sent["result"] == "queued"
        assert sent["recipients"] == [{"address": nova, "state": "queued"}]
        wait_until(lambda: _status(a, nova) == "offline", 15, "nova offline after the timeout")
