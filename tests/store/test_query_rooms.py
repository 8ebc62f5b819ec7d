"""run_query's visible_events: events about rooms the reader may not see are left out."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from store_helpers import ME, PEER, raw, remote

from switchboard.errors import QueryRejected
from switchboard.events import (
    FileEdited,
    MessagePosted,
    MessageRead,
    NoticePosted,
    RoomCreated,
    RoomInvited,
    RoomJoined,
)
from switchboard.store.log import EventLog
from switchboard.store.query import open_guarded, run_query

NOVA = f"nova:{PEER}"
HIDDEN_WORDS = ("crew", "vault", "ghost")


def _message(room: str, text: str) -> MessagePosted:
    return MessagePosted(to=[f"#{room}"], recipients=[NOVA], text=text)


@pytest.fixture
def rooms_log(fresh_store: EventLog, store_path: Path) -> Path:
    """luna (ME) holds a public #lobby, a private #crew and a secret #vault, each with a
    message; nova (PEER) reads the vault message, writes to a #ghost room this device holds no
    creation of and to #VAULT in capitals; plus events about no room."""
    stored = fresh_store.append_sync(
        [
            ("luna", RoomCreated(room="lobby")),
            ("luna", RoomCreated(room="crew", kind="private", description="crew room")),
            ("luna", RoomCreated(room="vault", kind="secret", description="vault room")),
            ("luna", _message("lobby", "hello lobby")),
            ("luna", _message("crew", "crew plans")),
            ("luna", _message("vault", "vault code 1234")),
            ("luna", RoomInvited(room="vault", invitee=NOVA)),
            ("", NoticePosted(kind="invited", recipients=[NOVA], text="join #vault",
                              to=["#vault"], room="vault", subject=f"luna:{ME}")),
            ("", NoticePosted(kind="edit_conflict", recipients=[NOVA], text="a.py too",
                              path="a.py")),
            ("luna", MessagePosted(to=["@nova"], recipients=[NOVA], text="direct")),
            ("luna", FileEdited(path="a.py")),
        ]
    )  # fmt: skip
    vault_ref = f"{ME}/{stored[5][1].seq}"
    fresh_store.receive_sync(
        [
            remote(PEER, 1, RoomJoined(room="lobby")),
            remote(PEER, 2, MessageRead(message=vault_ref, reader=NOVA)),
            remote(PEER, 3, _message("ghost", "ghost story")),
            raw(PEER, 4, "message_posted", {"to": ["#VAULT"], "recipients": [], "text": "caps"}),
            raw(PEER, 5, "room_joined", {"room": 7}),
        ]
    )
    return store_path


def _texts(rows: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(row["data"]) for row in rows]


def _mentions(rows: list[dict[str, Any]], word: str) -> bool:
    return any(word in text.lower() for text in _texts(rows))


def test_query_rooms_outsider_sees_public_rooms_and_no_others(rooms_log: Path) -> None:
    """A reader who may see only #lobby gets its events and every event about no room."""
    rows = run_query(rooms_log, visible_rooms=["lobby"])
    assert not any(_mentions(rows, word) for word in HIDDEN_WORDS)
    assert not _mentions(rows, "caps")
    assert [r["data"]["text"] for r in rows if r["type"] == "message_posted"] == [
        "hello lobby",
        "direct",
    ]
    kinds = [r["type"] for r in rows]
    assert kinds.count("room_created") == 1
    assert kinds.count("room_joined") == 1  # not the one naming room 7
    assert "file_edited" in kinds
    assert [r["data"]["kind"] for r in rows if r["type"] == "notice_posted"] == ["edit_conflict"]
    assert "message_read" not in kinds


def test_query_rooms_member_sees_its_rooms(rooms_log: Path) -> None:
    """A member of #vault sees its creation, messages (any case), invitation, notice and
    receipts, and still nothing of #crew."""
    rows = run_query(rooms_log, visible_rooms=["lobby", "VAULT"])
    texts = [r["data"]["text"] for r in rows if r["type"] == "message_posted"]
    assert texts == ["hello lobby", "vault code 1234", "direct", "caps"]
    kinds = [r["type"] for r in rows]
    assert {"room_invited", "message_read"} <= set(kinds)
    assert [r["data"]["kind"] for r in rows if r["type"] == "notice_posted"] == [
        "invited",
        "edit_conflict",
    ]
    assert not _mentions(rows, "crew")
    assert not _mentions(rows, "ghost")


def test_query_rooms_default_shows_no_room(rooms_log: Path) -> None:
    """Without visible rooms, no room's events are shown; the rest of the log is."""
    rows = run_query(rooms_log)
    assert not any(_mentions(rows, word) for word in (*HIDDEN_WORDS, "lobby"))
    assert [r["type"] for r in rows] == [
        "notice_posted",
        "message_posted",
        "file_edited",
    ]


def test_query_rooms_whole_log_matches_events_view(rooms_log: Path) -> None:
    """``visible_rooms=None`` is the device's whole log, row for row what events_view holds."""
    rows = run_query(rooms_log, visible_rooms=None)
    with sqlite3.connect(rooms_log) as conn:
        view = conn.execute("SELECT * FROM events_view ORDER BY id").fetchall()
    assert [tuple({**r, "data": json.dumps(r["data"])}.values()) for r in rows] == [
        (*row[:7], json.dumps(json.loads(row[7]))) for row in view
    ]
    counted = "(SELECT count(*) FROM visible_events) = 16"
    assert len(run_query(rooms_log, counted, visible_rooms=None)) == 16


def test_query_rooms_filters_combine_with_visibility(rooms_log: Path) -> None:
    """``type``, ``agent``, ``last``, qualified columns and subqueries see only visible rows."""
    visible = ["lobby"]
    rows = run_query(rooms_log, type="message_posted", agent="luna", visible_rooms=visible)
    assert [r["data"]["text"] for r in rows] == ["hello lobby", "direct"]
    rows = run_query(rooms_log, "events_view.type = 'room_created'", visible_rooms=visible)
    assert [r["data"]["room"] for r in rows] == ["lobby"]
    assert len(run_query(rooms_log, last=2, type="message_posted", visible_rooms=visible)) == 2
    where = "(SELECT count(*) FROM visible_events WHERE data LIKE '%vault%') = 0"
    assert len(run_query(rooms_log, where, visible_rooms=visible)) == len(
        run_query(rooms_log, visible_rooms=visible)
    )


@pytest.mark.parametrize(
    "where",
    [
        "EXISTS (SELECT 1 FROM events WHERE data LIKE '%vault%')",
        "(SELECT count(*) FROM events_view WHERE data LIKE '%vault%') > 0",
        "(SELECT count(*) FROM events) > 0",
        "EXISTS (SELECT 1 FROM rooms WHERE kind = 'secret')",
        "EXISTS (SELECT 1 FROM room_messages)",
        "EXISTS (SELECT 1 FROM room_members)",
        "EXISTS (SELECT 1 FROM message_fts WHERE message_fts MATCH 'vault')",
        "EXISTS (SELECT 1 FROM devices)",
    ],
)
def test_query_rooms_subqueries_cannot_reach_hidden_events(rooms_log: Path, where: str) -> None:
    """A where clause cannot read the log or the room tables around the filtered view."""
    # The FTS table fails in its constructor, the others at the authorizer.
    with pytest.raises(QueryRejected, match=r"refused|vtable"):
        run_query(rooms_log, where, visible_rooms=["lobby"])


def test_query_rooms_guarded_connection_reads_only_the_view(rooms_log: Path) -> None:
    """On the guarded connection the filtered view is readable and the log behind it is not."""
    conn = open_guarded(rooms_log, visible_rooms=["lobby"])
    try:
        texts = conn.execute("SELECT data FROM visible_events WHERE data LIKE '%vault%'")
        assert texts.fetchall() == []
        for statement in ("SELECT data FROM events", "SELECT data FROM events_view"):
            with pytest.raises(sqlite3.DatabaseError):
                conn.execute(statement).fetchall()
    finally:
        conn.close()


def test_query_rooms_invalid_visible_room_is_rejected(rooms_log: Path) -> None:
    """A visible room that is not a room name is refused, never spliced into SQL."""
    with pytest.raises(QueryRejected, match="invalid visible room"):
        run_query(rooms_log, visible_rooms=["x') OR 1=1 OR ('"])
