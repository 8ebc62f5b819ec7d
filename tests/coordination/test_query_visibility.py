"""``events`` answers only what its reader may see: across two devices through a relay, an
outsider never gets a secret room's name or messages, nor a private room's messages.

luna on the first device owns a public, a private and a secret room and writes in each; on the
second device ``nova`` is a member of the private and secret rooms and ``otto`` of none, so the
answers come from a device that holds every sealed event only by replication (issue #4).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cluster import Device
from coord_cluster import cluster, wait_agent, wait_room_event

from switchboard.daemon.client import Client
from switchboard.errors import QueryRejected
from switchboard.mcp.bridge import Bridge
from switchboard.mcp.server import build_registry

ROOMS = {"public": "lobby-q", "private": "crew-q", "secret": "vault-q"}
TEXT = {kind: f"{kind}-note-7781" for kind in ROOMS}
SUBQUERIES = (
    "EXISTS (SELECT 1 FROM events WHERE data LIKE '%vault-q%')",
    "(SELECT count(*) FROM events_view WHERE data LIKE '%vault-q%') > 0",
    "(SELECT count(*) FROM events) > 0",
    "EXISTS (SELECT 1 FROM rooms WHERE kind = 'secret')",
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Device, Device]]:
    """Two devices; luna's three rooms, each with a message; nova in the private and secret
    ones, otto in none, both on the second device."""
    with cluster(tmp_path_factory.mktemp("visibility"), "laptop", "server") as ((a, b), _):
        a.call("register", agent="luna")
        for name in ("nova", "otto"):
            b.call("register", agent=name)
        wait_agent(a, f"nova:{b.short}")
        for kind, room in ROOMS.items():
            a.call("room.create", agent="luna", name=room, kind=kind)
            if kind != "public":
                a.call("room.invite", agent="luna", name=room, member=f"nova:{b.short}")
            wait_room_event(b, "room_invited" if kind != "public" else "room_created", room)
            b.call("room.join", agent="nova", name=room)
            wait_room_event(a, "room_joined", room)
            a.call("send", agent="luna", to=[f"#{room}"], text=TEXT[kind])
        b.wait_events(3, type="message_posted", where="data LIKE '%-note-7781%'")
        yield a, b


def _dump(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows)


def _assert_outsider_view(rows: list[dict[str, Any]]) -> None:
    """No secret room name, no private or secret message; the public message is there."""
    held = _dump(rows)
    assert ROOMS["secret"] not in held
    assert TEXT["secret"] not in held
    assert TEXT["private"] not in held
    assert TEXT["public"] in held


def test_query_visibility_outsider_api_sees_no_hidden_room(pair: tuple[Device, Device]) -> None:
    """The API ``events`` of an outsider, whole log or messages only, holds nothing of the
    private and secret rooms' messages, nor the secret room's name."""
    _, b = pair
    _assert_outsider_view(b.call("events", reader="otto"))
    messages = b.call("events", reader="otto", type="message_posted")
    _assert_outsider_view(messages)
    where = "data LIKE '%-note-7781%' OR data LIKE '%vault-q%'"
    assert [r["data"]["text"] for r in b.call("events", reader="otto", where=where)] == [
        TEXT["public"]
    ]
    # ... although the device holds them all.
    assert len(b.call("events", where=where, all_rooms=True)) > 3


def test_query_visibility_no_reader_is_an_outsider(pair: tuple[Device, Device]) -> None:
    """A query that names no reader gets the outsider's answer."""
    _, b = pair
    _assert_outsider_view(b.call("events"))


def test_query_visibility_outsider_follow_sees_no_hidden_room(pair: tuple[Device, Device]) -> None:
    """``events.follow`` of an outsider streams the same filtered log."""
    _, b = pair
    with Client.open(b.settings.socket_path) as client:
        rows = list(client.stream("events.follow", {"after": 0, "reader": "otto", "wait": 0}))
    _assert_outsider_view(rows)


def test_query_visibility_outsider_cli_sees_no_hidden_room(pair: tuple[Device, Device]) -> None:
    """``switchboard events --where`` and ``--type message_posted`` run as the acting agent."""
    _, b = pair
    for args in (("--where", "data LIKE '%-note-7781%'"), ("--type", "message_posted"), ()):
        result = b.cli("events", *args, "--json", agent="otto")
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        _assert_outsider_view(rows)
    member = b.cli("events", "--type", "message_posted", "--json", agent="nova").stdout
    assert all(text in member for text in TEXT.values())


@pytest.mark.parametrize("where", SUBQUERIES)
def test_query_visibility_subqueries_are_refused(pair: tuple[Device, Device], where: str) -> None:
    """A ``--where`` subquery over the unfiltered log or the room tables is refused, through
    the API and the CLI alike."""
    _, b = pair
    with pytest.raises(QueryRejected, match="refused"):
        b.call("events", reader="otto", where=where)
    result = b.cli("events", "--where", where, agent="otto", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("switchboard: ")
    assert "vault-q" not in result.stdout


def test_query_visibility_member_sees_its_rooms(pair: tuple[Device, Device]) -> None:
    """A member sees the private and secret rooms' messages and names; the room's creator on
    the other device too."""
    a, b = pair
    for device, reader in ((b, "nova"), (a, "luna")):
        held = _dump(device.call("events", reader=reader, type="message_posted"))
        assert all(text in held for text in TEXT.values()), reader
        created = device.call("events", reader=reader, type="room_created")
        assert {r["data"]["room"] for r in created} >= set(ROOMS.values())


def test_query_visibility_public_room_is_visible_to_all(pair: tuple[Device, Device]) -> None:
    """Everyone, on either device, sees the public room and its message."""
    a, b = pair
    for device, reader in ((b, "otto"), (b, "nova"), (a, "luna"), (a, "stranger")):
        rows = device.call("events", reader=reader, where=f"data LIKE '%{ROOMS['public']}%'")
        assert TEXT["public"] in _dump(rows), reader
        assert "room_created" in {r["type"] for r in rows}


def test_query_visibility_mcp_query_events_reads_as_its_agent(
    pair: tuple[Device, Device],
) -> None:
    """The MCP ``query_events`` tool answers as the agent it serves."""
    _, b = pair

    async def query(agent: str) -> str:
        tool = build_registry().get("query_events")
        assert tool is not None
        bridge = Bridge(b.settings, agent=agent)
        try:
            return _dump(await tool.handler(bridge, {"type": "message_posted", "last": 100}))
        finally:
            await bridge.aclose()

    _assert_outsider_view(json.loads(asyncio.run(query("otto"))))
    member = asyncio.run(query("nova"))
    assert all(text in member for text in TEXT.values())


def test_query_visibility_follows_membership(pair: tuple[Device, Device]) -> None:
    """A member who leaves a private room no longer sees its messages."""
    a, b = pair
    room = "leave-q"
    a.call("room.create", agent="luna", name=room, kind="private")
    a.call("room.invite", agent="luna", name=room, member=f"nova:{b.short}")
    wait_room_event(b, "room_invited", room)
    b.call("room.join", agent="nova", name=room)
    wait_room_event(a, "room_joined", room)
    a.call("send", agent="luna", to=[f"#{room}"], text="leave-note-1")
    b.wait_events(1, type="message_posted", where="data LIKE '%leave-note-1%'")
    where = "data LIKE '%leave-note-1%'"
    assert len(b.call("events", reader="nova", where=where)) == 1
    b.call("room.leave", agent="nova", name=room)
    assert b.call("events", reader="nova", where=where) == []
