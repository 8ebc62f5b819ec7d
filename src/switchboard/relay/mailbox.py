"""``Mailbox``: the relay's own SQLite store of groups and sealed envelopes.

Theory of operation
-------------------
The relay keeps, per group, the auth public key registered by the group's creator (trust on
first use) and the sealed envelopes its devices uploaded. It never sees plaintext: an envelope
is stored exactly as it arrived.

Like every log holder, the mailbox accepts an origin's envelopes only in order
(``proto.cursors.classify``), so one number per origin, the group's *vector*, says exactly
what it holds. The vector lives in its own table and survives retention: pruning removes the
oldest envelopes of an origin (always a prefix of its seqs), never the knowledge of how far it
got. ``since()`` serves an origin only from where the asking peer stands; if the envelopes the
peer needs next were pruned, sending the later ones would only produce gaps, so that origin is
skipped and logged instead.

``Mailbox`` does blocking I/O and is not thread-safe. ``MailboxThread`` gives it one thread of
its own, so async code awaits its calls, which run one at a time in the order they were made:
the relay's single SQLite writer. Every write runs in one ``BEGIN IMMEDIATE`` transaction with
``synchronous=FULL``, so an envelope is durable before it is acknowledged or forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, Final, ParamSpec, TypeVar

from switchboard.errors import MigrationError
from switchboard.proto.cursors import Placement, classify
from switchboard.proto.frames import Envelope

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA_VERSION: Final = 2
# Envelopes handed out by one since() call: bounds the memory of one catch-up round.
DEFAULT_MAX_SINCE_ENVELOPES: Final = 1024
# Bytes handed out by one since() call (at least one envelope is always returned): four
# 1 MiB frames' worth keeps a catch-up round well ahead of the network without hoarding memory.
DEFAULT_MAX_SINCE_BYTES: Final = 4 * 1024 * 1024

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY,
    auth_key BLOB NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS envelopes (
    group_id TEXT NOT NULL REFERENCES groups (group_id),
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    box BLOB NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (group_id, origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS envelopes_by_age ON envelopes (group_id, stored_at);
CREATE TABLE IF NOT EXISTS vectors (
    group_id TEXT NOT NULL REFERENCES groups (group_id),
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (group_id, origin)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS old_keys (
    group_id TEXT NOT NULL REFERENCES groups (group_id),
    auth_key BLOB NOT NULL,
    PRIMARY KEY (group_id, auth_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    group_id TEXT NOT NULL REFERENCES groups (group_id),
    device TEXT NOT NULL,
    PRIMARY KEY (group_id, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS forgotten (
    group_id TEXT NOT NULL REFERENCES groups (group_id),
    device TEXT NOT NULL,
    PRIMARY KEY (group_id, device)
) WITHOUT ROWID;
"""

# Per origin, the highest seq that must go so that the group keeps at most ? bytes, newest
# first. Deleting every seq up to it keeps what remains of each origin contiguous.
_OVER_SIZE: Final = """
SELECT origin, MAX(seq) FROM (
    SELECT origin, seq, SUM(length(box) + length(nonce)) OVER (
        ORDER BY stored_at DESC, seq DESC, origin DESC ROWS UNBOUNDED PRECEDING
    ) AS newer
    FROM envelopes WHERE group_id = ?
) WHERE newer > ? GROUP BY origin
"""


def envelope_size(envelope: Envelope) -> int:
    """Return the bytes an envelope counts for against retention limits."""
    return len(envelope.box) + len(envelope.nonce)


@dataclass(frozen=True)
class Stored:
    """What ``Mailbox.store`` did with a batch."""

    accepted: list[Envelope]  # newly stored, in the batch's order
    duplicates: int
    gaps: int  # dropped because an earlier seq of that origin is missing
    vector: dict[str, int]  # the group's vector afterwards


@dataclass(frozen=True)
class MailboxStatistics:
    """Sizes of the mailbox."""

    groups: int
    envelopes: int
    bytes: int


class Mailbox:
    """The relay's store. See the module docstring.

    Args:
        path: the SQLite file; created (mode 0600) if missing.

    Raises:
        MigrationError: the file was written by a newer version of Switchboard.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._migrate()
        self._keys: dict[str, bytes] = dict(
            self._db.execute("SELECT group_id, auth_key FROM groups").fetchall()
        )
        # Rotations (``rekey_group``): replaced keys, who may still use them, who is refused.
        self._old: dict[str, set[bytes]] = {}
        self._members: dict[str, set[str]] = {}
        self._forgotten: dict[str, set[str]] = {}
        for table, into in (("old_keys", self._old), ("members", self._members),
                            ("forgotten", self._forgotten)):  # fmt: skip
            for group, value in self._db.execute(f"SELECT * FROM {table}"):  # noqa: S608
                into.setdefault(group, set()).add(value)
        self._vectors: dict[str, dict[str, int]] = {}
        for group, origin, seq in self._db.execute("SELECT group_id, origin, seq FROM vectors"):
            self._vectors.setdefault(group, {})[origin] = seq
        self._sizes: dict[str, tuple[int, int]] = {}
        for group in self._keys:
            self._sizes[group] = self._measure(group)
        self._statistics = MailboxStatistics(0, 0, 0)
        self._publish()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise MigrationError(
                f"relay store {self.path} has schema {version}, newer than {SCHEMA_VERSION}"
            )
        if version < SCHEMA_VERSION:
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _measure(self, group: str) -> tuple[int, int]:
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(box) + length(nonce)), 0) FROM envelopes"
            " WHERE group_id = ?",
            (group,),
        ).fetchone()
        return int(count), int(size)

    # -- groups ------------------------------------------------------------------------------

    def register_group(self, group: str, auth_key: bytes, now: float) -> bytes:
        """Register ``group`` with ``auth_key`` unless it exists; return the key it has.

        The first registration wins (trust on first use); the caller compares the returned key
        with the one it offered.
        """
        if group not in self._keys:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO groups (group_id, auth_key, created) VALUES (?, ?, ?)"
                    " ON CONFLICT (group_id) DO NOTHING",
                    (group, auth_key, now),
                )
            self._keys[group] = auth_key
            self._sizes[group] = (0, 0)
            self._publish()
        return self._keys[group]

    def lookup_group(self, group: str) -> bytes | None:
        """Return the auth key registered for ``group``, or ``None`` if it is unknown."""
        return self._keys.get(group)

    def admits(self, group: str, key: bytes, device: str) -> str | None:
        """Why ``device``, proven with group key ``key``, is refused; ``None``: admitted.

        The current key admits any device not forgotten; a key a rotation replaced admits
        only the devices that rotation kept, so they can learn the new key from the log.
        """
        if device in self._forgotten.get(group, ()):
            return "this device was removed from the group"
        if key == self._keys.get(group):
            return None
        if key in self._old.get(group, ()) and device in self._members.get(group, ()):
            return None
        return "authentication failed: wrong group secret"

    def rekey_group(
        self, group: str, old: bytes, new: bytes, members: list[str], forgotten: list[str]
    ) -> bool:
        """Replace ``group``'s key ``old`` by ``new`` (``False``: ``old`` is not current).

        ``members`` replaces the devices a replaced key admits; ``forgotten`` adds to the
        devices refused whatever key they hold.
        """
        if self._keys.get(group) != old or new == old:
            return False
        gone = set(forgotten) | self._forgotten.get(group, set())
        kept = set(members) - gone
        with self._transaction():
            self._db.execute("UPDATE groups SET auth_key = ? WHERE group_id = ?", (new, group))
            self._db.execute("INSERT OR IGNORE INTO old_keys VALUES (?, ?)", (group, old))
            self._db.execute("DELETE FROM members WHERE group_id = ?", (group,))
            self._db.executemany(
                "INSERT INTO members VALUES (?, ?)", [(group, d) for d in sorted(kept)]
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO forgotten VALUES (?, ?)", [(group, d) for d in gone]
            )
        self._keys[group] = new
        self._old.setdefault(group, set()).add(old)
        self._members[group] = kept
        self._forgotten[group] = gone
        return True

    # -- envelopes ---------------------------------------------------------------------------

    def vector(self, group: str) -> dict[str, int]:
        """Return the highest seq held per origin in ``group``."""
        return dict(self._vectors.get(group, {}))

    def store(self, group: str, envelopes: Iterable[Envelope], now: float) -> Stored:
        """Durably store the envelopes that come next for their origin; drop the others."""
        assert group in self._keys, "store() for an unregistered group"
        vector = dict(self._vectors.get(group, {}))
        accepted: list[Envelope] = []
        duplicates = gaps = 0
        for envelope in envelopes:
            placement = classify(vector, envelope.origin, envelope.seq)
            if placement is Placement.NEW:
                accepted.append(envelope)
                vector[envelope.origin] = envelope.seq
            elif placement is Placement.DUPLICATE:
                duplicates += 1
            else:
                gaps += 1
        if accepted:
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO envelopes (group_id, origin, seq, nonce, box, stored_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(group, e.origin, e.seq, e.nonce, e.box, now) for e in accepted],
                )
                self._db.executemany(
                    "INSERT INTO vectors (group_id, origin, seq) VALUES (?, ?, ?)"
                    " ON CONFLICT (group_id, origin) DO UPDATE SET seq = excluded.seq",
                    [(group, origin, vector[origin]) for origin in {e.origin for e in accepted}],
                )
            self._vectors[group] = vector
            count, size = self._sizes.get(group, (0, 0))
            self._sizes[group] = (
                count + len(accepted),
                size + sum(envelope_size(e) for e in accepted),
            )
            self._publish()
        return Stored(accepted, duplicates, gaps, dict(vector))

    def since(
        self,
        group: str,
        vector: Mapping[str, int],
        limit: int = DEFAULT_MAX_SINCE_ENVELOPES,
        max_bytes: int = DEFAULT_MAX_SINCE_BYTES,
    ) -> list[Envelope]:
        """Return held envelopes beyond ``vector``, in per-origin order, within the limits.

        An origin whose next envelope for this peer was pruned is skipped (see module docs).
        """
        out: list[Envelope] = []
        budget = max_bytes
        for origin, held in sorted(self._vectors.get(group, {}).items()):
            after = vector.get(origin, 0)
            if held <= after:
                continue
            rows = self._db.execute(
                "SELECT seq, nonce, box FROM envelopes WHERE group_id = ? AND origin = ?"
                " AND seq > ? ORDER BY seq LIMIT ?",
                (group, origin, after, limit - len(out)),
            ).fetchall()
            if not rows or rows[0][0] != after + 1:
                logger.warning(
                    "! group %s origin %s: envelopes after %d were pruned; a peer there cannot "
                    "catch up from this relay",
                    group[:12],
                    origin[:12],
                    after,
                )
                continue
            for seq, nonce, box in rows:
                if out and budget <= 0:
                    return out
                out.append(Envelope(origin=origin, seq=seq, nonce=nonce, box=box))
                budget -= len(box) + len(nonce)
            if len(out) >= limit:
                break
        return out

    # -- retention ---------------------------------------------------------------------------

    def prune(self, now: float, *, max_age: float, max_bytes: int) -> int:
        """Drop envelopes older than ``max_age`` and, per group, beyond ``max_bytes``.

        Oldest go first, and only whole prefixes of an origin's seqs; vectors are kept.

        Returns:
            How many envelopes were dropped.
        """
        dropped = 0
        for group in list(self._keys):
            with self._transaction():
                old = self._db.execute(
                    "SELECT origin, MAX(seq) FROM envelopes WHERE group_id = ? AND stored_at < ?"
                    " GROUP BY origin",
                    (group, now - max_age),
                ).fetchall()
                self._drop(group, old)
                count, size = self._measure(group)
                if size > max_bytes:
                    self._drop(group, self._db.execute(_OVER_SIZE, (group, max_bytes)).fetchall())
                    count_after, size = self._measure(group)
                else:
                    count_after = count
            before = self._sizes.get(group, (0, 0))[0]
            dropped += before - count_after
            self._sizes[group] = (count_after, size)
        self._publish()
        return dropped

    def _drop(self, group: str, upto: list[tuple[str, int]]) -> None:
        self._db.executemany(
            "DELETE FROM envelopes WHERE group_id = ? AND origin = ? AND seq <= ?",
            [(group, origin, seq) for origin, seq in upto],
        )

    # -- housekeeping ------------------------------------------------------------------------

    def _publish(self) -> None:
        # One immutable snapshot, replaced whole: statistics() may be read from another thread.
        sizes = list(self._sizes.values())
        self._statistics = MailboxStatistics(
            groups=len(self._keys),
            envelopes=sum(count for count, _ in sizes),
            bytes=sum(size for _, size in sizes),
        )

    def statistics(self) -> MailboxStatistics:
        """Return the number of groups and the envelopes and bytes held (any thread)."""
        return self._statistics

    def close(self) -> None:
        """Checkpoint the WAL and close the database."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()


class MailboxThread:
    """A ``Mailbox`` on a thread of its own; see the module docstring.

    Args:
        path: the SQLite file, opened by ``open()`` on the mailbox's thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._mailbox: Mailbox | None = None

    async def open(self) -> None:
        """Start the thread and open the mailbox on it."""
        assert self._executor is None, "mailbox already open"
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="switchboard-relay-db")
        self._mailbox = await self._submit(Mailbox, self.path)

    async def call(
        self, method: Callable[Concatenate[Mailbox, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``method(mailbox, *args, **kwargs)`` on the mailbox's thread; return its result."""
        assert self._mailbox is not None, "mailbox is not open"
        return await self._submit(method, self._mailbox, *args, **kwargs)

    async def _submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        assert self._executor is not None
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def statistics(self) -> MailboxStatistics:
        """Return the mailbox's sizes (zeros when it is not open)."""
        return self._mailbox.statistics() if self._mailbox else MailboxStatistics(0, 0, 0)

    async def close(self) -> None:
        """Close the mailbox and stop its thread. Idempotent."""
        if self._mailbox is not None:
            await self.call(Mailbox.close)
            self._mailbox = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
