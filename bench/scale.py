"""``make bench`` (scale): many devices on one embedded relay, and on NATS JetStream.

Light clients stand in for daemons: for the relay, the real sans-IO ``SyncSession`` over the
real websocket transport (handshake, Have, Batch, Ack; no store); for NATS, one connection
with an ordered consumer on the group's stream, as ``NatsLink`` has. They are spread over
``--procs`` worker processes; a coordinator process sends. Measured, per backbone:

- connect time: all devices established (total, and per device p50/p99);
- memory per connected device: the relay's (or nats-server's) RSS growth / devices;
- fan-out latency: one event broadcast to every device, p50/p99 of its arrival;
- saturation: ``--senders`` devices send single-event batches as fast as they can for
  ``--seconds``; events/s accepted and deliveries/s, with the backbone's CPU use (a process
  at ~100 % of one core is saturated: the relay is one asyncio process).

Beside them, two floors of the same run: as many bare websocket connections (connect, one echo
round trip, then idle) to a minimal websockets echo server in its own process, with the same
options as the relay's (no compression, no keepalive): what the library and the interpreter
cost per connection before the relay does anything; the same connections to an echo server
built as the relay's is (websockets' sans-IO ``ServerProtocol`` under an ``asyncio.Protocol``,
no task per connection): the floor of the relay's design; and as many bare TCP connections to
an asyncio-streams echo server (``asyncio.start_server``): what asyncio alone costs (with one
task per connection, as the relay has). Floor connections close normally at the end (code 1000,
no tracebacks in the echo server).

The default run (200 devices) takes a couple of minutes on 2 cores; ``--devices 1000`` is the
issue's full figure. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "brokers"), str(ROOT / "tests" / "integration")]

from brokerlab import NatsServer  # noqa: E402
from cluster import Relay  # noqa: E402

from switchboard.crypto import GroupKeys, new_group_secret  # noqa: E402
from switchboard.errors import TransportError  # noqa: E402
from switchboard.proto.frames import Batch, encode_frame  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


# -- light clients -------------------------------------------------------------------------------


class RelayClient:
    """A device without a store: a SyncSession over a websocket, counting what arrives."""

    def __init__(self, url: str, keys: GroupKeys, create: bool = False) -> None:
        self.url, self.keys, self.create = url, keys, create
        self.received = 0
        self.first_marker: float | None = None
        self.established = asyncio.Event()
        self.seq = 0
        # One writer sends the session's frames in order; the receive loop only wakes it, so
        # this device goes on reading while its writes wait (as links/relay.py does).
        self._dirty = asyncio.Event()
        self._written = asyncio.Event()

    async def run(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
            Ed25519PrivateKey,
        )

        from switchboard import transports  # noqa: PLC0415
        from switchboard.crypto import public_bytes  # noqa: PLC0415
        from switchboard.ids import device_id_from_public_key  # noqa: PLC0415
        from switchboard.proto.session import Role, SyncSession  # noqa: PLC0415

        identity = Ed25519PrivateKey.generate()
        self.device_id = device_id_from_public_key(public_bytes(identity))
        loop = asyncio.get_running_loop()
        self.transport = await transports.connect(self.url, timeout=60)
        self.session = session = SyncSession(
            Role.CLIENT, self.device_id, os.urandom(32), loop.time(), group=self.keys.group,
            group_auth=self.keys.auth, identity=identity, pinned_server_key=None,
            create=self.create,
        )  # fmt: skip
        session.start()
        writer = loop.create_task(self._write_loop())
        await self.flush()
        try:
            await self._receive_loop(session)
        finally:
            writer.cancel()

    async def _receive_loop(self, session: Any) -> None:
        from switchboard.proto.session import BatchReceived, Established  # noqa: PLC0415

        loop = asyncio.get_running_loop()
        held: dict[str, int] = {}
        while True:
            session.receive_frame(await self.transport.receive())
            for event in session.events_received():
                if isinstance(event, Established):
                    session.send_have({})
                    self.established.set()
                elif isinstance(event, BatchReceived):
                    now = time.monotonic()
                    for env in event.envelopes:
                        held[env.origin] = max(held.get(env.origin, 0), env.seq)
                        if env.origin == "marker" and self.first_marker is None:
                            self.first_marker = now
                    self.received += len(event.envelopes)
                    session.send_ack(held)
            session.tick(loop.time())
            self._dirty.set()

    async def _write_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            for frame in self.session.frames_to_send():
                await self.transport.send(frame)
            if not self._dirty.is_set():
                self._written.set()

    async def flush(self) -> None:
        """Wake the writer and wait until it has written everything queued so far."""
        self._written.clear()
        self._dirty.set()
        await self._written.wait()

    async def send_one(self, origin: str | None = None) -> None:
        self.seq += 1
        env = self.keys.seal(origin or self.device_id, self.seq, b"x" * 200)
        self.session.send_batch([env])
        await self.flush()


class NatsClient:
    """A device without a store: a NATS connection with an ordered consumer on the stream."""

    def __init__(self, url: str, keys: GroupKeys, create: bool = False) -> None:
        self.url, self.keys, self.create = url, keys, create
        self.received = 0
        self.first_marker: float | None = None
        self.established = asyncio.Event()
        self.seq = 0
        self.stream = f"SB_{keys.group[:16]}"
        self.device_id = uuid.uuid4().hex[:26]

    async def run(self) -> None:
        import nats  # noqa: PLC0415
        from nats.js import api  # noqa: PLC0415

        self.nc = await nats.connect(self.url, max_reconnect_attempts=-1)
        self.js = self.nc.jetstream()
        if self.create:
            await self.js.add_stream(
                name=self.stream, subjects=[f"{self.stream}.*"], max_consumers=100_000
            )

        async def cb(msg: Any) -> None:
            if msg.subject.endswith(".marker") and self.first_marker is None:
                self.first_marker = time.monotonic()
            self.received += 1

        await self.js.subscribe(f"{self.stream}.*", cb=cb, ordered_consumer=True,
                                deliver_policy=api.DeliverPolicy.NEW)  # fmt: skip
        self.established.set()
        await asyncio.Event().wait()

    async def send_one(self, origin: str | None = None) -> None:
        self.seq += 1
        env = self.keys.seal(origin or self.device_id, self.seq, b"x" * 200)
        await self.js.publish(f"{self.stream}.{origin or self.device_id}",
                              encode_frame(Batch(envelopes=[env])))  # fmt: skip


def client_class(
    kind: str,
) -> type[RelayClient] | type[NatsClient] | type[BareClient] | type[TcpClient]:
    return {"relay": RelayClient, "nats": NatsClient, "floor": BareClient, "sansio": BareClient,
            "tcp": TcpClient}[kind]  # fmt: skip


# -- the floor: bare websockets -----------------------------------------------------------------

ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass

async def main():
    async with serve(echo, "127.0.0.1", 0, compression=None, ping_interval=None,
                     max_queue=4) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


class BareClient:
    """A bare websocket connection to the echo server: connect, one round trip, then idle."""

    def __init__(self, url: str, keys: GroupKeys | None = None, create: bool = False) -> None:
        self.url = url
        self.established = asyncio.Event()

    async def run(self) -> None:
        from websockets.asyncio.client import connect  # noqa: PLC0415

        async with connect(self.url, compression=None, ping_interval=None) as ws:
            await ws.send(b"x" * 64)
            await ws.recv()
            self.established.set()
            with contextlib.suppress(asyncio.CancelledError):  # then close normally (1000)
                await asyncio.Event().wait()


SANSIO_SERVER = """
import asyncio
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

class Echo(asyncio.Protocol):
    __slots__ = ("ws", "transport")

    def connection_made(self, transport):
        self.transport, self.ws = transport, ServerProtocol(max_size=2**20)

    def data_received(self, data):
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Request):
                self.ws.send_response(self.ws.accept(event))
                event.headers.clear()
            elif isinstance(event, Frame) and event.opcode is Opcode.BINARY:
                self.ws.send_binary(event.data)
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            else:
                self.transport.write_eof()

    def eof_received(self):
        self.ws.receive_eof()

async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

TCP_SERVER = """
import asyncio

async def echo(reader, writer):
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class TcpClient:
    """A bare TCP connection to the asyncio-streams echo server: the same life as BareClient."""

    def __init__(self, url: str, keys: GroupKeys | None = None, create: bool = False) -> None:
        self.url = url
        self.established = asyncio.Event()

    async def run(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x" * 64)
        await reader.readexactly(64)
        self.established.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        writer.close()


async def measure_floor(args: argparse.Namespace, kind: str = "floor") -> dict[str, Any]:
    import subprocess  # noqa: PLC0415

    server = {"floor": ECHO_SERVER, "sansio": SANSIO_SERVER, "tcp": TCP_SERVER}[kind]
    cmd = [sys.executable, "-c", server]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220 - once, at start
    try:
        assert proc.stdout is not None
        url = f"ws://127.0.0.1:{proc.stdout.readline().strip()}"
        first = client_class(kind)(url)
        runner = asyncio.create_task(first.run())
        await asyncio.wait_for(first.established.wait(), 60)
        base_rss = rss_kib(proc.pid)
        ctx = mp.get_context("spawn")
        per = [args.devices // args.procs + (i < args.devices % args.procs)
               for i in range(args.procs)]  # fmt: skip
        inboxes = [ctx.Queue() for _ in per]
        out = ctx.Queue()
        start = time.monotonic()
        procs = [ctx.Process(target=worker, args=(kind, url, "", b"", n, q, out))
                 for n, q in zip(per, inboxes, strict=True)]  # fmt: skip
        for p in procs:
            p.start()
        durations: list[float] = []
        for _ in procs:
            durations += (await asyncio.to_thread(out.get))[1]
        connect_total = time.monotonic() - start
        rss_per = (rss_kib(proc.pid) - base_rss) / args.devices
        for q in inboxes:
            q.put("stop")
        for p in procs:
            p.join(30)
        runner.cancel()
    finally:
        proc.kill()
        proc.wait()
    return {"kind": kind, "devices": args.devices, "connect_total_s": connect_total,
            "connect_p50_ms": pct(durations, 0.5) * 1e3, "rss_per_device_kib": rss_per}  # fmt: skip


def show_floor(r: dict[str, Any]) -> None:
    name = {"floor": "bare websockets", "sansio": "websockets sans-IO over asyncio.Protocol",
            "tcp": "bare asyncio streams"}[r["kind"]]  # fmt: skip
    print(f"floor ({name} echo server): {r['devices']} connections")
    print(f"  connect: all in {r['connect_total_s']:.1f} s; per connection p50 "
          f"{r['connect_p50_ms']:.1f} ms")  # fmt: skip
    print(f"  memory: {r['rss_per_device_kib']:.1f} KiB of server RSS per connection")


# -- workers -------------------------------------------------------------------------------------


def worker(
    kind: str, url: str, group: str, secret: bytes, count: int, inbox: Any, out: Any
) -> None:
    keys = GroupKeys.derive(group, secret) if group else None
    asyncio.run(_worker(kind, url, keys, count, inbox, out))


async def _worker(
    kind: str, url: str, keys: GroupKeys | None, count: int, inbox: Any, out: Any
) -> None:
    clients = [client_class(kind)(url, keys) for _ in range(count)]
    durations = []
    tasks = []
    for client in clients:  # one at a time: connect time per device, not a thundering herd
        start = time.monotonic()
        tasks.append(asyncio.create_task(client.run()))
        await asyncio.wait_for(client.established.wait(), 120)
        durations.append(time.monotonic() - start)
    out.put(("connected", durations))
    while (command := await asyncio.to_thread(inbox.get)) != "stop":
        if command == "marker":
            await wait_all(lambda: all(c.first_marker for c in clients), 60)
            out.put(("marker", [c.first_marker for c in clients]))
        elif command == "count":
            out.put(("count", sum(c.received for c in clients)))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)  # floors close normally meanwhile


async def wait_all(cond: Any, seconds: float) -> None:
    # Polling: the condition spans many clients' counters, not one event to wait on.
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:  # noqa: ASYNC110 - see above
        await asyncio.sleep(0.01)


# -- the coordinator -----------------------------------------------------------------------------


async def measure(kind: str, url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    group, secret = uuid.uuid4().hex, new_group_secret()
    keys = GroupKeys.derive(group, secret)
    cls = client_class(kind)
    first = cls(url, keys, create=True)
    runners = [asyncio.create_task(first.run())]
    await asyncio.wait_for(first.established.wait(), 60)
    base_rss = rss_kib(pid)
    ctx = mp.get_context("spawn")
    per = [args.devices // args.procs + (i < args.devices % args.procs) for i in range(args.procs)]
    inboxes = [ctx.Queue() for _ in per]
    out = ctx.Queue()
    start, connect_cpu0 = time.monotonic(), cpu_seconds(pid)
    procs = [ctx.Process(target=worker, args=(kind, url, group, secret, n, q, out))
             for n, q in zip(per, inboxes, strict=True)]  # fmt: skip
    for proc in procs:
        proc.start()
    durations: list[float] = []
    for _ in procs:
        durations += (await asyncio.to_thread(out.get))[1]
    connect_total = time.monotonic() - start
    rss_per = (rss_kib(pid) - base_rss) / args.devices
    connect_cpu = cpu_seconds(pid) - connect_cpu0
    print(f"{kind}: {args.devices} devices connected in {connect_total:.1f} s "
          f"(backbone CPU {connect_cpu:.1f} s), {rss_per:.1f} KiB of backbone RSS per device",
          flush=True)  # fmt: skip
    senders = [cls(url, keys) for _ in range(args.senders)]
    for sender in senders:
        runners.append(asyncio.create_task(sender.run()))
        await asyncio.wait_for(sender.established.wait(), 60)
    # Let the group settle: presence of the senders out (the relay coalesces it for 20 ms).
    await asyncio.sleep(0.2)
    # Fan-out: one event to every device.
    sent_at = time.monotonic()
    await first.send_one("marker")
    for q in inboxes:
        q.put("marker")
    arrivals: list[float] = []
    for _ in procs:
        arrivals += [a - sent_at for a in (await asyncio.to_thread(out.get))[1] if a]
    print(f"{kind}: fan-out of one event to {len(arrivals)} devices: p50 "
          f"{pct(arrivals, 0.5) * 1e3:.0f} ms p99 {pct(arrivals, 0.99) * 1e3:.0f} ms",
          flush=True)  # fmt: skip
    # Saturation: senders push single-event batches for a while.
    before = await counts(inboxes, out)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    sent = await saturate(senders, args.seconds)
    elapsed = time.monotonic() - t0
    cpu = (cpu_seconds(pid) - cpu0) / elapsed
    after = await counts(inboxes, out)
    for q in inboxes:
        q.put("stop")
    for proc in procs:
        proc.join(30)
    for task in runners:
        task.cancel()
    return {"kind": kind, "devices": args.devices, "connect_total_s": connect_total,
            "connect_p50_ms": pct(durations, 0.5) * 1e3,
            "connect_p99_ms": pct(durations, 0.99) * 1e3,
            "rss_per_device_kib": rss_per, "fanout_p50_ms": pct(arrivals, 0.5) * 1e3,
            "fanout_p99_ms": pct(arrivals, 0.99) * 1e3, "fanout_reached": len(arrivals),
            "ingest_per_s": sent / elapsed, "deliveries_per_s": (after - before) / elapsed,
            "backbone_cpu": cpu}  # fmt: skip


async def counts(inboxes: list[Any], out: Any) -> int:
    for q in inboxes:
        q.put("count")
    return sum([(await asyncio.to_thread(out.get))[1] for _ in inboxes])


async def saturate(senders: list[Any], seconds: float) -> int:
    deadline = time.monotonic() + seconds

    async def blast(sender: Any) -> int:
        n = 0
        while time.monotonic() < deadline:
            try:
                await sender.send_one()
            except TransportError as exc:  # the relay dropped it: count what it sent
                print(f"  (a sender stopped after {n} events: {exc})", flush=True)
                break
            n += 1
            await asyncio.sleep(0)  # let its own reader run (the relay's Pings, Acks)
        return n

    return sum(await asyncio.gather(*(blast(s) for s in senders)))


def show(r: dict[str, Any]) -> None:
    print(f"{r['kind']}: {r['devices']} devices")
    print(
        f"  connect: all in {r['connect_total_s']:.1f} s; per device p50 "
        f"{r['connect_p50_ms']:.1f} ms p99 {r['connect_p99_ms']:.1f} ms"
    )
    print(f"  memory: {r['rss_per_device_kib']:.1f} KiB of backbone RSS per connected device")
    print(
        f"  fan-out of one event to {r['fanout_reached']} devices: "
        f"p50 {r['fanout_p50_ms']:.0f} ms "
        f"p99 {r['fanout_p99_ms']:.0f} ms"
    )
    print(f"  saturation: {r['ingest_per_s']:,.0f} events/s in, {r['deliveries_per_s']:,.0f} "
          f"deliveries/s out, backbone CPU {r['backbone_cpu'] * 100:.0f}% of one core")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200, help="light clients (issue: 1000)")
    parser.add_argument("--procs", type=int, default=4, help="worker processes")
    parser.add_argument("--senders", type=int, default=4, help="devices sending at saturation")
    parser.add_argument("--seconds", type=float, default=5.0, help="saturation window")
    parser.add_argument("--only", choices=("relay", "nats", "floor"), help="one part only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "floor"):
            show_floor(asyncio.run(measure_floor(args)))
            show_floor(asyncio.run(measure_floor(args, "sansio")))
            show_floor(asyncio.run(measure_floor(args, "tcp")))
        if args.only in (None, "relay"):
            relay = Relay(Path(tmp) / "relay").start()
            try:
                assert relay.proc is not None
                show(asyncio.run(measure("relay", relay.url, relay.proc.pid, args)))
            finally:
                relay.kill()
        if args.only in (None, "nats"):
            server = NatsServer(Path(tmp) / "nats", extra="max_connections: 100000\n")
            server.start()
            try:
                assert server.proc is not None
                show(asyncio.run(measure("nats", server.url, server.proc.pid, args)))
            finally:
                server.stop()


if __name__ == "__main__":
    main()
