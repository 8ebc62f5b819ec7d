"""What the CLI's ``--json`` prints for rooms, threads, leases and links is exactly the shape of
``daemon/shapes.py`` that the typed client decodes (``shapes.RESULTS``), on both devices."""

from __future__ import annotations

import json
from typing import Any

from cli_homes import Home, check_shape
from conftest import Pair

from switchboard import Client
from switchboard.daemon import shapes


def _doc(home: Home, *args: str, agent: str) -> Any:
    """One JSON document, or JSON Lines as a list."""
    out = home.run(*args, "--json", agent=agent).stdout
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return [json.loads(line) for line in out.splitlines() if line]


def _each(items: Any, cls: type[Any]) -> None:
    items = items if isinstance(items, list) else [items]  # one JSON Line
    assert items
    for item in items:
        check_shape(item, cls)


def test_room_thread_and_history_json_are_the_shapes(pair: Pair) -> None:
    ha, hb = pair.ha, pair.hb
    check_shape(_doc(ha, "room", "create", "shapes-room", agent="luna"), shapes.Room)
    joined = _doc(hb, "room", "join", "shapes-room", agent="vega")
    check_shape(joined, shapes.RoomJoin)
    assert {m["name"] for m in joined["members"]} >= {"luna", "vega"}
    _each(_doc(hb, "room", "list", agent="vega"), shapes.Room)
    sent = json.loads(
        hb.run("send", "--json", "#shapes-room", "--", "typed shapes here", agent="vega").stdout
    )
    with Client.for_home(hb.path, agent="vega") as client:  # A holds it once it confirmed
        waited = client.typed("message.wait", {"agent": "vega", "id": sent["id"]})
    assert isinstance(waited, shapes.ReceiptWait) and waited.complete, waited
    read = _doc(ha, "room", "read", "shapes-room", agent="luna")
    _each(read, shapes.HistoryMessage)
    assert (read[-1] if isinstance(read, list) else read)["text"] == "typed shapes here"
    _each(_doc(hb, "thread", "show", str(sent["id"]), agent="vega"), shapes.HistoryMessage)
    _each(_doc(hb, "search", "typed", "shapes", agent="vega"), shapes.HistoryMessage)
    mine = _doc(hb, "sent", agent="vega")
    _each(mine, shapes.SentMessage)
    assert mine[0]["recipients"], mine[0]


def test_lease_and_link_json_are_the_shapes(pair: Pair) -> None:
    ha = pair.ha
    granted = _doc(ha, "lease", "acquire", "src/shapes/*.py", "--reason", "typing", agent="luna")
    check_shape(granted, shapes.LeaseGrant)
    assert granted["leases"][0]["path"] == "src/shapes/*.py"
    listed = _doc(ha, "lease", "list", "--all", agent="luna")
    _each(listed, shapes.Lease)
    links = _doc(ha, "link", "status", agent="luna")
    _each(links, shapes.LinkRow)
    assert links[0]["group"] == pair.group_id and links[0]["state"] == "connected"


def test_the_typed_client_decodes_every_listing(pair: Pair) -> None:
    """``Client.typed`` gives the Structs the CLI's JSON above is checked against."""
    with Client.for_home(pair.ha.path, agent="luna") as client:
        rooms = client.typed("room.list", {"agent": "luna"})
        assert rooms and all(isinstance(r, shapes.Room) for r in rooms)
        [link] = client.typed("link.status", {})
        assert isinstance(link, shapes.LinkRow) and link.kind == "relay"
        subscribed = client.typed("events.subscribe", {"agent": "luna", "type": "lease_*"})
        assert isinstance(subscribed, shapes.Subscription)
        [listed] = client.typed("events.subscriptions", {"agent": "luna"})
        assert listed == subscribed
        gone = client.typed("events.unsubscribe", {"agent": "luna"})
        assert gone == shapes.Unsubscribed(removed=1)
