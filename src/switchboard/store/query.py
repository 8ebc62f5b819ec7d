"""Read-only user SQL over the events a reader may see, with an authorizer and limits."""

# Theory of operation
#
# ``events --where SQL`` runs user text on this device's database, which also holds group
# secrets and the sealed events of every room, secret ones included. Five layers keep that safe,
# each enough to stop a different mistake in the others:
#
# 1. A fresh ``mode=ro`` connection with ``query_only``: nothing can be written.
# 2. Before any user text runs, the connection gets a temporary view, ``visible_events``: the
#    columns of ``events_view`` less every event about a room the reader may not see (issue #4:
#    "a secret room is not listed and its messages are not shown to non-members even though
#    every device holds the sealed events of the group"). The rooms it keeps are an allowlist,
#    so a room this device holds events of but no ``rooms`` row for (its creation is still on
#    its way from another origin) stays hidden too. The device's own tools may ask for the
#    whole log (``visible_rooms=None``); the daemon's API does so only when told ``all_rooms``.
# 3. The user text is checked to be one balanced expression before it is placed in
#    ``SELECT ... FROM visible_events AS events_view WHERE (<where>)``: no ``;``, no comments,
#    no parameters, and parentheses that never close ours. So it can neither end our statement
#    nor cut off our ``ORDER BY`` and ``LIMIT``.
# 4. An authorizer allows only ``SELECT``, calling listed functions, reading ``visible_events``,
#    and reading the tables *behind* it only when the innermost view doing the read is
#    ``visible_events`` (SQLite names it to the authorizer). So a subquery over ``events``,
#    ``devices`` or the unfiltered ``events_view`` is refused, and so is everything else:
#    writes, ``ATTACH``, ``PRAGMA``, the ``groups`` and ``meta`` tables, ``sqlite_master``,
#    ``load_extension``. A subquery over ``visible_events`` is fine: it holds nothing the
#    reader may not see.
# 5. A progress handler stops the query after ``max_seconds``; rows past ``max_rows`` and values
#    longer than ``MAX_VALUE_LENGTH`` are refused.
#
# Event data names agents by internal address (``nova:<26-letter device id>``: recipients,
# readers, subjects). For people, ``visible_events`` also has ``display_data``, the data with
# every internal address shown as a display address (``nova:ABCD``), and queries may call
# ``display(text)``, which does the same to any text. Both use the device short ids as they
# stand when the query runs.

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from switchboard.errors import QueryRejected, StoreError, SwitchboardError
from switchboard.ids import parse_address, parse_name, parse_room
from switchboard.store.db import connect_readonly

# A listing of more rows than this is not read by a person or an agent; narrow the query
# (--type, --agent, --last) instead. Also bounds the memory a query result takes.
DEFAULT_MAX_ROWS: Final = 10_000
# Interactive queries on a log of a few million events finish well within this; a query that
# takes longer is scanning something it should not, and holds a read snapshot meanwhile.
DEFAULT_MAX_SECONDS: Final = 2.0
# A where clause is typed by a person or an agent: this is ample, and caps parsing work.
DEFAULT_MAX_WHERE_LENGTH: Final = 4_096
# Longest string or blob a query may read or build: well above any event (frames are at most
# 1 MiB), far below what `zeroblob(1e9)` or `printf('%.*c', 1e9, 'x')` would allocate.
MAX_VALUE_LENGTH: Final = 8 * 1024 * 1024
# SQLite virtual-machine steps between two looks at the clock: ~10 microseconds of work.
_PROGRESS_STEPS: Final = 1_000

#: The temporary view a query reads (``FROM visible_events AS events_view``; ``_VIEW_SQL``).
VIEW: Final = "visible_events"
# Tables only VIEW's own definition reads (json_each is the table-valued function it calls).
_VIEW_READS: Final = frozenset({"events", "devices", "room_messages", "json_each"})
_SHORTS_SQL: Final = "SELECT device_id, short FROM main.devices"
_FUNCTIONS: Final = frozenset(
    {
        "abs", "avg", "char", "coalesce", "count", "date", "datetime", "format", "glob",
        "group_concat", "hex", "ifnull", "iif", "instr", "json", "json_array",
        "json_array_length", "json_extract", "json_object", "json_quote", "json_type",
        "json_valid", "julianday", "length", "like", "likelihood", "likely", "lower", "ltrim",
        "max", "min", "nullif", "octet_length", "printf", "quote", "replace", "round", "rtrim",
        "sign", "strftime", "string_agg", "substr", "substring", "sum", "time", "total", "trim",
        "typeof", "unicode", "unixepoch", "unlikely", "upper", "->", "->>", "display",
    }
)  # fmt: skip
# An internal address's device part: ``:`` then a full device id (ids._DEVICE_RE).
_INTERNAL = re.compile(r":([a-z2-7]{26})(?![a-z2-7])")

_COLUMNS: Final = "id, ts, type, agent, device, origin, seq, data"

# events_view's definition (migration m001), read from the tables so that every read it makes
# is VIEW's own; tests/store/test_query_rooms.py checks that the two agree row for row.
# ``display_data`` comes last, beyond the columns of events_view.
_VIEW_SQL: Final = """CREATE TEMP VIEW visible_events (id, ts, type, agent, device, origin, seq,
    data, display_data) AS SELECT e.id, e.ts, e.type,
        CASE WHEN e.agent = '' THEN '' ELSE e.agent || ':' || coalesce(d.short, '') END,
        coalesce(d.short, ''), e.origin, e.seq, e.data, display(e.data)
    FROM main.events AS e LEFT JOIN main.devices AS d ON d.device_id = e.origin"""

# What the room code writes (store/rooms.py, daemon/rooms.py): room events and notices name
# their room in ``data.room``; messages and notices address ``#room`` targets in ``data.to``
# (``message_to_rooms`` indexes those in ``room_messages``); receipts name a message
# ``origin/seq`` in ``data.message``. An event naming any room outside ``:rooms`` (the SQL list
# of rooms the reader may see) is left out, and so is one whose test is NULL (a malformed room).
_HIDDEN_SQL: Final = """
    WHERE NOT coalesce(CASE
        WHEN e.type IN ('room_created', 'room_joined', 'room_left', 'room_invited',
            'room_kicked', 'room_read')
        THEN lower(json_extract(e.data, '$.room')) NOT IN (:rooms)
        WHEN e.type IN ('message_posted', 'notice_posted')
        THEN (json_extract(e.data, '$.room') IS NOT NULL
                AND lower(json_extract(e.data, '$.room')) NOT IN (:rooms))
            OR EXISTS (SELECT 1 FROM json_each(e.data, '$.to') AS t
                WHERE substr(t.value, 1, 1) = '#' AND lower(substr(t.value, 2)) NOT IN (:rooms))
        WHEN e.type IN ('message_delivered', 'message_read', 'message_injected')
        THEN json_extract(e.data, '$.message') IN (
            SELECT h.origin || '/' || h.seq FROM main.room_messages AS m
                JOIN main.events AS h ON h.id = m.event_id
            WHERE m.room NOT IN (:rooms))
        ELSE 0 END, 1)"""
_data_decoder: Final = msgspec.json.Decoder(dict[str, Any])


def run_query(
    db_path: Path | str,
    where: str | None = None,
    *,
    type: str | None = None,
    agent: str | None = None,
    last: int | None = None,
    after: int | None = None,
    visible_rooms: Collection[str] | None = (),
    max_rows: int = DEFAULT_MAX_ROWS,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> list[dict[str, Any]]:
    """Return the events matching the filters as event JSON objects, oldest first.

    Args:
        db_path: the database file.
        where: read-only SQL over ``events_view(id, ts, type, agent, device, origin, seq,
            data)``, used as ``WHERE (<where>)``; its subqueries may read ``visible_events``
            (the same rows), never ``events``, ``devices`` or ``events_view``.
        type: only events of this type.
        agent: only events of this agent: a display address (``luna:BOXE``) or a name.
        last: only the newest ``last`` matching events (still returned oldest first).
        after: only events with a local id above this.
        visible_rooms: the rooms (names without ``#``) whose events the reader may see; events
            about any other room are left out, those about no room are all kept. The default
            shows no room's events; ``None`` shows the device's whole log.
        max_rows: refuse results with more rows than this.
        max_seconds: stop the query after this long.

    Returns:
        ``{"id", "ts", "type", "agent", "device", "origin", "seq", "data"}`` dicts.

    Raises:
        QueryRejected: the query was refused, is invalid, or hit a limit.
        StoreError: the database could not be opened.
    """
    guarded = GuardedQuery(db_path, visible_rooms=visible_rooms, max_seconds=max_seconds)
    try:
        return guarded.run(where, type=type, agent=agent, last=last, after=after, max_rows=max_rows)
    finally:
        guarded.close()


class GuardedQuery:
    """A guarded connection (``open_guarded``) kept open for a series of queries.

    A follower (``events --follow``) asks the same question again at every change of the log;
    opening a connection and building its view each time cost more than the query. Each query
    gets its own ``max_seconds``. Queries run one at a time, in any thread. ``close`` may come
    from another thread while a query runs (a follower whose client left while its query ran
    in a worker): the connection is then closed by that query when it ends, never under it.
    """

    def __init__(
        self,
        db_path: Path | str,
        *,
        visible_rooms: Collection[str] | None = (),
        max_seconds: float = DEFAULT_MAX_SECONDS,
    ) -> None:
        """Open the connection and its view for ``visible_rooms`` (see ``run_query``).

        Raises:
            StoreError: the database could not be opened.
            QueryRejected: a name in ``visible_rooms`` is not a room name.
        """
        self.db_path = db_path
        self.max_seconds = max_seconds
        self._rooms = _room_key(visible_rooms)
        self._deadline = [time.monotonic() + max_seconds]
        # The display names, kept current in place before each query (``_refresh_display``):
        # redefining the SQL function or switching the authorizer would expire the prepared
        # statements, and a follower would compile its query again at every change of the log.
        self._shorts: dict[str, str] = {}
        self._internal = [False]  # set while this class runs its own statement
        self._conn = open_guarded(
            db_path,
            visible_rooms=visible_rooms,
            max_seconds=max_seconds,
            deadline=self._deadline,
            shorts=self._shorts,
            internal=self._internal,
        )
        self._busy = threading.Lock()  # held while the connection is in use
        self._close_requested = False
        self._closed = False

    def show(self, visible_rooms: Collection[str] | None) -> None:
        """Let the next queries see ``visible_rooms`` (a reader's rooms change as it joins).

        Raises:
            StoreError: the view could not be rebuilt.
            QueryRejected: a name in ``visible_rooms`` is not a room name.
        """
        key = _room_key(visible_rooms)
        if key == self._rooms:
            return
        with self._busy:
            self._show(visible_rooms, key)

    def _show(self, visible_rooms: Collection[str] | None, key: frozenset[str] | None) -> None:
        view = _view_sql(visible_rooms)
        self._conn.set_authorizer(None)
        try:
            _create_view(self._conn, view, replace=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prepare a query on {self.db_path}: {exc}") from exc
        finally:
            self._conn.set_authorizer(_authorizer(visible_rooms is None, self._internal))
        self._rooms = key

    def run(
        self,
        where: str | None = None,
        *,
        type: str | None = None,
        agent: str | None = None,
        last: int | None = None,
        after: int | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
        page: int | None = None,
    ) -> list[dict[str, Any]]:
        """Run one query (the arguments are ``run_query``'s).

        ``page``: return at most this many rows, oldest first, instead of refusing a result of
        more than ``max_rows`` (a follower reads a burst in pages).

        Raises:
            QueryRejected: the query was refused, is invalid, or hit a limit.
        """
        cap = max_rows + 1 if page is None else min(page, max_rows)
        sql, params = _build(where, type=type, agent=agent, last=last, after=after, cap=cap)
        started = time.monotonic()
        with self._busy:
            if self._closed:
                raise QueryRejected("the query's connection is closed")
            self._deadline[0] = started + self.max_seconds
            try:
                self._refresh_display()
                rows = self._conn.execute(sql, params).fetchall()
            except (sqlite3.Error, sqlite3.Warning, ValueError) as exc:
                timed_out = time.monotonic() - started >= self.max_seconds
                raise _rejection(exc, timed_out=timed_out, max_seconds=self.max_seconds) from exc
            finally:
                if self._close_requested:
                    self._close_now()
        if self._close_requested:  # asked while we held the lock, after we looked
            self.close()
        if page is None and len(rows) > max_rows:
            raise QueryRejected(
                f"query matched more than {max_rows} rows: narrow it with --type, --agent or --last"
            )
        return [_event_json(row) for row in rows]

    def _refresh_display(self) -> None:
        # Devices join (and short ids lengthen) while a follower's connection stays open. The
        # authorizer lets this one fixed statement through while ``_internal`` is set; no user
        # text is prepared or run meanwhile (we hold ``_busy``).
        self._internal[0] = True
        try:
            rows = self._conn.execute(_SHORTS_SQL).fetchall()
        finally:
            self._internal[0] = False
        if len(rows) != len(self._shorts) or any(self._shorts.get(d) != s for d, s in rows):
            self._shorts.clear()
            self._shorts.update(rows)

    @property
    def busy(self) -> bool:
        """Whether a query is running."""
        return self._busy.locked()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self._closed

    def close(self) -> None:
        """Close the connection now, or as soon as the query running in another thread ends."""
        self._close_requested = True
        if self._busy.acquire(blocking=False):
            try:
                self._close_now()
            finally:
                self._busy.release()

    def _close_now(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.close()


def _room_key(visible_rooms: Collection[str] | None) -> frozenset[str] | None:
    return None if visible_rooms is None else frozenset(visible_rooms)


def open_guarded(
    db_path: Path | str,
    *,
    visible_rooms: Collection[str] | None = (),
    max_seconds: float = DEFAULT_MAX_SECONDS,
    deadline: list[float] | None = None,
    shorts: dict[str, str] | None = None,
    internal: list[bool] | None = None,
) -> sqlite3.Connection:
    """Open a fresh read-only connection that may only read ``visible_events``, for
    ``max_seconds``.

    ``visible_events`` is ``events_view`` less the events about rooms not in ``visible_rooms``
    (``None``: none are left out). Every statement on the connection is checked by the
    authorizer; any statement still running ``max_seconds`` after opening is interrupted, or
    after ``deadline[0]`` when a ``deadline`` cell is given (its owner moves it per query).
    ``shorts``: the dict that ``display()`` reads device short ids from, filled here (its owner
    may refresh it in place); ``internal``: a cell whose owner sets it while running its own
    statements, which the authorizer then lets through.

    Raises:
        StoreError: the database could not be opened.
        QueryRejected: a name in ``visible_rooms`` is not a room name.
    """
    view = _view_sql(visible_rooms)
    cell = deadline if deadline is not None else [time.monotonic() + max_seconds]
    try:
        conn = connect_readonly(Path(db_path))
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {db_path}: {exc}") from exc
    try:
        shorts = {} if shorts is None else shorts
        shorts.update(conn.execute(_SHORTS_SQL).fetchall())
        _add_display(conn, shorts)
        _create_view(conn, view)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot prepare a query on {db_path}: {exc}") from exc
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_LENGTH)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.set_progress_handler(lambda: time.monotonic() > cell[0], _PROGRESS_STEPS)
    conn.set_authorizer(_authorizer(visible_rooms is None, internal or [False]))
    return conn


def _view_sql(visible_rooms: Collection[str] | None) -> str:
    if visible_rooms is None:
        return _VIEW_SQL
    try:
        names = sorted({parse_room(room) for room in visible_rooms})
    except SwitchboardError as exc:
        raise QueryRejected(f"invalid visible room: {exc}") from exc
    # Room names are [a-z0-9_.-] (parse_room), so each literal is plain text in quotes.
    rooms = ", ".join(f"'{name}'" for name in names)
    # A view cannot hold parameters: the list is spliced in where the SQL says :rooms.
    return _VIEW_SQL + _HIDDEN_SQL.replace(":rooms", rooms)


def _add_display(conn: sqlite3.Connection, shorts: Mapping[str, str]) -> None:
    """Give ``conn`` the SQL function ``display(text)``: internal addresses as display ones,
    with the short ids in ``shorts`` as they are when it runs."""

    def show(match: re.Match[str]) -> str:
        short = shorts.get(match[1])
        return f":{short}" if short else match[0]

    def display(value: Any) -> Any:
        if not isinstance(value, str) or ":" not in value:
            return value
        return _INTERNAL.sub(show, value)

    conn.create_function("display", 1, display, deterministic=True)


def _create_view(conn: sqlite3.Connection, view: str, *, replace: bool = False) -> None:
    # The file is open read-only (mode=ro), so lifting query_only lets this connection write
    # its own temp schema and nothing else; it is back on before any user text runs.
    conn.execute("PRAGMA query_only = 0")
    try:
        if replace:
            conn.execute(f"DROP VIEW IF EXISTS temp.{VIEW}")
        conn.execute(view)
    finally:
        conn.execute("PRAGMA query_only = 1")


def _build(
    where: str | None,
    *,
    type: str | None,
    agent: str | None,
    last: int | None,
    after: int | None,
    cap: int,
) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if where is not None:
        check_where(where)
        clauses.append(f"({where})")
    if type is not None:
        clauses.append("type = :type")
        params["type"] = type
    if agent is not None:
        clauses.append(_agent_clause(agent, params))
    if after is not None:
        clauses.append("id > :after")
        params["after"] = after
    condition = " AND ".join(clauses) or "1"
    # The only user text here passed check_where; the authorizer guards what it may touch.
    sql = f"SELECT {_COLUMNS} FROM {VIEW} AS events_view WHERE {condition}"  # noqa: S608
    if last is None:
        params["cap"] = cap
        return f"{sql} ORDER BY id LIMIT :cap", params
    if last < 0:
        raise QueryRejected(f"--last must be 0 or more, got {last}")
    params["last"] = min(last, cap)
    return f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT :last) ORDER BY id", params  # noqa: S608


def _agent_clause(agent: str, params: dict[str, Any]) -> str:
    try:
        if ":" in agent:
            params["agent"] = str(parse_address(agent))
            return "agent = :agent"
        params["agent_prefix"] = parse_name(agent.removeprefix("@")) + ":"
    except SwitchboardError as exc:
        raise QueryRejected(f"invalid agent filter: {exc}") from exc
    return "substr(agent, 1, length(:agent_prefix)) = :agent_prefix"


def check_where(where: str, max_length: int = DEFAULT_MAX_WHERE_LENGTH) -> None:
    """Check that ``where`` is one balanced expression that cannot escape ``WHERE (...)``.

    Raises:
        QueryRejected: too long, or it holds ``;``, a comment, a parameter, an unterminated
            quote or unbalanced parentheses.
    """
    if len(where) > max_length:
        raise QueryRejected(f"where clause of {len(where)} characters exceeds {max_length}")
    depth = 0
    position = 0
    while position < len(where):
        char = where[position]
        if char in "'\"`[":
            position = _skip_quoted(where, position)
            continue
        if where.startswith(("--", "/*"), position):
            raise QueryRejected("comments are not allowed in a where clause")
        if char == ";":
            raise QueryRejected("only one statement is allowed: remove the ';'")
        if char in "?:@$":
            raise QueryRejected(f"parameters are not allowed in a where clause ({char!r})")
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise QueryRejected("unbalanced parentheses in the where clause")
        position += 1
    if depth:
        raise QueryRejected("unbalanced parentheses in the where clause")


def _skip_quoted(text: str, start: int) -> int:
    """Return the index after the literal or quoted identifier starting at ``start``."""
    close = "]" if text[start] == "[" else text[start]
    position = start + 1
    while True:
        end = text.find(close, position)
        if end < 0:
            raise QueryRejected("unterminated quote in the where clause")
        # Inside '...', "..." and `...` a doubled quote stands for itself; [...] has no escape.
        if close != "]" and text.startswith(close * 2, end):
            position = end + 2
            continue
        return end + 1


_Authorizer = Callable[[int, "str | None", "str | None", "str | None", "str | None"], int]


def _authorizer(whole_log: bool, internal: list[bool]) -> _Authorizer:
    def authorize(
        action: int, arg1: str | None, arg2: str | None, db: str | None, inner: str | None
    ) -> int:
        if internal[0] or action == sqlite3.SQLITE_SELECT:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ and _may_read(arg1, arg2, db, inner, whole_log):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and arg2 is not None and arg2.lower() in _FUNCTIONS:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    return authorize


def _may_read(
    table: str | None, column: str | None, db: str | None, inner: str | None, whole_log: bool
) -> bool:
    if table == VIEW and db == "temp":
        return True  # the query itself, or a subquery over the reader's own rows
    # ``inner`` is the innermost view or trigger doing the read; users create neither (CREATE
    # is denied), so this is VIEW's own definition. ATTACH is refused, so db is main.
    if inner == VIEW and db == "main" and table in _VIEW_READS:
        return True
    # count(*) over a view without WHERE reads the table's row count outside any view (column
    # ""); with the whole log as the view, that count is no secret.
    return whole_log and table == "events" and column == "" and db in ("main", None)


def _rejection(exc: Exception, *, timed_out: bool, max_seconds: float) -> QueryRejected:
    message = str(exc)
    if timed_out and "interrupt" in message:
        return QueryRejected(f"query exceeded the time limit of {max_seconds:g} s")
    if "not authorized" in message or "prohibited" in message:
        return QueryRejected(
            f"query refused: a where clause may read the columns of events_view and, in "
            f"subqueries, {VIEW} ({message})"
        )
    if "one statement" in message:
        return QueryRejected("only one statement is allowed")
    return QueryRejected(f"invalid query: {message}")


def _event_json(row: tuple[Any, ...]) -> dict[str, Any]:
    local_id, ts, type_, agent, device, origin, seq, data = row
    return {
        "id": local_id,
        "ts": ts,
        "type": type_,
        "agent": agent,
        "device": device,
        "origin": origin,
        "seq": seq,
        "data": _data_decoder.decode(data),
    }
