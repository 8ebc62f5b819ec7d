"""run_query: event JSON rows, filters, and an authorizer and limits that hold against abuse."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from store_helpers import ME, OTHER, PEER, count, remote

from switchboard.errors import QueryRejected, StoreError
from switchboard.events import AgentRegistered, CommandRun, FileEdited, MessagePosted
from switchboard.ids import short_id
from switchboard.store import projections
from switchboard.store.log import EventLog
from switchboard.store.query import GuardedQuery, check_where, open_guarded, run_query


@pytest.fixture
def populated(fresh_store: EventLog, store_path: Path) -> Path:
    """A log with four events of ME (luna) and three of PEER (nova), and a group secret."""
    fresh_store.append_sync(
        [
            ("luna", AgentRegistered(name="luna")),
            ("luna", FileEdited(path="a.py")),
            ("luna", FileEdited(path="b.py")),
            ("", CommandRun(command="sync")),
        ]
    )
    fresh_store.receive_sync(
        [
            remote(PEER, 1, AgentRegistered(name="nova")),
            remote(PEER, 2, FileEdited(path="c.py")),
            remote(PEER, 3, CommandRun(command="make")),
        ]
    )
    fresh_store.db.write_sync(
        lambda conn: projections.add_group(conn, "g1", "team", b"s3cret" * 6, "ws://relay")
    )
    return store_path


def test_query_rows_are_event_json(populated: Path) -> None:
    """Each row is the DESIGN event shape with display address, device short id and parsed data."""
    rows = run_query(populated)
    assert [row["id"] for row in rows] == list(range(1, 8))
    assert rows[1] == {
        "id": 2,
        "ts": rows[1]["ts"],
        "type": "file_edited",
        "agent": f"luna:{short_id(ME)}",
        "device": short_id(ME),
        "origin": ME,
        "seq": 2,
        "data": {"path": "a.py", "tool": "", "repo": "", "repo_path": ""},
    }
    assert (rows[3]["agent"], rows[3]["device"]) == ("", short_id(ME))
    assert rows[6]["agent"] == f"nova:{short_id(PEER)}"


def test_query_filters_by_type_agent_and_after(populated: Path) -> None:
    """``type``, ``agent`` (name or display address) and ``after`` narrow the rows."""
    assert [r["id"] for r in run_query(populated, type="file_edited")] == [2, 3, 6]
    assert [r["id"] for r in run_query(populated, agent="nova")] == [5, 6, 7]
    assert [r["id"] for r in run_query(populated, agent="@luna")] == [1, 2, 3]
    address = f"Nova:{short_id(PEER).lower()}"
    assert [r["id"] for r in run_query(populated, agent=address, type="command_run")] == [7]
    assert [r["id"] for r in run_query(populated, after=5)] == [6, 7]


def test_query_last_returns_newest_oldest_first(populated: Path) -> None:
    """``last`` keeps the newest N matching rows and returns them oldest first."""
    assert [r["id"] for r in run_query(populated, last=3)] == [5, 6, 7]
    assert [r["id"] for r in run_query(populated, type="file_edited", last=2)] == [3, 6]
    assert run_query(populated, last=0) == []
    with pytest.raises(QueryRejected, match="--last"):
        run_query(populated, last=-1)


def test_query_where_reads_the_view_and_json(populated: Path) -> None:
    """``where`` is SQL over events_view, JSON operators and literals with symbols included;
    subqueries read visible_events."""
    assert [r["id"] for r in run_query(populated, "data ->> '$.path' = 'c.py'")] == [6]
    assert [r["id"] for r in run_query(populated, "json_extract(data, '$.command') = 'make'")] == [
        7
    ]
    assert run_query(populated, "data ->> '$.path' = 'x); DROP TABLE events; --'") == []
    assert len(run_query(populated, "origin IN (SELECT origin FROM visible_events)")) == 7


def test_query_invalid_agent_filter_is_rejected(populated: Path) -> None:
    """A malformed agent filter is a QueryRejected, not a crash."""
    with pytest.raises(QueryRejected, match="invalid agent filter"):
        run_query(populated, agent="no such:!!")


@pytest.mark.parametrize(
    "where",
    [
        "1); DROP TABLE events; --",
        "1=1) UNION SELECT group_id, name, secret, relay_url, 1, 2, 3, '{}' FROM groups --",
        "1) UNION SELECT id, ts, type, agent, device, origin, seq, data FROM events_view WHERE (1",
        "1=1) /* cut off the limit",
        "1 -- cut off the limit",
        "1; SELECT 1",
        "id = ?",
        "id = :after",
        "(1",
        "'unterminated",
    ],
)
def test_query_where_cannot_escape_its_parentheses(populated: Path, where: str) -> None:
    """Attempts to end the statement, comment out its tail or bind parameters are refused."""
    with pytest.raises(QueryRejected):
        run_query(populated, where)
    assert count(sqlite3.connect(populated), "events") == 7


@pytest.mark.parametrize(
    "where",
    [
        "(SELECT count(*) FROM groups) >= 0",
        "EXISTS (SELECT secret FROM groups)",
        "(SELECT count(*) FROM meta) >= 0",
        "(SELECT count(*) FROM sqlite_master) >= 0",
        "(SELECT count(*) FROM _migrations) >= 0",
        "load_extension('/tmp/evil.so') IS NULL",
        "length(randomblob(10)) > 0",
        "origin IN (SELECT device_id FROM devices)",
        "EXISTS (SELECT 1 FROM events WHERE data LIKE '%make%')",
        "(SELECT count(*) FROM events) > 0",
        "(SELECT count(*) FROM events_view WHERE type = 'command_run') > 0",
        "(SELECT count(*) FROM main.events_view) > 0",
        "EXISTS (SELECT 1 FROM json_each(data))",
    ],
)
def test_query_where_cannot_read_other_tables_or_call_unlisted_functions(
    populated: Path, where: str
) -> None:
    """Secrets, the schema, dangerous functions and the unfiltered log are out of reach of
    ``where``."""
    with pytest.raises(QueryRejected, match="refused"):
        run_query(populated, where)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO events (origin, seq, ts, type, agent, data) VALUES ('x', 1, '', '', '', '{}')",
        "UPDATE devices SET name = 'x'",
        "DELETE FROM events",
        "DROP TABLE events",
        "CREATE TABLE t (x)",
        "CREATE TEMP TABLE t (x)",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA journal_mode",
        "PRAGMA writable_schema = 1",
        "SELECT secret FROM groups",
        "SELECT * FROM meta",
        "BEGIN IMMEDIATE",
        "SELECT * FROM events",
        "SELECT * FROM events_view",
        "CREATE TEMP VIEW v AS SELECT 1",
        "DROP VIEW visible_events",
    ],
)
def test_query_authorizer_refuses_everything_but_reading_the_log(
    populated: Path, statement: str
) -> None:
    """On the guarded connection, writes, ATTACH, PRAGMA and other tables are refused."""
    conn = open_guarded(populated)
    try:
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(statement).fetchall()
        assert conn.execute("SELECT count(*) FROM visible_events").fetchone()[0] == 7
    finally:
        conn.close()


def test_query_row_limit_refuses_large_results(populated: Path) -> None:
    """More rows than ``max_rows`` is refused; a narrower query passes."""
    with pytest.raises(QueryRejected, match="more than 3 rows"):
        run_query(populated, max_rows=3)
    assert len(run_query(populated, last=3, max_rows=3)) == 3


def test_query_time_limit_interrupts_long_queries(fresh_store: EventLog, store_path: Path) -> None:
    """A query still running after ``max_seconds`` is interrupted and refused."""
    fresh_store.append_sync([("luna", CommandRun(command=str(n))) for n in range(300)])
    heavy = "(SELECT count(*) FROM visible_events AS a, visible_events AS b, visible_events) > 0"
    with pytest.raises(QueryRejected, match="time limit"):
        run_query(store_path, heavy, max_seconds=0.01)


def test_query_value_limit_refuses_huge_values(populated: Path) -> None:
    """A where clause cannot build gigantic strings or blobs."""
    with pytest.raises(QueryRejected):
        run_query(populated, "length(replace(printf('%.*c', 5000000, 'x'), 'x', 'xxxx')) > 0")


def test_query_missing_database_is_a_store_error(tmp_path: Path) -> None:
    """Querying a database file that does not exist raises StoreError."""
    with pytest.raises(StoreError):
        run_query(tmp_path / "missing.db")


def test_query_check_where_accepts_quoted_symbols() -> None:
    """Quotes, doubled quotes and bracketed identifiers may hold any symbol."""
    check_where("""a = 'it''s -- ; ( ?' AND "we""ird;" = [x)--] AND `b(` = x'00'""")
    with pytest.raises(QueryRejected, match="exceeds"):
        check_where("1" * 5000)


def test_query_guarded_close_while_a_query_runs_waits_for_it(
    fresh_store: EventLog, store_path: Path
) -> None:
    """Closing a GuardedQuery from another thread mid-query closes it once the query ends.

    (Closing under a running statement crashed the daemon: a follower's client left while
    its query ran in a worker thread.)
    """
    fresh_store.append_sync([("luna", FileEdited(path=f"f{n}.py")) for n in range(200)])
    guarded = GuardedQuery(store_path, visible_rooms=None, max_seconds=0.5)
    heavy = "(SELECT count(*) FROM visible_events AS x, visible_events AS y, visible_events) > 0"
    outcome: list[object] = []

    def query() -> None:
        try:
            outcome.append(len(guarded.run(heavy)))
        except QueryRejected as exc:
            outcome.append(exc)

    worker = threading.Thread(target=query)
    worker.start()
    while not guarded.busy and worker.is_alive():
        pass  # the query holds the connection within microseconds
    guarded.close()
    worker.join(10)
    assert outcome, "the query ended neither with rows nor with a refusal"
    assert guarded.closed
    with pytest.raises(QueryRejected, match="closed"):
        guarded.run()


def test_query_guarded_follows_devices_that_join_and_still_refuses_other_tables(
    populated: Path, fresh_store: EventLog
) -> None:
    """A kept connection's ``display_data`` shows a device that joined after it opened by its
    short id, and its own refresh of the short ids lets no where clause read the devices
    table."""
    guarded = GuardedQuery(populated, visible_rooms=None)
    try:
        assert len(guarded.run()) == 7
        note = MessagePosted(to=["@vega"], recipients=[f"vega:{OTHER}"], text="hi")
        fresh_store.receive_sync([remote(OTHER, 1, note, agent="vega")])
        shown = f"instr(display_data, 'vega:{short_id(OTHER)}') > 0"
        assert [row["agent"] for row in guarded.run(shown)] == [f"vega:{short_id(OTHER)}"]
        for _ in range(2):  # the refresh ran just before each of these
            with pytest.raises(QueryRejected, match="refused"):
                guarded.run("(SELECT count(*) FROM devices) > 0")
        assert len(guarded.run(type="agent_registered")) == 2
    finally:
        guarded.close()
