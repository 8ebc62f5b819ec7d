"""Open the SQLite store: WAL, one writer (a thread with a queue), read-only reader connections."""

# Theory of operation
#
# SQLite allows one writer at a time; we make that explicit instead of fighting over locks. One
# thread owns the only writable connection and drains a queue of write functions. Each function
# runs inside ``BEGIN IMMEDIATE``: it commits when the function returns and rolls back when it
# raises, and either way the caller gets the result or the exception. Callers on other threads
# block on a ``concurrent.futures.Future`` (``write_sync``); asyncio callers await the same
# future wrapped for their loop (``write``). Because writes are serialised, a write function may
# read, decide and write without races (the next seq, contiguity checks).
#
# ``run_now`` runs a small write in the calling thread instead, when the writer thread has
# nothing queued or running: on the latency path the two thread hand-offs (and waits for the
# GIL on each side) cost more than the transaction itself. One lock (``_job_lock``) is held by
# whichever thread runs a transaction, so there is still one writer at a time.
#
# Guarantee 1 (durable before the call returns) needs ``synchronous=FULL`` for the transactions
# that store what a call created: in WAL mode ``NORMAL`` may lose the last transactions on power
# loss. Each write says whether it must be durable when it returns (``durable=True``, the
# default: FULL, one fsync of the WAL at commit). Transactions that store what other devices
# sent (``durable=False``) run with ``NORMAL``: no fsync; their origins serve them again after a
# power loss. What such a transaction wrote becomes durable with the next FULL commit (the WAL is
# one file written in order, so syncing it makes every earlier commit durable too), at a
# checkpoint (NORMAL syncs the WAL before it), or through ``request_flush``: a flusher thread
# fsyncs the WAL, beside the writer, and then tells who asked. A power loss leaves a prefix of
# the commits: WAL frames carry cumulative checksums and recovery stops at the first bad one.
#
# Readers use separate ``mode=ro`` connections, one per thread, so a slow query never blocks the
# writer and can never write. ``on_commit`` lets a write function schedule work (for example
# updating an in-memory vector) that must happen after its transaction commits and before the
# writer starts the next one.

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from switchboard.errors import StoreError
from switchboard.store.migrations import apply_migrations

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: The database file's name inside a Switchboard home.
DB_FILENAME: Final = "switchboard.db"
# How long a connection waits for a lock held by another process (a second daemon by mistake,
# a backup tool, a `sqlite3` shell) before failing: long enough to ride out a checkpoint or a
# large batch, short enough that a stuck lock surfaces as an error instead of a hang.
DEFAULT_BUSY_TIMEOUT_MS: Final = 5_000
# The file holds group secrets: only its owner may read it.
FILE_MODE: Final = 0o600

_Job = tuple[Callable[[sqlite3.Connection], Any], "concurrent.futures.Future[Any]", bool]
# PRAGMA synchronous values: FULL syncs the WAL at every commit, NORMAL only at checkpoints.
_FULL: Final = 2
_NORMAL: Final = 1
# After a failed fsync of the WAL (a full or failing disk) the flusher tries again this much
# later: soon enough for receipts to flow once the disk recovers, not a busy loop meanwhile.
_RETRY_SECONDS: Final = 1.0
_Future = concurrent.futures.Future[Any]


def _settle(future: _Future, outcome: _Future) -> None:
    exc = outcome.exception()
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(outcome.result())


def _create_private(path: Path) -> None:
    """Create the database file with mode 0600 if it does not exist, and tighten it if it does."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
    os.close(fd)
    os.chmod(path, FILE_MODE)


def readonly_uri(path: Path) -> str:
    """Return the ``file:`` URI that opens ``path`` read-only."""
    return f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"


def connect_readonly(
    path: Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """Open a read-only connection to the database at ``path``.

    Args:
        path: the database file.
        busy_timeout_ms: how long to wait for locks.

    Returns:
        A connection that can be used from any thread (the caller keeps it to one at a time).
    """
    conn = sqlite3.connect(
        readonly_uri(path), uri=True, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA query_only = 1")
    return conn


def _datasync(fd: int) -> None:
    # fdatasync, as SQLite itself syncs; macOS has only fsync.
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


class _Flusher:
    """A thread that syncs the WAL on request and then calls back: one fsync per burst."""

    def __init__(self, flush: Callable[[], None], *, name: str) -> None:
        self._flush = flush
        self._name = name
        self._cond = threading.Condition()
        self._pending: list[Callable[[], None]] = []
        self._closed = False
        self._thread: threading.Thread | None = None

    def request(self, done: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending.append(done)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._flush_loop, name=self._name, daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        """Finish the requests made so far, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _flush_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                batch, self._pending = self._pending, []
                if not batch:
                    return
            # Every request in the batch was made after the commits it waits for had
            # returned, so this fsync (which starts now) covers them all.
            try:
                self._flush()
            except OSError:
                logger.exception("! cannot sync the WAL; trying again in %g s", _RETRY_SECONDS)
                with self._cond:
                    self._pending[:0] = batch
                    self._cond.wait(_RETRY_SECONDS)
                continue
            for done in batch:
                done()


class Database:
    """The store's SQLite file: one writer thread and read-only connections per thread."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
        """Open (creating if needed) and migrate the database, then start the writer thread.

        Args:
            path: the database file; created with mode 0600.
            busy_timeout_ms: how long any connection waits for a lock held by another process.

        Raises:
            MigrationError: the schema could not be brought up to date.
            StoreError: the file could not be opened.
        """
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._writer = self._open_writer()
        try:
            apply_migrations(self._writer)
        except sqlite3.Error as exc:
            self._writer.close()
            raise StoreError(f"cannot read database {self.path}: {exc}") from exc
        except BaseException:
            self._writer.close()
            raise
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._queued = 0  # jobs submitted to the writer thread and not finished (under _lock)
        self._job_lock = threading.Lock()  # held while a transaction runs, in whichever thread
        self._job_thread: threading.Thread | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._after_commit: list[Callable[[], None]] = []
        self._synchronous = _FULL  # the writer connection's setting right now
        self._flusher = _Flusher(self.flush, name=f"switchboard[{self.path.name}].flush_loop")
        # Whatever an earlier run (killed, or cut by a power loss and recovered) left in the WAL
        # unsynced is made durable now: callers trust every event they find as durable.
        self.flush()
        self._thread = threading.Thread(
            target=self._writer_loop, name=f"switchboard[{self.path.name}].writer_loop", daemon=True
        )
        self._thread.start()

    def _open_writer(self) -> sqlite3.Connection:
        try:
            _create_private(self.path)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        if mode != "wal":
            conn.close()
            raise StoreError(f"cannot switch database {self.path} to WAL mode (got {mode})")
        return conn

    # -- writes ---------------------------------------------------------------------------------

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True
    ) -> concurrent.futures.Future[T]:
        """Queue ``fn`` for the writer thread and return a future of its result.

        ``durable=False`` commits without an fsync (see the module notes): for what other
        devices can serve again, never for what a call created.

        Raises:
            StoreError: the database is closed.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise StoreError(f"database {self.path.name} is closed")
            self._queued += 1
            self._queue.put((fn, future, durable))
        return future

    def run_now(
        self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True
    ) -> concurrent.futures.Future[T] | None:
        """Run ``fn`` as a transaction in this thread if the writer thread is idle.

        For small writes on a latency path: the hand-off to the writer thread and back costs
        more than a short transaction. Nothing is queued or running then, so the order of
        writes stays the order of their submission. Blocks this thread for the commit.

        Returns:
            The finished future (its result or exception), or ``None`` if the writer thread
            has work: ``submit`` then, to queue behind it.
        """
        with self._lock:
            if self._closed or self._queued or not self._job_lock.acquire(blocking=False):
                return None
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        try:
            self._run_job(fn, future, durable)
        finally:
            self._job_lock.release()
        return future

    def write_sync(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``fn`` in the writer thread inside one transaction and return its result.

        Blocks until the transaction has committed (or rolled back).

        Args:
            fn: receives the writer connection; must not commit or roll back itself.
            durable: sync the commit before returning (``submit``).

        Returns:
            What ``fn`` returned, once committed.

        Raises:
            StoreError: the database is closed or the transaction could not begin or commit.
            Exception: whatever ``fn`` raised, after rolling back.
        """
        if threading.current_thread() is self._job_thread:
            raise StoreError("write_sync called from inside a write function")
        return self.submit(fn, durable=durable).result()

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``fn`` in the writer thread inside one transaction; awaitable ``write_sync``.

        Cancelling the caller before the writer starts ``fn`` skips it; once started, the
        transaction completes (commits or rolls back) regardless.
        """
        return await asyncio.wrap_future(self.submit(fn, durable=durable))

    def on_commit(self, fn: Callable[[], None]) -> None:
        """From inside a write function, run ``fn`` in the writer thread right after commit.

        Nothing runs if the transaction rolls back.
        """
        assert threading.current_thread() is self._job_thread, "on_commit outside a write function"
        self._after_commit.append(fn)

    def _writer_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            fn, future, durable = job
            # The caller hears of the outcome only once the job no longer counts as queued,
            # so its next small write can run at once (``run_now``).
            outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()
            with self._job_lock:
                if future.set_running_or_notify_cancel():
                    outcome.set_running_or_notify_cancel()
                    self._run_job(fn, outcome, durable)
                with self._lock:
                    self._queued -= 1
            if outcome.done():
                _settle(future, outcome)

    def _run_job(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        future: concurrent.futures.Future[Any],
        durable: bool,
    ) -> None:
        # Nothing raised here may escape: a dead writer thread would hang every later write.
        # The caller holds _job_lock: one transaction at a time, whichever thread runs it.
        self._job_thread = threading.current_thread()
        try:
            self._run_locked(fn, future, _FULL if durable else _NORMAL)
        finally:
            self._job_thread = None

    def _run_locked(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        future: concurrent.futures.Future[Any],
        synchronous: int,
    ) -> None:
        conn = self._writer
        self._after_commit = []
        try:
            self._set_synchronous(synchronous)
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            future.set_exception(StoreError(f"cannot begin a write transaction: {exc}"))
            return
        try:
            result = fn(conn)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            self._rollback()
            future.set_exception(exc)
            return
        try:
            conn.commit()
        except sqlite3.Error as exc:
            self._rollback()
            future.set_exception(StoreError(f"cannot commit a write transaction: {exc}"))
            return
        try:
            for callback in self._after_commit:
                callback()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            future.set_exception(exc)
            return
        future.set_result(result)

    def _set_synchronous(self, level: int) -> None:
        # Outside any transaction; the setting holds for the next commit (one statement, only
        # when it changes).
        if level != self._synchronous:
            self._writer.execute(f"PRAGMA synchronous = {level}")
            self._synchronous = level

    # -- durability -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Make every transaction committed so far durable: one fsync of the WAL.

        Safe from any thread, beside a running transaction (it syncs what earlier commits
        wrote; later ones are not claimed). Without a WAL file everything is in the database
        file, which a checkpoint synced.
        """
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            fd = os.open(wal, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            _datasync(fd)
        finally:
            os.close(fd)

    def request_flush(self, done: Callable[[], None]) -> None:
        """Call ``done()`` in the flusher thread once every commit made so far is durable.

        Requests that arrive while an fsync runs share the next one (a group commit). ``done``
        must not raise or block. After ``close`` it is not called.
        """
        self._flusher.request(done)

    def _rollback(self) -> None:
        try:
            self._writer.rollback()
        except sqlite3.Error:
            logger.exception("! rollback of %s failed", self.path.name)

    # -- reads ----------------------------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """Return this thread's read-only connection, opening it on first use.

        Raises:
            StoreError: the database is closed.
        """
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not self._closed:
            return conn
        with self._lock:
            if self._closed:
                raise StoreError(f"database {self.path.name} is closed")
            conn = connect_readonly(self.path, busy_timeout_ms=self._busy_timeout_ms)
            self._readers.append(conn)
        self._local.conn = conn
        return conn

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish queued writes, stop the writer thread and close every connection (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._flusher.close()
        for conn in self._readers:
            conn.close()
        self._readers.clear()
        if self._job_thread is threading.current_thread():  # closed from inside a write
            self._writer.close()
            return
        with self._job_lock:  # not under a transaction that ``run_now`` runs in another thread
            self._writer.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
