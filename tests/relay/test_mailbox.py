"""``Mailbox``: the relay's SQLite store, on real files in ``tmp_path`` and with a hand clock."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from switchboard.crypto import GroupKeys, new_group_secret
from switchboard.errors import MigrationError
from switchboard.proto.frames import Envelope
from switchboard.relay.mailbox import Mailbox, envelope_size

KEYS = GroupKeys.derive("g", new_group_secret())


def sealed(origin: str, first: int, last: int, size: int = 10) -> list[Envelope]:
    """Return envelopes ``first..last`` of ``origin`` with ``size``-byte plaintexts."""
    return [KEYS.seal(origin, seq, bytes(size)) for seq in range(first, last + 1)]


@pytest.fixture
def mailbox(tmp_path: Path) -> Mailbox:
    """Return a mailbox with group ``g`` registered."""
    box = Mailbox(tmp_path / "relay.db")
    box.register_group("g", b"k" * 32, now=0.0)
    return box


def test_mailbox_register_group_first_key_wins(mailbox: Mailbox) -> None:
    """Registering an existing group returns the key it already has (trust on first use)."""
    assert mailbox.register_group("g", b"x" * 32, now=1.0) == b"k" * 32
    assert mailbox.lookup_group("g") == b"k" * 32
    assert mailbox.lookup_group("unknown") is None


def test_mailbox_store_accepts_only_the_next_seq(mailbox: Mailbox) -> None:
    """Per origin, the next seq is stored; duplicates and envelopes after a gap are dropped."""
    first = mailbox.store("g", sealed("a", 1, 3), now=0.0)
    assert [e.seq for e in first.accepted] == [1, 2, 3] and first.vector == {"a": 3}
    second = mailbox.store("g", [*sealed("a", 2, 4), *sealed("a", 6, 6), *sealed("b", 1, 1)], 0.0)
    assert [(e.origin, e.seq) for e in second.accepted] == [("a", 4), ("b", 1)]
    assert (second.duplicates, second.gaps) == (2, 1)
    assert mailbox.vector("g") == {"a": 4, "b": 1}


def test_mailbox_since_returns_per_origin_order_beyond_vector(mailbox: Mailbox) -> None:
    """since() returns what the peer lacks, each origin in seq order."""
    mailbox.store("g", [*sealed("a", 1, 3), *sealed("b", 1, 2)], now=0.0)
    got = mailbox.since("g", {"a": 1})
    assert [(e.origin, e.seq) for e in got] == [("a", 2), ("a", 3), ("b", 1), ("b", 2)]
    assert got[0].box == mailbox.since("g", {"a": 1}, limit=1)[0].box
    assert mailbox.since("g", {"a": 3, "b": 2}) == []
    assert mailbox.since("unknown", {}) == []


def test_mailbox_since_respects_its_limits(mailbox: Mailbox) -> None:
    """since() stops at the envelope count and byte budget, but returns at least one."""
    mailbox.store("g", sealed("a", 1, 10, size=100), now=0.0)
    assert len(mailbox.since("g", {}, limit=4)) == 4
    one = envelope_size(sealed("a", 1, 1, size=100)[0])
    assert len(mailbox.since("g", {}, max_bytes=3 * one)) == 3
    assert len(mailbox.since("g", {}, max_bytes=1)) == 1


def test_mailbox_survives_reopening(tmp_path: Path, mailbox: Mailbox) -> None:
    """Groups, envelopes and vectors are on disk, not only in memory."""
    mailbox.store("g", sealed("a", 1, 5), now=0.0)
    mailbox.close()
    again = Mailbox(tmp_path / "relay.db")
    assert again.lookup_group("g") == b"k" * 32
    assert again.vector("g") == {"a": 5}
    assert [e.seq for e in again.since("g", {"a": 2})] == [3, 4, 5]
    assert again.statistics().envelopes == 5


def test_mailbox_prune_by_age_keeps_vector(mailbox: Mailbox) -> None:
    """Envelopes older than max_age go; the vector stays, so the next seq is still accepted."""
    mailbox.store("g", sealed("a", 1, 3), now=0.0)
    mailbox.store("g", sealed("a", 4, 5), now=100.0)
    assert mailbox.prune(150.0, max_age=100.0, max_bytes=10**9) == 3
    assert mailbox.vector("g") == {"a": 5}
    assert [e.seq for e in mailbox.since("g", {"a": 3})] == [4, 5]
    assert [e.seq for e in mailbox.store("g", sealed("a", 6, 6), now=150.0).accepted] == [6]


def test_mailbox_prune_by_size_drops_oldest_first(mailbox: Mailbox) -> None:
    """Past max_bytes a group loses its oldest envelopes, across origins, newest kept."""
    one = envelope_size(sealed("a", 1, 1, size=100)[0])
    mailbox.store("g", sealed("a", 1, 3, size=100), now=1.0)
    mailbox.store("g", sealed("b", 1, 3, size=100), now=2.0)
    mailbox.store("g", sealed("a", 4, 4, size=100), now=3.0)
    assert mailbox.prune(3.0, max_age=10**9, max_bytes=4 * one) == 3
    assert [(e.origin, e.seq) for e in mailbox.since("g", {})] == [("b", 1), ("b", 2), ("b", 3)]
    assert [e.seq for e in mailbox.since("g", {"a": 3, "b": 3})] == [4]
    assert mailbox.statistics().bytes == 4 * one


def test_mailbox_since_skips_origin_whose_next_envelope_was_pruned(
    mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer behind the retained range of an origin gets nothing of it, and a warning is logged."""
    mailbox.store("g", sealed("a", 1, 4), now=0.0)
    mailbox.store("g", sealed("b", 1, 1), now=50.0)
    mailbox.prune(60.0, max_age=20.0, max_bytes=10**9)
    assert [(e.origin, e.seq) for e in mailbox.since("g", {})] == [("b", 1)]
    assert "were pruned" in caplog.text


def test_mailbox_statistics_count_groups_envelopes_and_bytes(mailbox: Mailbox) -> None:
    """Statistics follow stores and prunes."""
    mailbox.register_group("h", b"h" * 32, now=0.0)
    mailbox.store("g", sealed("a", 1, 2, size=50), now=0.0)
    stats = mailbox.statistics()
    assert (stats.groups, stats.envelopes) == (2, 2)
    assert stats.bytes == 2 * envelope_size(sealed("a", 1, 1, size=50)[0])


def test_mailbox_file_is_private(tmp_path: Path, mailbox: Mailbox) -> None:
    """The database file is readable by its owner only."""
    assert stat.S_IMODE((tmp_path / "relay.db").stat().st_mode) == 0o600


def test_mailbox_refuses_newer_schema(tmp_path: Path) -> None:
    """A store written by a newer version is refused instead of misread."""
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(MigrationError, match="schema 99"):
        Mailbox(path)
