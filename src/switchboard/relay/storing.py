"""``Storer``: the relay's one store loop, shared by every connection.

A connection's receive loop hands each batch it read to ``put``; one task takes the batches
of one connection at a time, oldest connection first, and stores all that queued up for it in
one mailbox call (one transaction, one fsync for many batches under load), then acks them on
that connection. So storing costs the relay one task, not one task and one queue per device.

Guarantees kept from the per-connection loop it replaces:

- per connection, batches are stored and acked in the order they were read;
- a fast sender waits for the disk: ``put`` returns only once fewer than ``max_queued``
  batches of that connection wait (its receive loop stops reading, and TCP pushes back);
- a closing connection's batches are stored before it goes (``drain``);
- connections take turns: one with a backlog goes to the back of the line after each commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from switchboard.errors import ByeCode
from switchboard.proto.frames import Envelope
from switchboard.relay.connection import Connection

logger = logging.getLogger("switchboard.relay")

# Batches from one peer that may wait for the mailbox: enough to keep the writer busy (they are
# stored in one transaction), few enough to bound what one sender can make us hold.
DEFAULT_MAX_QUEUED_BATCHES: Final = 16
# Envelopes stored in one mailbox transaction at most when a peer's batches queued up.
MAX_ENVELOPES_PER_COMMIT: Final = 20_000

StoreFn = Callable[[Connection, list[Envelope]], Awaitable[None]]


class Storer:
    """The relay-wide store loop. See the module docstring.

    Args:
        store: stores one connection's envelopes and acks them (``Relay._on_batch``).
        max_queued: batches of one connection that may wait before ``put`` waits.
    """

    def __init__(self, store: StoreFn, max_queued: int = DEFAULT_MAX_QUEUED_BATCHES) -> None:
        self._store = store
        self.max_queued = max_queued
        self._ready: dict[Connection, None] = {}  # connections with batches waiting, in turn
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # A connection's waiter: woken when its queue has room again or it was drained.
        self._waiters: dict[Connection, asyncio.Future[None]] = {}
        self._busy: Connection | None = None  # whose batches are being stored now

    async def put(self, conn: Connection, envelopes: tuple[Envelope, ...]) -> None:
        """Queue a batch of ``conn`` for storing; wait while too many of its batches wait."""
        conn.unstored.append(envelopes)
        self._ready.setdefault(conn, None)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="switchboard[relay].store_loop"
            )
        while len(conn.unstored) >= self.max_queued:
            await self._wait(conn)

    async def drain(self, conn: Connection) -> None:
        """Wait until every batch ``conn`` handed in is stored (bound it with a timeout)."""
        while conn.unstored or self._busy is conn:
            await self._wait(conn)

    def forget(self, conn: Connection) -> None:
        """Drop what ``conn`` still had waiting (after ``drain`` timed out)."""
        conn.unstored.clear()
        self._ready.pop(conn, None)
        self._notify(conn)

    def stop(self) -> None:
        """Cancel the loop (the relay is closing)."""
        if self._task is not None:
            self._task.cancel()

    async def _wait(self, conn: Connection) -> None:
        waiter = self._waiters.get(conn)
        if waiter is None or waiter.done():
            waiter = self._waiters[conn] = asyncio.get_running_loop().create_future()
        await waiter

    def _notify(self, conn: Connection) -> None:
        waiter = self._waiters.pop(conn, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ready:
                conn = next(iter(self._ready))
                del self._ready[conn]
                envelopes: list[Envelope] = []
                taken = 0
                for batch in conn.unstored:
                    if envelopes and len(envelopes) + len(batch) > MAX_ENVELOPES_PER_COMMIT:
                        break
                    envelopes += batch
                    taken += 1
                del conn.unstored[:taken]
                self._busy = conn
                self._notify(conn)  # room in its queue again
                try:
                    await self._store(conn, envelopes)
                except Exception:  # one connection's failure must not stop the others' storing
                    logger.exception("! storing for %s failed", conn.label)
                    conn.unstored.clear()
                    conn.session.send_bye(ByeCode.INTERNAL, "relay could not store")
                finally:
                    self._busy = None
                conn.flush()
                if conn.unstored:
                    self._ready[conn] = None  # to the back of the line
                self._notify(conn)
