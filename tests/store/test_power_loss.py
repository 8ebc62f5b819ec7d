"""Power loss: receipts numbered in a receive transaction leave the device only once synced.

A receive commits without an fsync; the delivered receipts it appends are this device's own
events. These tests hold the WAL's sync back (``GatedDatabase``: the fsync itself is real, the
test decides when it may start), record a run, then cut the WAL at every frame boundary that a
power loss could leave and reopen the store: every event a call was told is stored, and every
own event that was served to peers, is still there with the same content, and the next seq
goes to no served event (DESIGN.md guarantee 1).
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from store_helpers import ME, PEER, remote

from switchboard.events import Body, Event, FileEdited, MessageDelivered, MessagePosted
from switchboard.store.db import DB_FILENAME, Database
from switchboard.store.log import EventLog, Stored

WAL_HEADER = 32
FRAME_HEADER = 24
WAIT = 10.0  # seconds; generous for a loaded machine, never reached when things work


class GatedDatabase(Database):
    """A real ``Database`` whose WAL sync starts only while ``gate`` is open."""

    def __init__(self, path: Path) -> None:
        self.gate = threading.Event()
        self.gate.set()  # open while the database opens (it syncs once then)
        # The WAL's size when each sync started: what that sync made durable.
        self.synced: list[int] = []
        super().__init__(path)
        self.gate.clear()

    def flush(self) -> None:
        """Wait for the gate, then sync the WAL for real.

        No time limit: a sync requested while a test cuts and reopens copies of the WAL may
        wait for as long as that takes (over 10 s on a loaded machine), and the fixture opens
        the gate when the test ends, pass or fail."""
        self.gate.wait()
        self.synced.append(_wal_size(self.path))
        super().flush()

    def let_flush(self) -> None:
        """Let every requested sync run, wait until their callbacks ran, close the gate."""
        done = threading.Event()
        self.gate.set()
        self.request_flush(done.set)
        assert done.wait(WAIT), "the flusher did not finish"
        self.gate.clear()


def deliver(_conn: sqlite3.Connection, stored: list[Stored]) -> Sequence[tuple[str, Body]]:
    """The daemon's reaction, in short: a delivered receipt for each message to us."""
    return [
        ("", MessageDelivered(message=f"{e.origin}/{e.seq}", recipients=[f"luna:{ME}"]))
        for _, e in stored
        if e.type == "message_posted"
    ]


def _wal_size(db_path: Path) -> int:
    wal = db_path.with_name(db_path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _own(events: Sequence[Event]) -> dict[int, Event]:
    return {e.seq: e for e in events if e.origin == ME}


@dataclass(frozen=True)
class Moment:
    """What the world knew after one step of the run."""

    durable: int  # WAL bytes known synced: a power loss now leaves at least this much
    acked: dict[int, Event]  # own events whose append returned
    served: dict[int, Event]  # own events the log handed to links (peers may hold them)


@pytest.fixture
def gated(store_path: Path) -> Iterator[tuple[GatedDatabase, EventLog]]:
    """A gated store of device ``ME`` that answers messages with receipts."""
    db = GatedDatabase(store_path)
    # Everything of the run stays in the WAL: no checkpoint moves it into the main file.
    db.write_sync(lambda conn: conn.execute("PRAGMA wal_autocheckpoint = 0"))
    with sqlite3.connect(store_path) as side:
        side.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    side.close()
    log = EventLog(db, ME)
    log.react_with(deliver)
    try:
        yield db, log
    finally:
        db.gate.set()
        db.close()


def test_receipts_are_served_only_once_synced(gated: tuple[GatedDatabase, EventLog]) -> None:
    """A receipt appended by a receive is held at once but served only after the WAL sync."""
    db, log = gated
    flushed = threading.Event()
    log.add_flush_listener(flushed.set)
    log.append_sync([("luna", FileEdited(path="a.py"))])
    received = log.receive_sync([remote(PEER, 1, MessagePosted(["@luna"], [f"luna:{ME}"], "hi"))])
    assert [e.seq for _, e in received.reactions] == [2]
    assert log.held_vector()[ME] == 2
    assert log.vector()[ME] == 1
    assert [e.seq for e in log.since({}, 100) if e.origin == ME] == [1]
    db.let_flush()
    assert flushed.wait(WAIT)
    assert log.vector()[ME] == 2
    assert [e.seq for e in log.since({}, 100) if e.origin == ME] == [1, 2]


def test_append_makes_earlier_receipts_durable(gated: tuple[GatedDatabase, EventLog]) -> None:
    """An append's synced commit covers the receipts before it: they are served with it."""
    _, log = gated
    log.receive_sync([remote(PEER, 1, MessagePosted(["@luna"], [f"luna:{ME}"], "hi"))])
    assert log.vector().get(ME, 0) == 0
    log.append_sync([("luna", FileEdited(path="a.py"))])
    assert log.vector()[ME] == 2
    assert [e.type for e in log.since({}, 100) if e.origin == ME] == [
        "message_delivered",
        "file_edited",
    ]


def test_receive_commits_without_sync_and_append_with(store_path: Path) -> None:
    """Receive transactions run with synchronous=NORMAL, everything else with FULL."""
    with Database(store_path) as db:
        level = "PRAGMA synchronous"
        assert db.write_sync(lambda conn: conn.execute(level).fetchone()[0], durable=False) == 1
        assert db.write_sync(lambda conn: conn.execute(level).fetchone()[0]) == 2


def _record_run(db: GatedDatabase, log: EventLog, steps: int) -> list[Moment]:
    """Appends, receives with receipts, serving and syncs in a seeded random order."""
    rng = random.Random(16)
    moments = [Moment(0, {}, {})]
    acked: dict[int, Event] = {}
    served: dict[int, Event] = {}
    durable = 0
    peer_seq = 0
    for step in range(steps):
        action = rng.choice(["append", "receive", "receive", "serve", "flush"])
        if action == "append":
            stored = log.append_sync([("luna", FileEdited(path=f"f{step}.py"))])
            acked.update(_own([e for _, e in stored]))
            durable = _wal_size(db.path)
        elif action == "receive":
            count = rng.randint(1, 3)
            batch = [
                remote(PEER, peer_seq + n, MessagePosted(["@luna"], [f"luna:{ME}"], f"m{step}"))
                for n in range(1, count + 1)
            ]
            peer_seq += count
            log.receive_sync(batch)
        elif action == "serve":
            served.update(_own(log.since({}, 10_000)))
        else:
            db.let_flush()
            durable = max(durable, db.synced[-1])
        moments.append(Moment(durable, dict(acked), dict(served)))
    served.update(_own(log.since({}, 10_000)))
    moments.append(Moment(durable, dict(acked), dict(served)))
    return moments


def _frame_boundaries(wal: Path) -> list[int]:
    data = wal.read_bytes()
    (page_size,) = struct.unpack(">I", data[8:12])
    frame = FRAME_HEADER + page_size
    frames = (len(data) - WAL_HEADER) // frame
    return [0] + [WAL_HEADER + k * frame for k in range(frames + 1)]


def _reopen_cut(saved: Path, into: Path, cut: int) -> Path:
    into.mkdir()
    shutil.copy(saved / DB_FILENAME, into / DB_FILENAME)
    with (saved / (DB_FILENAME + "-wal")).open("rb") as src:
        (into / (DB_FILENAME + "-wal")).write_bytes(src.read(cut))
    return into / DB_FILENAME


def _check_after_power_loss(path: Path, moment: Moment) -> None:
    with Database(path) as db:
        log = EventLog(db, ME)
        rows = db.reader().execute(
            "SELECT origin, seq, ts, type, agent, data FROM events ORDER BY id"
        )
        held = [(o, s, ts, t, a, d) for o, s, ts, t, a, d in rows]
        own = {s: (ts, t, a, json.loads(d)) for o, s, ts, t, a, d in held if o == ME}
        assert sorted(own) == list(range(1, len(own) + 1)), "own seqs are not contiguous"
        for seq, event in {**moment.acked, **moment.served}.items():
            content = (event.ts, event.type, event.agent, event.data)
            assert own.get(seq) == content, f"own seq {seq} changed"
        messages = {f"{o}/{s}" for o, s, _, t, _, _ in held if t == "message_posted"}
        for o, _, _, t, _, data in held:
            if o == ME and t == "message_delivered":
                ref = db.reader().execute("SELECT json_extract(?, '$.message')", (data,))
                assert ref.fetchone()[0] in messages, "a receipt outlived its message"
        assert log.vector().get(ME, 0) == len(own), "what survived is not all served"
        (_, again), *_ = log.append_sync([("luna", FileEdited(path="after.py"))])
        assert again.seq == len(own) + 1
        assert again.seq not in moment.served
        assert again.seq not in moment.acked


def test_power_loss_at_every_frame_keeps_served_and_acked_events(
    gated: tuple[GatedDatabase, EventLog], tmp_path: Path
) -> None:
    """Cutting the WAL at each frame boundary a power loss could leave loses nothing served."""
    db, log = gated
    moments = _record_run(db, log, steps=40)
    saved = tmp_path / "saved"
    saved.mkdir()
    shutil.copy(db.path, saved / DB_FILENAME)
    shutil.copy(db.path.with_name(DB_FILENAME + "-wal"), saved / (DB_FILENAME + "-wal"))
    cuts = _frame_boundaries(saved / (DB_FILENAME + "-wal"))
    checked = 0
    for cut in cuts:
        # The latest moment at which a power loss could leave exactly this prefix.
        possible = [m for m in moments if m.durable <= cut]
        if not possible:
            continue
        _check_after_power_loss(_reopen_cut(saved, tmp_path / f"cut{cut}", cut), possible[-1])
        checked += 1
    served_receipts = [e for e in moments[-1].served.values() if e.type == "message_delivered"]
    assert served_receipts, "the run served no receipt: it tests nothing"
    assert checked > 20, f"only {checked} cuts were possible"
