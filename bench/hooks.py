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
   call (``whoami``) and the ``send`` tool call alone. (The daemon's own A -> relay -> B path
   is bench/run.py's first figure.)

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


async def _sdk_floor(count: int, folder: Path) -> list[float]:
    script = folder / "noop_server.py"
    script.write_text(NOOP_SERVER)
    params = StdioServerParameters(command=PY, args=[str(script)])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("noop", {})
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            await session.call_tool("noop", {})
            samples.append(time.perf_counter() - start)
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


async def _mcp_exchange(
    alpha: Device,
    beta: Device,
    count: int,
    parts: dict[str, list[float]],
    pairs: list[tuple[float, float]],
) -> list[float]:
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
        sends = parts["send tool call alone (to the other device)"] = []
        samples: list[float] = []
        for i in range(count):
            got: dict[str, Any] = {}

            async def wait(into: dict[str, Any] = got) -> None:
                result = await nova.call_tool("wait_for_message", {"timeout": 30})
                into["at"] = time.perf_counter()
                into["text"] = result.content[0].text

            async with anyio.create_task_group() as group:
                group.start_soon(wait)
                await anyio.sleep(0.05)  # let the wait reach the daemon before we send
                start = time.perf_counter()
                await luna.call_tool("send", {"to": target, "text": f"ping {i}"})
                sends.append(time.perf_counter() - start)
            assert f"ping {i}" in got["text"], got["text"]
            samples.append(got["at"] - start)
            pairs.append((start, got["at"]))
        return samples


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
            pairs: list[tuple[float, float]] = []
            floor = anyio.run(_sdk_floor, count * 4, Path(tmp))
            samples = anyio.run(_mcp_exchange, alpha, beta, count, parts, pairs)
            report("floor: SDK client -> no-op tool (stdio)", floor)
            for label, values in parts.items():
                report(label, values)
            ratio("send -> other device's wait_for_message", samples, floor)
            if trace:
                print_legs(legs(trace_dir, pairs, MCP_HOPS))


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
