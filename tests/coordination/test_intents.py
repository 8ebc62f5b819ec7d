"""Request watches and edit-conflict notices, across two devices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Device
from coord_cluster import Sleeper, cluster, notices, wait_agent, wait_notice, wait_room_event

from switchboard.errors import UserError


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Device, Device]]:
    """Two devices: luna on the first, nova on the second, sharing the room ``team``."""
    with cluster(tmp_path_factory.mktemp("intents"), "laptop", "server") as ((a, b), _):
        a.call("register", agent="luna")
        a.call("room.create", agent="luna", name="team")
        b.call("register", agent="nova")
        wait_room_event(b, "room_created", "team")
        b.call("room.join", agent="nova", name="team")
        wait_room_event(a, "room_joined", "team")
        yield a, b


def test_intents_request_to_an_agent_that_stops_fires_the_watch(
    pair: tuple[Device, Device],
) -> None:
    """A request to an agent whose process stops without replying tells the sender."""
    a, b = pair
    worker = Sleeper()
    try:
        b.call("register", agent="worker", pid=worker.pid)
        wait_agent(a, f"worker:{b.short}")
        sent = a.call(
            "send", agent="luna", to=[f"@worker:{b.short}"], text="run the tests", intent="request"
        )
        b.wait_events(1, type="message_posted", where="data LIKE '%run the tests%'")
        worker.kill()
        notice = wait_notice(a, "luna", a, "watch_fired", f"worker:{b.short} went offline")
        assert f"request #{sent['id']}" in notice["data"]["text"]
        # It fires once, and the watch is closed in the log.
        assert len(notices(a, "luna", a, "watch_fired")) == 1
        assert [m["text"] for m in a.call("inbox", agent="luna") if "went offline" in m["text"]]
    finally:
        worker.close()


def test_intents_reply_cancels_the_watch(pair: tuple[Device, Device]) -> None:
    """A reply to a request cancels its watch: going idle afterwards tells nobody."""
    a, b = pair
    a.call("send", agent="luna", to=[f"@nova:{b.short}"], text="which branch?", intent="request")
    b.wait_events(1, type="message_posted", where="data LIKE '%which branch?%'")
    [asked] = [m for m in b.call("inbox", agent="nova") if m["text"] == "which branch?"]
    b.call("send", agent="nova", reply_to=asked["id"], text="main", intent="ack")
    b.call("presence.set", agent="nova", status="idle")
    # luna shares a room with nova, so her device tells her of the status change in the same
    # round in which it would fire a watch: once that notice is there, the round is done.
    wait_notice(a, "luna", a, "member_status", f"nova:{b.short} is now idle")
    fired = [n for n in notices(a, "luna", a, "watch_fired") if "nova" in n["data"]["text"]]
    assert fired == []

    # Without a reply, going idle fires it.
    b.call("presence.set", agent="nova", status="active")
    wait_notice(a, "luna", a, "member_status", f"nova:{b.short} is now active")
    a.call("send", agent="luna", to=[f"@nova:{b.short}"], text="ping?", intent="request")
    b.wait_events(1, type="message_posted", where="data LIKE '%ping?%'")
    b.call("presence.set", agent="nova", status="idle")
    wait_notice(a, "luna", a, "watch_fired", f"nova:{b.short} went idle without replying")
    b.call("presence.set", agent="nova", status="active")


def test_intents_unknown_intent_is_refused(pair: tuple[Device, Device]) -> None:
    """An intent other than request, inform or ack is a clear error."""
    a, b = pair
    with pytest.raises(UserError, match="unknown intent"):
        a.call("send", agent="luna", to=[f"@nova:{b.short}"], text="x", intent="demand")


def test_intents_two_agents_editing_one_path_are_both_told(
    pair: tuple[Device, Device], tmp_path: Path
) -> None:
    """Two agents on two devices editing one file of one repository within the window are
    each told, naming the other and the path."""
    a, b = pair
    here, there = tmp_path / "laptop" / "proj", tmp_path / "server" / "proj"
    a.call("register", agent="ed", cwd=str(here))
    b.call("register", agent="fay", cwd=str(there))
    wait_agent(a, f"fay:{b.short}")
    wait_agent(b, f"ed:{a.short}")
    a.call("event.record", agent="ed", type="file_edited", data={"path": str(here / "src/app.py")})
    b.call("event.record", agent="fay", type="file_edited", data={"path": "src/app.py"})
    to_ed = wait_notice(a, "ed", a, "edit_conflict", f"fay:{b.short} is editing src/app.py")
    to_fay = wait_notice(b, "fay", b, "edit_conflict", f"ed:{a.short} is editing src/app.py")
    assert to_ed["data"]["path"] == to_fay["data"]["path"] == "src/app.py"
    # Told once per window, not at every further edit; other paths are no conflict.
    b.call("event.record", agent="fay", type="file_edited", data={"path": "src/app.py"})
    a.call("event.record", agent="ed", type="file_edited", data={"path": "README.md"})
    a.wait_events(3, type="file_edited", where=f"device = '{b.short}' OR data LIKE '%README%'")
    # A marker after the edits: each device handles edits before statuses in a round, so once
    # it has told a room mate of fay's new status, it has handled the edits before it.
    b.call("room.join", agent="fay", name="team")
    b.call("presence.set", agent="fay", status="busy")
    wait_notice(a, "luna", a, "member_status", f"fay:{b.short} is now busy")
    wait_notice(b, "nova", b, "member_status", f"fay:{b.short} is now busy")
    assert len(notices(a, "ed", a, "edit_conflict")) == 1
    assert len(notices(b, "fay", b, "edit_conflict")) == 1


def test_intents_event_record_takes_only_harness_facts(pair: tuple[Device, Device]) -> None:
    """event.record accepts file_edited and command_run, and nothing else."""
    a, _ = pair
    with pytest.raises(UserError, match="cannot record"):
        a.call("event.record", agent="luna", type="message_posted", data={})
    with pytest.raises(UserError, match="invalid file_edited data"):
        a.call("event.record", agent="luna", type="file_edited", data={"tool": "x"})
