"""EventLog: numbering appends, receiving exactly once in per-origin order, vectors, since."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from store_helpers import ME, OTHER, PEER, count, remote

from switchboard.events import AgentRegistered, Event, FileEdited, MessagePosted
from switchboard.store import projections
from switchboard.store.db import Database
from switchboard.store.log import EventLog, Received


def _edit(path: str = "a.py") -> FileEdited:
    return FileEdited(path=path, tool="Edit")


def _peer_events(origin: str, seqs: range | list[int]) -> list[Event]:
    return [remote(origin, seq, _edit(f"{origin[:4]}-{seq}.py")) for seq in seqs]


def test_eventlog_append_numbers_from_next_seq(fresh_store: EventLog) -> None:
    """Appended events get this device's next seqs, a timestamp and ascending local ids."""
    first = fresh_store.append_sync([("luna", _edit("a")), ("", _edit("b"))])
    second = fresh_store.append_sync([("luna", _edit("c"))])
    stored = first + second
    assert [event.seq for _, event in stored] == [1, 2, 3]
    assert [local_id for local_id, _ in stored] == [1, 2, 3]
    assert {event.origin for _, event in stored} == {ME}
    assert [event.agent for _, event in stored] == ["luna", "", "luna"]
    assert all(event.ts.endswith("Z") and event.type == "file_edited" for _, event in stored)
    assert stored[0][1].data == {"path": "a", "tool": "Edit", "repo": "", "repo_path": ""}


def test_eventlog_append_empty_stores_nothing(fresh_store: EventLog) -> None:
    """Appending no items is a no-op."""
    assert fresh_store.append_sync([]) == []
    assert fresh_store.vector() == {}


def test_eventlog_append_awaitables_store_in_order(fresh_store: EventLog) -> None:
    """``append`` and ``append_many`` store events like ``append_sync``."""

    async def main() -> list[int]:
        one = await fresh_store.append("luna", _edit())
        many = await fresh_store.append_many([("luna", _edit()), ("nova", _edit())])
        return [event.seq for _, event in [one, *many]]

    assert asyncio.run(main()) == [1, 2, 3]
    assert fresh_store.vector() == {ME: 3}


def test_eventlog_receive_is_idempotent(fresh_store: EventLog) -> None:
    """Receiving the same batch twice stores it once and counts the rest as duplicates."""
    batch = _peer_events(PEER, range(1, 6))
    first = fresh_store.receive_sync(batch)
    again = fresh_store.receive_sync(batch)
    assert [event for _, event in first.accepted] == batch
    assert (first.duplicates, first.gaps) == (0, 0)
    assert (again.accepted, again.duplicates, again.gaps) == ([], 5, 0)
    assert count(fresh_store.db.reader(), "events") == 5


def test_eventlog_receive_own_events_back_are_duplicates(fresh_store: EventLog) -> None:
    """Our own events echoed back by a relay are dropped as duplicates."""
    stored = fresh_store.append_sync([("luna", _edit()), ("luna", _edit())])
    received = fresh_store.receive_sync([event for _, event in stored])
    assert (received.accepted, received.duplicates) == ([], 2)


def test_eventlog_receive_drops_events_after_a_gap(fresh_store: EventLog) -> None:
    """An event whose predecessor is missing is dropped and counted until the gap is filled."""
    events = _peer_events(PEER, range(1, 6))
    received = fresh_store.receive_sync([events[0], events[1], events[3], events[4]])
    assert [event.seq for _, event in received.accepted] == [1, 2]
    assert (received.duplicates, received.gaps) == (0, 2)
    assert fresh_store.vector() == {PEER: 2}
    filled = fresh_store.receive_sync(events[2:])
    assert [event.seq for _, event in filled.accepted] == [3, 4, 5]
    assert fresh_store.vector() == {PEER: 5}


def test_eventlog_receive_first_event_must_be_seq_one(fresh_store: EventLog) -> None:
    """Events of an unknown origin that do not start at seq 1 are gaps."""
    received = fresh_store.receive_sync(_peer_events(PEER, [2, 3]))
    assert (received.accepted, received.gaps) == ([], 2)
    assert fresh_store.vector() == {}


def test_eventlog_receive_sorts_each_origin_within_a_batch(fresh_store: EventLog) -> None:
    """Events of one origin reordered within a batch are all accepted, in seq order."""
    a = _peer_events(PEER, range(1, 4))
    b = _peer_events(OTHER, range(1, 3))
    received = fresh_store.receive_sync([a[2], b[1], a[0], b[0], a[1]])
    assert [(e.origin, e.seq) for _, e in received.accepted] == [
        (PEER, 1),
        (OTHER, 1),
        (PEER, 2),
        (OTHER, 2),
        (PEER, 3),
    ]
    assert received.gaps == 0
    assert fresh_store.vector() == {PEER: 3, OTHER: 2}


def test_eventlog_receive_duplicate_within_a_batch_is_counted(fresh_store: EventLog) -> None:
    """The same event twice in one batch is stored once."""
    event = _peer_events(PEER, [1])[0]
    received = fresh_store.receive_sync([event, event])
    assert (len(received.accepted), received.duplicates) == (1, 1)


def test_eventlog_receive_awaitable(fresh_store: EventLog) -> None:
    """``receive`` is the awaitable twin of ``receive_sync``."""
    received = asyncio.run(fresh_store.receive(_peer_events(PEER, range(1, 4))))
    assert len(received.accepted) == 3
    assert fresh_store.vector() == {PEER: 3}


def test_eventlog_receive_writes_also_in_the_same_transaction(fresh_store: EventLog) -> None:
    """``also`` commits with the received events; when it fails, neither is kept."""
    from switchboard.store import local  # noqa: PLC0415 - the meta table a link's cursor uses

    seen: list[Received] = []

    def cursor(value: str) -> Any:
        def save(conn: Any, received: Received) -> None:
            seen.append(received)
            local.set_meta(conn, "cursor", value)

        return save

    def broken(conn: Any, received: Received) -> None:
        local.set_meta(conn, "cursor", "9")
        raise RuntimeError("disk full")

    asyncio.run(fresh_store.receive(_peer_events(PEER, range(1, 3)), cursor("2")))
    assert local.get_meta(fresh_store.db.reader(), "cursor") == "2"
    assert [len(r.accepted) for r in seen] == [2], "also sees what the log did"
    with pytest.raises(RuntimeError, match="disk full"):
        asyncio.run(fresh_store.receive(_peer_events(PEER, range(3, 5)), broken))
    assert local.get_meta(fresh_store.db.reader(), "cursor") == "2"
    assert fresh_store.vector() == {PEER: 2}
    assert count(fresh_store.db.reader(), "events") == 2


def test_eventlog_vector_survives_reopen(store_path: Path) -> None:
    """Reopening the database restores the vector from the stored events."""
    with Database(store_path) as db:
        log = EventLog(db, ME)
        log.append_sync([("luna", _edit())] * 3)
        log.receive_sync(_peer_events(PEER, range(1, 8)) + _peer_events(OTHER, range(1, 3)))
        before = log.vector()
    with Database(store_path) as db:
        log = EventLog(db, ME)
        assert log.vector() == before == {ME: 3, PEER: 7, OTHER: 2}
        stored = log.append_sync([("luna", _edit())])
        assert stored[0][1].seq == 4


def test_eventlog_failed_write_leaves_no_event_and_no_projection(
    fresh_store: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When projecting fails, the events, projection rows and vector are all left unchanged."""

    def broken(*args: object) -> None:
        raise RuntimeError("projection bug")

    body = MessagePosted(to=["@luna"], recipients=[f"luna:{ME}"], text="hi")
    events = [
        remote(PEER, 1, AgentRegistered(name="nova")),
        remote(PEER, 2, body),
    ]
    monkeypatch.setattr(projections, "_bump_last_seen", broken)
    with pytest.raises(RuntimeError, match="projection bug"):
        fresh_store.receive_sync(events)
    reader = fresh_store.db.reader()
    for table in ("events", "devices", "agents", "inbox"):
        assert count(reader, table) == 0, table
    assert fresh_store.vector() == {}
    monkeypatch.undo()
    assert len(fresh_store.receive_sync(events).accepted) == 2
    assert (count(reader, "agents"), count(reader, "inbox")) == (1, 1)


def test_eventlog_since_returns_what_the_reader_lacks(fresh_store: EventLog) -> None:
    """``since`` returns held events beyond a vector, ascending per origin, equal to the stored."""
    peer = _peer_events(PEER, range(1, 6))
    fresh_store.receive_sync(peer + _peer_events(OTHER, range(1, 3)))
    mine = [event for _, event in fresh_store.append_sync([("luna", _edit())])]
    got = fresh_store.since({PEER: 2, OTHER: 2}, 100)
    assert sorted(got, key=lambda e: (e.origin, e.seq)) == sorted(
        peer[2:] + mine, key=lambda e: (e.origin, e.seq)
    )
    assert fresh_store.since(fresh_store.vector(), 100) == []


def test_eventlog_since_is_bounded_and_ordered_per_origin(fresh_store: EventLog) -> None:
    """``since`` returns at most ``limit`` events, each origin's without holes from the vector."""
    fresh_store.receive_sync(_peer_events(PEER, range(1, 11)) + _peer_events(OTHER, range(1, 11)))
    got = fresh_store.since({}, 7)
    assert len(got) == 7
    for origin in (PEER, OTHER):
        seqs = [event.seq for event in got if event.origin == origin]
        assert seqs == list(range(1, len(seqs) + 1))


def test_eventlog_listeners_hear_each_commit(fresh_store: EventLog) -> None:
    """Listeners get what each append or receive stored, and nothing once removed."""
    heard: list[list[tuple[int, Event]]] = []
    remove = fresh_store.add_listener(heard.append)
    appended = fresh_store.append_sync([("luna", _edit())])
    received = fresh_store.receive_sync(_peer_events(PEER, [1]))
    fresh_store.receive_sync(_peer_events(PEER, [1]))
    asyncio.run(fresh_store.append("luna", _edit()))
    remove()
    remove()
    fresh_store.append_sync([("luna", _edit())])
    assert heard[:2] == [appended, received.accepted]
    assert len(heard) == 3


def test_eventlog_listener_runs_in_the_event_loop_thread(fresh_store: EventLog) -> None:
    """For the awaitables, listeners run in the event loop's thread, after the commit."""
    seen: list[bool] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def listener(stored: list[tuple[int, Event]]) -> None:
            seen.append(asyncio.get_running_loop() is loop)
            assert fresh_store.vector()[ME] == stored[-1][1].seq

        fresh_store.add_listener(listener)
        await fresh_store.append("luna", _edit())

    asyncio.run(main())
    assert seen == [True]


def test_eventlog_cancelled_append_still_commits_and_notifies(
    fresh_store: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append whose caller is cancelled once queued still commits, and listeners hear it."""
    db = fresh_store.db
    busy, release = threading.Event(), threading.Event()

    async def main() -> list[tuple[int, Event]]:
        submitted, heard = asyncio.Event(), asyncio.Event()
        stored: list[tuple[int, Event]] = []
        real_submit = db.submit

        def submit(fn: Any, **options: Any) -> Any:
            future = real_submit(fn, **options)
            submitted.set()
            return future

        def listener(items: list[tuple[int, Event]]) -> None:
            stored.extend(items)
            heard.set()

        def blocker(conn: object) -> None:
            busy.set()
            release.wait()

        monkeypatch.setattr(db, "submit", submit)
        fresh_store.add_listener(listener)
        real_submit(blocker)
        busy.wait()
        task = asyncio.create_task(fresh_store.append("luna", _edit()))
        await submitted.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await asyncio.wait_for(heard.wait(), timeout=10)
        return stored

    stored = asyncio.run(main())
    assert [event.seq for _, event in stored] == [1]
    assert fresh_store.vector() == {ME: 1}
