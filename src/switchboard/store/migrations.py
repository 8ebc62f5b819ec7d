"""Schema migrations: decorated functions applied in order, each recorded in ``_migrations``."""

# Each migration runs inside its own ``BEGIN IMMEDIATE`` transaction together with the row that
# records it, so a crash leaves the schema either before or after a migration, never between.
# A migration, once released, is never edited: a later change is a new function below it. A
# database that has applied migrations this code does not know was written by a newer version;
# we refuse to touch it rather than guess.

from __future__ import annotations

import sqlite3
from typing import Final, Protocol

from switchboard.errors import MigrationError
from switchboard.events import now_ts


class MigrationFunction(Protocol):
    """A schema change: runs statements on the connection inside the caller's transaction."""

    __name__: str

    def __call__(self, conn: sqlite3.Connection) -> None: ...


#: Every migration, in the order it is applied.
MIGRATIONS: Final[list[MigrationFunction]] = []


def migration(fn: MigrationFunction) -> MigrationFunction:
    """Register ``fn`` as the next migration; its ``__name__`` is recorded once applied."""
    assert all(m.__name__ != fn.__name__ for m in MIGRATIONS), f"duplicate {fn.__name__}"
    MIGRATIONS.append(fn)
    return fn


def _applied(conn: sqlite3.Connection) -> set[str]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    return {row[0] for row in conn.execute("SELECT name FROM _migrations")}


def _check_known(applied: set[str], known: list[MigrationFunction]) -> None:
    unknown = applied - {fn.__name__ for fn in known}
    if unknown:
        names = ", ".join(sorted(unknown))
        raise MigrationError(
            f"database has {len(unknown)} migration(s) this version does not know ({names}): "
            "it was written by a newer switchboard"
        )


def apply_migrations(
    conn: sqlite3.Connection, migrations: list[MigrationFunction] | None = None
) -> list[str]:
    """Apply every migration not yet recorded, each in one transaction with its record.

    Args:
        conn: a writable connection in autocommit mode (``isolation_level=None``), not in a
            transaction.
        migrations: the migrations to apply, in order (default: ``MIGRATIONS``).

    Returns:
        The names of the migrations applied now.

    Raises:
        MigrationError: the database knows migrations we do not, or a migration failed (its
            transaction is rolled back and later migrations are not attempted).
    """
    known = MIGRATIONS if migrations is None else migrations
    conn.execute("BEGIN IMMEDIATE")
    try:
        applied = _applied(conn)
        _check_known(applied, known)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    done = []
    for fn in known:
        if fn.__name__ in applied:
            continue
        _apply_one(conn, fn)
        done.append(fn.__name__)
    return done


def _apply_one(conn: sqlite3.Connection, fn: MigrationFunction) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        fn(conn)
        conn.execute(
            "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (fn.__name__, now_ts())
        )
    except sqlite3.Error as exc:
        conn.rollback()
        raise MigrationError(f"migration {fn.__name__} failed: {exc}") from exc
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


# -- the migrations ------------------------------------------------------------------------------
# ``conn.execute`` (not ``executescript``, which would commit) runs one statement at a time, so
# each migration lists its statements.


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    """Create the event log, the projection tables, link configuration and ``events_view``."""
    for statement in _M001:
        conn.execute(statement)


_M001: Final = (
    # The log. ``id`` is the local display id; ``(origin, seq)`` the global id.
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts TEXT NOT NULL,
        type TEXT NOT NULL,
        agent TEXT NOT NULL,
        data TEXT NOT NULL,
        UNIQUE (origin, seq)
    )""",
    "CREATE INDEX events_by_type ON events (type)",
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
    """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
    # Projections (store/projections.py folds events into these).
    """CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        public_key TEXT NOT NULL DEFAULT '',
        short TEXT NOT NULL DEFAULT '',
        first_seen TEXT,
        last_seen TEXT,
        online INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE agents (
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        harness TEXT NOT NULL DEFAULT '',
        cwd TEXT NOT NULL DEFAULT '',
        pid INTEGER,
        summary TEXT NOT NULL DEFAULT '',
        tags TEXT NOT NULL DEFAULT '[]',
        status TEXT NOT NULL DEFAULT 'active',
        status_ts TEXT,
        registered_ts TEXT,
        last_seen TEXT,
        PRIMARY KEY (device_id, name)
    )""",
    """CREATE TABLE inbox (
        event_id INTEGER NOT NULL REFERENCES events (id),
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        delivered_ts TEXT,
        read_ts TEXT,
        PRIMARY KEY (event_id, device_id, name)
    )""",
    "CREATE INDEX inbox_by_recipient ON inbox (device_id, name, read_ts, event_id)",
    """CREATE TABLE pending_receipts (
        message TEXT NOT NULL,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        ts TEXT NOT NULL,
        PRIMARY KEY (message, device_id, name, kind)
    )""",
    # Link configuration, written by the daemon (not events). Holds secrets: never queryable.
    """CREATE TABLE groups (
        group_id TEXT PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        secret BLOB NOT NULL,
        relay_url TEXT NOT NULL DEFAULT '',
        relay_key BLOB,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_ts TEXT NOT NULL
    )""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # What users query (`events --where`): display addresses instead of device ids.
    """CREATE VIEW events_view (id, ts, type, agent, device, origin, seq, data) AS
        SELECT e.id, e.ts, e.type,
            CASE WHEN e.agent = '' THEN '' ELSE e.agent || ':' || coalesce(d.short, '') END,
            coalesce(d.short, ''), e.origin, e.seq, e.data
        FROM events AS e LEFT JOIN devices AS d ON d.device_id = e.origin""",
)


@migration
def m_rooms_001_coordination(conn: sqlite3.Connection) -> None:
    """Rooms, presence, cursors, threads, full-text search, watches, file edits and leases."""
    for statement in _M_ROOMS_001:
        conn.execute(statement)


# Projections of the coordination events (store/rooms.py, store/search.py, store/leases.py).
# Rows refer to messages by their local id (``events.id``) and to agents by (device_id, name).
_M_ROOMS_001: Final = (
    """CREATE TABLE rooms (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        creator_device TEXT NOT NULL,
        creator_name TEXT NOT NULL,
        created_ts TEXT NOT NULL
    )""",
    # Membership and invitations are last-writer-wins on the event's ts, so devices that
    # receive joins, leaves and kicks of different origins in different orders converge.
    """CREATE TABLE room_members (
        room TEXT NOT NULL,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        joined INTEGER NOT NULL,
        ts TEXT NOT NULL,
        PRIMARY KEY (room, device_id, name)
    )""",
    "CREATE INDEX room_members_by_agent ON room_members (device_id, name)",
    """CREATE TABLE room_invites (
        room TEXT NOT NULL,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        invited INTEGER NOT NULL,
        inviter TEXT NOT NULL,
        ts TEXT NOT NULL,
        PRIMARY KEY (room, device_id, name)
    )""",
    """CREATE TABLE room_messages (
        event_id INTEGER NOT NULL,
        room TEXT NOT NULL,
        PRIMARY KEY (room, event_id)
    )""",
    "CREATE INDEX room_messages_by_event ON room_messages (event_id)",
    """CREATE TABLE room_cursors (
        room TEXT NOT NULL,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        PRIMARY KEY (room, device_id, name)
    )""",
    """CREATE TABLE visibility (
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        visibility TEXT NOT NULL,
        ts TEXT NOT NULL,
        PRIMARY KEY (device_id, name)
    )""",
    """CREATE TABLE message_threads (
        event_id INTEGER PRIMARY KEY,
        thread TEXT NOT NULL,
        reply_to TEXT
    )""",
    "CREATE INDEX message_threads_by_thread ON message_threads (thread, event_id)",
    "CREATE VIRTUAL TABLE message_fts USING fts5 (text, tokenize = 'unicode61')",
    """CREATE TABLE watches (
        ref TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        thread TEXT NOT NULL,
        sender_device TEXT NOT NULL,
        sender_name TEXT NOT NULL,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        ts TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'open',
        PRIMARY KEY (ref, device_id, name)
    )""",
    "CREATE INDEX watches_open ON watches (state, sender_device)",
    """CREATE TABLE file_edits (
        event_id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        repo TEXT NOT NULL,
        path TEXT NOT NULL,
        ts TEXT NOT NULL
    )""",
    "CREATE INDEX file_edits_by_path ON file_edits (repo, path, ts)",
    """CREATE TABLE edit_notices (
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        other TEXT NOT NULL,
        path TEXT NOT NULL,
        ts TEXT NOT NULL
    )""",
    "CREATE INDEX edit_notices_by_pair ON edit_notices (device_id, name, other, path, ts)",
    """CREATE TABLE leases (
        ref TEXT NOT NULL,
        pattern TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        repo TEXT NOT NULL,
        exclusive INTEGER NOT NULL,
        reason TEXT NOT NULL,
        ts TEXT NOT NULL,
        expires TEXT NOT NULL,
        released_ts TEXT,
        PRIMARY KEY (ref, pattern)
    )""",
    "CREATE INDEX leases_by_repo ON leases (repo, released_ts, expires)",
)


@migration
def m_delivery_001_contexts(conn: sqlite3.Connection) -> None:
    """Injections into agents' contexts, harness sessions, anchors and subscriptions."""
    for statement in _M_DELIVERY_001:
        conn.execute(statement)


_M_DELIVERY_001: Final = (
    # Projection of message_injected: which message went into which context of a recipient.
    """CREATE TABLE injections (
        message TEXT NOT NULL,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        context TEXT NOT NULL,
        via TEXT NOT NULL DEFAULT '',
        ts TEXT NOT NULL,
        PRIMARY KEY (message, device_id, name, context)
    )""",
    "CREATE INDEX injections_by_recipient ON injections (device_id, name, context)",
    # Projection of session_started/_stopped and context_compacted.
    """CREATE TABLE sessions (
        device_id TEXT NOT NULL,
        harness TEXT NOT NULL,
        session TEXT NOT NULL,
        name TEXT NOT NULL,
        generation INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL DEFAULT '',
        cwd TEXT NOT NULL DEFAULT '',
        started_ts TEXT NOT NULL,
        last_ts TEXT NOT NULL,
        ended_ts TEXT,
        PRIMARY KEY (device_id, harness, session)
    )""",
    "CREATE INDEX sessions_by_agent ON sessions (device_id, name, last_ts)",
    # Local, never replicated: which harness process acts as which agent.
    """CREATE TABLE harness_anchors (
        anchor TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        harness TEXT NOT NULL DEFAULT '',
        session TEXT NOT NULL DEFAULT '',
        ts TEXT NOT NULL
    )""",
    # Local, never replicated: events an agent asked to be told about, and how far it was told.
    """CREATE TABLE subscriptions (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        type_glob TEXT NOT NULL DEFAULT '*',
        agent_glob TEXT NOT NULL DEFAULT '*',
        file_glob TEXT,
        cursor INTEGER NOT NULL DEFAULT 0,
        created_ts TEXT NOT NULL
    )""",
)


@migration
def m_links_001_link_options(conn: sqlite3.Connection) -> None:
    """Broker login and TLS files per group (JSON of ``transports.options.LinkOptions``; secret)."""
    conn.execute("ALTER TABLE groups ADD COLUMN link_options TEXT")


@migration
def m_tasks_001_tasks(conn: sqlite3.Connection) -> None:
    """Tasks (delegation): one row per task, folded from ``task_*`` events (store/tasks.py)."""
    conn.execute(
        """CREATE TABLE tasks (
            task TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            requester TEXT NOT NULL,
            harness TEXT NOT NULL,
            text TEXT NOT NULL,
            dir TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',
            terminal INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            pid INTEGER,
            started TEXT,
            window TEXT NOT NULL DEFAULT '',
            requested_ts TEXT NOT NULL,
            started_ts TEXT,
            ended_ts TEXT,
            updated_ts TEXT NOT NULL,
            exit_status INTEGER,
            result TEXT NOT NULL DEFAULT '',
            diff_stat TEXT NOT NULL DEFAULT '',
            progress TEXT NOT NULL DEFAULT '',
            prompt TEXT,
            max_runtime REAL,
            event_id INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX tasks_by_device ON tasks (device_id, state)")


@migration
def m_pairing_001_event_proofs(conn: sqlite3.Connection) -> None:
    """Other devices' signatures of their events (``signatures.EventProof``), to re-serve."""
    conn.execute(
        """CREATE TABLE event_proofs (
            origin TEXT NOT NULL,
            seq INTEGER NOT NULL,
            proof BLOB NOT NULL,
            PRIMARY KEY (origin, seq)
        ) WITHOUT ROWID"""
    )


@migration
def m_handoff_001_handoffs(conn: sqlite3.Connection) -> None:
    """Each handed-off agent's successor (``store/handoffs.py``)."""
    conn.execute(
        """CREATE TABLE handoffs (
            device_id TEXT NOT NULL,
            name TEXT NOT NULL,
            successor TEXT NOT NULL,
            task TEXT NOT NULL,
            ts TEXT NOT NULL,
            PRIMARY KEY (device_id, name)
        ) WITHOUT ROWID"""
    )


@migration
def m_transcripts_001_sources(conn: sqlite3.Connection) -> None:
    """Where each local harness session keeps its transcript (local, never replicated)."""
    conn.execute(
        """CREATE TABLE transcript_sources (
            harness TEXT NOT NULL,
            session TEXT NOT NULL,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            ts TEXT NOT NULL,
            PRIMARY KEY (harness, session)
        )"""
    )


@migration
def m_approvals_001_permission_prompts(conn: sqlite3.Connection) -> None:
    """Permission prompts of agents that run no task (store/prompts.py)."""
    conn.execute(
        """CREATE TABLE permission_prompts (
            prompt TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            name TEXT NOT NULL,
            harness TEXT NOT NULL DEFAULT '',
            tool TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '',
            asked_ts TEXT NOT NULL,
            state TEXT NOT NULL,
            answered_by TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '',
            answered_ts TEXT,
            event_id INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX permission_prompts_pending ON permission_prompts (state, device_id)")


@migration
def m_plans_001_plans(conn: sqlite3.Connection) -> None:
    """Plans (task graphs): one row per plan, folded from ``plan_*`` events (store/plans.py)."""
    conn.execute(
        """CREATE TABLE plans (
            plan TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            agent TEXT NOT NULL,
            name TEXT NOT NULL,
            state TEXT NOT NULL,
            steps TEXT NOT NULL,
            started_ts TEXT NOT NULL,
            ended_ts TEXT,
            version INTEGER NOT NULL DEFAULT 1,
            event_id INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX plans_by_device ON plans (device_id, state)")


@migration
def m_term_001_terminals(conn: sqlite3.Connection) -> None:
    """Local, never replicated: the tmux pane each local agent runs in, as its hooks reported
    it (daemon/term.py); ``pane_pid`` and ``pane_started`` tell a reused pane id apart."""
    conn.execute(
        """CREATE TABLE terminals (
            name TEXT PRIMARY KEY,
            socket TEXT NOT NULL,
            pane TEXT NOT NULL,
            pane_pid INTEGER NOT NULL,
            pane_started TEXT NOT NULL DEFAULT '',
            ts TEXT NOT NULL
        )"""
    )


@migration
def m_forget_001_group_keys(conn: sqlite3.Connection) -> None:
    """Every key of a group across rotations, and forgotten devices (``store/keys.py``)."""
    conn.execute(
        """CREATE TABLE group_keys (
            group_id TEXT NOT NULL,
            kid BLOB NOT NULL,
            secret BLOB,
            previous BLOB,
            author TEXT NOT NULL DEFAULT '',
            members TEXT NOT NULL DEFAULT '[]',
            forgotten TEXT NOT NULL DEFAULT '{}',
            root INTEGER NOT NULL DEFAULT 0,
            added_ts TEXT NOT NULL,
            PRIMARY KEY (group_id, kid)
        )"""
    )
    conn.execute("ALTER TABLE devices ADD COLUMN forgotten INTEGER")


@migration
def m_forget_002_rotation_seq(conn: sqlite3.Connection) -> None:
    """Each rotation's seq in its author's log (``keyring.Keyring.sealing_key``)."""
    conn.execute("ALTER TABLE group_keys ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    conn.execute(
        """UPDATE group_keys SET seq = coalesce((SELECT e.seq FROM events e
            WHERE e.origin = group_keys.author AND e.type = 'group_rekeyed'
            AND json_extract(e.data, '$.key') = lower(hex(group_keys.kid))), 0)
        WHERE previous IS NOT NULL"""
    )
