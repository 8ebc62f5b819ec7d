"""``make bench`` (brokers): Switchboard links through Mosquitto and NATS, each beside its floor.

For each broker, with the sender in a process of its own (as two devices are) and the receiver
in this one, both on the loop the daemon runs (``switchboard.runloop``: uvloop where installed):

1. **Floor**: a plain client publishes to a plain subscriber on the same broker, one message
   at a time (MQTT QoS 1 / JetStream publish with ack), with the payload size of one sealed
   Switchboard event: latency p50/p99 and throughput (messages/s).
2. **Link**: two devices (an ``EventLog`` and a real ``MqttLink``/``NatsLink`` each) in one
   group on the same broker: an event appended on A, until it is stored in B's log. Latency
   p50/p99 and throughput (events/s), each as a ratio to the floor. *Transit* is sealing on A
   until the envelopes are opened on B: the link alone, without the durable store transaction
   on each side, which is what the floor is comparable with. The stores sit on tmpfs when
   there is one, so the figures isolate the link from the disk's fsync (each figure says
   where its store was).
3. **Catch-up by NATS replay**: a third device with an empty log joins a stream holding
   ``--replay`` events; events/s into its store.

Figures are printed (and written as JSON with ``--json``), never asserted. ``--quick`` shrinks
the counts for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "brokers"), str(ROOT / "tests" / "integration")]

import aiomqtt  # noqa: E402
import nats  # noqa: E402
from brokerlab import Mosquitto, NatsServer  # noqa: E402

from switchboard.crypto import GroupKeys, new_group_secret  # noqa: E402
from switchboard.events import MessagePosted, encode_event  # noqa: E402
from switchboard.links.base import make_link  # noqa: E402
from switchboard.links.broker import BrokerLink  # noqa: E402
from switchboard.proto.frames import Batch, encode_frame  # noqa: E402
from switchboard.runloop import loop_kind, run  # noqa: E402
from switchboard.store.db import Database  # noqa: E402
from switchboard.store.log import EventLog  # noqa: E402

TEXT = "x" * 200  # about a one-line agent message, as bench/run.py
# The latency round alternates blocks of this many messages, floor then link, so that both
# see the same machine (on a shared VM the floor alone moves by a third between runs).
BLOCK = 50
BODY = MessagePosted(to=["@nova"], recipients=[], text=TEXT)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def payload_size() -> int:
    """Bytes of one sealed event in a Batch, as the links publish it."""
    keys = GroupKeys.derive("bench", new_group_secret())
    dev = "a" * 26
    body = MessagePosted(to=["@nova"], recipients=[f"nova:{dev}"], text=TEXT)
    from switchboard.events import Event  # noqa: PLC0415

    event = Event(origin=dev, seq=1, ts="2026-01-01T00:00:00.000Z", type="message_posted",
                  agent="luna", data=msgspec_to_dict(body))  # fmt: skip
    env = keys.seal(event.origin, event.seq, encode_event(event))
    return len(encode_frame(Batch(envelopes=[env])))


def msgspec_to_dict(body: Any) -> dict[str, Any]:
    import msgspec  # noqa: PLC0415

    data = msgspec.to_builtins(body)
    data.pop("type", None)
    return data  # type: ignore[no-any-return]


# -- the sending side, in its own process ------------------------------------------------------
#
# Sender and receiver are different devices, so they run in different processes (as in
# ``bench/run.py``): the receiver's latency does not include the sender's own work after a
# send (its acknowledgement, its own copy of a message), which on one loop would sit in the
# receiver's path. Both processes stamp ``time.perf_counter()`` (CLOCK_MONOTONIC: one clock for
# the machine). The floor is measured the same way, interleaved with the link (``BLOCK``).


def sender_process(conn: Connection, setup: dict[str, Any]) -> None:
    """Entry point of the sending process: run commands from ``conn`` until ``done``."""
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's "pending publish calls"
    run(serve_sender(conn, setup))


async def serve_sender(conn: Connection, setup: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    senders = {which: await SENDERS[part["kind"]].open(part) for which, part in setup.items()}
    conn.send("ready")
    try:
        while (command := await commands.get())[0] != "done":
            verb, which, *numbers = command
            sender = senders[which]
            await (sender.one(*numbers) if verb == "one" else sender.burst(*numbers))
        conn.send({which: sender.marks for which, sender in senders.items()})
    finally:
        loop.remove_reader(conn.fileno())
        for sender in senders.values():
            await sender.close()


class Sender:
    """What the sending process does; ``marks`` holds its timestamps by message number."""

    marks: dict[str, dict[int, float]]

    @classmethod
    async def open(cls, setup: dict[str, Any]) -> Sender:
        raise NotImplementedError

    async def one(self, number: int) -> None:
        raise NotImplementedError

    async def burst(self, first: int, count: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def numbered(number: int, size: int) -> bytes:
    return number.to_bytes(8, "big") + bytes(size - 8)


class MqttFloorSender(Sender):
    """A plain aiomqtt client publishing numbered payloads at QoS 1."""

    @classmethod
    async def open(cls, setup: dict[str, Any]) -> Sender:
        self = cls()
        self.marks, self.topic, self.size = {"start": {}}, setup["topic"], setup["size"]
        self.client = aiomqtt.Client("127.0.0.1", setup["port"])
        await self.client.__aenter__()
        return self

    async def one(self, number: int) -> None:
        self.marks["start"][number] = time.perf_counter()
        await self.client.publish(self.topic, numbered(number, self.size), qos=1)

    async def burst(self, first: int, count: int) -> None:
        await asyncio.gather(*(self.client.publish(self.topic, numbered(n, self.size), qos=1)
                               for n in range(first, first + count)))  # fmt: skip

    async def close(self) -> None:
        await self.client.__aexit__(None, None, None)


class NatsFloorSender(Sender):
    """A plain nats-py client publishing numbered payloads to a stream (acknowledged)."""

    @classmethod
    async def open(cls, setup: dict[str, Any]) -> Sender:
        self = cls()
        self.marks, self.subject, self.size = {"start": {}}, setup["subject"], setup["size"]
        self.nc = await nats.connect(setup["url"])
        self.js = self.nc.jetstream()
        return self

    async def one(self, number: int) -> None:
        self.marks["start"][number] = time.perf_counter()
        await self.js.publish(self.subject, numbered(number, self.size))

    async def burst(self, first: int, count: int) -> None:
        for n in range(first, first + count):  # sequential acked publishes, as the link's
            await self.js.publish(self.subject, numbered(n, self.size))

    async def close(self) -> None:
        await self.nc.close()


class LinkSender(Sender):
    """Device A: an ``EventLog`` and a real broker link; message number = event seq."""

    @classmethod
    async def open(cls, setup: dict[str, Any]) -> Sender:
        self = cls()
        self.marks = {"start": {}, "sealing": {}}
        self.dev = Dev(Path(setup["home"]), setup["url"], setup["group"], create=True)
        self.dev.link.start()
        assert await self.dev.link.wait_established(20) is None
        batches, sealing = self.dev.link.batches, self.marks["sealing"]

        def timed_batches(events: list[Any]) -> Any:
            now = time.perf_counter()
            for event in events:
                sealing.setdefault(event.seq, now)
            return batches(events)

        self.dev.link.batches = timed_batches  # type: ignore[method-assign]
        return self

    async def one(self, number: int) -> None:
        start = time.perf_counter()
        stored = await self.dev.log.append("luna", BODY)
        assert stored[1].seq == number, "numbers are our seqs"
        self.marks["start"][number] = start

    async def burst(self, first: int, count: int) -> None:
        for _ in range(count // 50):
            await self.dev.log.append_many([("luna", BODY)] * 50)

    async def close(self) -> None:
        await self.dev.close()


SENDERS: dict[str, type[Sender]] = {
    "mqtt-floor": MqttFloorSender,
    "nats-floor": NatsFloorSender,
    "link": LinkSender,
}


class Remote:
    """The main process's handle on the sending process."""

    def __init__(self, setup: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=sender_process, args=(child, setup), daemon=True)
        self.proc.start()
        child.close()

    async def ready(self) -> None:
        answer = await asyncio.to_thread(self.conn.recv)
        assert answer == "ready", answer

    def send(self, *command: Any) -> None:
        self.conn.send(command)

    async def finish(self) -> dict[str, dict[str, dict[int, float]]]:
        self.send("done")
        marks: dict[str, dict[str, dict[int, float]]] = await asyncio.to_thread(self.conn.recv)
        await asyncio.to_thread(self.proc.join, 30)
        return marks


# -- the receiving side, here --------------------------------------------------------------------


class Receiver:
    """Arrival times by message number."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.changed = asyncio.Event()

    def got(self, number: int) -> None:
        self.arrived[number] = time.perf_counter()
        self.changed.set()

    async def wait(self, number: int) -> None:
        while number not in self.arrived:
            self.changed.clear()
            await self.changed.wait()

    async def close(self) -> None:
        raise NotImplementedError


class MqttFloorReceiver(Receiver):
    @classmethod
    async def open(cls, port: int, size: int) -> tuple[MqttFloorReceiver, dict[str, Any]]:
        self = cls()
        topic = f"floor/{uuid.uuid4().hex}"
        self.client = aiomqtt.Client("127.0.0.1", port)
        await self.client.__aenter__()
        await self.client.subscribe(topic, qos=1)
        self.task = asyncio.create_task(self.read())
        return self, {"kind": "mqtt-floor", "port": port, "topic": topic, "size": size}

    async def read(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            self.got(int.from_bytes(message.payload[:8], "big"))

    async def close(self) -> None:
        self.task.cancel()
        await self.client.__aexit__(None, None, None)


class NatsFloorReceiver(Receiver):
    @classmethod
    async def open(cls, url: str, size: int) -> tuple[NatsFloorReceiver, dict[str, Any]]:
        self = cls()
        self.nc = await nats.connect(url)
        self.js = self.nc.jetstream()
        self.name = f"FLOOR_{uuid.uuid4().hex[:8]}"
        await self.js.add_stream(name=self.name, subjects=[f"{self.name}.x"])

        async def cb(msg: Any) -> None:
            self.got(int.from_bytes(msg.data[:8], "big"))

        await self.js.subscribe(f"{self.name}.x", cb=cb, ordered_consumer=True,
                                deliver_policy=nats.js.api.DeliverPolicy.NEW)  # fmt: skip
        return self, {"kind": "nats-floor", "url": url, "subject": f"{self.name}.x", "size": size}

    async def close(self) -> None:
        await self.js.delete_stream(self.name)
        await self.nc.close()


class LinkReceiver(Receiver):
    """Device B: stores what A's link carries; ``opened`` marks envelopes opened, by seq."""

    def __init__(self, home: Path, url: str, group: dict[str, Any]) -> None:
        super().__init__()
        self.dev = Dev(home, url, group, create=False)
        self.opened: dict[int, float] = {}
        self.dev.log.add_listener(lambda stored: [self.got(event.seq) for _, event in stored])
        store, opened = self.dev.link.store, self.opened

        async def timed_store(events: Any, also: Any = None) -> Any:
            now = time.perf_counter()
            for event in events:
                opened.setdefault(event.seq, now)
            return await store(events, also)

        self.dev.link.store = timed_store  # type: ignore[method-assign]

    async def close(self) -> None:
        await self.dev.close()


def figures(start: dict[int, float], end: dict[int, float], count: int) -> tuple[float, float]:
    """p50 and p99 of ``end - start`` over the latency round (numbers 1 to ``count``), in ms."""
    spans = [end[n] - start[n] for n in range(1, count + 1)]
    return pct(spans, 0.5) * 1e3, pct(spans, 0.99) * 1e3


async def burst_rate(
    remote: Remote, which: str, receiver: Receiver, first: int, count: int
) -> float:
    start = time.perf_counter()
    remote.send("burst", which, first, count)
    await receiver.wait(first + count - 1)
    return count / (time.perf_counter() - start)


async def measure(
    broker: str, url: str, port: int, root: Path, count: int, burst: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The floor and the link, interleaved: return their figures."""
    size = payload_size()
    floor: Receiver
    if broker == "mqtt":
        floor, floor_setup = await MqttFloorReceiver.open(port, size)
    else:
        floor, floor_setup = await NatsFloorReceiver.open(url, size)
    group = {"group_id": uuid.uuid4().hex, "secret": new_group_secret(), "relay_key": None}
    link_setup = {"kind": "link", "url": url, "group": group, "home": str(root / "a")}
    remote = Remote({"floor": floor_setup, "link": link_setup})
    b = LinkReceiver(root / "b", url, group)
    await remote.ready()  # A created the group on the broker
    b.dev.link.start()
    assert await b.dev.link.wait_established(20) is None
    await asyncio.sleep(1.5)  # let subscriptions and the first Have round settle
    for first in range(1, count + 1, BLOCK):
        for which, receiver in (("floor", floor), ("link", b)):
            for number in range(first, min(first + BLOCK, count + 1)):
                remote.send("one", which, number)
                await receiver.wait(number)
    floor_rate = await burst_rate(remote, "floor", floor, count + 1, burst)
    link_rate = await burst_rate(remote, "link", b, count + 1, burst)
    marks = await remote.finish()
    await b.close()
    await floor.close()
    f50, f99 = figures(marks["floor"]["start"], floor.arrived, count)
    p50, p99 = figures(marks["link"]["start"], b.arrived, count)
    t50, t99 = figures(marks["link"]["sealing"], b.opened, count)
    paired = paired_ratio(
        (marks["floor"]["start"], floor.arrived), (marks["link"]["sealing"], b.opened), count
    )
    return (
        {"p50_ms": f50, "p99_ms": f99, "per_s": floor_rate},
        {"p50_ms": p50, "p99_ms": p99, "per_s": link_rate,
         "transit_p50_ms": t50, "transit_p99_ms": t99, "transit_paired_ratio": paired},
    )  # fmt: skip


def paired_ratio(
    floor: tuple[dict[int, float], dict[int, float]],
    link: tuple[dict[int, float], dict[int, float]],
    count: int,
) -> float:
    """Median over the blocks of (link p50 / floor p50 of the block just before it).

    Each pair of blocks ran back to back, so a slow patch of the machine weighs on both sides
    of a ratio instead of on one side of the overall ratio of p50s.
    """
    ratios = []
    for first in range(1, count + 1, BLOCK):
        block = range(first, min(first + BLOCK, count + 1))
        f = pct([floor[1][n] - floor[0][n] for n in block], 0.5)
        ln = pct([link[1][n] - link[0][n] for n in block], 0.5)
        ratios.append(ln / f)
    return pct(ratios, 0.5)


# -- links ---------------------------------------------------------------------------------------


class Dev:
    """One device for the bench: a store, a log and a broker link."""

    def __init__(self, home: Path, url: str, group: dict[str, Any], create: bool) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
            Ed25519PrivateKey,
        )

        from switchboard.crypto import public_bytes  # noqa: PLC0415
        from switchboard.ids import device_id_from_public_key  # noqa: PLC0415

        home.mkdir(parents=True)
        identity = Ed25519PrivateKey.generate()
        self.device_id = device_id_from_public_key(public_bytes(identity))
        self.db = Database(home / "switchboard.db")
        self.log = EventLog(self.db, self.device_id)
        row = {**group, "relay_url": url}
        self.link = make_link(
            row, log=self.log, device_id=self.device_id, identity=identity, create=create
        )
        assert isinstance(self.link, BrokerLink)
        self.log.add_listener(lambda _stored: self.link.notify())

    def count_of(self, origin: str) -> int:
        return self.log.vector().get(origin, 0)

    async def close(self) -> None:
        await self.link.stop()
        self.db.close()


async def nats_replay(url: str, root: Path, events: int) -> dict[str, float]:
    group = {"group_id": uuid.uuid4().hex, "secret": new_group_secret(), "relay_key": None}
    a = Dev(root / "ra", url, group, create=True)
    a.link.start()
    assert await a.link.wait_established(20) is None
    for _ in range(events // 500):
        await a.log.append_many([("luna", BODY)] * 500)
    assert await a.link.wait_synced(300)
    c = Dev(root / "rc", url, group, create=False)
    done = asyncio.Event()
    c.log.add_listener(lambda _: done.set() if c.count_of(a.device_id) >= events else None)
    start = time.perf_counter()
    c.link.start()
    await asyncio.wait_for(done.wait(), 600)  # a listener, not polling: the loop stays C's
    rate = events / (time.perf_counter() - start)
    await c.close()
    await a.close()
    return {"events": events, "per_s": rate}


def store_root() -> tuple[Path, str]:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(dir=shm)), "tmpfs"
    return Path(tempfile.mkdtemp()), "disk"


async def bench(broker: str, url: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    root, medium = store_root()
    floor, link = await measure(broker, url, port, root, args.count, args.burst)
    out: dict[str, Any] = {"broker": broker, "payload_bytes": payload_size(), "floor": floor,
                           "link": link, "store": medium, "loop": loop_kind()}  # fmt: skip
    out["ratio_p50"] = link["p50_ms"] / floor["p50_ms"]
    out["ratio_p99"] = link["p99_ms"] / floor["p99_ms"]
    out["transit_ratio_p50"] = link["transit_p50_ms"] / floor["p50_ms"]
    out["transit_ratio_p99"] = link["transit_p99_ms"] / floor["p99_ms"]
    out["throughput_ratio"] = link["per_s"] / floor["per_s"]
    if broker == "nats":
        out["replay"] = await nats_replay(url, root, args.replay)
    return out


def show(result: dict[str, Any]) -> None:
    f, ln = result["floor"], result["link"]
    print(f"{result['broker']}: payload {result['payload_bytes']} B, stores on {result['store']}, "
          f"{result['loop']} loop")  # fmt: skip
    print(f"  latency  floor p50 {f['p50_ms']:.2f} ms p99 {f['p99_ms']:.2f} ms | "
          f"link p50 {ln['p50_ms']:.2f} ms p99 {ln['p99_ms']:.2f} ms | "
          f"ratio p50 {result['ratio_p50']:.2f}x p99 {result['ratio_p99']:.2f}x")  # fmt: skip
    print(f"  link transit (seal -> broker -> opened, no stores) "
          f"p50 {ln['transit_p50_ms']:.2f} ms "
          f"p99 {ln['transit_p99_ms']:.2f} ms | ratio p50 {result['transit_ratio_p50']:.2f}x "
          f"p99 {result['transit_ratio_p99']:.2f}x | paired by block "
          f"{ln['transit_paired_ratio']:.2f}x")  # fmt: skip
    print(f"  throughput  floor {f['per_s']:,.0f} msg/s | link {ln['per_s']:,.0f} events/s | "
          f"ratio {result['throughput_ratio']:.2f}x")  # fmt: skip
    if "replay" in result:
        r = result["replay"]
        print(f"  catch-up by NATS replay: {r['events']:,} events at {r['per_s']:,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's "pending publish calls"
    args.count, args.burst, args.replay = (100, 500, 2000) if args.quick else (1000, 5000, 50000)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        mosq = Mosquitto(Path(tmp) / "mosquitto")
        server = NatsServer(Path(tmp) / "nats")
        mosq.start()
        server.start()
        try:
            results.append(run(bench("mqtt", mosq.url, mosq.port, args)))
            show(results[-1])
            results.append(run(bench("nats", server.url, server.port, args)))
            show(results[-1])
        finally:
            mosq.stop()
            server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
