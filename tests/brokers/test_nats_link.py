"""What only the NATS link does: a 3-node cluster, a stream that lost our events, the cursor."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from pathlib import Path
from typing import Any

import nats
from brokerlab import NatsCluster, NatsServer, converged, group_on
from cluster import Device, timeout
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.msg import Msg

from switchboard.crypto import new_group_secret, public_bytes
from switchboard.events import MessagePosted
from switchboard.ids import device_id_from_public_key
from switchboard.links.base import make_link
from switchboard.links.mqtt_topics import group_hash
from switchboard.store import local
from switchboard.store.db import Database
from switchboard.store.log import EventLog
from switchboard.transports.nats import stream_seq as _stream_seq


def _stream_messages(url: str, group_id: str) -> int:
    async def count() -> int:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info(f"SB_{group_hash(group_id)}")
            return int(info.state.messages)
        finally:
            await nc.close()

    return asyncio.run(count())


def _delete_stream(url: str, group_id: str) -> None:
    async def delete() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_stream(f"SB_{group_hash(group_id)}")
        finally:
            await nc.close()

    asyncio.run(delete())


def test_nats_cluster_survives_a_node_loss(tmp_path: Path) -> None:
    """On a 3-node cluster with three replicas, killing a node loses and repeats nothing."""
    cluster = NatsCluster(tmp_path / "cluster").start()
    try:
        with group_on(tmp_path, cluster.url, "laptop", "server") as (a, b):
            b.call("register", agent="nova")
            a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
            for n in range(50):
                a.call("send", agent="luna", to=["@nova"], text=f"n{n}", wait=0)
            cluster.nodes[0].stop(signal.SIGKILL)
            for n in range(50, 100):
                a.call("send", agent="luna", to=["@nova"], text=f"n{n}", wait=0)
            events = b.wait_events(100, 120, type="message_posted", agent=f"luna:{a.short}")
            assert [e["data"]["text"] for e in events] == [f"n{n}" for n in range(100)]
            converged(a, b)
    finally:
        cluster.stop()


def test_nats_stream_recreated_gets_our_events_again(tmp_path: Path) -> None:
    """A stream deleted while every device was down is refilled from the devices' own logs."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        with group_on(tmp_path, server.url, "laptop", "server") as (a, b):
            group_id = a.call("status")["groups"][0]["id"]
            b.call("register", agent="nova")
            a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
            for n in range(20):
                a.call("send", agent="luna", to=["@nova"], text=f"r{n}", wait=0)
            keys = converged(a, b)
            a.stop()
            b.stop()
            _delete_stream(server.url, group_id)
            a.start()
            b.start()
            assert converged(a, b) == keys
            late = Device(tmp_path / "late", "late").start()
            try:
                late.call("join", invite=a.call("invite")["invite"])
                late.wait_events(len(keys), 60, where="1=1")
                # Every event again, plus the newcomer's own device_joined.
                assert len(converged(a, b, late)) == len(keys) + 1
            finally:
                late.stop()
    finally:
        server.stop()


def test_stream_seq_reads_the_reply_subject_as_nats_py_does(nats_server: NatsServer) -> None:
    """The cursor's stream sequence matches nats-py's parse, in both ack subject forms."""

    async def delivered() -> list[Msg]:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            name = f"SEQ{uuid.uuid4().hex[:8]}"
            await js.add_stream(name=name, subjects=[f"{name}.*"])
            for n in range(5):
                await js.publish(f"{name}.{n % 2}", b"x")
            sub = await js.subscribe(f"{name}.*", ordered_consumer=True)
            return [await sub.next_msg(5) for _ in range(5)]
        finally:
            await nc.close()

    msgs = asyncio.run(delivered())
    assert [_stream_seq(m) for m in msgs] == [m.metadata.sequence.stream for m in msgs]
    assert [_stream_seq(m) for m in msgs] == [1, 2, 3, 4, 5]
    # With a JetStream domain and account hash (12 tokens), nats-py's own parse is used.
    domain = Msg(_client=None, reply="$JS.ACK.hub.ACCHASH.S.C.1.42.7.1732200000000000000.0.r")  # type: ignore[arg-type]
    assert _stream_seq(domain) == 42


class _Device:
    """A device in this process: a store, its log and a real NATS link."""

    def __init__(self, home: Path, group: dict[str, Any], create: bool) -> None:
        identity = Ed25519PrivateKey.generate()
        self.id = device_id_from_public_key(public_bytes(identity))
        home.mkdir(parents=True)
        self.db = Database(home / "switchboard.db")
        self.log = EventLog(self.db, self.id)
        self.link = make_link(group, log=self.log, device_id=self.id, identity=identity,
                              create=create)  # fmt: skip
        self.log.add_listener(lambda _: self.link.notify())

    async def close(self) -> None:
        await self.link.stop()
        self.db.close()


def test_nats_cursor_past_a_gap_replays_the_stream(tmp_path: Path, nats_server: NatsServer) -> None:
    """A cursor ahead of what the store holds: the gap makes the link read the stream again.

    The cursor is written in the transaction that met the gap, as 0, so neither a crash nor a
    connection lost right then can leave it past the events the log dropped.
    """
    group_id = uuid.uuid4().hex
    group = {"group_id": group_id, "secret": new_group_secret(), "relay_key": None,
             "relay_url": nats_server.url}  # fmt: skip
    key = f"link.nats.cursor.{group_id}"

    async def main() -> None:
        a = _Device(tmp_path / "a", group, create=True)
        b = _Device(tmp_path / "b", group, create=False)
        try:
            await scenario(a, b)
        finally:
            await b.close()
            await a.close()

    async def scenario(a: _Device, b: _Device) -> None:
        a.link.start()
        assert await a.link.wait_established(20) is None
        for n in range(1, 11):  # ten stream messages, one event each
            await a.log.append("luna", MessagePosted(to=["@all"], recipients=[], text=f"m{n}"))
            assert await a.link.wait_synced(timeout(20))
        nc = await nats.connect(nats_server.url)
        created = str((await nc.jetstream().stream_info(f"SB_{group_hash(group_id)}")).created)
        await nc.close()
        b.db.write_sync(lambda conn: local.set_meta(conn, key, f"{created}@5"))  # holds none
        holds_all = asyncio.Event()
        b.log.add_listener(lambda _: holds_all.set() if b.log.vector().get(a.id) == 10 else None)
        after_gap: list[str | None] = []
        store = b.link.store

        async def store_and_look(events: Any, also: Any = None) -> Any:
            received = await store(events, also)
            if received.gaps:  # what a crash right after this transaction would leave
                after_gap.append(local.get_meta(b.db.reader(), key))
            return received

        b.link.store = store_and_look  # type: ignore[method-assign]
        b.link.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(holds_all.wait(), timeout(30))
        assert holds_all.is_set(), (b.log.vector(), after_gap, b.link.status)
        assert after_gap == [f"{created}@0"]
        # The transaction that stored the last event moved the cursor with it.
        assert local.get_meta(b.db.reader(), key) == f"{created}@10"
        texts = [e.data["text"] for e in b.log.since({}, 100) if e.origin == a.id]
        assert texts == [f"m{n}" for n in range(1, 11)]

    asyncio.run(main())
