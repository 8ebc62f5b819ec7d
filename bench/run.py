"""``make bench``: the foundation's figures, each beside its floor measured in the same run.

1. Latency A -> relay -> B (send call to arrival in B's log), p50/p99 over 1,000 messages,
   beside a raw asyncio TCP round trip on loopback, beside one fsync (fdatasync of a 4 KiB
   append) plus that round trip: the durable path's floor (A syncs its event; B syncs nothing),
   and beside the same hops through three minimal asyncio processes (``bench/chain.py``).
   ``--trace`` also prints its legs, hop by hop (``bench/latency.py``, ``bench/tracing``).
2. Sustained throughput A -> relay -> B (events/s, each committed at sender, relay and receiver),
   beside a minimal asyncio TCP forwarder with the same payload size, and as a share of the
   JetStream publish floor (``bench/jsfloor.py``: acked publishes of one sealed event's size to
   a nats-server started for it, measured just before).
3. Catch-up: B offline while 100,000 events are written, then rejoins: events/s into B's store,
   from B's daemon being ready (it reconnects, then catches up) to holding every event; as a
   share of a raw SQLite ``executemany`` of the same rows into a fresh store's ``events`` table,
   measured just before (``bench/jsfloor.py``).
4. ``switchboard send`` wall time to a running daemon, p50 over 30 runs.
5. Relay restart to first delivery (``bench/restart.py``): the relay is killed, a message
   sent A -> B while it is down for a second, the relay restarted on the same port; median and
   max over 5 cycles from "listening" to arrival in B, beside a fresh connect + handshake.

The relay and B run as their own processes, and so does A for the latency run; for throughput
and catch-up A's daemon then runs in this process on the same home, so that bulk appends can go
straight into its log (the sync path under test is the same). Figures are printed, never
asserted. ``--quick`` shrinks the counts for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from cluster import Device, Relay
from jsfloor import jetstream_rate, sealed_size, sqlite_insert_rate
from latency import (
    chain_latency,
    commit_times,
    fsync_times,
    latency,
    legs,
    print_legs,
    tcp_round_trip,
    traced_env,
)
from latency import report as report_latency
from restart import measure as measure_restart
from restart import pair
from restart import report as report_restart

from switchboard import runloop
from switchboard.config import load_settings
from switchboard.daemon.service import Daemon
from switchboard.events import FileEdited

PAYLOAD = 200  # bytes of text per message, about a one-line agent message


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- floors ------------------------------------------------------------------------------------


async def forwarder_rate(count: int) -> float:
    """Messages/s from a sender through a minimal asyncio forwarder to a receiver."""
    done, ended = asyncio.Event(), asyncio.Event()
    received = 0

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        while await reader.readline():
            received += 1
            if received == count:
                done.set()
        writer.close()
        ended.set()

    sink_server = await asyncio.start_server(sink, "127.0.0.1", 0)
    sink_port = sink_server.sockets[0].getsockname()[1]

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, out = await asyncio.open_connection("127.0.0.1", sink_port)
        while line := await reader.readline():
            out.write(line)
            await out.drain()
        out.close()
        writer.close()

    fwd_server = await asyncio.start_server(forward, "127.0.0.1", 0)
    fwd_port = fwd_server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", fwd_port)
    line = b"x" * PAYLOAD + b"\n"
    start = time.perf_counter()
    for _ in range(count):
        writer.write(line)
        await writer.drain()
    await done.wait()
    elapsed = time.perf_counter() - start
    writer.close()
    await writer.wait_closed()
    await ended.wait()  # the forwarder passed the end on: no handler is cut off mid-read
    for server in (fwd_server, sink_server):
        server.close()
        await server.wait_closed()
    return count / elapsed


# -- switchboard ---------------------------------------------------------------------------------


def b_holds(b: Device, origin: str, seq: int) -> bool:
    rows = b.call("events", where=f"origin = '{origin}' AND seq = {seq}")
    return bool(rows)


def wait_holds(b: Device, origin: str, seq: int, limit: float = 600) -> float:
    start = time.perf_counter()
    while not b_holds(b, origin, seq):
        if time.perf_counter() - start > limit:
            raise SystemExit(f"bench: B did not reach seq {seq} within {limit} s")
        time.sleep(0.02)
    return time.perf_counter()


class InProcessA:
    """Device A's daemon in this process, in a thread with its own event loop."""

    def __init__(self, home: Path) -> None:
        self.settings = load_settings({"SWITCHBOARD_HOME": str(home)})
        self.loop = runloop.new_loop()  # the loop a daemon process runs on
        self.ready = threading.Event()
        self.daemon: Daemon | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.daemon = Daemon(self.settings)
            await self.daemon.serve(self.ready.set)

        self.loop.run_until_complete(main())

    def append(self, count: int, chunk: int = 1000) -> None:
        assert self.daemon is not None
        log = self.daemon.log
        for start in range(0, count, chunk):
            items = [
                ("luna", FileEdited(path=f"src/file{n}.py", tool="Edit"))
                for n in range(start, min(count, start + chunk))
            ]
            asyncio.run_coroutine_threadsafe(log.append_many(items), self.loop).result()

    def stop(self) -> None:
        if self.daemon is not None:
            self.loop.call_soon_threadsafe(self.daemon.shutdown)
        self.thread.join(30)


def send_wall(device: Device, runs: int) -> list[float]:
    """CLI ``send`` from B (its own daemon process) to luna on A, delivered receipt included."""
    samples = []
    for n in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "switchboard", "--as", "nova", "send", "@luna", "--", f"w{n}"],
            env=device.env,
            capture_output=True,
            text=True,
            check=False,
        )
        samples.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"bench: send failed: {done.stderr.strip()}")
    return samples


def cpu_seconds(device: Device) -> float:
    """CPU time (user + system) a device's daemon process has used so far (Linux)."""
    assert device.proc is not None
    fields = Path(f"/proc/{device.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def stage(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="also print the latency's legs, hop by hop (the daemons trace on: later figures pay)",
    )
    parser.add_argument(
        "--sync-only",
        action="store_true",
        help="only parts 2 and 3 (throughput and catch-up), each with its floor",
    )
    args = parser.parse_args()
    n_lat, n_tp, n_catch = (200, 5_000, 10_000) if args.quick else (1_000, 50_000, 100_000)
    results: dict[str, Any] = {}

    if args.sync_only:
        n_lat = 1  # parts 1, 4 and 5 are skipped; their floors shrink to nothing
    rtt = asyncio.run(tcp_round_trip(n_lat))
    fwd = asyncio.run(forwarder_rate(n_tp))

    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        root = Path(tmp)
        fsyncs = fsync_times(root, n_lat)
        commits = commit_times(root, n_lat)
        chain = chain_latency(n_lat)
        trace_dir = root / "trace"
        trace_dir.mkdir()
        saved = dict(os.environ)
        if args.trace:  # the processes below write their hops (bench/tracing)
            os.environ.update(traced_env(trace_dir))
        relay = Relay(root / "relay").start()
        # Latency runs with A as its own process too, as a user runs it: the measuring threads
        # here must not share A's interpreter. Bulk appends need A in this process: it is
        # started on the same home after.
        a_dev = Device(root / "a", "a").start()
        b = Device(root / "b", "b").start()
        os.environ.clear()
        os.environ.update(saved)
        a: InProcessA | None = None
        try:
            pair(relay, a_dev, b)
            origin = a_dev.call("status")["device"]["id"]

            if not args.sync_only:
                stage("latency")
                lat, pairs = latency(a_dev, b, n_lat)
                if args.trace:
                    results["latency_legs"] = legs(trace_dir, pairs)
                results["latency"] = {
                    "p50_ms": pct(lat, 0.5) * 1e3,
                    "p99_ms": pct(lat, 0.99) * 1e3,
                    "n": len(lat),
                }

                stage("relay restart")
                results["relay_restart"] = measure_restart(relay, a_dev, b, cycles=5, down=1.0)
            a_dev.stop()
            a = InProcessA(root / "a")

            stage("throughput (JetStream publish floor first)")
            results["floor_jetstream_eps"] = jetstream_rate(n_tp, sealed_size())
            base = a.daemon.log.vector()[origin] if a.daemon else 0
            start, cpu_a, cpu_b = time.perf_counter(), _own_cpu(), cpu_seconds(b)
            a.append(n_tp)
            end = wait_holds(b, origin, base + n_tp)
            results["throughput_eps"] = n_tp / (end - start)
            results["throughput_cpu_us"] = {
                "a": (_own_cpu() - cpu_a) / n_tp * 1e6,  # this process: A's daemon, its appends
                "b": (cpu_seconds(b) - cpu_b) / n_tp * 1e6,
            }

            stage("catch-up (SQLite insert floor first)")
            results["floor_sqlite_insert_eps"] = sqlite_insert_rate(n_catch, root)
            b.stop()
            base = a.daemon.log.vector()[origin] if a.daemon else 0
            a.append(n_catch)
            a_dev.call("link.sync", timeout=600)
            # From B's daemon being up (it then reconnects and catches up) to holding it all;
            # the Python process start before that is not replication.
            b.start()
            start, cpu = time.perf_counter(), cpu_seconds(b)
            end = wait_holds(b, origin, base + n_catch)
            results["catch_up_eps"] = n_catch / (end - start)
            # B's own CPU per event: less swayed by other load on the machine than the rate.
            results["catch_up_b_cpu_us"] = (cpu_seconds(b) - cpu) / n_catch * 1e6

            if not args.sync_only:
                stage("send wall time")
                wall = send_wall(b, 30)
                results["send_wall_p50_ms"] = statistics.median(wall) * 1e3
        finally:
            with contextlib.suppress(Exception):
                b.stop()
            with contextlib.suppress(Exception):
                a_dev.stop()  # if latency failed while A was still a process
            if a is not None:
                a.stop()
            relay.kill()

    results["floor_forwarder_eps"] = fwd
    if not args.sync_only:
        results["floor_tcp_rtt"] = {"p50_ms": pct(rtt, 0.5) * 1e3, "p99_ms": pct(rtt, 0.99) * 1e3}
        results["floor_fsync"] = {
            "p50_ms": pct(fsyncs, 0.5) * 1e3,
            "p99_ms": pct(fsyncs, 0.99) * 1e3,
        }
        report_latency(lat, rtt, fsyncs, chain, commits)
        results["part_store_commit"] = {"p50_ms": pct(commits, 0.5) * 1e3}
        results["floor_chain"] = {"p50_ms": pct(chain, 0.5) * 1e3, "p99_ms": pct(chain, 0.99) * 1e3}
        if args.trace:
            print_legs(results["latency_legs"])
    print(
        f"throughput A->relay->B {results['throughput_eps']:,.0f} events/s  "
        f"(floor: asyncio forwarder {fwd:,.0f} msg/s, ratio "
        f"{fwd / results['throughput_eps']:.1f}x)"
    )
    js = results["floor_jetstream_eps"]
    print(
        f"  floor: JetStream acked publish {js:,.0f} msg/s (same size, windows of 256) -> "
        f"{results['throughput_eps'] / js:.2f} of it"
    )
    cpu = results["throughput_cpu_us"]
    print(f"  CPU per event: A (this process) {cpu['a']:.0f} us, B's daemon {cpu['b']:.0f} us")
    sql, catch = results["floor_sqlite_insert_eps"], results["catch_up_eps"]
    print(
        f"catch-up               {catch:,.0f} events/s into B's store  "
        f"(floor: SQLite executemany of the rows {sql:,.0f}/s -> {catch / sql:.2f} of it)"
    )
    print(f"  B's daemon used {results['catch_up_b_cpu_us']:.0f} us of CPU per event caught up")
    if not args.sync_only:
        print(f"switchboard send       p50 {results['send_wall_p50_ms']:.1f} ms wall (30 runs)")
        print(report_restart(results["relay_restart"]))
    out = Path(os.environ.get("SWITCHBOARD_BENCH_OUT", "bench/results.json"))
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"(written to {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
