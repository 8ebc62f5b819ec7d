"""Projections: devices, agents, inboxes and receipts folded from events; local state helpers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from store_helpers import ME, OTHER, PEER, count, raw, remote

from switchboard.events import (
    AgentRegistered,
    CommandRun,
    DeviceJoined,
    Event,
    FileEdited,
    MessageDelivered,
    MessagePosted,
    MessageRead,
    StatusChanged,
)
from switchboard.ids import device_id_from_public_key, short_id, short_ids
from switchboard.store import leases, projections
from switchboard.store.db import Database
from switchboard.store.log import EventLog

T1, T2, T3 = "2026-01-01T10:00:00.000Z", "2026-01-01T11:00:00.000Z", "2026-01-01T12:00:00.000Z"


def _reader(log: EventLog) -> sqlite3.Connection:
    return log.db.reader()


def _post(origin: str, seq: int, *recipients: str, text: str = "hi") -> Event:
    body = MessagePosted(to=["@luna"], recipients=list(recipients), text=text, thread="t1")
    return remote(origin, seq, body, agent="nova")


def _colliding_devices() -> tuple[str, str]:
    seen: dict[str, str] = {}
    for number in range(1, 1 << 16):
        device = device_id_from_public_key(number.to_bytes(32, "big"))
        short = short_id(device)
        if short in seen:
            return seen[short], device
        seen[short] = device
    raise AssertionError("no collision found")


def test_projections_add_a_device_for_every_origin(fresh_store: EventLog) -> None:
    """The first event of an unknown origin adds its device with its short id."""
    fresh_store.receive_sync([remote(PEER, 1, CommandRun(command="ls"))])
    fresh_store.receive_sync([remote(OTHER, 1, CommandRun(command="ls"))])
    devices = projections.list_devices(_reader(fresh_store))
    shorts = short_ids({PEER, OTHER})
    assert {row["device_id"]: row["short"] for row in devices} == shorts
    assert all(row["online"] == 0 and row["first_seen"] for row in devices)


def test_projections_lengthen_colliding_short_ids(fresh_store: EventLog) -> None:
    """A new device whose short id collides lengthens both short ids."""
    first, second = _colliding_devices()
    fresh_store.receive_sync([remote(first, 1, CommandRun(command="ls"))])
    assert projections.list_devices(_reader(fresh_store))[0]["short"] == short_id(first)
    fresh_store.receive_sync([remote(second, 1, CommandRun(command="ls"))])
    shorts = {row["short"] for row in projections.list_devices(_reader(fresh_store))}
    assert shorts == set(short_ids({first, second}).values())
    assert all(len(short) > 4 for short in shorts)


def test_projections_device_joined_names_the_device(fresh_store: EventLog) -> None:
    """``device_joined`` records the device's name and public key."""
    body = DeviceJoined(name="laptop", public_key="ab" * 32, group="g1")
    fresh_store.receive_sync([remote(PEER, 1, body, agent="")])
    (row,) = projections.list_devices(_reader(fresh_store))
    assert (row["name"], row["public_key"]) == ("laptop", "ab" * 32)


def test_projections_agent_registered_adds_agent(fresh_store: EventLog) -> None:
    """``agent_registered`` adds an active agent with its profile; re-registering updates it."""
    body = AgentRegistered(name="nova", harness="claude", cwd="/w", pid=7, tags=["x"])
    fresh_store.receive_sync([remote(PEER, 1, body, ts=T1)])
    fresh_store.receive_sync([remote(PEER, 2, AgentRegistered(name="nova", cwd="/v"), ts=T2)])
    (row,) = projections.list_agents(_reader(fresh_store))
    assert row["device_id"] == PEER
    assert row["short"] == short_id(PEER)
    assert (row["name"], row["harness"], row["cwd"], row["pid"]) == ("nova", "shell", "/v", None)
    assert (row["status"], row["registered_ts"], row["last_seen"]) == ("active", T1, T2)
    assert row["tags"] == []


def test_projections_find_agents_by_name_and_device(fresh_store: EventLog) -> None:
    """``find_agents`` filters by name and optionally by device id or short id."""
    fresh_store.receive_sync([remote(PEER, 1, AgentRegistered(name="nova"))])
    fresh_store.receive_sync([remote(OTHER, 1, AgentRegistered(name="nova"))])
    conn = _reader(fresh_store)
    assert len(projections.find_agents(conn, "nova")) == 2
    assert [r["device_id"] for r in projections.find_agents(conn, "nova", PEER)] == [PEER]
    by_short = projections.find_agents(conn, "nova", short_id(OTHER))
    assert [r["device_id"] for r in by_short] == [OTHER]
    assert projections.find_agents(conn, "luna") == []


def test_projections_status_newer_ts_wins(fresh_store: EventLog) -> None:
    """A ``status_changed`` older than the current status is ignored."""
    fresh_store.receive_sync(
        [
            remote(PEER, 1, AgentRegistered(name="nova"), ts=T1),
            remote(PEER, 2, StatusChanged(status="busy", summary="tests"), ts=T3),
            remote(PEER, 3, StatusChanged(status="idle"), ts=T2),
        ]
    )
    (row,) = projections.list_agents(_reader(fresh_store))
    assert (row["status"], row["status_ts"], row["summary"]) == ("busy", T3, "tests")


def test_projections_status_of_unknown_agent_adds_it(fresh_store: EventLog) -> None:
    """A ``status_changed`` for an agent not yet registered adds it."""
    fresh_store.receive_sync([remote(PEER, 1, StatusChanged(status="idle"), ts=T1)])
    (row,) = projections.list_agents(_reader(fresh_store))
    assert (row["name"], row["status"]) == ("nova", "idle")


def test_projections_any_event_bumps_last_seen(fresh_store: EventLog) -> None:
    """Any event of a registered agent moves its ``last_seen`` forward, never back."""
    fresh_store.receive_sync(
        [
            remote(PEER, 1, AgentRegistered(name="nova"), ts=T1),
            remote(PEER, 2, CommandRun(command="make"), ts=T3),
            remote(PEER, 3, CommandRun(command="make"), ts=T2),
        ]
    )
    (row,) = projections.list_agents(_reader(fresh_store))
    assert row["last_seen"] == T3


def test_projections_message_fills_every_recipient_inbox(fresh_store: EventLog) -> None:
    """A message adds one inbox row per recipient, local or not, readable with inbox_unread."""
    received = fresh_store.receive_sync([_post(PEER, 1, f"luna:{ME}", f"ada:{OTHER}")])
    ((local_id, _),) = received.accepted
    conn = _reader(fresh_store)
    assert count(conn, "inbox") == 2
    (row,) = projections.inbox_unread(conn, ME, "luna", 10)
    assert row["id"] == local_id
    assert row["ref"] == f"{PEER}/1"
    assert (row["sender"], row["sender_short"]) == ("nova", short_id(PEER))
    assert row["from"] == f"nova:{short_id(PEER)}"
    assert (row["to"], row["text"], row["thread"]) == (["@luna"], "hi", "t1")
    assert projections.inbox_unread(conn, ME, "nobody", 10) == []


def test_projections_receipts_mark_delivered_then_read(fresh_store: EventLog) -> None:
    """``message_delivered`` then ``message_read`` from the recipient's device set its receipts."""
    message = _post(PEER, 1, f"luna:{ME}", f"ada:{OTHER}")
    ((local_id, _),) = fresh_store.receive_sync([message]).accepted
    ref = f"{PEER}/1"
    fresh_store.receive_sync(
        [
            remote(OTHER, 1, MessageDelivered(message=ref, recipients=[f"ada:{OTHER}"]), ts=T1),
            remote(OTHER, 2, MessageRead(message=ref, reader=f"ada:{OTHER}"), ts=T2),
        ]
    )
    fresh_store.append_sync([("luna", MessageRead(message=ref, reader=f"luna:{ME}"))])
    conn = _reader(fresh_store)
    receipts = projections.receipts_for(conn, local_id)
    assert (receipts[f"ada:{OTHER}"]["delivered_ts"], receipts[f"ada:{OTHER}"]["read_ts"]) == (
        T1,
        T2,
    )
    mine = receipts[f"luna:{ME}"]
    assert mine["read_ts"] is not None and mine["delivered_ts"] == mine["read_ts"]
    assert projections.inbox_unread(conn, ME, "luna", 10) == []


def test_projections_receipts_from_another_device_are_ignored(fresh_store: EventLog) -> None:
    """A device cannot mark another device's recipient as delivered or read."""
    ((local_id, _),) = fresh_store.receive_sync([_post(PEER, 1, f"ada:{OTHER}")]).accepted
    forged = MessageRead(message=f"{PEER}/1", reader=f"ada:{OTHER}")
    fresh_store.receive_sync([remote(PEER, 2, forged)])
    receipt = projections.receipts_for(_reader(fresh_store), local_id)[f"ada:{OTHER}"]
    assert (receipt["delivered_ts"], receipt["read_ts"]) == (None, None)


def test_projections_receipt_before_message_waits_in_pending(fresh_store: EventLog) -> None:
    """A receipt for a message not held yet is applied when the message arrives."""
    ref = f"{PEER}/1"
    fresh_store.receive_sync(
        [remote(OTHER, 1, MessageDelivered(message=ref, recipients=[f"ada:{OTHER}"]), ts=T1)]
    )
    conn = _reader(fresh_store)
    assert count(conn, "pending_receipts") == 1
    ((local_id, _),) = fresh_store.receive_sync([_post(PEER, 1, f"ada:{OTHER}")]).accepted
    assert projections.receipts_for(conn, local_id)[f"ada:{OTHER}"]["delivered_ts"] == T1
    assert count(conn, "pending_receipts") == 0


def test_projections_ignore_invalid_data_but_keep_the_event(fresh_store: EventLog) -> None:
    """Events whose data does not fit their type, or of unknown types, are stored but not folded."""
    events = [
        raw(PEER, 1, "message_posted", {"text": 5}),
        raw(PEER, 2, "agent_registered", {"name": "nova", "pid": 2**70}),
        raw(PEER, 3, "status_changed", {"status": "sleeping"}),
        raw(PEER, 4, "message_read", {"message": "not-an-id", "reader": f"x:{PEER}"}),
        raw(PEER, 5, "hologram_projected", {"anything": [1, 2]}),
        raw(
            PEER, 6, "message_posted", {"to": [], "recipients": ["nocolon", f"ok:{ME}"], "text": ""}
        ),
    ]
    received = fresh_store.receive_sync(events)
    assert len(received.accepted) == 6
    conn = _reader(fresh_store)
    assert count(conn, "events") == 6
    assert count(conn, "agents") == 0
    assert conn.execute("SELECT device_id, name FROM inbox").fetchall() == [(ME, "ok")]
    assert [e.data for e in fresh_store.since({}, 10)] == [e.data for e in events]


def test_projections_presence_is_set_by_the_daemon(fresh_store: EventLog) -> None:
    """``set_presence`` marks a device online or offline, adding it if unknown."""
    fresh_store.db.write_sync(lambda conn: projections.set_presence(conn, PEER, True, T1))
    (row,) = projections.list_devices(_reader(fresh_store))
    assert (row["device_id"], row["online"], row["last_seen"]) == (PEER, 1, T1)
    fresh_store.db.write_sync(lambda conn: projections.set_presence(conn, PEER, False, T2))
    (row,) = projections.list_devices(_reader(fresh_store))
    assert (row["online"], row["last_seen"]) == (0, T2)


def test_projections_ensure_device_names_this_device(fresh_store: EventLog) -> None:
    """``ensure_device`` adds or updates a device's name and public key."""
    write = fresh_store.db.write_sync
    write(lambda conn: projections.ensure_device(conn, ME, "desk", "cd" * 32, T1))
    write(lambda conn: projections.ensure_device(conn, ME, "desk2", "cd" * 32, T2))
    (row,) = projections.list_devices(_reader(fresh_store))
    assert (row["name"], row["short"], row["first_seen"]) == ("desk2", short_id(ME), T1)


def test_projections_groups_crud(fresh_store: EventLog) -> None:
    """Groups can be added, listed, read, toggled, pinned and removed."""
    write = fresh_store.db.write_sync
    write(lambda conn: projections.add_group(conn, "g1", "team", b"s" * 32, "ws://r", None, T1))
    write(lambda conn: projections.add_group(conn, "g2", "other", b"t" * 32, "ws://q"))
    conn = _reader(fresh_store)
    assert [g["group_id"] for g in projections.list_groups(conn)] == ["g1", "g2"]
    assert write(lambda c: projections.set_group_enabled(c, "g1", False)) is True
    assert write(lambda c: projections.set_group_relay_key(c, "g1", b"k" * 32)) is True
    group = projections.get_group(conn, "g1")
    assert group is not None
    assert (group["secret"], group["enabled"], group["relay_key"]) == (b"s" * 32, 0, b"k" * 32)
    assert group["created_ts"] == T1
    assert write(lambda c: projections.set_group_enabled(c, "nope", True)) is False
    assert write(lambda c: projections.remove_group(c, "g2")) is True
    assert projections.get_group(conn, "g2") is None


def test_projections_meta_get_and_set(fresh_store: EventLog) -> None:
    """Meta values are stored, replaced and read back; missing keys read as None."""
    write = fresh_store.db.write_sync
    conn = _reader(fresh_store)
    assert projections.get_meta(conn, "device_name") is None
    write(lambda c: projections.set_meta(c, "device_name", "a"))
    write(lambda c: projections.set_meta(c, "device_name", "b"))
    assert projections.get_meta(conn, "device_name") == "b"


def test_last_edit_ts_is_the_latest_edit_of_that_device_only(fresh_store: EventLog) -> None:
    """``leases.last_edit_ts`` finds a device's latest edit among its other events, or ``""``."""
    assert leases.last_edit_ts(_reader(fresh_store), ME) == ""
    fresh_store.append_sync(
        [("luna", FileEdited(path="a.py")), ("luna", StatusChanged(status="busy"))]
    )
    late = "2099-01-01T00:00:00.000Z"
    fresh_store.receive_sync([remote(PEER, 1, FileEdited(path="b.py"), ts=late)])
    mine = leases.last_edit_ts(_reader(fresh_store), ME)
    assert mine and mine < "2099"
    assert leases.last_edit_ts(_reader(fresh_store), PEER) == late
    assert leases.last_edit_ts(_reader(fresh_store), OTHER) == ""


def test_projections_permission_prompts_settle_only_from_their_device(
    fresh_store: EventLog,
) -> None:
    """An agent's prompt opens pending; an answer from another origin changes nothing; the
    first answer from its own device settles it and a later one is ignored."""
    from switchboard.events import PermissionAnswered, PermissionAsked  # noqa: PLC0415
    from switchboard.store import prompts  # noqa: PLC0415

    asked = PermissionAsked(prompt="p1", tool="Bash", detail="rm -rf build", harness="claude")
    fresh_store.receive_sync([remote(PEER, 1, asked, agent="luna")])
    [row] = prompts.pending(_reader(fresh_store))
    assert (row["device_id"], row["name"], row["tool"], row["state"]) == (
        PEER, "luna", "Bash", "pending"
    )  # fmt: skip
    forged = PermissionAnswered(prompt="p1", answer="allow", by="eve:x")
    fresh_store.receive_sync([remote(OTHER, 1, forged, agent="")])
    assert [r["prompt"] for r in prompts.pending(_reader(fresh_store))] == ["p1"]
    deny = PermissionAnswered(prompt="p1", answer="deny", by="boss:y", reason="no")
    late = PermissionAnswered(prompt="p1", answer="allow", by="boss:y")
    fresh_store.receive_sync([remote(PEER, 2, deny, agent=""), remote(PEER, 3, late, agent="")])
    assert prompts.pending(_reader(fresh_store)) == []
    settled = prompts.get(_reader(fresh_store), "p1")
    assert settled is not None
    assert (settled["state"], settled["answered_by"], settled["reason"]) == ("deny", "boss:y", "no")


def test_projections_a_batch_of_edits_folds_as_one_event_at_a_time(
    fresh_store: EventLog, tmp_path: Path
) -> None:
    """Edits folded as a run (``leases.file_edited_many``) give the rows that folding each
    alone gives, an agent moving to another folder within the batch included."""
    events = [
        remote(PEER, 1, AgentRegistered(name="nova", cwd="/w/one")),
        remote(PEER, 2, FileEdited(path="a.py")),
        remote(PEER, 3, FileEdited(path="/w/one/b.py")),
        remote(PEER, 4, AgentRegistered(name="nova", cwd="/w/two")),
        remote(PEER, 5, FileEdited(path="a.py")),
        remote(PEER, 6, FileEdited(path="c.py", repo="r1", repo_path="./src/../c.py")),
    ]
    fresh_store.receive_sync(events)
    alone = EventLog(Database(tmp_path / "alone.db"), ME)
    try:
        for event in events:
            alone.receive_sync([event])
        query = "SELECT event_id, device_id, name, repo, path, ts FROM file_edits ORDER BY 1"
        together = _reader(fresh_store).execute(query).fetchall()
        assert len(together) == 4
        assert together == _reader(alone).execute(query).fetchall()
    finally:
        alone.db.close()
