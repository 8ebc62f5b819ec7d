"""Liveness: dead agent processes, silent devices and expiry, across two devices."""

from __future__ import annotations

from pathlib import Path

from cluster import Device
from coord_cluster import Sleeper, cluster, wait_agent, wait_notice, wait_room_event, wait_until


def _status(device: Device, address: str, **params: object) -> str | None:
    shown = {x["address"]: x["status"] for x in device.call("agents", **params)}
    return shown.get(address)


def test_liveness_killed_agent_process_goes_offline_on_both_devices(tmp_path: Path) -> None:
    """An agent whose process dies is marked offline by its device within 10 s, on both."""
    with cluster(tmp_path, "laptop", "server") as ((a, b), _):
        worker = Sleeper()
        try:
            b.call("register", agent="worker", pid=worker.pid)
            wait_agent(a, f"worker:{b.short}")
            assert _status(a, f"worker:{b.short}") == "active"
            worker.kill()
            offline = "json_extract(data, '$.status') = 'offline'"
            b.wait_events(1, seconds=10, type="status_changed", where=offline)
            a.wait_events(1, seconds=10, type="status_changed", where=offline)
            for device in (a, b):
                assert _status(device, f"worker:{b.short}") == "offline"
            reason = a.call("events", type="status_changed", where=offline)[0]["data"]["reason"]
            assert reason == "process exited"
        finally:
            worker.close()


def test_liveness_silent_device_goes_offline_then_expires(tmp_path: Path) -> None:
    """A device whose link is cut has its agents shown offline after the offline timeout (its
    room mates are told), and gone from listings after the expiry, history kept."""
    env = {"laptop": {"SWITCHBOARD_OFFLINE_TIMEOUT": "2", "SWITCHBOARD_EXPIRE_AFTER": "3"}}
    with cluster(tmp_path, "laptop", "server", env=env, via_proxy=("server",)) as (
        (a, b),
        proxies,
    ):
        a.call("register", agent="luna")
        a.call("room.create", agent="luna", name="ops")
        b.call("register", agent="nova")
        wait_room_event(b, "room_created", "ops")
        b.call("room.join", agent="nova", name="ops")
        b.call("send", agent="nova", to=["#ops"], text="still here")
        wait_room_event(a, "room_joined", "ops")
        a.wait_events(1, type="message_posted", where="data LIKE '%still here%'")
        nova = f"nova:{b.short}"
        assert _status(a, nova) == "active"

        proxies["server"].stall()
        proxies["server"].cut()
        wait_until(lambda: _status(a, nova) == "offline", 20, "nova shown offline")
        wait_notice(a, "luna", a, "member_status", f"{nova} is now offline")
        wait_until(lambda: _status(a, nova) is None, 20, "nova gone from listings")
        assert _status(a, nova, all=True) == "offline"
        history = a.call("room.read", agent="luna", name="ops", last=5)
        assert [m["text"] for m in history] == ["still here"]
        assert [m["text"] for m in a.call("search", agent="luna", query="still")] == ["still here"]

        proxies["server"].resume()
        b.call("link.sync", timeout=30)
        wait_until(lambda: _status(a, nova) == "active", 30, "nova back when its device is")
