"""Two and three devices through a real relay, each in its own process, on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster import Device, Relay, group_of, timeout

from switchboard.errors import NotFound

# The longest a send waits for receipts (daemon/handlers.py): a result asserted ``delivered``
# waits for the recipient device's receipt to replicate back, not for the 2 s default.
RECEIPTS = 30.0


def test_cluster_messages_both_ways(tmp_path: Path) -> None:
    """A message from each side arrives in the other's inbox with sender, device and time."""
    with group_of(tmp_path, "laptop", "server") as (_, (a, b)):
        b.call("register", agent="nova")
        a.call("register", agent="luna")
        a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
        result = a.call(
            "send", agent="luna", to=[f"@nova:{b.short}"], text="hello nova", wait=RECEIPTS
        )
        assert result["result"] == "delivered"
        assert result["recipients"] == [{"address": f"nova:{b.short}", "state": "delivered"}]
        inbox = b.call("inbox", agent="nova")
        assert [(m["from"], m["text"]) for m in inbox] == [(f"luna:{a.short}", "hello nova")]
        assert inbox[0]["ts"].endswith("Z")

        back = b.call("send", agent="nova", to=["@luna"], text="hello luna", wait=RECEIPTS)
        assert back["result"] == "delivered"
        assert [m["text"] for m in a.call("inbox", agent="luna")] == ["hello luna"]
        # Read receipts flow back to the sender.
        a.wait_events(1, type="message_read", agent=f"nova:{b.short}")


def test_cluster_three_devices_broadcast_and_names(tmp_path: Path) -> None:
    """@all reaches every agent, @name every agent of that name on any device."""
    with group_of(tmp_path, "one", "two", "three") as (_, (a, b, c)):
        a.call("register", agent="luna")
        b.call("register", agent="sam")
        c.call("register", agent="sam")
        c.call("register", agent="kai")
        a.wait_events(3, type="agent_registered", where="device != '" + a.short + "'")

        named = a.call("send", agent="luna", to=["@sam"], text="to every sam", wait=RECEIPTS)
        assert sorted(r["address"] for r in named["recipients"]) == sorted(
            [f"sam:{b.short}", f"sam:{c.short}"]
        )
        assert named["result"] == "delivered"
        everyone = a.call("send", agent="luna", to=["@all"], text="to all", wait=RECEIPTS)
        assert len(everyone["recipients"]) == 3
        assert everyone["result"] == "delivered"  # so every inbox below holds it
        assert [m["text"] for m in b.call("inbox", agent="sam")] == ["to every sam", "to all"]
        assert [m["text"] for m in c.call("inbox", agent="sam")] == ["to every sam", "to all"]
        assert [m["text"] for m in c.call("inbox", agent="kai")] == ["to all"]


def test_cluster_unknown_recipient_is_an_error(tmp_path: Path) -> None:
    """Sending to an agent or device nobody knows fails loudly and stores nothing."""
    with group_of(tmp_path, "laptop", "server") as (_, (a, _b)):
        before = len(a.call("events", type="message_posted"))
        with pytest.raises(NotFound, match="unknown agent @ghost"):
            a.call("send", agent="luna", to=["@ghost"], text="anyone?")
        with pytest.raises(NotFound, match="unknown device ZZZZ"):
            a.call("send", agent="luna", to=["@nova:ZZZZ"], text="anyone?")
        assert len(a.call("events", type="message_posted")) == before
        result = a.cli("send", "@ghost", "--", "anyone?", check=False, agent="luna")
        assert result.returncode == 1
        assert result.stderr.strip() == "switchboard: unknown agent @ghost"


def test_cluster_queued_then_delivered_when_device_returns(tmp_path: Path) -> None:
    """A message to an offline device is queued, then delivered (with a receipt) when it returns."""
    with group_of(tmp_path, "laptop", "server") as (_, (a, b)):
        b.call("register", agent="nova")
        a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
        short_b = b.short
        b.stop()
        result = a.call("send", agent="luna", to=[f"@nova:{short_b}"], text="while you were out")
        assert result["result"] == "queued"
        b.start()
        inbox = b.call("inbox", agent="nova", wait=timeout(30))
        assert [m["text"] for m in inbox] == ["while you were out"]
        delivered = a.wait_events(1, type="message_delivered")
        assert delivered[0]["device"] == short_b


def test_cluster_agents_and_status_list_both_devices(tmp_path: Path) -> None:
    """`agents` on either device lists the agents of both, and status shows the connected link."""
    with group_of(tmp_path, "laptop", "server") as (_, (a, b)):
        a.call("register", agent="luna")
        b.call("register", agent="nova")
        b.wait_events(1, type="agent_registered", agent=f"luna:{a.short}")
        a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
        for device in (a, b):
            addresses = {agent["address"]: agent for agent in device.cli_json("agents")}
            assert set(addresses) == {f"luna:{a.short}", f"nova:{b.short}"}
            assert all(agent["status"] == "active" for agent in addresses.values())
            status = device.cli_json("status")
            assert status["groups"][0]["link"]["state"] == "connected"
            assert status["daemon"]["running"] is True


def test_cluster_device_short_ids_are_stable(tmp_path: Path) -> None:
    """A device keeps its identity and short id across daemon restarts."""
    device = Device(tmp_path / "solo", "solo").start()
    try:
        first = device.call("status")["device"]
        device.stop()
        device.start()
        assert device.call("status")["device"] == first
    finally:
        device.stop()


def test_cluster_relay_restart_keeps_group(tmp_path: Path) -> None:
    """A relay restarted on its data dir still knows the group and serves what it stored."""
    relay = Relay(tmp_path / "relay")
    with group_of(tmp_path, "laptop", "server", relay=relay) as (_, (a, b)):
        b.call("register", agent="nova")
        a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
        b.stop()
        a.call("send", agent="luna", to=["@nova"], text="kept by the relay", wait=0)
        assert a.call("link.sync", timeout=20)[0]["lag"] == 0
        relay.kill()
        relay.start()
        b.start()
        inbox = b.call("inbox", agent="nova", wait=timeout(30))
        assert [m["text"] for m in inbox] == ["kept by the relay"]
