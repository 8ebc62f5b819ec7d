"""Migrations: recorded in _migrations, applied once, atomic, refused when unknown."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from store_helpers import count

from switchboard.errors import MigrationError
from switchboard.store.db import Database
from switchboard.store.migrations import MIGRATIONS, MigrationFunction, apply_migrations


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _names(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY name")]


def test_migrations_are_recorded_once_applied(store_path: Path) -> None:
    """Opening a new database applies every migration and records each by name."""
    Database(store_path).close()
    conn = _connect(store_path)
    assert _names(conn) == sorted(fn.__name__ for fn in MIGRATIONS)
    assert count(conn, "events") == 0


def test_migrations_apply_nothing_on_reopen(store_path: Path) -> None:
    """A database that is up to date gets no migration applied again."""
    Database(store_path).close()
    conn = _connect(store_path)
    assert apply_migrations(conn) == []


def test_migrations_apply_only_new_ones(store_path: Path) -> None:
    """A later migration is applied to a database that has the earlier ones."""
    Database(store_path).close()

    def m900_add_notes(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE notes (text TEXT)")

    conn = _connect(store_path)
    assert apply_migrations(conn, [*MIGRATIONS, m900_add_notes]) == ["m900_add_notes"]
    assert count(conn, "notes") == 0


def test_migrations_failure_rolls_back_with_its_record(store_path: Path) -> None:
    """A migration that fails leaves neither its changes nor its record, and stops later ones."""

    def m1_good(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE good (x)")

    def m2_bad(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    def m3_later(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE later (x)")

    conn = _connect(store_path)
    steps: list[MigrationFunction] = [m1_good, m2_bad, m3_later]
    with pytest.raises(MigrationError, match="m2_bad"):
        apply_migrations(conn, steps)
    assert _names(conn) == ["m1_good"]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "good" in tables
    assert not {"half", "later"} & tables


def test_migrations_unknown_to_this_version_are_refused(store_path: Path) -> None:
    """A database migrated by a newer version is refused, not touched."""
    Database(store_path).close()
    conn = _connect(store_path)
    conn.execute("INSERT INTO _migrations VALUES ('m999_from_the_future', 'x')")
    conn.close()
    with pytest.raises(MigrationError, match="m999_from_the_future"):
        Database(store_path)


def test_migrations_rotation_seq_is_filled_from_the_stored_rotation_event(
    store_path: Path,
) -> None:
    """A rotation stored before ``group_keys.seq`` existed gets its event's seq."""
    conn = _connect(store_path)
    before = MIGRATIONS[: [fn.__name__ for fn in MIGRATIONS].index("m_forget_002_rotation_seq")]
    apply_migrations(conn, before)
    kid = bytes.fromhex("0a0b0c0d")
    conn.execute(
        "INSERT INTO events (origin, seq, ts, type, agent, data)"
        " VALUES ('dev', 7, 't', 'group_rekeyed', '', ?)",
        ('{"key": "0a0b0c0d", "previous": "01020304"}',),
    )
    conn.execute(
        "INSERT INTO group_keys (group_id, kid, previous, author, added_ts)"
        " VALUES ('g', ?, ?, 'dev', 't'), ('g', ?, NULL, '', 't')",
        (kid, bytes.fromhex("01020304"), bytes.fromhex("01020304")),
    )
    assert apply_migrations(conn) == ["m_forget_002_rotation_seq"]
    rows = dict(conn.execute("SELECT kid, seq FROM group_keys").fetchall())
    assert rows == {kid: 7, bytes.fromhex("01020304"): 0}
