"""Threads, per-reader cursors, full-text search and receipts, across two devices."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from cluster import PY, Device, timeout
from coord_cluster import cluster, wait_agent, wait_room_event, wait_until

from switchboard.errors import NotFound


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Device, Device]]:
    """Two devices: luna on the first, nova, iris and otto on the second."""
    with cluster(tmp_path_factory.mktemp("history"), "laptop", "server") as ((a, b), _):
        a.call("register", agent="luna")
        for name in ("nova", "iris", "otto"):
            b.call("register", agent=name)
        wait_agent(a, f"otto:{b.short}")
        wait_agent(b, f"luna:{a.short}")
        yield a, b


def _texts(messages: list[dict[str, object]]) -> list[object]:
    return [m["text"] for m in messages]


def _post(a: Device, b: Device, room: str, text: str) -> None:
    a.call("send", agent="luna", to=[f"#{room}"], text=text)
    b.wait_events(1, type="message_posted", where=f"data LIKE '%{text}%'")


def test_history_two_readers_keep_their_cursors_across_a_restart(
    pair: tuple[Device, Device],
) -> None:
    """Each reader reads a room from where it left off, interleaved, and after the daemon
    restarts."""
    a, b = pair
    a.call("room.create", agent="luna", name="cursors")
    wait_room_event(b, "room_created", "cursors")
    for name in ("nova", "iris"):
        b.call("room.join", agent=name, name="cursors")

    def read(name: str) -> list[object]:
        return _texts(b.call("room.read", agent=name, name="cursors"))

    _post(a, b, "cursors", "m1")
    _post(a, b, "cursors", "m2")
    assert read("nova") == ["m1", "m2"]
    _post(a, b, "cursors", "m3")
    assert read("iris") == ["m1", "m2", "m3"]
    assert read("nova") == ["m3"]
    _post(a, b, "cursors", "m4")
    assert read("iris") == ["m4"]
    b.stop()
    b.start()
    assert read("nova") == ["m4"]
    assert read("iris") == []
    _post(a, b, "cursors", "m5")
    assert read("iris") == ["m5"]
    assert read("nova") == ["m5"]
    # --since and --last do not depend on the cursor.
    assert _texts(b.call("room.read", agent="nova", name="cursors", last=2)) == ["m4", "m5"]
    first = b.call("room.read", agent="nova", name="cursors", last=5)[0]["id"]
    assert _texts(b.call("room.read", agent="nova", name="cursors", since=first)) == [
        "m2", "m3", "m4", "m5",
    ]  # fmt: skip


def test_history_replies_form_a_thread_on_both_devices(pair: tuple[Device, Device]) -> None:
    """Replies carry the thread of what they answer; thread show lists it on either side."""
    a, b = pair
    for name in ("nova", "iris"):
        b.call("inbox", agent=name)  # start from an empty inbox
    a.call("inbox", agent="luna")
    first = a.call("send", agent="luna", to=[f"@nova:{b.short}"], text="can you review?")
    [received] = b.call("inbox", agent="nova", wait=timeout(30))  # once it has replicated
    # Delivered once luna's device holds nova's receipt (up to 30 s, not the 2 s default).
    reply = b.call("send", agent="nova", reply_to=received["id"], text="on it", wait=30)
    assert reply["recipients"] == [{"address": f"luna:{a.short}", "state": "delivered"}]
    [answer] = a.call("inbox", agent="luna", wait=timeout(30))
    [event] = a.call("events", where=f"id = {first['id']}")
    assert answer["thread"] == f"{event['origin']}/{event['seq']}"
    a.call("send", agent="luna", reply_to=answer["id"], text="thanks")
    b.wait_events(1, type="message_posted", where="data LIKE '%thanks%'")
    expected = ["can you review?", "on it", "thanks"]
    assert _texts(a.call("thread.show", agent="luna", id=str(first["id"]))) == expected
    assert _texts(b.call("thread.show", agent="nova", id=str(received["id"]))) == expected
    thread = answer["thread"]
    assert _texts(b.call("thread.show", agent="nova", id=thread)) == expected
    # Another agent sees none of it.
    with pytest.raises(NotFound):
        b.call("thread.show", agent="otto", id=thread)
    # The inbox groups unread messages by thread.
    a.call("send", agent="luna", to=[f"@iris:{b.short}"], text="one", thread="t-1")
    a.call("send", agent="luna", to=[f"@iris:{b.short}"], text="loose")
    a.call("send", agent="luna", to=[f"@iris:{b.short}"], text="two", thread="t-1")
    b.wait_events(1, type="message_posted", where="data LIKE '%\"two\"%'")
    lines = b.cli("inbox", agent="iris").stdout.splitlines()
    assert lines[0] == "thread t-1 (2 new)"
    assert [line.strip() for line in lines if not line.startswith(("#", "thread"))] == [
        "one", "two", "loose",
    ]  # fmt: skip


def test_history_search_by_word_and_phrase_respects_rooms(pair: tuple[Device, Device]) -> None:
    """Search finds words and phrases, filters by room and sender, and hides rooms the
    searcher may not read."""
    a, b = pair
    a.call("room.create", agent="luna", name="search-open")
    a.call("room.create", agent="luna", name="search-closed", kind="secret")
    a.call("room.invite", agent="luna", name="search-closed", member=f"nova:{b.short}")
    wait_room_event(b, "room_invited", "search-closed")
    b.call("room.join", agent="nova", name="search-closed")
    wait_room_event(a, "room_joined", "search-closed")
    _post(a, b, "search-open", "the deploy pipeline failed on staging")
    _post(a, b, "search-closed", "the staging database password rotated")
    _post(a, b, "search-open", "pipeline green again")

    def found(agent: str, query: str, **filters: str) -> list[object]:
        return _texts(b.call("search", agent=agent, query=query, **filters))

    assert sorted(found("otto", "pipeline")) == [
        "pipeline green again", "the deploy pipeline failed on staging",
    ]  # fmt: skip
    assert found("otto", "staging") == ["the deploy pipeline failed on staging"]
    assert sorted(found("nova", "staging")) == [
        "the deploy pipeline failed on staging", "the staging database password rotated",
    ]  # fmt: skip
    assert found("otto", '"pipeline failed"') == ["the deploy pipeline failed on staging"]
    assert found("otto", '"failed pipeline"') == []
    assert found("otto", "pipe*", room="search-open", sender=f"luna:{a.short}") != []
    assert found("nova", "staging", room="search-closed") == [
        "the staging database password rotated"
    ]
    assert found("nova", "staging", sender="@nova") == []
    cli = json.loads(b.cli("search", "staging", "--json", agent="otto").stdout)
    assert _texts(cli) == ["the deploy pipeline failed on staging"]


def test_history_sent_shows_each_recipients_receipts(pair: tuple[Device, Device]) -> None:
    """``sent`` shows each message with its recipients' delivered and read states."""
    a, b = pair
    a.call("send", agent="luna", to=[f"@nova:{b.short}", f"@iris:{b.short}"], text="receipts")
    b.wait_events(1, type="message_posted", where="data LIKE '%receipts%'")
    b.call("inbox", agent="nova")
    a.wait_events(1, type="message_read", agent=f"nova:{b.short}", where="1")

    def states() -> dict[str, str]:
        last = a.call("sent", agent="luna", last=1)[0]
        assert last["text"] == "receipts"
        return {r["address"]: r["state"] for r in last["recipients"]}

    wait_until(lambda: states()[f"nova:{b.short}"] == "read", 20, "nova's read receipt")
    assert states()[f"iris:{b.short}"] == "delivered"
    human = a.cli("sent", "--last", "1", agent="luna").stdout
    assert f"nova:{b.short} read" in human
    assert f"iris:{b.short} delivered" in human


def test_history_room_read_follow_prints_new_messages(pair: tuple[Device, Device]) -> None:
    """``room read --follow`` prints messages posted while it runs, as JSON Lines."""
    a, b = pair
    a.call("room.create", agent="luna", name="follow")
    wait_room_event(b, "room_created", "follow")
    b.call("room.join", agent="otto", name="follow")
    proc = subprocess.Popen(
        [PY, "-m", "switchboard", "room", "read", "follow", "--follow", "--json"],
        env={**b.env, "SWITCHBOARD_AGENT": "otto"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Whether the follower reads its cursor before or after this post, it prints it.
        a.call("send", agent="luna", to=["#follow"], text="live one")
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        a.call("send", agent="luna", to=["#follow"], text="live two")
        second = json.loads(proc.stdout.readline())
        assert (first["text"], second["text"]) == ("live one", "live two")
    finally:
        proc.terminate()
        proc.wait(timeout(10))
    # What the follower printed moved otto's cursor.
    assert b.call("room.read", agent="otto", name="follow") == []
