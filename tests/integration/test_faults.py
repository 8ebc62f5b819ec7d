"""Faults on real processes: SIGKILLed relays and daemons, stalled and cut connections."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from cluster import Device, Proxy, Relay, group_of

from switchboard.daemon.client import Client

MESSAGES = 1000


def _texts_from(device: Device, agent: str, count: int, seconds: float = 90) -> list[str]:
    """Wait for ``count`` messages from ``agent`` in the device's log; return their texts."""
    events = device.wait_events(count, seconds, type="message_posted", agent=agent)
    return [event["data"]["text"] for event in events]


def _log_keys(device: Device) -> list[tuple[str, int]]:
    return [(e["origin"], e["seq"]) for e in device.call("events", where="1=1")]


def _converged(*devices: Device) -> list[tuple[str, int]]:
    """Wait until every device holds the same events; return their keys.

    A device may still add events while we look (receipts for messages that are still
    arriving), so each round waits until every device holds as many events as all of them
    held together; a round that ends unequal found newer events, and the next one waits for
    those.
    """
    for device in devices:
        device.call("link.sync", timeout=30)
    for _ in range(10):
        union = set().union(*(_log_keys(device) for device in devices))
        for device in devices:
            device.wait_events(len(union), 60, where="1=1")
        logs = [sorted(_log_keys(device)) for device in devices]
        if all(log == logs[0] for log in logs[1:]):
            return logs[0]
    raise AssertionError(f"logs still differ: {[len(log) for log in logs]} events")


def test_faults_relay_sigkill_mid_stream_exactly_once(tmp_path: Path) -> None:
    """Killing and restarting the relay amid 1,000 messages loses and repeats nothing."""
    relay = Relay(tmp_path / "relay")
    with group_of(tmp_path, "laptop", "server", relay=relay) as (_, (a, b)):
        b.call("register", agent="nova")
        a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
        with Client.open(a.settings.socket_path) as client:
            for n in range(MESSAGES):
                if n == 300:
                    relay.kill(signal.SIGKILL)
                if n == 600:
                    relay.start()
                client.call("send", {"agent": "luna", "to": ["@nova"], "text": f"m{n}", "wait": 0})
        texts = _texts_from(b, f"luna:{a.short}", MESSAGES)
        assert texts == [f"m{n}" for n in range(MESSAGES)]
        inbox = b.call("inbox", agent="nova", limit=5000)
        assert [m["text"] for m in inbox] == [f"m{n}" for n in range(MESSAGES)]
        keys = _converged(a, b)
        assert len(keys) == len(set(keys))


def test_faults_daemon_sigkill_restart_same_home(tmp_path: Path) -> None:
    """A daemon killed with SIGKILL keeps every event it acknowledged and duplicates none."""
    with group_of(tmp_path, "laptop", "server") as (_, (a, b)):
        b.call("register", agent="nova")
        a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
        acknowledged: list[str] = []

        def sender() -> None:
            with Client.open(a.settings.socket_path) as client:
                for n in range(400):
                    try:
                        client.call(
                            "send", {"agent": "luna", "to": ["@nova"], "text": f"k{n}", "wait": 0}
                        )
                    except Exception:  # the daemon died under us: stop sending
                        return
                    acknowledged.append(f"k{n}")

        thread = threading.Thread(target=sender)
        thread.start()
        b.wait_events(50, type="message_posted")  # the receiver is mid-stream
        b.kill(signal.SIGKILL)
        a.wait_events(150, type="message_posted", agent=f"luna:{a.short}")
        a.kill(signal.SIGKILL)  # the sender dies mid-send too
        thread.join(60)
        a.start()
        b.start()
        texts = _texts_from(b, f"luna:{a.short}", len(acknowledged))
        assert texts[: len(acknowledged)] == acknowledged
        keys = _converged(a, b)
        assert len(keys) == len(set(keys))


def test_faults_stalled_and_cut_connections_converge(tmp_path: Path) -> None:
    """Traffic stalled, then cut, at a loopback proxy still arrives once the link heals."""
    relay = Relay(tmp_path / "relay").start()
    proxy = Proxy(relay.port)
    a, b = Device(tmp_path / "a", "a").start(), Device(tmp_path / "b", "b").start()
    try:
        invite = a.call("group.create", name="faulty", relay=proxy.url)["invite"]
        b.call("join", invite=invite)
        b.call("register", agent="nova")
        a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")

        proxy.stall()
        for n in range(50):
            a.call("send", agent="luna", to=["@nova"], text=f"s{n}", wait=0)
        proxy.resume()
        assert _texts_from(b, f"luna:{a.short}", 50) == [f"s{n}" for n in range(50)]

        proxy.stall()
        for n in range(50, 100):
            a.call("send", agent="luna", to=["@nova"], text=f"s{n}", wait=0)
        proxy.cut()
        proxy.resume()
        assert _texts_from(b, f"luna:{a.short}", 100) == [f"s{n}" for n in range(100)]
        assert a.call("link.sync", timeout=60)[0]["state"] == "connected"
    finally:
        a.stop()
        b.stop()
        proxy.close()
        relay.kill(signal.SIGTERM)
