"""The foundation's convergence and fault scenarios, on real daemons, over every kind of link.

Each scenario runs over the embedded relay (websocket), a real Mosquitto and a real
nats-server with JetStream, and over nats-server's MQTT listener (``nats-mqtt``: the MQTT link
on a second broker), and asserts no loss and no duplicates. Each scenario has its own relay or
broker (function scope), so it may restart it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokerlab import Aedes, Mosquitto, NatsMqtt, NatsServer, converged, group_on
from cluster import Device, Relay

from switchboard.daemon.client import Client

LINKS = ("relay", "mqtt", "aedes", "nats", "nats-mqtt")
SERVERS = {"mqtt": Mosquitto, "aedes": Aedes, "nats": NatsServer, "nats-mqtt": NatsMqtt}


class Backbone:
    """One link's far end, restartable: a relay, a Mosquitto, an Aedes or a nats-server."""

    def __init__(self, kind: str, data: Path) -> None:
        self.kind = kind
        self.server: Relay | Mosquitto | Aedes | NatsServer
        self.server = Relay(data) if kind == "relay" else SERVERS[kind](data)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if isinstance(self.server, Relay):
            self.server.kill(sig)
        else:
            self.server.stop(sig)


@pytest.fixture(params=LINKS)
def backbone(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backbone]:
    """A fresh relay or broker of each kind, stopped after the test."""
    bone = Backbone(request.param, tmp_path / "backbone")
    bone.start()
    try:
        yield bone
    finally:
        bone.stop(signal.SIGTERM)


def _registered(sender: Device, receiver: Device, agent: str) -> None:
    receiver.call("register", agent=agent)
    sender.wait_events(1, type="agent_registered", agent=f"{agent}:{receiver.short}")


def _texts(device: Device, agent: str) -> list[str]:
    return [m["text"] for m in device.call("inbox", agent=agent, limit=5000)]


def test_links_two_devices_exchange_messages(backbone: Backbone, tmp_path: Path) -> None:
    """Two devices send to each other's agents and both messages arrive, delivered."""
    with group_on(tmp_path, backbone.url, "laptop", "server") as (a, b):
        _registered(a, b, "nova")
        _registered(b, a, "luna")
        sent = a.call("send", agent="luna", to=["@nova"], text="hello nova")
        assert sent["result"] == "delivered"
        b.call("send", agent="nova", to=["@luna"], text="hello luna")
        b.wait_events(1, type="message_posted", agent=f"luna:{a.short}")
        a.wait_events(1, type="message_posted", agent=f"nova:{b.short}")
        assert _texts(b, "nova") == ["hello nova"]
        assert _texts(a, "luna") == ["hello luna"]
        converged(a, b)


def test_links_three_devices_at_all(backbone: Backbone, tmp_path: Path) -> None:
    """A message to @all reaches the agents of every other device."""
    with group_on(tmp_path, backbone.url, "one", "two", "three") as (a, b, c):
        _registered(a, b, "nova")
        _registered(a, c, "vega")
        a.call("send", agent="luna", to=["@all"], text="standup in 5")
        for device, agent in ((b, "nova"), (c, "vega")):
            device.wait_events(1, type="message_posted", agent=f"luna:{a.short}")
            assert _texts(device, agent) == ["standup in 5"]
        converged(a, b, c)


def test_links_queued_then_delivered(backbone: Backbone, tmp_path: Path) -> None:
    """A message to a stopped device says queued and arrives once that device is back."""
    with group_on(tmp_path, backbone.url, "laptop", "server") as (a, b):
        _registered(a, b, "nova")
        b.stop()
        sent = a.call("send", agent="luna", to=["@nova"], text="while you were out", wait=1)
        assert sent["result"] == "queued"
        b.start()
        b.wait_events(1, type="message_posted", agent=f"luna:{a.short}")
        assert _texts(b, "nova") == ["while you were out"]
        converged(a, b)


def test_links_backbone_restart_mid_stream_exactly_once(backbone: Backbone, tmp_path: Path) -> None:
    """Killing and restarting the relay or broker amid 300 messages loses and repeats none."""
    count = 300
    with group_on(tmp_path, backbone.url, "laptop", "server") as (a, b):
        _registered(a, b, "nova")
        with Client.open(a.settings.socket_path) as client:
            for n in range(count):
                if n == 100:
                    backbone.stop(signal.SIGKILL)
                if n == 200:
                    backbone.start()
                client.call("send", {"agent": "luna", "to": ["@nova"], "text": f"m{n}", "wait": 0})
        events = b.wait_events(count, 120, type="message_posted", agent=f"luna:{a.short}")
        assert sorted(e["data"]["text"] for e in events) == sorted(f"m{n}" for n in range(count))
        assert sorted(_texts(b, "nova")) == sorted(f"m{n}" for n in range(count))
        converged(a, b)


def test_links_device_sigkill_restart(backbone: Backbone, tmp_path: Path) -> None:
    """A receiving daemon killed with SIGKILL mid-stream ends with every message, each once."""
    count = 200
    with group_on(tmp_path, backbone.url, "laptop", "server") as (a, b):
        _registered(a, b, "nova")
        done = threading.Event()

        def sender() -> None:
            with Client.open(a.settings.socket_path) as client:
                for n in range(count):
                    params = {"agent": "luna", "to": ["@nova"], "text": f"k{n}", "wait": 0}
                    client.call("send", params)
            done.set()

        thread = threading.Thread(target=sender)
        thread.start()
        b.wait_events(20, type="message_posted")
        b.kill(signal.SIGKILL)
        thread.join()
        assert done.is_set()
        b.start()
        events = b.wait_events(count, 120, type="message_posted", agent=f"luna:{a.short}")
        assert [e["data"]["text"] for e in events] == [f"k{n}" for n in range(count)]
        converged(a, b)
