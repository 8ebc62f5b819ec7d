"""``Storer``: the relay's one store loop, on real server sessions (no I/O) and a real gate.

The store function here stands in for the mailbox so the test can hold the disk still; the
relay's own store path is covered end to end by ``test_relay_store.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from relay_client import open_connection

from switchboard.crypto import GroupKeys, new_group_secret
from switchboard.proto.frames import Envelope
from switchboard.relay.connection import Connection
from switchboard.relay.storing import Storer

KEYS = GroupKeys.derive("group", new_group_secret())


def batch(seq: int) -> tuple[Envelope, ...]:
    return (KEYS.seal("origin", seq, b"x" * 10),)


class GatedStore:
    """Records what was stored, per connection, and stores only while the gate is open."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()  # the store loop has called us (and waits on the gate)
        self.calls: list[tuple[Connection, list[int]]] = []

    async def __call__(self, conn: Connection, envelopes: list[Envelope]) -> None:
        self.entered.set()
        await self.gate.wait()
        self.calls.append((conn, [env.seq for env in envelopes]))


def test_storer_makes_a_fast_sender_wait_for_the_disk(run: Callable[..., Any]) -> None:
    """With the disk stalled, put() returns until max_queued batches wait, then it blocks."""
    run(fast_sender_waits())


async def fast_sender_waits() -> None:
    store = GatedStore()
    storer = Storer(store, max_queued=3)
    conn = open_connection(KEYS, "group")
    await storer.put(conn, batch(1))
    await asyncio.wait_for(store.entered.wait(), 5)  # taken by the loop, waiting on the gate
    await storer.put(conn, batch(2))
    await storer.put(conn, batch(3))
    blocked = asyncio.create_task(storer.put(conn, batch(4)))
    done, _ = await asyncio.wait({blocked}, timeout=0.2)  # it may not return while the gate is shut
    assert not done and len(conn.unstored) == 3
    store.gate.set()
    await asyncio.wait_for(blocked, 5)
    await asyncio.wait_for(storer.drain(conn), 5)
    assert [seq for _, seqs in store.calls for seq in seqs] == [1, 2, 3, 4]
    assert not conn.unstored
    storer.stop()


def test_storer_keeps_order_per_connection_and_takes_turns(run: Callable[..., Any]) -> None:
    """Each connection's batches are stored in order; a backlog goes to the back of the line."""
    run(order_and_turns())


async def order_and_turns() -> None:
    store = GatedStore()
    storer = Storer(store, max_queued=100)
    a, b = open_connection(KEYS, "group"), open_connection(KEYS, "group")
    await storer.put(a, batch(1))
    await asyncio.wait_for(store.entered.wait(), 5)  # a's first batch is being stored (gate shut)
    await storer.put(b, batch(1))
    for seq in (2, 3):
        await storer.put(a, batch(seq))
    store.gate.set()
    await asyncio.wait_for(storer.drain(a), 5)
    await asyncio.wait_for(storer.drain(b), 5)
    assert [(conn is a, seqs) for conn, seqs in store.calls] == [
        (True, [1]),
        (False, [1]),  # b, in line first, waited for a's first commit only
        (True, [2, 3]),  # a's backlog, in order, in one commit
    ]
    storer.stop()
