"""``make bench`` (brokers): Switchboard links through Mosquitto and NATS, each beside its floor.

For each broker, in this one process:

1. **Floor**: a plain client publishes to a plain subscriber on the same broker, one message
   at a time (MQTT QoS 1 / JetStream publish with ack), with the payload size of one sealed
   Switchboard event: latency p50/p99 and throughput (messages/s).
2. **Link**: two devices (an ``EventLog`` and a real ``MqttLink``/``NatsLink`` each) in one
   group on the same broker: an event appended on A, until it is stored in B's log. Latency
   p50/p99 and throughput (events/s), each as a ratio to the floor. The stores sit on tmpfs
   when there is one, so the figures isolate the link from the disk's fsync (each figure says
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
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
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
from switchboard.links.common import BrokerLink  # noqa: E402
from switchboard.proto.frames import Batch, encode_frame  # noqa: E402
from switchboard.store.db import Database  # noqa: E402
from switchboard.store.log import EventLog  # noqa: E402

TEXT = "x" * 200  # about a one-line agent message, as bench/run.py


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


# -- floors --------------------------------------------------------------------------------------


async def mqtt_floor(port: int, size: int, count: int, burst: int) -> dict[str, float]:
    topic = f"floor/{uuid.uuid4().hex}"
    got: asyncio.Queue[float] = asyncio.Queue()
    async with aiomqtt.Client("127.0.0.1", port) as sub, aiomqtt.Client("127.0.0.1", port) as pub:
        await sub.subscribe(topic, qos=1)

        async def reader() -> None:
            async for _ in sub.messages:
                got.put_nowait(time.perf_counter())

        task = asyncio.create_task(reader())
        payload = os.urandom(size)
        lat = []
        for _ in range(count):
            start = time.perf_counter()
            await pub.publish(topic, payload, qos=1)
            lat.append(await got.get() - start)
        start = time.perf_counter()
        await asyncio.gather(*(pub.publish(topic, payload, qos=1) for _ in range(burst)))
        for _ in range(burst):
            end = await got.get()
        task.cancel()
    return {"p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
            "per_s": burst / (end - start)}  # fmt: skip


async def nats_floor(url: str, size: int, count: int, burst: int) -> dict[str, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = f"FLOOR_{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=name, subjects=[f"{name}.x"])
    got: asyncio.Queue[float] = asyncio.Queue()

    async def cb(msg: Any) -> None:
        got.put_nowait(time.perf_counter())

    await js.subscribe(f"{name}.x", cb=cb, ordered_consumer=True,
                       deliver_policy=nats.js.api.DeliverPolicy.NEW)  # fmt: skip
    payload = os.urandom(size)
    lat = []
    for _ in range(count):
        start = time.perf_counter()
        await js.publish(f"{name}.x", payload)
        lat.append(await got.get() - start)
    start = time.perf_counter()
    for _ in range(burst):  # sequential acked publishes, as the link does per batch
        await js.publish(f"{name}.x", payload)
    for _ in range(burst):
        end = await got.get()
    await js.delete_stream(name)
    await nc.close()
    return {"p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
            "per_s": burst / (end - start)}  # fmt: skip


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


async def wait_for(cond: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.perf_counter() + seconds
    while not cond():
        if time.perf_counter() > deadline:
            raise TimeoutError("bench condition not reached")
        await asyncio.sleep(0.0005)


async def link_figures(url: str, root: Path, count: int, burst: int) -> dict[str, float]:
    group = {"group_id": uuid.uuid4().hex, "secret": new_group_secret(), "relay_key": None}
    a = Dev(root / "a", url, group, create=True)
    a.link.start()
    assert await a.link.wait_established(20) is None
    b = Dev(root / "b", url, group, create=False)
    b.link.start()
    assert await b.link.wait_established(20) is None
    await asyncio.sleep(1.5)  # let the first Have round settle (MQTT answer window)
    arrived: asyncio.Queue[float] = asyncio.Queue()
    b.log.add_listener(lambda stored: [arrived.put_nowait(time.perf_counter()) for _ in stored])
    marks = instrument(a.link, b.link)
    body = MessagePosted(to=["@nova"], recipients=[], text=TEXT)
    lat, transit = [], []
    for _ in range(count):
        start = time.perf_counter()
        await a.log.append("luna", body)
        lat.append(await arrived.get() - start)
        transit.append(marks["opened"] - marks["sealing"])
    target = a.count_of(a.device_id) + burst
    start = time.perf_counter()
    for _ in range(burst // 50):
        await a.log.append_many([("luna", body)] * 50)
    await wait_for(lambda: b.count_of(a.device_id) >= target)
    per_s = burst / (time.perf_counter() - start)
    await b.close()
    await a.close()
    return {"p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3, "per_s": per_s,
            "transit_p50_ms": pct(transit, 0.5) * 1e3,
            "transit_p99_ms": pct(transit, 0.99) * 1e3}  # fmt: skip


def instrument(sender: BrokerLink, receiver: BrokerLink) -> dict[str, float]:
    """Time the link alone: from sealing on the sender to opened envelopes on the receiver.

    End-to-end figures also hold one durable store transaction on each side (append, then
    receive); these marks leave both out, which is what a plain publish/subscribe floor is
    comparable with.
    """
    marks = {"sealing": 0.0, "opened": 0.0}
    batches, store = sender.batches, receiver.store

    def timed_batches(events: Any) -> Any:
        marks["sealing"] = time.perf_counter()
        return batches(events)

    async def timed_store(events: Any) -> Any:
        marks["opened"] = time.perf_counter()
        return await store(events)

    sender.batches = timed_batches  # type: ignore[method-assign]
    receiver.store = timed_store  # type: ignore[method-assign]
    return marks


async def nats_replay(url: str, root: Path, events: int) -> dict[str, float]:
    group = {"group_id": uuid.uuid4().hex, "secret": new_group_secret(), "relay_key": None}
    a = Dev(root / "ra", url, group, create=True)
    a.link.start()
    assert await a.link.wait_established(20) is None
    body = MessagePosted(to=["@nova"], recipients=[], text=TEXT)
    for _ in range(events // 500):
        await a.log.append_many([("luna", body)] * 500)
    assert await a.link.wait_synced(300)
    c = Dev(root / "rc", url, group, create=False)
    start = time.perf_counter()
    c.link.start()
    await wait_for(lambda: c.count_of(a.device_id) >= events, 600)
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
    size = payload_size()
    floor_fn: Callable[..., Awaitable[dict[str, float]]] = (
        mqtt_floor if broker == "mqtt" else nats_floor
    )
    floor = await floor_fn(port if broker == "mqtt" else url, size, args.count, args.burst)
    root, medium = store_root()
    link = await link_figures(url, root, args.count, args.burst)
    out: dict[str, Any] = {"broker": broker, "payload_bytes": size, "floor": floor,
                           "link": link, "store": medium}  # fmt: skip
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
    print(f"{result['broker']}: payload {result['payload_bytes']} B, stores on {result['store']}")
    print(f"  latency  floor p50 {f['p50_ms']:.2f} ms p99 {f['p99_ms']:.2f} ms | "
          f"link p50 {ln['p50_ms']:.2f} ms p99 {ln['p99_ms']:.2f} ms | "
          f"ratio p50 {result['ratio_p50']:.2f}x p99 {result['ratio_p99']:.2f}x")  # fmt: skip
    print(f"  link transit (seal -> broker -> opened, no stores) "
          f"p50 {ln['transit_p50_ms']:.2f} ms "
          f"p99 {ln['transit_p99_ms']:.2f} ms | ratio p50 {result['transit_ratio_p50']:.2f}x "
          f"p99 {result['transit_ratio_p99']:.2f}x")  # fmt: skip
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
    import logging  # noqa: PLC0415

    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's "pending publish calls"
    args.count, args.burst, args.replay = (100, 500, 2000) if args.quick else (1000, 5000, 50000)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        mosq = Mosquitto(Path(tmp) / "mosquitto")
        server = NatsServer(Path(tmp) / "nats")
        mosq.start()
        server.start()
        try:
            results.append(asyncio.run(bench("mqtt", mosq.url, mosq.port, args)))
            show(results[-1])
            results.append(asyncio.run(bench("nats", server.url, server.port, args)))
            show(results[-1])
        finally:
            mosq.stop()
            server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
