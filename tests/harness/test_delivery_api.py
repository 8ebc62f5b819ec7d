"""The daemon's delivery methods directly: reminders, many unread messages, bad parameters."""

from __future__ import annotations

import pytest
from harness_kit import Device, Session

from switchboard.errors import SwitchboardError


def _take(device: Device, **params: object) -> dict:
    result: dict = device.call("inbox.take", **{"agent": "luna", "context": "ctx-1", **params})
    return result


def test_delivery_reminds_of_unread_messages_without_repeating_them(device: Device) -> None:
    """An injected, unread message is mentioned again (id only) after reoffer, at most twice."""
    device.call("register", agent="luna")
    device.call("send", agent="nova", to=["@luna"], text="please confirm the deploy")
    first = _take(device)
    assert "please confirm the deploy" in first["text"]
    reminders = [_take(device, reoffer=0) for _ in range(3)]
    assert [len(r["reminders"]) for r in reminders] == [1, 1, 0]
    assert "Still unread" in reminders[0]["text"]
    assert "please confirm the deploy" not in reminders[0]["text"]
    assert _take(device, context="ctx-2")["messages"]  # another context: in full again


def test_delivery_new_message_reaches_an_agent_with_many_unread(device: Device) -> None:
    """However many injected messages stay unread, a new one is still delivered."""
    luna = Session(device, "claude", "many-1", agent="luna")
    luna.hook("SessionStart")
    for i in range(60):
        device.call("send", agent="nova", to=["@luna"], text=f"note {i}")
    while luna.hook("PostToolUse").out:
        pass
    device.call("send", agent="nova", to=["@luna"], text="the newest one")
    assert "the newest one" in luna.context_text(luna.hook("PostToolUse"))


def test_delivery_take_all_and_ack_marks_read(device: Device) -> None:
    """inbox.take with all and ack shows every unread message and marks them read."""
    device.call("register", agent="luna")
    device.call("send", agent="nova", to=["@luna"], text="one")
    _take(device)
    device.call("send", agent="nova", to=["@luna"], text="two")
    taken = _take(device, all=True, ack=True)
    assert [m["text"] for m in taken["messages"]] == ["one", "two"]
    assert device.call("inbox", agent="luna", peek=True) == []


@pytest.mark.parametrize(
    ("method", "params", "error"),
    [
        ("agent.hook", {"harness": "claude", "kind": "explode"}, "unknown hook kind"),
        ("agent.hook", {"kind": "tool"}, "needs its harness"),
        ("agent.hook", {"harness": "claude", "kind": "tool", "files": "x"}, "parameter files"),
        (
            "agent.hook",
            {"harness": "claude", "kind": "tool", "agent": "Bad Name!"},
            "invalid agent name",
        ),
        ("inbox.take", {"agent": "ghost"}, "unknown local agent"),
        ("message.wait", {"id": 999_999, "state": "read"}, "no message"),
        ("message.wait", {"id": 1, "state": "seen"}, "unknown state"),
        ("events.unsubscribe", {"agent": "luna", "id": 12345}, "no subscription"),
    ],
)
def test_delivery_bad_parameters_are_clear_errors(
    device: Device, method: str, params: dict, error: str
) -> None:
    """Bad parameters get one clear error, and the daemon keeps serving."""
    device.call("register", agent="luna")
    with pytest.raises(SwitchboardError, match=error):
        device.call(method, **params)
    assert device.call("ping")["running"]


# Numbers out of their range, method by method: each names the parameter (daemon/params.py).
_OUT_OF_RANGE = [
    ("inbox", {"limit": -1}, "limit"),
    ("inbox", {"limit": 10**12}, "limit"),
    ("inbox", {"limit": 2**70}, "limit"),
    ("inbox", {"wait": -5}, "wait"),
    ("sent", {"last": 0}, "last"),
    ("search", {"query": "x", "limit": 1_000_001}, "limit"),
    ("thread.show", {"thread": "t", "limit": 0}, "limit"),
    ("events", {"last": 2**63}, "last"),
    ("events", {"after": -1}, "after"),
    ("room.read", {"name": "r", "last": 10**9}, "last"),
    ("room.read", {"name": "r", "since": 2**64}, "since"),
    ("message.wait", {"id": 2**64, "state": "read"}, "id"),
    ("message.wait", {"id": 1, "state": "read", "timeout": -1}, "timeout"),
    ("send", {"to": ["@luna"], "text": "x", "wait": 10**9}, "wait"),
    ("register", {"pid": 2**40}, "pid"),
    ("agent.hook", {"harness": "claude", "kind": "tool", "max_chars": 1}, "max_chars"),
    ("agent.hook", {"harness": "claude", "kind": "tool", "exit": 2**40}, "exit"),
    ("inbox.take", {"wait": -1}, "wait"),
    ("link.sync", {"timeout": -1}, "timeout"),
]


@pytest.mark.parametrize(("method", "params", "field"), _OUT_OF_RANGE)
def test_delivery_numbers_out_of_range_are_bad_requests_naming_them(
    device: Device, method: str, params: dict, field: str
) -> None:
    """Out of range is ``bad_request`` naming the parameter, never ``internal error``."""
    device.call("register", agent="luna")
    with pytest.raises(SwitchboardError) as raised:
        device.call(method, **{"agent": "luna", **params})
    assert raised.value.code == "bad_request", raised.value
    assert f"parameter {field}:" in str(raised.value)
    assert device.call("ping")["running"]
