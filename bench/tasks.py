"""``make bench``: delegation figures, each beside its floor measured in the same run.

1. Spawn request -> the spawned agent registered in the group (its ``agent_registered`` in
   the requester's log), p50 over N spawns, on this device and on another device through the
   relay; beside the program's own start (the fake harness run alone until its first line).
2. A permission prompt on B -> visible on A (its ``task_blocked`` arrives in A's log) -> the
   answer from A applied on B (A's ``approve`` returns once B recorded it), p50 over N prompts,
   measured from B's ``task_blocked`` timestamp (one machine, one clock).
3. The same for an agent started by hand: the real hook (``switchboard hook claude
   PermissionRequest``, a subprocess fed Claude Code's payload) on B -> its
   ``permission_asked`` in A's log -> A's ``approve`` -> the hook's decision printed on B,
   from the hook's start; beside the hook's own no-op run (no daemon at its home).

Two daemons and a relay run as their own processes; the task program is
tests/tasks/fake_agent.py under the ``cmd`` harness. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from cluster import Device, Relay  # noqa: E402 - after the path above

from switchboard.daemon.client import Client  # noqa: E402

FAKE = ROOT / "tests" / "tasks" / "fake_agent.py"


def _policy(work: Path, device: str | None) -> str:
    args = json.dumps([sys.executable, str(FAKE), "cmd", "{task}"])
    grant = f"[devices.{device}]" if device else "[local]"
    return (f'max_tasks = 64\n{grant}\nharnesses = ["cmd"]\ndirs = ["{work}"]\nanswer = ["*"]\n'
            f'[harnesses.cmd]\nargs = {args}\ntask = "arg"\n')  # fmt: skip


def _write(device: Device, text: str) -> None:
    path = device.home / "spawn.toml"
    path.write_text(text)
    path.chmod(0o600)


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def _wait_registered(client: Client, name: str, after: int) -> float:
    where = f"type = 'agent_registered' AND json_extract(data, '$.name') = '{name}'"
    for _ in client.stream("events.follow", {"where": where, "after": after, "all_rooms": True}):
        return time.perf_counter()
    raise AssertionError("no agent_registered")


def spawn_latency(requester: Device, runner: Device | None, count: int) -> list[float]:
    """Seconds from the spawn call to the new agent's registration in the requester's log."""
    out = []
    on = runner.short if runner is not None else ""
    with Client.open(requester.settings.socket_path) as client:
        for n in range(count):
            name = f"b{n}{'r' if on else 'l'}"
            newest = client.call("events", {"last": 1, "all_rooms": True})
            after = newest[-1]["id"] if newest else 0
            with Client.open(requester.settings.socket_path) as follower:
                started = time.perf_counter()
                answer = client.call("spawn", {"agent": "bench", "harness": "cmd", "on": on,
                                               "text": "say hi", "name": name})  # fmt: skip
                assert answer["state"] == "running", answer
                out.append(_wait_registered(follower, name, after) - started)
    return out


def program_start(count: int) -> list[float]:
    """The floor: the fake harness started alone, until its first line of output."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(FAKE), "cmd", "say hi"],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None
        proc.stdout.readline()
        out.append(time.perf_counter() - started)
        proc.wait()
    return out


def prompt_round_trip(lap: Device, vps: Device, count: int) -> tuple[list[float], list[float]]:
    """(blocked on B -> seen on A, blocked on B -> A's answer applied on B), in seconds."""
    seen, applied = [], []
    with Client.open(lap.settings.socket_path) as client:
        for _ in range(count):
            newest = client.call("events", {"last": 1, "all_rooms": True})
            after = newest[-1]["id"] if newest else 0
            task = client.call("spawn", {"agent": "bench", "harness": "cmd", "on": vps.short,
                                         "text": "ask Bash make\nsay ok"})  # fmt: skip
            where = f"type = 'task_blocked' AND json_extract(data, '$.task') = '{task['id']}'"
            with Client.open(lap.settings.socket_path) as follower:
                for event in follower.stream("events.follow", {"where": where, "after": after,
                                                               "all_rooms": True}):  # fmt: skip
                    arrived = time.time()
                    blocked = _ts(event["ts"])
                    break
            client.call("prompt.answer", {"agent": "bench", "prompt": event["data"]["prompt"],
                                          "answer": "allow"})  # fmt: skip
            done = time.time()
            seen.append(arrived - blocked)
            applied.append(done - blocked)
    return seen, applied


def _hook(device: Device | None, tmp: Path) -> subprocess.Popen[str]:
    fixtures = ROOT / "tests" / "harness" / "fixtures" / "claude.json"
    payload = json.loads(fixtures.read_text())["PermissionRequest"]
    payload.update(session_id="sess-bench", cwd=str(tmp))
    home = str(device.home) if device else str(tmp / "nodaemon")
    env = {**(device.env if device else {}), "SWITCHBOARD_HOME": home,
           "SWITCHBOARD_AGENT": "luna", "SWITCHBOARD_HOOK_AUTOSTART": "0",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchboard", "hook", "claude", "PermissionRequest"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(payload))
    proc.stdin.close()
    return proc


def agent_prompt_round_trip(
    lap: Device, vps: Device, tmp: Path, count: int
) -> tuple[list[float], list[float], list[float]]:
    """(hook alone, hook start -> seen on A, hook start -> its allow printed on B), seconds."""
    floor, seen, decided = [], [], []
    (tmp / "nodaemon").mkdir(exist_ok=True)
    with Client.open(lap.settings.socket_path) as client:
        for _ in range(count):
            started = time.perf_counter()
            _hook(None, tmp).wait()
            floor.append(time.perf_counter() - started)
            newest = client.call("events", {"last": 1, "all_rooms": True})
            after = newest[-1]["id"] if newest else 0
            started = time.perf_counter()
            proc = _hook(vps, tmp)
            with Client.open(lap.settings.socket_path) as follower:
                stream = follower.stream("events.follow", {
                    "type": "permission_asked", "after": after, "all_rooms": True,
                })  # fmt: skip
                event = next(iter(stream))
                seen.append(time.perf_counter() - started)
            client.call("prompt.answer", {"agent": "bench", "prompt": event["data"]["prompt"],
                                          "answer": "allow"})  # fmt: skip
            out = proc.stdout.read() if proc.stdout else ""
            proc.wait()
            decided.append(time.perf_counter() - started)
            assert '"allow"' in out, out
    return floor, seen, decided


def _ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds only")
    count = 5 if parser.parse_args().quick else 20
    tmp = Path(tempfile.mkdtemp(prefix="sbb-", dir="/tmp"))
    relay = Relay(tmp / "relay")
    lap, vps = Device(tmp / "lap", "lap"), Device(tmp / "vps", "vps")
    work = tmp / "work"
    work.mkdir()
    try:
        relay.start()
        for dev in (lap, vps):
            dev.home.mkdir(parents=True)
            dev.start()
            dev.call("init", name=dev.name)
        created = lap.call("group.create", name="bench", relay=relay.url)
        vps.call("join", invite=created["invite"])
        for dev in (lap, vps):
            dev.call("link.sync", timeout=30)
        _write(lap, _policy(work, None))
        _write(vps, _policy(work, lap.call("status")["device"]["id"]))
        floor = program_start(count)
        local = spawn_latency(lap, None, count)
        remote = spawn_latency(lap, vps, count)
        seen, applied = prompt_round_trip(lap, vps, count)
        hook_floor, hook_seen, hook_decided = agent_prompt_round_trip(lap, vps, tmp, count)
        print(f"delegation, {count} rounds each")
        print(f"  program start alone (floor)          {_ms(floor)}")
        print(f"  spawn -> agent registered, local     {_ms(local)}")
        print(f"  spawn -> agent registered, remote    {_ms(remote)}")
        print(f"  prompt on B -> visible on A          {_ms(seen)}")
        print(f"  prompt on B -> A's answer applied    {_ms(applied)}")
        print(f"  hook run alone, no daemon (floor)    {_ms(hook_floor)}")
        print(f"  hook prompt on B -> visible on A     {_ms(hook_seen)}")
        print(f"  hook prompt on B -> decision on B    {_ms(hook_decided)}")
    finally:
        for dev in (lap, vps):
            dev.kill()
        relay.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
