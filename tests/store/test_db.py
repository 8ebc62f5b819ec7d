"""Database: WAL, one writer thread, transactions per write, read-only readers, closing."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from store_helpers import count

from switchboard.errors import StoreError
from switchboard.store.db import Database


def _set(conn: sqlite3.Connection, key: str, value: str = "v") -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))


def _writer_threads(db: Database) -> list[threading.Thread]:
    name = f"switchboard[{db.path.name}].writer_loop"
    return [thread for thread in threading.enumerate() if thread.name == name]


def test_database_creates_file_readable_by_owner_only(store_path: Path) -> None:
    """The database file and its WAL are created with mode 0600."""
    with Database(store_path) as db:
        db.write_sync(lambda conn: _set(conn, "k"))
        for path in (store_path, store_path.with_name(store_path.name + "-wal")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_database_tightens_mode_of_existing_file(store_path: Path) -> None:
    """An existing database file readable by others is tightened to 0600."""
    store_path.touch(mode=0o644)
    store_path.chmod(0o644)
    Database(store_path).close()
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600


def test_database_writer_uses_wal_and_full_sync(store_path: Path) -> None:
    """The writer runs in WAL mode with synchronous=FULL (durable before returning)."""
    with Database(store_path) as db:
        mode = db.write_sync(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0])
        sync = db.write_sync(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
    assert (mode, sync) == ("wal", 2)


def test_database_write_sync_commits_and_returns_result(store_path: Path) -> None:
    """A write function's result comes back once its transaction has committed."""
    with Database(store_path) as db:

        def write(conn: sqlite3.Connection) -> int:
            _set(conn, "a")
            return 42

        assert db.write_sync(write) == 42
        assert count(db.reader(), "meta") == 1


def test_database_write_sync_rolls_back_and_reraises(store_path: Path) -> None:
    """A write function that raises leaves nothing behind and its exception reaches the caller."""
    with Database(store_path) as db:

        def write(conn: sqlite3.Connection) -> None:
            _set(conn, "a")
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            db.write_sync(write)
        assert count(db.reader(), "meta") == 0
        db.write_sync(lambda conn: _set(conn, "b"))
        assert count(db.reader(), "meta") == 1


def test_database_write_awaits_the_writer(store_path: Path) -> None:
    """``write`` is the awaitable twin of ``write_sync``, exceptions included."""

    async def main(db: Database) -> None:
        await db.write(lambda conn: _set(conn, "a"))
        with pytest.raises(sqlite3.IntegrityError):
            await db.write(lambda conn: _set(conn, "a"))

    with Database(store_path) as db:
        asyncio.run(main(db))
        assert count(db.reader(), "meta") == 1


def test_database_on_commit_runs_only_after_commit(store_path: Path) -> None:
    """Callbacks registered by a write function run after commit and never after rollback."""
    calls: list[str] = []
    with Database(store_path) as db:

        def good(conn: sqlite3.Connection) -> None:
            db.on_commit(lambda: calls.append("good"))

        def bad(conn: sqlite3.Connection) -> None:
            db.on_commit(lambda: calls.append("bad"))
            raise RuntimeError("no")

        db.write_sync(good)
        with pytest.raises(RuntimeError):
            db.write_sync(bad)
    assert calls == ["good"]


def test_database_write_from_inside_a_write_is_refused(store_path: Path) -> None:
    """Nesting ``write_sync`` inside a write function fails instead of deadlocking."""
    with Database(store_path) as db, pytest.raises(StoreError, match="inside a write"):
        db.write_sync(lambda conn: db.write_sync(lambda inner: None))


def test_database_reader_cannot_write(store_path: Path) -> None:
    """Reader connections are read-only."""
    with Database(store_path) as db, pytest.raises(sqlite3.OperationalError):
        _set(db.reader(), "a")


def test_database_reader_is_one_per_thread(store_path: Path) -> None:
    """Each thread gets its own reader connection, reused on later calls."""
    with Database(store_path) as db:
        other: list[sqlite3.Connection] = []
        thread = threading.Thread(target=lambda: other.append(db.reader()))
        thread.start()
        thread.join()
        assert db.reader() is db.reader()
        assert other[0] is not db.reader()


def test_database_reader_sees_committed_writes(store_path: Path) -> None:
    """A reader opened before a write sees it once committed."""
    with Database(store_path) as db:
        reader = db.reader()
        assert count(reader, "meta") == 0
        db.write_sync(lambda conn: _set(conn, "a"))
        assert count(reader, "meta") == 1


def test_database_cancelled_write_is_skipped(store_path: Path) -> None:
    """A write cancelled while still queued never runs."""
    with Database(store_path) as db:
        started, release = threading.Event(), threading.Event()

        def blocker(conn: sqlite3.Connection) -> None:
            started.set()
            release.wait()

        first = db.submit(blocker)
        started.wait()
        second = db.submit(lambda conn: _set(conn, "never"))
        assert second.cancel()
        release.set()
        first.result()
        db.write_sync(lambda conn: None)
        assert count(db.reader(), "meta") == 0


def test_database_close_finishes_queued_writes_and_stops_thread(store_path: Path) -> None:
    """Closing runs what is queued, joins the writer thread and refuses later work."""
    db = Database(store_path)
    futures = [db.submit(functools.partial(_set, key=f"k{n}")) for n in range(20)]
    db.close()
    db.close()
    assert all(future.done() for future in futures)
    assert _writer_threads(db) == []
    with pytest.raises(StoreError, match="closed"):
        db.write_sync(lambda conn: None)
    with pytest.raises(StoreError, match="closed"):
        db.reader()
    with Database(store_path) as again:
        assert count(again.reader(), "meta") == 20


def test_database_busy_elsewhere_is_a_store_error(store_path: Path) -> None:
    """A write lock held by another connection beyond the busy timeout yields StoreError."""
    with Database(store_path, busy_timeout_ms=0) as db:
        other = sqlite3.connect(store_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="cannot begin"):
                db.write_sync(lambda conn: None)
        finally:
            other.execute("ROLLBACK")
            other.close()
        db.write_sync(lambda conn: _set(conn, "after"))


def test_database_not_a_database_is_a_store_error(store_path: Path) -> None:
    """A file that is not SQLite is reported as a StoreError."""
    store_path.write_bytes(b"not a database at all, just text" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        Database(store_path)


def test_database_run_now_runs_in_the_calling_thread_when_idle(store_path: Path) -> None:
    """With nothing queued, ``run_now`` commits here and returns the finished future."""
    with Database(store_path) as db:
        ran_in: list[threading.Thread] = []
        committed: list[str] = []

        def write(conn: sqlite3.Connection) -> int:
            ran_in.append(threading.current_thread())
            _set(conn, "now")
            db.on_commit(lambda: committed.append("yes"))
            return 7

        done = db.run_now(write)
        assert done is not None and done.result() == 7
        assert ran_in == [threading.current_thread()] and committed == ["yes"]
        assert count(db.reader(), "meta") == 1


def test_database_run_now_rolls_back_and_hands_over_the_error(store_path: Path) -> None:
    """An inline write that raises leaves nothing and reports the exception in the future."""
    with Database(store_path) as db:

        def write(conn: sqlite3.Connection) -> None:
            _set(conn, "half")
            raise ValueError("no")

        done = db.run_now(write)
        assert done is not None
        with pytest.raises(ValueError, match="no"):
            done.result()
        assert count(db.reader(), "meta") == 0
        db.write_sync(lambda conn: _set(conn, "after"))  # the writer is still usable
        assert count(db.reader(), "meta") == 1


def test_database_run_now_declines_while_the_writer_has_work(store_path: Path) -> None:
    """While a write is queued or running, ``run_now`` declines, so writes keep their order."""
    with Database(store_path) as db:
        started, release = threading.Event(), threading.Event()

        def slow(conn: sqlite3.Connection) -> None:
            started.set()
            release.wait(30)
            _set(conn, "first")

        pending = db.submit(slow)
        started.wait(30)
        assert db.run_now(lambda conn: _set(conn, "second")) is None
        release.set()
        pending.result(30)
        db.write_sync(lambda conn: None)  # the writer thread is idle again after this
        done = db.run_now(lambda conn: _set(conn, "third"))
        assert done is not None and done.result() is None
        keys = [row[0] for row in db.reader().execute("SELECT key FROM meta ORDER BY rowid")]
        assert keys == ["first", "third"]


def test_database_run_now_on_a_closed_database_declines(store_path: Path) -> None:
    """After ``close`` there is nothing to run on: ``run_now`` declines and ``submit`` raises."""
    db = Database(store_path)
    db.close()
    assert db.run_now(lambda conn: _set(conn, "late")) is None
    with pytest.raises(StoreError, match="closed"):
        db.submit(lambda conn: None)
