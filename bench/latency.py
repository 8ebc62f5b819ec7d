"""Latency A -> relay -> B, its floors and its legs (``bench/run.py`` part 1; runs alone too).

- ``latency``: send call on A to arrival in B's log (B's ``events.follow`` stream).
- ``chain_latency``: the same hops through three minimal processes (``bench/chain.py``): a line
  to A over TCP, one fdatasync, one WebSocket message to a relay and on to B, a line to us.
- ``legs``: with ``SWITCHBOARD_TRACE_DIR`` set before the processes start and ``bench/tracing``
  on their ``PYTHONPATH`` (``traced_env``), each process writes its hops (``sitecustomize``
  there); ``legs`` pairs them with the sends and says where the time goes, median per leg.

``python bench/latency.py [--count N] [--trace]`` prints the figure beside its floors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from cluster import Device, Relay
from restart import pair

from switchboard.daemon.client import Client

HERE = Path(__file__).resolve().parent
PAYLOAD = 200  # bytes of text per message, about a one-line agent message

# The hops a traced message passes, in order: (process role, trace name, smallest size).
# Sizes tell a batch (an event of PAYLOAD bytes, sealed) from acks and pings on the same socket.
HOPS = [
    ("a", "api_in", 0),
    ("a", "append_in", 0),
    ("a", "commit", 0),
    ("a", "link_read", 0),
    ("a", "ws_send", PAYLOAD),
    ("relay", "ws_recv", PAYLOAD),
    ("relay", "ws_send", PAYLOAD),
    ("b", "ws_recv", PAYLOAD),
    ("b", "receive_commit", 0),
    ("b", "api_out", 1),
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(
    a: Device, b: Device, count: int, gap: float = 0.0
) -> tuple[list[float], list[tuple[float, float]]]:
    """Send call on A to arrival in B's log, measured in this process for both ends.

    One message at a time: the next is sent once the last arrived (a thread follows B's log
    and signals; nothing polls). Returns the latencies and each message's (sent, arrived).
    """
    arrived: dict[str, float] = {}
    ready = threading.Event()
    landed = threading.Condition()

    def follow() -> None:
        with Client.open(b.settings.socket_path) as client:
            ready.set()
            for item in client.stream("events.follow", {"type": "message_posted"}, duration=120):
                now = time.perf_counter()
                with landed:
                    arrived[item["data"]["text"].rstrip(".")] = now
                    landed.notify()
                if len(arrived) >= count:
                    return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    ready.wait()
    time.sleep(0.2)
    sent: dict[str, float] = {}
    with Client.open(a.settings.socket_path) as client:
        for n in range(count):
            key = f"lat{n:08d}"
            sent[key] = time.perf_counter()
            client.call(
                "send",
                {"agent": "luna", "to": ["@nova"], "text": key.ljust(PAYLOAD, "."), "wait": 0},
            )
            with landed:
                landed.wait_for(lambda key=key: key in arrived, timeout=5)
            if gap:
                time.sleep(gap)  # the fsyncs the last message caused (relay, B's receipt) end
    thread.join(10)
    pairs = [(sent[k], arrived[k]) for k in sent if k in arrived]
    return [end - start for start, end in pairs], pairs


# -- floors ------------------------------------------------------------------------------------


async def tcp_round_trip(count: int) -> list[float]:
    """Round trips of one PAYLOAD-sized line through an asyncio echo server on loopback."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    line = b"x" * PAYLOAD + b"\n"
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        writer.write(line)
        await writer.drain()
        await reader.readline()
        samples.append(time.perf_counter() - start)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return samples


def fsync_times(directory: Path, count: int) -> list[float]:
    """fdatasync of one appended 4 KiB page (a WAL frame) in ``directory``: the disk's floor."""
    path = directory / "fsync-floor"
    sync = getattr(os, "fdatasync", os.fsync)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    samples = []
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            start = time.perf_counter()
            sync(fd)
            samples.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return samples


def commit_times(directory: Path, count: int) -> list[float]:
    """One durable append of a PAYLOAD-sized message into a fresh store, in this process
    (``EventLog.append_sync``: SQLite's WAL commit with fsync, the schema's indexes and
    projections): what storing costs before any hop, beside the bare fsync of one page."""
    from switchboard.events import MessagePosted  # noqa: PLC0415 - bench only
    from switchboard.store.db import Database  # noqa: PLC0415 - bench only
    from switchboard.store.log import EventLog  # noqa: PLC0415 - bench only

    body = MessagePosted(to=["@nova"], recipients=["nova:" + "b" * 26], text="x" * PAYLOAD)
    samples = []
    with Database(directory / "commit-floor.db") as db:
        log = EventLog(db, "a" * 26)
        for _ in range(count // 10):  # warm: the first pages of every table exist
            log.append_sync([("luna", body)])
        for _ in range(count):
            start = time.perf_counter()
            log.append_sync([("luna", body)])
            samples.append(time.perf_counter() - start)
    return samples


@contextlib.contextmanager
def chain() -> Iterator[tuple[int, int]]:
    """Start ``bench/chain.py``'s relay, b and a; yield (a's port, b's port)."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> int:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "chain.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        return int(proc.stdout.readline().split()[1])

    try:
        relay = start("relay")
        b_port = start("b", str(relay))
        a_port = start("a", str(relay))
        yield a_port, b_port
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def chain_latency(count: int) -> list[float]:
    """Line to ``a`` to the same line out of ``b``: the durable path's floor in processes."""
    with chain() as (a_port, b_port):
        out = socket.create_connection(("127.0.0.1", b_port))
        time.sleep(0.2)  # b has taken our connection
        into = socket.create_connection(("127.0.0.1", a_port))
        for sock in (out, into):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        line = b"x" * PAYLOAD + b"\n"
        samples = []
        with out, into, out.makefile("rb") as arrivals, into.makefile("rb") as replies:
            for _ in range(count):
                start = time.perf_counter()
                into.sendall(line)
                arrivals.readline()
                samples.append(time.perf_counter() - start)
                replies.readline()
        return samples


# -- the per-hop trace -----------------------------------------------------------------------------


def traced_env(trace_dir: Path) -> dict[str, str]:
    """Environment for processes that should write their hops into ``trace_dir``."""
    path = os.pathsep.join(
        p for p in (str(HERE / "tracing"), os.environ.get("PYTHONPATH", "")) if p
    )
    return {"SWITCHBOARD_TRACE_DIR": str(trace_dir), "PYTHONPATH": path}


def _marks(trace_dir: Path) -> dict[tuple[str, str], list[tuple[int, int]]]:
    found: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for path in trace_dir.glob("*.trace"):
        role = path.name.rsplit("-", 1)[0]
        for line in path.read_text().splitlines():
            name, t, size = line.split()
            found.setdefault((role, name), []).append((int(t), int(size)))
    for marks in found.values():
        marks.sort()
    return found


# The agent path (bench/hooks.py part 2): MCP tool call on A to wait_for_message's answer.
MCP_HOPS = [
    ("alpha", "mcp_line_in", 0),
    ("alpha", "mcp_in", 0),
    ("alpha", "bridge_call", 0),
    ("alpha", "api_in", 0),
    ("alpha", "commit", 0),
    ("alpha", "link_read", 0),
    ("alpha", "ws_send", 100),
    ("relay", "ws_recv", 100),
    ("relay", "ws_send", 100),
    ("beta", "ws_recv", 100),
    ("beta", "receive_commit", 0),
    ("beta", "api_out", 0),
    ("beta", "bridge_back", 0),
    ("beta", "mcp_out", 0),
    ("beta", "mcp_line_out", 0),
    ("beta", "mcp_flushed", 0),
]


def legs(
    trace_dir: Path, pairs: list[tuple[float, float]], hops: list[tuple[str, str, int]] = HOPS
) -> list[tuple[str, float]]:
    """Median time of each leg between hops, and from the last hop to arrival (ms)."""
    marks = _marks(trace_dir)
    names = [f"{role}.{name}" for role, name, _ in hops] + ["client sees it"]
    spans: list[list[float]] = [[] for _ in names]
    for sent, arrived in pairs:
        start, end = int(sent * 1e9), int(arrived * 1e9)
        times = [start]
        for role, name, least in hops:
            hit = next(
                (
                    t
                    for t, size in marks.get((role, name), [])
                    if times[-1] <= t <= end and size >= least
                ),
                None,
            )
            times.append(times[-1] if hit is None else hit)
        times.append(end)
        for n in range(len(names)):
            spans[n].append((times[n + 1] - times[n]) / 1e6)
    return [(name, statistics.median(s)) for name, s in zip(names, spans, strict=True) if s]


def print_legs(found: list[tuple[str, float]]) -> None:
    total = sum(ms for _, ms in found)
    print(f"  legs (median ms, of {total:.2f}): " + ", ".join(f"{n} {ms:.3f}" for n, ms in found))


# -- alone -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--trace", action="store_true", help="print the per-hop legs")
    parser.add_argument(
        "--gap", type=float, default=0.0, help="seconds of pause after each arrival"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="switchboard-lat-") as tmp:
        root = Path(tmp)
        trace_dir = root / "trace"
        trace_dir.mkdir()
        saved = dict(os.environ)
        if args.trace:
            os.environ.update(traced_env(trace_dir))
        try:
            relay = Relay(root / "relay").start()
            a = Device(root / "a", "a").start()
            b = Device(root / "b", "b").start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        try:
            pair(relay, a, b)
            lat, pairs = latency(a, b, args.count, args.gap)
            floor_chain = chain_latency(args.count)
            rtt = asyncio.run(tcp_round_trip(args.count))
            fsyncs = fsync_times(root, args.count)
            commits = commit_times(root, args.count)
        finally:
            b.stop()
            a.stop()
            relay.kill()
        report(lat, rtt, fsyncs, floor_chain, commits)
        if args.trace:
            print_legs(legs(trace_dir, pairs))
    return 0


def report(
    lat: list[float],
    rtt: list[float],
    fsyncs: list[float],
    chain: list[float],
    commits: list[float] | None = None,
) -> None:
    p50, floor_rtt, floor_fsync = pct(lat, 0.5) * 1e3, pct(rtt, 0.5) * 1e3, pct(fsyncs, 0.5) * 1e3
    durable = floor_fsync + floor_rtt
    floor_chain = pct(chain, 0.5) * 1e3
    print(
        f"latency A->relay->B   p50 {p50:.2f} ms  p99 {pct(lat, 0.99) * 1e3:.2f} ms  (n={len(lat)})"
    )
    print(
        f"  floor: TCP round trip p50 {floor_rtt:.3f} ms -> ratio {p50 / floor_rtt:.1f}x; "
        f"one fsync p50 {floor_fsync:.3f} ms + round trip = {durable:.3f} ms -> ratio "
        f"{p50 / durable:.1f}x (target <= 3x)"
    )
    print(
        f"  floor: chain of 3 minimal asyncio processes (TCP in, fsync, WebSocket A->relay->B, "
        f"TCP out) p50 {floor_chain:.3f} ms -> ratio {p50 / floor_chain:.1f}x "
        f"(the chain alone is {floor_chain / durable:.1f}x the fsync + round trip)"
    )
    if commits:
        commit = pct(commits, 0.5) * 1e3
        print(
            f"  part: one durable append of the same message into a fresh store, in-process "
            f"p50 {commit:.3f} ms = {commit / durable:.1f}x the fsync + round trip "
            f"({commit / floor_fsync:.1f}x the bare fsync of one page)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
