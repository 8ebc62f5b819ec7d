"""The event log: append local events, receive remote ones exactly once, serve them by vector."""

# Theory of operation
#
# ``EventLog`` is the only code that writes the ``events`` table. Every write goes through the
# database's single writer, so inside a write function the log reads the highest held seq of an
# origin (one index probe), decides and inserts without races:
#
# - ``append*`` numbers this device's new events from the next seq on.
# - ``receive*`` classifies each remote event with ``cursors.classify`` against what is held
#   (counting the batch's own events as they are accepted), stores the ``NEW`` ones and counts
#   and drops duplicates and gaps. A gap is left for the sync layer to ask again with ``Have``.
#
# Events are inserted with ``executemany`` and explicit ids, then folded into the projections,
# in the same transaction. The in-memory vector is advanced by an ``on_commit`` hook in the
# writer thread, so it never runs ahead of the database and never lags behind a returned call.
# Listeners run after commit: on the caller's thread for ``*_sync``, and for the awaitable
# calls on the caller's loop, queued by the writer before the caller's own wake-up.
#
# A *reaction* (``react_with``) lets the device answer what it receives in the same transaction:
# the daemon appends the delivered receipt of a message to a local agent there, so receiving a
# message costs one commit, not two, and the receipt can never be lost between them.
#
# Durability (DESIGN.md guarantee 1). ``append*`` commits with an fsync before it returns.
# ``receive*`` commits without one (``Database`` ``durable=False``): the events' origins serve
# them again after a power loss. The receipts a reaction appends there are this device's own
# events, though, and a power loss may take them (with the events they answer: one
# transaction) after they were numbered. Their seqs are then numbered again, for other events.
# That must never be visible as a reuse, so this device's events leave it only once durable:
# ``vector()`` and ``since()`` report this origin up to ``_durable``, the highest own seq known
# to be synced, and links serve from those. ``_durable`` advances when a durable commit stores
# own events (syncing the WAL syncs every earlier commit too) and when the flusher thread has
# synced the WAL after a receive stored receipts (``Database.request_flush``, one fsync per
# burst, off the receive path); then the flush listeners wake the links. At open, the
# database syncs whatever an earlier run left unsynced, so everything held is durable.
#
# Who could see a lost receipt? Peers: no, it was never sent. Callers: no call created it.
# Local readers (followers, queries) may have seen it, but a power loss ends them with the
# machine; anything they did about it that created events is an ``append``, whose fsync made
# the receipt durable first. So no (origin, seq) is ever seen with two contents, and the lost
# receipt is made again when its message is served again (tests/store/test_power_loss.py cuts
# a recorded WAL at every frame boundary and checks this).

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec

from switchboard.events import Body, Event, data_of, encode_data_json, now_ts, tag_of
from switchboard.proto.cursors import Placement, classify
from switchboard.store import projections
from switchboard.store.db import Database

T = TypeVar("T")
Stored = tuple[int, Event]
Listener = Callable[[list[Stored]], None]
# Given the writer connection and the remote events just stored (in their transaction), return
# this device's own events to append in that same transaction.
Reaction = Callable[[sqlite3.Connection, list[Stored]], Sequence[tuple[str, Body]]]

logger = logging.getLogger(__name__)

_decode: Final = msgspec.json.Decoder(dict[str, Any]).decode

# At most this many events make a write small enough to run on the caller's loop when the
# writer thread is idle (``_write``): one message and its receipt, not a catch-up batch, whose
# commit would stall reading the next frames.
INLINE_MAX: Final = 16
_INSERT_SQL: Final = (
    "INSERT INTO events (id, origin, seq, ts, type, agent, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Received:
    """What ``receive`` did with a batch of remote events."""

    accepted: list[Stored]
    """``(local id, event)`` newly stored, in order."""
    duplicates: int
    """Events already held, dropped (at-least-once delivery makes these normal)."""
    gaps: int
    """Events dropped because an earlier seq of their origin is missing."""
    reactions: list[Stored] = dataclasses.field(default_factory=list)
    """This device's own events appended in the same transaction (``react_with``)."""

    @property
    def stored(self) -> list[Stored]:
        """Everything the transaction stored: the accepted events, then the reactions."""
        return self.accepted + self.reactions


class EventLog:
    """This device's append-only log of events from every device of its groups."""

    def __init__(self, db: Database, device_id: str) -> None:
        """Open the log stored in ``db`` for the device ``device_id`` and load its vector.

        Args:
            db: the open database.
            device_id: this device's id; ``append`` numbers events of this origin.
        """
        self.db = db
        self.device_id = device_id
        self._vector = _load_vector(db.reader())
        self._vector_lock = threading.Lock()
        # The highest seq of this device known durable (the database synced at open).
        self._durable = self._vector.get(device_id, 0)
        self._flush_listeners: list[Callable[[], None]] = []
        self._listeners: list[Listener] = []
        self._reaction: Reaction | None = None

    # -- local events ----------------------------------------------------------------------------

    def append_sync(self, items: Sequence[tuple[str, Body]]) -> list[Stored]:
        """Store new events of this device, numbered from the next seq, in one transaction.

        Args:
            items: ``(acting agent name, body)`` pairs; ``""`` is the device itself.

        Returns:
            ``(local id, event)`` for each item, in order, once durable.
        """
        if not items:
            return []
        stored = self.db.write_sync(self._appender(items))
        self._notify(stored)
        return stored

    async def append(self, agent: str, body: Body) -> Stored:
        """Store one new event of this device; awaitable ``append_sync`` for one item."""
        stored = await self.append_many([(agent, body)])
        return stored[0]

    async def append_many(self, items: Sequence[tuple[str, Body]]) -> list[Stored]:
        """Store new events of this device in one transaction; awaitable ``append_sync``."""
        if not items:
            return []
        return await self._write(
            self._appender(items), lambda stored: stored, small=len(items) <= INLINE_MAX
        )

    def _appender(
        self, items: Sequence[tuple[str, Body]], *, durable: bool = True
    ) -> Callable[[sqlite3.Connection], list[Stored]]:
        def append(conn: sqlite3.Connection) -> list[Stored]:
            held = _max_seq(conn, self.device_id)
            events = [
                Event(
                    origin=self.device_id,
                    seq=held + number,
                    ts=now_ts(),
                    type=tag_of(body),
                    agent=agent,
                    data=data_of(body),
                )
                for number, (agent, body) in enumerate(items, 1)
            ]
            return self._store(conn, events, own_durable=durable)

        return append

    # -- remote events ---------------------------------------------------------------------------

    def receive_sync(
        self, events: list[Event], proofs: Mapping[tuple[str, int], bytes] | None = None
    ) -> Received:
        """Store the remote events not yet held, each exactly once and in per-origin order.

        Idempotent: receiving a batch again stores nothing and counts duplicates. Events of
        one origin may be reordered within the batch; they are stored in seq order.

        Args:
            events: decoded events of any origins (ours included: those are duplicates).
            proofs: the events' signatures (``signatures.EventProof``, encoded), stored with the
                accepted ones so they can be served on.

        Returns:
            What was stored and how many events were dropped as duplicates or gaps.
        """
        received = self.db.write_sync(
            lambda conn: self._receive_in(conn, events, proofs, None), durable=False
        )
        self._notify(received.stored)
        return received

    async def receive(
        self,
        events: list[Event],
        also: Callable[[sqlite3.Connection, Received], None] | None = None,
        proofs: Mapping[tuple[str, int], bytes] | None = None,
    ) -> Received:
        """Store remote events not yet held; awaitable ``receive_sync``.

        Args:
            events: as for ``receive_sync``.
            proofs: as for ``receive_sync``.
            also: more to write in the same transaction, given what the log did with the
                events (a link's replay cursor, which must not pass a gap): it commits with
                the events or not at all.
        """

        loop = asyncio.get_running_loop()

        def receive(conn: sqlite3.Connection) -> Received:
            received = self._receive_in(conn, events, proofs, loop)
            if also is not None:
                also(conn, received)
            return received

        return await self._write(
            receive,
            lambda received: received.stored,
            small=len(events) <= INLINE_MAX,
            durable=False,
        )

    def _receive_in(
        self,
        conn: sqlite3.Connection,
        events: list[Event],
        proofs: Mapping[tuple[str, int], bytes] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Received:
        held: dict[str, int] = {}
        accepted: list[Event] = []
        duplicates = gaps = 0
        for event in _in_seq_order(events):
            origin, seq = event.origin, event.seq
            last = held.get(origin)
            if last is None:
                last = held[origin] = _max_seq(conn, origin)
            if seq == last + 1:  # ``cursors.classify``, inline: a catch-up does this per event
                held[origin] = seq
                accepted.append(event)
            elif classify(held, origin, seq) is Placement.DUPLICATE:
                duplicates += 1
            else:
                gaps += 1
        stored = self._store(conn, accepted, own_durable=False)
        if proofs:
            conn.executemany(
                "INSERT OR REPLACE INTO event_proofs (origin, seq, proof) VALUES (?, ?, ?)",
                [
                    (e.origin, e.seq, proof)
                    for e in accepted
                    if (proof := proofs.get((e.origin, e.seq))) is not None
                ],
            )
        answers = self._react(conn, stored) if self._reaction is not None and stored else ()
        reactions = self._appender(answers, durable=False)(conn) if answers else []
        if reactions:
            # Numbered now, served once synced: the flusher thread syncs after this commit.
            self.db.on_commit(lambda: self.db.request_flush(self._flushed(reactions[-1], loop)))
        return Received(stored, duplicates, gaps, reactions)

    def _flushed(
        self, stored: Stored, loop: asyncio.AbstractEventLoop | None
    ) -> Callable[[], None]:
        seq = stored[1].seq

        def done() -> None:  # in the flusher thread
            with self._vector_lock:
                if seq <= self._durable:
                    return
                self._durable = seq
            if loop is None:
                self._notify_flushed()
            else:
                _call_soon(loop, self._notify_flushed)

        return done

    def _react(self, conn: sqlite3.Connection, stored: list[Stored]) -> Sequence[tuple[str, Body]]:
        assert self._reaction is not None
        try:
            return self._reaction(conn, stored)
        except Exception:  # a bug in a reaction must not stop replication (STYLE.md rule 5)
            logger.exception("! reaction to %d received events failed", len(stored))
            return ()

    # -- storing (in the writer thread) ---------------------------------------------------------

    def _store(
        self, conn: sqlite3.Connection, events: list[Event], *, own_durable: bool
    ) -> list[Stored]:
        # ``own_durable``: the transaction commits with an fsync and stores events of this
        # device, which (and every own event before them) are then durable.
        if not events:
            return []
        last_id: int = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        stored = [(last_id + number, event) for number, event in enumerate(events, 1)]
        conn.executemany(
            _INSERT_SQL,
            [
                (local_id, e.origin, e.seq, e.ts, e.type, e.agent, encode_data_json(e.data))
                for local_id, e in stored
            ],
        )
        projections.apply_many(conn, stored)
        advanced = {event.origin: event.seq for event in events}
        self.db.on_commit(lambda: self._advance(advanced, own_durable))
        return stored

    def _advance(self, advanced: Mapping[str, int], own_durable: bool) -> None:
        with self._vector_lock:
            for origin, seq in advanced.items():
                self._vector[origin] = max(seq, self._vector.get(origin, 0))
            if own_durable and self.device_id in advanced:
                self._durable = max(self._durable, advanced[self.device_id])

    # -- reading ---------------------------------------------------------------------------------

    def vector(self) -> dict[str, int]:
        """Return, per origin, the highest seq held (contiguously from 1) and served.

        This device's own origin is reported up to its highest durable seq: a receipt
        appended in a receive transaction counts once the flusher has synced it.
        """
        with self._vector_lock:
            vector = dict(self._vector)
            if self.device_id in vector:
                vector[self.device_id] = self._durable
            return vector

    def held_vector(self) -> dict[str, int]:
        """Return, per origin, the highest seq held, durable or not (``vector`` serves)."""
        with self._vector_lock:
            return dict(self._vector)

    def since(self, vector: Mapping[str, int], limit: int) -> list[Event]:
        """Return up to ``limit`` held events beyond ``vector``, ascending within each origin.

        Args:
            vector: what the reader holds (a peer's ``Have``).
            limit: the most events to return in total; call again for more.

        Returns:
            Events the reader lacks; across origins in no particular order.
        """
        assert limit > 0, "since() needs a positive limit"
        conn = self.db.reader()
        events: list[Event] = []
        for origin, held in self.vector().items():
            after = vector.get(origin, 0)
            if held <= after:
                continue
            events.extend(_read_origin(conn, origin, after, held, limit - len(events)))
            if len(events) >= limit:
                break
        return events

    def proofs(self, events: Iterable[Event]) -> dict[tuple[str, int], bytes]:
        """Return the stored signatures of other devices' ``events`` (those that have one)."""
        keys = [e.key for e in events if e.origin != self.device_id]
        if not keys:
            return {}
        conn = self.db.reader()
        found: dict[tuple[str, int], bytes] = {}
        for origin in {origin for origin, _ in keys}:
            seqs = [seq for o, seq in keys if o == origin]
            rows = conn.execute(
                "SELECT seq, proof FROM event_proofs WHERE origin = ? AND seq BETWEEN ? AND ?",
                (origin, min(seqs), max(seqs)),
            )
            wanted = set(seqs)
            found.update({(origin, seq): bytes(p) for seq, p in rows if seq in wanted})
        return found

    # -- listeners -------------------------------------------------------------------------------

    def react_with(self, fn: Reaction | None) -> None:
        """Answer received events in their own transaction (see the module notes).

        ``fn`` runs in the writer thread inside each ``receive`` transaction that stored
        something. If it raises, the error is logged and the events are stored unanswered.
        """
        self._reaction = fn

    def add_flush_listener(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` when own events held became durable outside an ``append``.

        That is, after the flusher synced the receipts of a receive: what ``vector`` and
        ``since`` serve has grown without a commit. ``fn`` runs on the loop of the ``receive``
        call (the flusher thread for ``receive_sync``). It must not raise.

        Returns:
            A function that removes the listener (idempotent).
        """
        self._flush_listeners.append(fn)

        def remove() -> None:
            if fn in self._flush_listeners:
                self._flush_listeners.remove(fn)

        return remove

    def _notify_flushed(self) -> None:
        for fn in list(self._flush_listeners):
            fn()

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn(stored)`` after each commit that stored events (local or remote).

        ``fn`` runs in the caller's context: the calling thread for ``*_sync``, the event loop
        thread for the awaitables. It must not raise.

        Returns:
            A function that removes the listener (idempotent).
        """
        self._listeners.append(fn)

        def remove() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return remove

    def _notify(self, stored: list[Stored]) -> None:
        if stored:
            for fn in list(self._listeners):
                fn(stored)

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        stored_of: Callable[[T], list[Stored]],
        *,
        small: bool,
        durable: bool = True,
    ) -> T:
        # A small write runs right here when the writer thread is idle (``Database.run_now``);
        # it blocks the loop for one commit, and the listeners are told before returning.
        done = self.db.run_now(fn, durable=durable) if small else None
        if done is not None:
            result = done.result()
            self._notify(stored_of(result))
            return result
        # Listeners hear of the commit from the writer thread through ``call_soon_threadsafe``,
        # queued before the caller's future is resolved: peers, followers and receipt waiters
        # run one loop turn after the commit, before the caller resumes (the wake-ups of a
        # resolved future cost three turns). Once queued, a write runs to completion even if
        # the caller is cancelled, and its listeners still hear of it.
        loop = asyncio.get_running_loop()

        def run(conn: sqlite3.Connection) -> T:
            result = fn(conn)
            stored = stored_of(result)
            if stored:
                self.db.on_commit(lambda: _call_soon(loop, self._notify, stored))
            return result

        return await asyncio.shield(asyncio.wrap_future(self.db.submit(run, durable=durable)))


# -- helpers -------------------------------------------------------------------------------------


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop closed under a write it started: nobody is left to tell
        logger.debug("loop closed before listeners heard of a commit")


def _max_seq(conn: sqlite3.Connection, origin: str) -> int:
    row = conn.execute("SELECT max(seq) FROM events WHERE origin = ?", (origin,)).fetchone()
    return int(row[0] or 0)


def _load_vector(conn: sqlite3.Connection) -> dict[str, int]:
    # A skip scan over the (origin, seq) index: one probe per origin, not one row per event.
    vector: dict[str, int] = {}
    origin = conn.execute("SELECT min(origin) FROM events").fetchone()[0]
    while origin is not None:
        vector[origin] = _max_seq(conn, origin)
        origin = conn.execute(
            "SELECT min(origin) FROM events WHERE origin > ?", (origin,)
        ).fetchone()[0]
    return vector


def _in_seq_order(events: list[Event]) -> Iterable[Event]:
    """Sort each origin's events by seq, keeping the positions the batch gave each origin."""
    last: dict[str, int] = {}
    for event in events:  # usually each origin's events come in order already: one pass
        if last.get(event.origin, -1) >= event.seq:
            break
        last[event.origin] = event.seq
    else:
        return events
    by_origin: dict[str, list[Event]] = {}
    for event in events:
        by_origin.setdefault(event.origin, []).append(event)
    queues = {
        origin: iter(sorted(group, key=lambda e: e.seq)) for origin, group in by_origin.items()
    }
    return [next(queues[event.origin]) for event in events]


def _read_origin(
    conn: sqlite3.Connection, origin: str, after: int, upto: int, limit: int
) -> list[Event]:
    # ``upto``: the vector's seq, so that this device's own events not yet durable stay home.
    cursor = conn.execute(
        "SELECT seq, ts, type, agent, data FROM events WHERE origin = ? AND seq > ?"
        " AND seq <= ? ORDER BY seq LIMIT ?",
        (origin, after, upto, limit),
    )
    return [
        Event(origin=origin, seq=seq, ts=ts, type=kind, agent=agent, data=_decode(data))
        for seq, ts, kind, agent, data in cursor
    ]
