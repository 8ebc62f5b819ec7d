"""Brokers see only ciphertext: a plain client subscribed to everything finds nothing readable."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import nats
from brokerlab import Mosquitto, NatsServer, group_on
from cluster import Device, timeout

SECRETS = (b"zanzibar", b"quetzal", b"/home/alice/secret-project", b"launch-codes.md",
           b"the eagle lands at noon")  # fmt: skip


def _chat(a: Device, b: Device) -> None:
    """Agents with telling names and paths exchange a telling message."""
    b.call("register", agent="zanzibar", cwd="/home/alice/secret-project")
    a.call("register", agent="quetzal", cwd="/home/alice/secret-project")
    a.wait_events(1, type="agent_registered", agent=f"zanzibar:{b.short}")
    text = "the eagle lands at noon, see /home/alice/secret-project/launch-codes.md"
    assert a.call("send", agent="quetzal", to=["@zanzibar"], text=text)["result"] == "delivered"
    b.call("inbox", agent="zanzibar")  # a read receipt travels back too
    a.call("link.sync", timeout=timeout(20))
    b.call("link.sync", timeout=timeout(20))


def _assert_opaque(captured: list[bytes]) -> None:
    assert captured, "the plain client saw no traffic at all"
    blob = b"\n".join(captured)
    for secret in SECRETS:
        assert secret not in blob, f"{secret!r} visible on the broker"


class _Sniffer:
    """A plain client in a thread, subscribed to everything until stopped."""

    def __init__(self, listen: Callable[[list[bytes], asyncio.Event, threading.Event], Any]):
        self.captured: list[bytes] = []
        self.ready = threading.Event()
        self._listen = listen
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.ready.wait(timeout(20)), "sniffer did not subscribe"

    def _run(self) -> None:
        self._loop.run_until_complete(self._listen(self.captured, self._stop, self.ready))

    def stop(self) -> list[bytes]:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout(20))
        return self.captured


def test_ciphertext_only_on_mqtt(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A plain MQTT client subscribed to '#' sees no names, paths or texts (topics included)."""

    async def listen(out: list[bytes], stop: asyncio.Event, ready: threading.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe("#", qos=1)
            ready.set()

            async def collect() -> None:
                async for message in client.messages:
                    out.append(str(message.topic).encode() + b" " + bytes(message.payload))  # type: ignore[arg-type]

            task = asyncio.create_task(collect())
            await stop.wait()
            task.cancel()

    sniffer = _Sniffer(listen)
    with group_on(tmp_path, mosquitto.url, "laptop", "server") as (a, b):
        _chat(a, b)
    captured = sniffer.stop()
    assert any(c.startswith(b"sb/") for c in captured), "no group traffic seen"
    _assert_opaque(captured)


def test_ciphertext_only_on_nats(tmp_path: Path, nats_server: NatsServer) -> None:
    """A plain NATS client on '>' and the JetStream store itself hold no names, paths or texts."""

    async def listen(out: list[bytes], stop: asyncio.Event, ready: threading.Event) -> None:
        nc = await nats.connect(nats_server.url)

        async def collect(msg: Any) -> None:
            out.append(msg.subject.encode() + b" " + repr(msg.headers).encode() + b" " + msg.data)

        await nc.subscribe(">", cb=collect)
        await nc.flush()
        ready.set()
        await stop.wait()
        await nc.close()

    sniffer = _Sniffer(listen)
    with group_on(tmp_path, nats_server.url, "laptop", "server") as (a, b):
        _chat(a, b)
    captured = sniffer.stop()
    assert any(c.startswith(b"sb.") for c in captured), "no group traffic seen"
    _assert_opaque(captured)
    stored = b"".join(p.read_bytes() for p in (nats_server.data / "js").rglob("*") if p.is_file())
    assert stored
    for secret in SECRETS:
        assert secret not in stored, f"{secret!r} stored by JetStream"
