"""``make bench`` (agents in harnesses): what every tool call and every message pays.

1. Hook round trip: a harness runs ``switchboard hook claude PostToolUse`` with a payload on
   stdin and reads the JSON answer: wall time from spawn to exit, p50/p99, with a message
   pending (the answer carries it) and with none, beside the floor of starting the same
   interpreter with ``python -c pass`` (runs interleaved, so load on the machine hits both
   alike), and the ratio to it (target: <= 1.5x). Also shown: the floor without ``site``
   (``python -S -c pass``: what the interpreter itself costs), the daemon's answer to the same
   ``agent.hook`` request from this process (connect + call), and the modules the hook imports
   beyond the floor's (``-X importtime``, self time each).
2. MCP ``send`` on device A -> ``wait_for_message`` on device B returns (two ``switchboard mcp``
   processes driven by the official SDK client, a relay on loopback), p50/p99, beside the
   SDK's floor in the same run: the same client calling a no-op tool of a minimal FastMCP
   server over stdio. Also shown, to see where the time goes: a trivial daemon-backed tool
   call (``whoami``) and the ``send`` tool call alone. In the same run, on the same two
   devices, rounds interleaved with the MCP ones: the daemon path without MCP (an
   ``AsyncClient`` on A making the ``send`` call the tool makes, one on B making the
   ``inbox.take`` wait that ``wait_for_message`` makes), and the issue's target for the agent
   path: the daemon path + 2 x the SDK floor (one MCP hop in on A, one out on B). The floor
   is also shown for calls after the same 50 ms pause as each round's send (a process woken
   after a pause pays more than a busy one; the target uses the back-to-back floor).
   ``--trace``: the legs hop by hop of the floor, the agent path, the send tool call alone,
   the daemon path, and the daemon send's wait for B's delivered receipt.

Figures are printed, never asserted. ``--quick`` shrinks the counts. ``--only hooks|mcp`` runs
one part.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import anyio
from cluster import PY, Device, Relay, group_of
from latency import MCP_HOPS, legs, print_legs, traced_env
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from switchboard.daemon.client import AsyncClient

# The daemon path's hops: MCP_HOPS without the two MCP servers.
# The SDK floor's hops: the no-op server's stdio lines.
NOOP_HOPS = [("noop", hop, 0) for hop in ("mcp_line_in", "mcp_line_out", "mcp_flushed")]
# The send tool call alone, on A: in, the daemon's send (which waits for B's receipt), the
# unread messages riding on the result (a second daemon call), out.
SEND_HOPS = [
    ("alpha", hop, 0)
    for hop in (
        "mcp_line_in", "mcp_in", "bridge_call", "api_in", "commit", "api_out", "bridge_back",
        "bridge_call", "api_in", "api_out", "bridge_back", "mcp_out", "mcp_line_out",
        "mcp_flushed",
    )
]  # fmt: skip
# Why a send returns after the message arrived: it waits for B's delivered receipt (written
# in the transaction that stores the message on B) to come back to A.
RECEIPT_HOPS = [
    ("alpha", "api_in", 0),
    ("alpha", "commit", 0),
    ("beta", "receive_commit", 0),
    ("beta", "link_read", 0),
    ("beta", "ws_send", 0),
    ("relay", "ws_recv", 0),
    ("relay", "ws_send", 0),
    ("alpha", "ws_recv", 0),
    ("alpha", "receive_commit", 0),
    ("alpha", "api_out", 0),
]
DAEMON_HOPS = [hop for hop in MCP_HOPS if not hop[1].startswith(("mcp_", "bridge_"))]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(
        f"  {label:<44} p50 {pct(ms, 0.5):7.1f} ms   p99 {pct(ms, 0.99):7.1f} ms"
        f"   mean {statistics.mean(ms):7.1f} ms   n={len(ms)}"
    )


def spawn_time(cmd: list[str], stdin: bytes, env: dict[str, str]) -> tuple[float, bytes]:
    start = time.perf_counter()
    done = subprocess.run(cmd, input=stdin, capture_output=True, env=env, check=True)
    elapsed = time.perf_counter() - start
    if done.stderr:
        print(f"    (hook said: {done.stderr.decode().strip()})")
    return elapsed, done.stdout


def ratio(label: str, samples: list[float], floor: list[float]) -> None:
    """``report`` plus the ratio of the p50s to the floor's p50."""
    report(label, samples)
    print(f"  {'':<44} = {pct(samples, 0.5) / pct(floor, 0.5):.2f}x the floor's p50")


def imported_beyond(cmd: list[str], stdin: bytes, env: dict[str, str]) -> tuple[float, str]:
    """The self time (ms) of the modules ``cmd`` imports that ``python -c pass`` does not, and
    the five slowest of them; from one ``-X importtime`` run each."""

    def modules(argv: list[str], data: bytes) -> dict[str, float]:
        done = subprocess.run(argv, input=data, capture_output=True, env=env, check=False)
        found: dict[str, float] = {}
        for line in done.stderr.decode().splitlines():
            if line.startswith("import time:") and "|" in line and "self" not in line:
                own, _, name = line[len("import time:") :].split("|")
                found[name.strip()] = int(own) / 1000
        return found

    floor = modules([sys.executable, "-X", "importtime", "-c", "pass"], b"")
    ours = modules([sys.executable, "-X", "importtime", *cmd], stdin)
    extra = {name: ms for name, ms in ours.items() if name not in floor}
    slowest = sorted(extra, key=extra.__getitem__, reverse=True)[:5]
    return sum(extra.values()), ", ".join(f"{name} {extra[name]:.2f}" for name in slowest)


def bench_hooks(count: int) -> None:
    print("Hook round trip (spawn -> JSON answer), Claude Code PostToolUse:")
    with tempfile.TemporaryDirectory(prefix="sbb-", dir="/tmp") as tmp:
        device = Device(Path(tmp) / "d", "bench").start()
        try:
            device.call("init", name="bench")
            env = {**device.env, "SWITCHBOARD_AGENT": "luna", "SWITCHBOARD_HARNESS_PID": "4187001"}
            payload = {
                "session_id": "bench-1",
                "cwd": "/repo",
                "hook_event_name": "PostToolUse",
                "tool_name": "Read",
                "tool_input": {"file_path": "/repo/README.md"},
                "tool_response": {"type": "text"},
            }
            data = json.dumps(payload).encode()
            script = str(Path(sys.executable).parent / "switchboard")
            hook = [script, "hook", "claude", "PostToolUse"]
            spawn_time(hook, data, env)  # registers the agent
            device.call("register", agent="nova")
            floor: list[float] = []
            bare: list[float] = []
            idle: list[float] = []
            for _ in range(count):  # interleaved: a burst of load hits all three alike
                floor.append(spawn_time([sys.executable, "-c", "pass"], b"", env)[0])
                bare.append(spawn_time([sys.executable, "-S", "-c", "pass"], b"", env)[0])
                idle.append(spawn_time(hook, data, env)[0])
            pending: list[float] = []
            pending_floor: list[float] = []
            for i in range(count):
                device.call("send", agent="nova", to=["@luna"], text=f"message {i}: " + "x" * 150)
                pending_floor.append(spawn_time([sys.executable, "-c", "pass"], b"", env)[0])
                seconds, out = spawn_time(hook, data, env)
                if b"additionalContext" not in out:
                    print(f"    (message {i} not delivered by this hook: {out!r})")
                pending.append(seconds)
            request = {
                "harness": "claude", "kind": "tool", "session": "bench-1", "cwd": "/repo",
                "source": "", "deliver": True, "mcp": True, "tool": "Read",
                "files": ["/repo/README.md"], "command": None, "exit": None, "agent": "luna",
                "anchor": "4187001", "wait": 0.0,
            }  # fmt: skip
            answer: list[float] = []
            for _ in range(count):
                start = time.perf_counter()
                device.call("agent.hook", **request)
                answer.append(time.perf_counter() - start)
            report("floor: python -c pass", floor)
            report("interpreter alone: python -S -c pass", bare)
            report("agent.hook in-process (connect + one call)", answer)
            ratio("hook, nothing pending (answer {})", idle, floor)
            report("floor (interleaved with the next)", pending_floor)
            ratio("hook, one message pending (injected)", pending, pending_floor)
            total, slowest = imported_beyond(hook, data, env)
            print(f"  imports beyond the floor's: {total:.2f} ms self time (-X importtime)")
            print(f"    slowest: {slowest}")
        finally:
            device.stop()


# The SDK's own floor: a minimal server with one no-op tool, on the same SDK layer as ours
# (mcp.server.lowlevel), the same stdio transport.
NOOP_SERVER = """
import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server


async def list_tools(ctx, params):
    schema = {"type": "object", "properties": {}}
    return types.ListToolsResult(tools=[types.Tool(name="noop", input_schema=schema)])


async def call_tool(ctx, params):
    return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])


async def main():
    server = Server("noop", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


anyio.run(main)
"""


async def _sdk_floor(
    count: int,
    folder: Path,
    trace_dir: Path | None,
    pairs: list[tuple[float, float]],
    paused: list[float],
) -> list[float]:
    """Back-to-back no-op calls (the floor); into ``paused``, calls after the same 50 ms pause
    as each round of the paths (a process woken after a pause pays more than a busy one)."""
    script = folder / "noop_server.py"
    script.write_text(NOOP_SERVER)
    env = None
    if trace_dir is not None:  # its stdio lines traced as ours are ("noop" in the legs)
        env = {**traced_env(trace_dir), "SWITCHBOARD_HOME": str(folder / "noop")}
    params = StdioServerParameters(command=PY, args=[str(script)], env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("noop", {})
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            await session.call_tool("noop", {})
            end = time.perf_counter()
            samples.append(end - start)
            pairs.append((start, end))
        for _ in range(count // 4):
            await anyio.sleep(0.05)
            start = time.perf_counter()
            await session.call_tool("noop", {})
            paused.append(time.perf_counter() - start)
        return samples


async def _timed(
    session: ClientSession, tool: str, args: dict[str, Any], count: int
) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await session.call_tool(tool, args)
        samples.append(time.perf_counter() - start)
    return samples


class Times:
    """One path's rounds: when each send started, returned, and the wait returned."""

    def __init__(self) -> None:
        self.rounds: list[tuple[float, float, float]] = []

    @property
    def arrivals(self) -> list[float]:
        return [arrived - start for start, _, arrived in self.rounds]

    @property
    def sends(self) -> list[float]:
        return [sent - start for start, sent, _ in self.rounds]

    @property
    def arrival_pairs(self) -> list[tuple[float, float]]:
        return [(start, arrived) for start, _, arrived in self.rounds]

    @property
    def send_pairs(self) -> list[tuple[float, float]]:
        return [(start, sent) for start, sent, _ in self.rounds]


async def _round(send: Any, wait: Any, text: str, into: Times) -> None:
    """One message: ``wait()`` (answering its text) is in flight when ``send()`` starts."""
    got: dict[str, Any] = {}

    async def waiter() -> None:
        answer = await wait()
        got["at"] = time.perf_counter()
        got["text"] = answer

    async with anyio.create_task_group() as group:
        group.start_soon(waiter)
        await anyio.sleep(0.05)  # let the wait reach the daemon before we send
        start = time.perf_counter()
        await send()
        sent = time.perf_counter()
    assert text in got["text"], got["text"]
    into.rounds.append((start, sent, got["at"]))


async def _mcp_exchange(
    alpha: Device,
    beta: Device,
    count: int,
    parts: dict[str, list[float]],
    agent: Times,
    daemon: Times,
) -> None:
    def params(device: Device, agent: str) -> StdioServerParameters:
        env = {**device.env, "SWITCHBOARD_AGENT": agent}
        return StdioServerParameters(command=PY, args=["-m", "switchboard", "mcp"], env=env)

    async with (
        stdio_client(params(alpha, "luna")) as (ra, wa),
        ClientSession(ra, wa) as luna,
        stdio_client(params(beta, "nova")) as (rb, wb),
        ClientSession(rb, wb) as nova,
    ):
        await luna.initialize()
        await nova.initialize()
        await nova.call_tool("whoami", {})
        target = f"nova:{beta.short}"
        while True:  # until alpha knows nova
            sent = await luna.call_tool("send", {"to": target, "text": "warm-up"})
            if not sent.is_error:
                break
            await anyio.sleep(0.1)
        await nova.call_tool("wait_for_message", {"timeout": 30})
        parts["whoami tool call (daemon-backed, trivial)"] = await _timed(luna, "whoami", {}, count)
        # The daemon path: the very calls the two tools make, from a client of each daemon.
        sender = AsyncClient(alpha.settings.socket_path)
        waiter = AsyncClient(beta.settings.socket_path)
        take = {
            "agent": "nova", "hint": "bench:daemon-path", "anchor": "", "all": True, "ack": True,
            "via": "tool:wait_for_message", "wait": 30.0,
        }  # fmt: skip
        try:
            for i in range(count):  # interleaved: a burst of load hits both paths alike
                text = f"ping {i}"

                async def tool_send(text: str = text) -> None:
                    await luna.call_tool("send", {"to": target, "text": text})

                async def tool_wait() -> str:
                    result = await nova.call_tool("wait_for_message", {"timeout": 30})
                    return str(result.content[0].text)  # type: ignore[union-attr]

                await _round(tool_send, tool_wait, text, agent)
                text = f"pong {i}"
                call = {"agent": "luna", "to": [f"@{target}"], "text": text, "priority": "normal"}

                async def api_send(call: dict[str, Any] = call) -> None:
                    await sender.call("send", call)

                async def api_wait() -> str:
                    return str((await waiter.call("inbox.take", take))["text"])

                await _round(api_send, api_wait, text, daemon)
        finally:
            await sender.aclose()
            await waiter.aclose()


def bench_mcp(count: int, trace: bool = False) -> None:
    print("MCP send (device A) -> wait_for_message returns (device B), via a relay:")
    with tempfile.TemporaryDirectory(prefix="sbb-", dir="/tmp") as tmp:
        trace_dir = Path(tmp) / "trace"
        trace_dir.mkdir()
        saved = dict(os.environ)
        if trace:  # every process started below writes its hops (bench/tracing)
            os.environ.update(traced_env(trace_dir))
        relay = Relay(Path(tmp) / "relay")
        with group_of(Path(tmp), "alpha", "beta", relay=relay) as (_, (alpha, beta)):
            os.environ.clear()
            os.environ.update(saved)
            parts: dict[str, list[float]] = {}
            agent, daemon = Times(), Times()
            floor_pairs: list[tuple[float, float]] = []
            paused: list[float] = []
            traced = trace_dir if trace else None
            floor = anyio.run(_sdk_floor, count * 4, Path(tmp), traced, floor_pairs, paused)
            anyio.run(_mcp_exchange, alpha, beta, count, parts, agent, daemon)
            report("floor: SDK client -> no-op tool (stdio)", floor)
            report("floor, each call after a 50 ms pause", paused)
            for label, values in parts.items():
                report(label, values)
            report("send tool call alone (to the other device)", agent.sends)
            report("daemon send call alone (the tool's call)", daemon.sends)
            report("daemon path: send -> inbox.take wait returns", daemon.arrivals)
            ratio("send -> other device's wait_for_message", agent.arrivals, floor)
            a, d, f = (pct(x, 0.5) * 1000 for x in (agent.arrivals, daemon.arrivals, floor))
            print(
                f"  target: daemon path + 2 x SDK floor = {d:.1f} + 2 x {f:.1f} = {d + 2 * f:.1f}"
                f" ms; agent path {a:.1f} ms = {a / (d + 2 * f):.2f}x the target (MCP's share"
                f" {a - d:.1f} ms = {(a - d) / f:.2f} SDK floors)"
            )
            if trace:
                print("  SDK floor:")
                print_legs(legs(trace_dir, floor_pairs, NOOP_HOPS))
                print("  agent path:")
                print_legs(legs(trace_dir, agent.arrival_pairs, MCP_HOPS))
                print("  send tool call alone:")
                print_legs(legs(trace_dir, agent.send_pairs, SEND_HOPS))
                print("  daemon path:")
                print_legs(legs(trace_dir, daemon.arrival_pairs, DAEMON_HOPS))
                print("  daemon send call alone (its wait for B's receipt):")
                print_legs(legs(trace_dir, daemon.send_pairs, RECEIPT_HOPS))
                print("  send tool call alone (its daemon call's wait for B's receipt):")
                print_legs(legs(trace_dir, agent.send_pairs, RECEIPT_HOPS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--only", choices=("hooks", "mcp"), help="run one part")
    parser.add_argument(
        "--trace", action="store_true", help="print the agent path's legs, hop by hop"
    )
    args = parser.parse_args()
    if args.only in (None, "hooks"):
        bench_hooks(20 if args.quick else 60)
    if args.only in (None, "mcp"):
        bench_mcp(10 if args.quick else 30, trace=args.trace)


if __name__ == "__main__":
    main()
