"""The directed channel's conformance kit: one backend per link, devices with real links.

A ``Backend`` stands up what a link talks to (an in-process relay over ``memory://``, a relay
on a loopback WebSocket, the session's Mosquitto, the session's nats-server) and can
``inject`` a raw frame for a device as that relay or broker would deliver it: how the suite
plays a relay or broker that tampers with frames or forwards forged ones. ``ChannelDevice`` is
a device in this process: a store, its log, and the link ``make_link`` builds for the URL,
with the handlers the suite's calls need.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import nats
from cluster import timeout
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.crypto import create_identity, new_group_secret, public_bytes
from switchboard.errors import Unreachable, UserError
from switchboard.ids import device_id_from_public_key
from switchboard.links.base import make_link
from switchboard.links.channel import Handlers, Request
from switchboard.links.mqtt_topics import Topics, group_hash
from switchboard.proto.frames import Direct, encode_frame
from switchboard.relay.server import Relay
from switchboard.store.db import Database
from switchboard.store.log import EventLog
from switchboard.transports import memory

CHUNK = 64 * 1024


def chunk_of(n: int) -> bytes:
    """Chunk ``n`` of a ``blob`` stream: 64 KiB that say which chunk they are."""
    return hashlib.sha256(b"chunk %d" % n).digest() * (CHUNK // 32)


class Backend:
    """What the links of one kind connect to."""

    name = ""

    async def start(self, tmp: Path) -> str:
        """Start; return the link URL."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop what ``start`` started."""

    async def inject(self, group: str, recipient: str, frame: Direct) -> None:
        """Deliver ``frame`` to ``recipient`` as the relay or broker would (or a forger)."""
        raise NotImplementedError


class RelayBackend(Backend):
    """The embedded relay, in this process, over ``memory://`` or a loopback WebSocket."""

    def __init__(self, scheme: str) -> None:
        self.name = "memory" if scheme == "memory" else "websocket"
        self.scheme = scheme
        self.relay: Relay | None = None
        self._listener: memory.MemoryListener | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, tmp: Path) -> str:
        data = tmp / "relay"
        data.mkdir()
        self.relay = Relay(data, identity=create_identity(data / "relay.key"))
        if self.scheme == "memory":
            await self.relay.open()
            name = f"relay-{uuid.uuid4().hex[:8]}"
            self._listener = await memory.serve(self.relay.handle, name)
            return f"memory://{name}"
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self.relay.serve("127.0.0.1", 0, ready=ready.set_result))
        return f"ws://127.0.0.1:{await ready}"

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()
            assert self.relay is not None
            await self.relay.aclose()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})

    async def inject(self, group: str, recipient: str, frame: Direct) -> None:
        assert self.relay is not None
        conn = self.relay._registry.device(group, recipient)  # a relay that misbehaves
        assert conn is not None, "the recipient is connected"
        conn.session.send_direct(frame)
        conn.flush()


class MosquittoBackend(Backend):
    """The session's Mosquitto."""

    name = "mosquitto"

    def __init__(self, url: str, port: int) -> None:
        self.url, self.port = url, port

    async def start(self, tmp: Path) -> str:
        return self.url

    async def inject(self, group: str, recipient: str, frame: Direct) -> None:
        topic = Topics(group, recipient).of("dm", recipient)
        async with aiomqtt.Client("127.0.0.1", self.port) as client:
            await client.publish(topic, encode_frame(frame), qos=1)


class NatsBackend(Backend):
    """The session's nats-server."""

    name = "nats"

    def __init__(self, url: str) -> None:
        self.url = url

    async def start(self, tmp: Path) -> str:
        return self.url

    async def inject(self, group: str, recipient: str, frame: Direct) -> None:
        nc = await nats.connect(self.url)
        try:
            await nc.request(f"sb.{group_hash(group)}.dm.{recipient}", encode_frame(frame), 5)
        finally:
            await nc.close()


class ChannelDevice:
    """A device in this process: a store, its log, a real link, and the suite's handlers.

    Handlers: ``echo`` answers its body; ``fail`` raises a ``UserError``; ``blob`` streams
    ``int(body)`` chunks of 64 KiB (``chunk_of``) and counts how far it got in ``produced``.
    """

    def __init__(self, home: Path, group: dict[str, Any], *, create: bool) -> None:
        self.identity = Ed25519PrivateKey.generate()
        self.id = device_id_from_public_key(public_bytes(self.identity))
        self.group = group["group_id"]
        home.mkdir(parents=True)
        self.db = Database(home / "switchboard.db")
        self.log = EventLog(self.db, self.id)
        self.calls: list[str] = []  # kinds of the calls served, in order
        self.produced = 0
        self.stream_closed = asyncio.Event()  # a blob's generator finished or was closed
        handlers = Handlers()
        handlers.register("echo", self._echo)
        handlers.register("fail", self._fail)
        handlers.register("blob", self._blob, stream=True)
        self.link = make_link(group, log=self.log, device_id=self.id, identity=self.identity,
                              create=create, handlers=handlers)  # fmt: skip
        self.log.add_listener(lambda _: self.link.notify())

    async def _echo(self, request: Request) -> bytes:
        self.calls.append(request.kind)
        return request.body

    async def _fail(self, request: Request) -> bytes:
        self.calls.append(request.kind)
        raise UserError("this call always fails")

    async def _blob(self, request: Request) -> AsyncIterator[bytes]:
        self.calls.append(request.kind)
        try:
            for n in range(int(request.body)):
                self.produced = n + 1
                yield chunk_of(n)
        finally:
            self.stream_closed.set()

    async def close(self) -> None:
        await self.link.stop()
        self.db.close()


@contextlib.asynccontextmanager
async def devices(
    backend: Backend, tmp: Path, count: int = 2
) -> AsyncIterator[list[ChannelDevice]]:
    """``count`` devices of one new group on the backend, each able to reach the others."""
    url = await backend.start(tmp)
    group = {"group_id": uuid.uuid4().hex, "secret": new_group_secret(), "relay_key": None,
             "relay_url": url}  # fmt: skip
    made: list[ChannelDevice] = []
    try:
        for n in range(count):
            device = ChannelDevice(tmp / f"device{n}", group, create=n == 0)
            made.append(device)
            device.link.start()
            assert await device.link.wait_established(20) is None
        for caller in made:
            for callee in made:
                if callee is not caller:
                    await wait_reachable(caller, callee)
        for device in made:
            device.calls.clear()
        yield made
    finally:
        for device in made:
            await device.close()
        await backend.stop()


#: How often ``wait_until`` looks again: it waits for a condition, never for a fixed time.
POLL = 0.01


async def wait_until(check: Callable[[], Any], seconds: float, what: str) -> None:
    """Return once ``check()`` (awaited, if it is a coroutine) holds, looking every ``POLL`` s
    up to ``seconds`` (scaled, as ``cluster.wait_until``); fail naming ``what``."""
    deadline = asyncio.get_running_loop().time() + timeout(seconds)
    while not await _value(check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(POLL)


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def wait_reachable(caller: ChannelDevice, callee: ChannelDevice, seconds: float = 20) -> None:
    """Wait until ``caller`` can call ``callee`` (the relay or broker knows both are there)."""

    async def answered() -> bool:
        try:
            await caller.link.channel.call(callee.id, "echo", b"ready", timeout=seconds)
        except Unreachable:
            return False
        return True

    await wait_until(answered, seconds, f"{callee.id[:8]} reachable from {caller.id[:8]}")
