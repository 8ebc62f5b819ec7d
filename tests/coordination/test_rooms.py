"""Rooms and visibility across two devices through a relay: every rule, from the other side.

The owner ``luna`` lives on the first device; the agents under test (``nova`` a member,
``iris`` invited, ``otto`` an outsider) on the second, so each answer comes from the device that
only received the room's events by replication.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import Device
from coord_cluster import cluster, notices, wait_agent, wait_notice, wait_room_event

from switchboard.errors import Forbidden, NotFound

ROLES = ("member", "invited", "outsider")
AGENT = {"member": "nova", "invited": "iris", "outsider": "otto"}

# (kind, role) -> expected outcome of list, read, post, join: True (allowed), or the error.
RULES: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {
    ("public", "member"): (True, True, True, True),
    ("public", "invited"): (True, True, Forbidden, True),
    ("public", "outsider"): (True, True, Forbidden, True),
    ("private", "member"): (True, True, True, True),
    ("private", "invited"): (True, Forbidden, Forbidden, True),
    ("private", "outsider"): (True, Forbidden, Forbidden, Forbidden),
    ("secret", "member"): (True, True, True, True),
    ("secret", "invited"): (False, Forbidden, Forbidden, True),
    ("secret", "outsider"): (False, NotFound, NotFound, NotFound),
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Device, Device]]:
    """Two devices in one group, with luna on the first and nova, iris, otto on the second."""
    with cluster(tmp_path_factory.mktemp("rooms"), "laptop", "server") as ((a, b), _):
        a.call("register", agent="luna")
        for name in AGENT.values():
            b.call("register", agent=name)
        wait_agent(a, f"otto:{b.short}")
        wait_agent(b, f"luna:{a.short}")
        yield a, b


def _room_for(a: Device, b: Device, kind: str, room: str) -> None:
    """luna creates ``room``; nova (invited if need be) joins; iris is invited."""
    a.call("room.create", agent="luna", name=room, kind=kind)
    a.call("room.invite", agent="luna", name=room, member=f"nova:{b.short}")
    a.call("room.invite", agent="luna", name=room, member=f"iris:{b.short}")
    wait_room_event(b, "room_invited", room, 2)
    b.call("room.join", agent="nova", name=room)
    a.call("send", agent="luna", to=[f"#{room}"], text=f"hello {room}")
    wait_room_event(a, "room_joined", room)
    b.wait_events(1, type="message_posted", where=f"data LIKE '%hello {room}%'")


def _outcome(call: Any) -> Any:
    try:
        call()
    except (Forbidden, NotFound) as exc:
        return type(exc)
    return True


@pytest.mark.parametrize("kind", ["public", "private", "secret"])
@pytest.mark.parametrize("role", ROLES)
def test_rooms_rules_for_each_kind_and_role(
    pair: tuple[Device, Device], kind: str, role: str
) -> None:
    """Listing, reading, posting and joining follow the room's kind for a member, an invitee
    and an outsider, answered by the device that only replicated the room."""
    a, b = pair
    room = f"{kind}-{role}"
    _room_for(a, b, kind, room)
    agent = AGENT[role]
    listed, read, post, join = RULES[(kind, role)]

    names = [r["name"] for r in b.call("room.list", agent=agent)]
    assert (room in names) is listed
    assert _outcome(lambda: b.call("room.read", agent=agent, name=room, last=10)) == read
    if read is True:
        texts = [m["text"] for m in b.call("room.read", agent=agent, name=room, last=10)]
        assert f"hello {room}" in texts
    assert _outcome(lambda: b.call("send", agent=agent, to=[f"#{room}"], text="hi")) == post
    assert _outcome(lambda: b.call("room.join", agent=agent, name=room)) == join
    # Search never shows a room's messages to someone who may not read them.
    found = [m["text"] for m in b.call("search", agent="otto", query=f'"hello {room}"')]
    assert found == ([f"hello {room}"] if kind == "public" else [])
    # ... although the device holds the event.
    assert b.call("events", type="message_posted", where=f"data LIKE '%hello {room}%'",
                  all_rooms=True)  # fmt: skip


def test_rooms_secret_room_is_unknown_to_outsiders(pair: tuple[Device, Device]) -> None:
    """To an outsider a secret room does not exist: members, read, join and post all say so."""
    a, b = pair
    _room_for(a, b, "secret", "hush")
    for method in ("room.members", "room.read", "room.join"):
        with pytest.raises(NotFound, match="unknown room #hush"):
            b.call(method, agent="otto", name="hush")
    with pytest.raises(NotFound, match="unknown room #hush"):
        b.call("send", agent="otto", to=["#hush"], text="knock knock")


def test_rooms_join_returns_members_with_status(pair: tuple[Device, Device]) -> None:
    """Joining returns the member list with each member's status."""
    a, b = pair
    a.call("room.create", agent="luna", name="lobby")
    a.call("presence.set", agent="luna", status="busy", summary="fixing the build")
    b.wait_events(1, type="status_changed", agent=f"luna:{a.short}")
    wait_room_event(b, "room_created", "lobby")
    joined = b.call("room.join", agent="otto", name="lobby")
    members = {m["address"]: m for m in joined["members"]}
    assert set(members) == {f"luna:{a.short}", f"otto:{b.short}"}
    assert members[f"luna:{a.short}"]["status"] == "busy"
    assert members[f"luna:{a.short}"]["summary"] == "fixing the build"
    a.call("presence.set", agent="luna", status="active")


def test_rooms_member_notices_arrive_in_order(pair: tuple[Device, Device]) -> None:
    """Members are told of joins, leaves and removals, in the order they happened."""
    a, b = pair
    a.call("room.create", agent="luna", name="order")
    wait_room_event(b, "room_created", "order")
    for name in ("nova", "iris", "otto"):
        b.call("room.join", agent=name, name="order")
    b.call("room.leave", agent="iris", name="order")
    wait_room_event(a, "room_left", "order")
    a.call("room.kick", agent="luna", name="order", member=f"otto:{b.short}")
    wait_notice(a, "luna", a, "member_left", f"otto:{b.short} was removed from #order")
    texts = [
        n["data"]["text"]
        for n in notices(a, "luna", a)
        if n["data"].get("room") == "order" and n["data"]["kind"] != "member_status"
    ]
    assert texts == [
        f"nova:{b.short} joined #order",
        f"iris:{b.short} joined #order",
        f"otto:{b.short} joined #order",
        f"iris:{b.short} left #order",
        f"otto:{b.short} was removed from #order",
    ]
    # nova, on the other device, saw the same changes in the same order (those after its join).
    wait_notice(b, "nova", b, "member_left", f"otto:{b.short} was removed")
    seen = [
        n["data"]["text"]
        for n in notices(b, "nova", b)
        if n["data"].get("room") == "order" and n["data"]["kind"] != "member_status"
    ]
    assert seen == texts[1:]
    wait_notice(b, "otto", b, "member_left", "you were removed from #order")


def test_rooms_status_change_reaches_the_rooms_of_the_agent(pair: tuple[Device, Device]) -> None:
    """A status change shows on both devices and is announced to the agent's room mates."""
    a, b = pair
    a.call("room.create", agent="luna", name="status")
    wait_room_event(b, "room_created", "status")
    b.call("room.join", agent="nova", name="status")
    wait_room_event(a, "room_joined", "status")
    b.call("presence.set", agent="nova", status="busy", summary="reviewing")
    wait_notice(a, "luna", a, "member_status", f"nova:{b.short} is now busy")
    for device in (a, b):
        shown = {x["address"]: x for x in device.call("agents")}
        assert shown[f"nova:{b.short}"]["status"] == "busy"
        assert shown[f"nova:{b.short}"]["summary"] == "reviewing"
    b.call("presence.set", agent="nova", status="active")
    wait_notice(a, "luna", a, "member_status", f"nova:{b.short} is now active")


@pytest.mark.parametrize("level", ["visible", "hidden", "ghost"])
def test_rooms_visibility_levels(pair: tuple[Device, Device], level: str) -> None:
    """visible: listed and reachable; hidden: unlisted, reachable by exact address; ghost:
    neither; enforced on the other device for listings, messages and room members."""
    a, b = pair
    name = f"vis-{level}"
    b.call("register", agent=name)
    b.call("room.create", agent=name, name=f"room-{level}")
    b.call("presence.set", agent=name, visibility=level)
    a.wait_events(1, type="visibility_changed", agent=f"{name}:{b.short}")
    address = f"{name}:{b.short}"

    listed = [x["address"] for x in a.call("agents")]
    assert (address in listed) is (level == "visible")
    members = [m["address"] for m in a.call("room.members", agent="luna", name=f"room-{level}")]
    assert (address in members) is (level == "visible")
    by_name = _outcome(lambda: a.call("send", agent="luna", to=[f"@{name}"], text="hi"))
    exact = _outcome(lambda: a.call("send", agent="luna", to=[f"@{address}"], text="hi"))
    assert by_name == (True if level == "visible" else NotFound)
    assert exact == (NotFound if level == "ghost" else True)
    # The agent itself still sees itself, and its own listing says how it is seen.
    own = b.call("agents", agent=name)
    assert [x["visibility"] for x in own if x["address"] == address] == [level]


def test_rooms_ghost_device_holds_back_messages_sent_before_it_knew(
    pair: tuple[Device, Device],
) -> None:
    """A message reaching a ghost (its sender had not heard yet) is not delivered to it."""
    a, b = pair
    b.call("register", agent="shade")
    wait_agent(a, f"shade:{b.short}")
    b.call("link.set", on=False)
    b.call("presence.set", agent="shade", visibility="ghost")
    result = a.call("send", agent="luna", to=[f"@shade:{b.short}"], text="are you there", wait=0)
    assert result["result"] == "queued"
    b.call("link.set", on=True)
    b.wait_events(1, type="message_posted", where="data LIKE '%are you there%'")
    assert b.call("inbox", agent="shade") == []
    b.call("presence.set", agent="shade", visibility="visible")
    assert [m["text"] for m in b.call("inbox", agent="shade")] == ["are you there"]


def test_rooms_cli_commands(pair: tuple[Device, Device], tmp_path: Path) -> None:
    """The room commands work from the CLI, with --json on every listing."""
    a, b = pair
    a.cli("room", "create", "cli-room", "--private", "--description", "a test", agent="luna")
    a.cli("room", "invite", "cli-room", f"nova:{b.short}", agent="luna")
    wait_room_event(b, "room_invited", "cli-room")
    joined = json_of(b.cli("room", "join", "cli-room", "--json", agent="nova"))
    assert joined["room"]["kind"] == "private"
    wait_room_event(a, "room_joined", "cli-room")
    a.cli("send", "#cli-room", "--", "from the shell", agent="luna")
    listing = b.cli_json("room", "list", agent="nova")
    assert {"name": "cli-room", "kind": "private"}.items() <= next(
        r for r in listing if r["name"] == "cli-room"
    ).items()
    assert {m["address"] for m in b.cli_json("room", "members", "cli-room", agent="nova")} == {
        f"luna:{a.short}",
        f"nova:{b.short}",
    }
    b.wait_events(1, type="message_posted", where="data LIKE '%from the shell%'")
    human = b.cli("room", "read", "cli-room", agent="nova").stdout
    assert "from the shell" in human
    assert "no new messages" in b.cli("room", "read", "cli-room", agent="nova").stdout
    assert "from the shell" in b.cli("room", "read", "cli-room", "--last", "1", agent="nova").stdout
    b.cli("room", "leave", "cli-room", agent="nova")
    a.cli("set", "status", "idle", agent="luna")
    a.cli("set", "summary", "writing", "docs", agent="luna")
    shown = json_of(a.cli("set", "visibility", "visible", "--json", agent="luna"))
    assert (shown["status"], shown["summary"], shown["visibility"]) == (
        "idle",
        "writing docs",
        "visible",
    )
    denied = b.cli("room", "read", "cli-room", check=False, agent="otto")
    assert denied.returncode == 1
    assert denied.stderr.strip() == "switchboard: #cli-room is private: only its members read it"


def json_of(done: Any) -> Any:
    """Parse a completed CLI run's stdout as JSON."""
    return json.loads(done.stdout)
