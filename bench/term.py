"""``switchboard term``: what reading and typing into an agent's tmux pane cost.

A real tmux server (private socket) with one pane that runs Claude Code's SessionStart hook
(so the daemon learns the pane) and then the tests' fake agent reading lines; two devices on a
relay on loopback, the agent on the second.

1. ``term.read`` here (one API call: tmux display-message + capture-pane), p50/p99.
2. ``term.type`` here until the line shows on the screen (the program read it), p50/p99.
3. The same two from the other device, over the relay's directed channel.

Figures are printed, never asserted. ``--quick`` shrinks the counts.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from cluster import Device, group_of

from switchboard.daemon.client import Client

FAKE = Path(__file__).resolve().parents[1] / "tests" / "tasks" / "fake_agent.py"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(f"  {label:<44} p50 {pct(ms, 0.5):7.2f} ms   p99 {pct(ms, 0.99):7.2f} ms   n={len(ms)}")


def agent_pane(socket: Path, device: Device, name: str) -> None:
    payload = json.dumps({"session_id": f"s-{name}", "source": "startup", "cwd": "/tmp"})
    hook = [sys.executable, "-m", "switchboard", "hook", "claude", "SessionStart"]
    reader = [sys.executable, str(FAKE), "cmd", "read-lines"]
    script = (f"printf %s {shlex.quote(payload)} | {shlex.join(hook)} >/dev/null; "
              f"exec {shlex.join(reader)}")  # fmt: skip
    env = {k: v for k, v in device.env.items() if k not in ("TMUX", "TMUX_PANE")}
    env["SWITCHBOARD_AGENT"] = name
    subprocess.run(["tmux", "-S", str(socket), "new-session", "-d", "-x", "100", "-y", "30",
                    "--", "sh", "-c", script], env=env, check=True)  # fmt: skip


def screen(client: Client, target: str) -> str:
    try:
        return "\n".join(client.call("term.read", {"agent": "boss", "target": target})["lines"])
    except Exception:  # noqa: BLE001 - not known yet
        return ""


def measure(client: Client, target: str, count: int, label: str) -> None:
    deadline = time.monotonic() + 30
    while "reading" not in screen(client, target):
        if time.monotonic() > deadline:
            raise SystemExit(f"{target}: the pane never showed up")
        time.sleep(0.05)
    reads = []
    for _ in range(count):
        started = time.perf_counter()
        client.call("term.read", {"agent": "boss", "target": target})
        reads.append(time.perf_counter() - started)
    report(f"term.read {label}", reads)
    typed = []
    for n in range(count):
        line = f"line {label} {n}"
        started = time.perf_counter()
        client.call("term.type", {"agent": "boss", "target": target, "text": line,
                                  "keys": ["Enter"]})  # fmt: skip
        while f"typed: {line}" not in screen(client, target):
            pass
        typed.append(time.perf_counter() - started)
    report(f"term.type -> on screen {label}", typed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    count = 10 if parser.parse_args().quick else 50
    with tempfile.TemporaryDirectory(prefix="sbb-", dir="/tmp") as tmp:
        socket = Path(tmp) / "tmux.sock"
        try:
            with group_of(Path(tmp), "lap", "vps") as (_, (lap, vps)):
                for dev in (lap, vps):
                    dev.call("link.sync", timeout=30)
                agent_pane(socket, vps, "luna")
                short = vps.short
                vps.cli("spawn", "allow", lap.short, "--term-type", "luna")
                print("switchboard term (tmux pane on loopback; relay on loopback)")
                with Client.open(vps.settings.socket_path) as client:
                    measure(client, "luna", count, "here")
                with Client.open(lap.settings.socket_path) as client:
                    deadline = time.monotonic() + 30
                    while not any(a["address"] == f"luna:{short}"
                                  for a in client.call("agents", {"all": True})):  # fmt: skip
                        if time.monotonic() > deadline:
                            raise SystemExit("lap never learned of luna")
                        time.sleep(0.05)
                    measure(client, f"luna:{short}", count, "from another device")
        finally:
            subprocess.run(["tmux", "-S", str(socket), "kill-server"], check=False,
                           capture_output=True)  # fmt: skip


if __name__ == "__main__":
    main()
