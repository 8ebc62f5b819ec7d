"""Test helpers: a real relay on 127.0.0.1 port 0, and ``Device``, a minimal sync client.

``Device`` does the client side of ``docs/internals.md`` "Sync over a link" with an in-memory
log instead of a store: on ``Established`` it sends its ``Have``; on ``HaveReceived`` it sends
what the relay lacks; on ``BatchReceived`` it keeps what comes next per origin, acks, and asks
again with ``Have`` after a gap. Tests wait on its state with ``wait_until``, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard import transports
from switchboard.crypto import GroupKeys, create_identity, public_bytes
from switchboard.errors import TransportError
from switchboard.ids import device_id_from_public_key
from switchboard.proto.cursors import Placement, classify
from switchboard.proto.frames import Direct, Envelope
from switchboard.proto.session import (
    AckReceived,
    BatchReceived,
    Closed,
    DirectReceived,
    Established,
    HaveReceived,
    HelloReceived,
    PresenceReceived,
    Role,
    SessionEvent,
    SyncSession,
    UndeliveredReceived,
)
from switchboard.relay.connection import Connection
from switchboard.relay.server import Relay
from switchboard.transports.base import Transport
from switchboard.transports.memory import memory_pair
from switchboard.transports.websocket import WebSocketTransport

# Slow machines set SWITCHBOARD_TEST_TIMEOUT_FACTOR to stretch every timeout in the suite.
TIMEOUT_FACTOR = float(os.environ.get("SWITCHBOARD_TEST_TIMEOUT_FACTOR", "1"))
WAIT = 10.0 * TIMEOUT_FACTOR


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def device_id_of(identity: Ed25519PrivateKey) -> str:
    """Return the device id of an identity key."""
    return device_id_from_public_key(public_bytes(identity))


def open_connection(
    keys: GroupKeys,
    group: str,
    identity: Ed25519PrivateKey | None = None,
    max_pending_bytes: int = 1000,
) -> Connection:
    """Return a relay ``Connection`` whose server session finished a handshake, without I/O.

    The device is the one of ``identity`` (default: a fresh key); ``conn.device`` is its id.
    The client and server sessions exchange frames by hand; the connection's transport is a
    memory pair that is never used, so the connection's outbox shows what it would send.
    """
    identity = identity or Ed25519PrivateKey.generate()
    device = device_id_of(identity)
    client = SyncSession(
        Role.CLIENT,
        local_id=device,
        nonce=os.urandom(32),
        now=0.0,
        group=group,
        group_auth=keys.auth,
        identity=identity,
    )
    server = SyncSession(
        Role.SERVER,
        local_id="relay",
        nonce=os.urandom(32),
        now=0.0,
        identity=Ed25519PrivateKey.generate(),
    )
    client.start()
    for frame in client.frames_to_send():
        server.receive_frame(frame)
    assert isinstance(server.events_received()[0], HelloReceived)
    server.accept_hello(keys.auth_public)
    for frame in server.frames_to_send():
        client.receive_frame(frame)
    for frame in client.frames_to_send():
        server.receive_frame(frame)
    assert isinstance(server.events_received()[0], Established)
    server.send_welcome([])
    server.frames_to_send()
    transport, _ = memory_pair()
    return Connection(transport, server, max_pending_bytes, group=group, device=device)


@contextlib.asynccontextmanager
async def running_relay(data_dir: Path, **options: Any) -> AsyncIterator[tuple[Relay, str]]:
    """Serve a relay on 127.0.0.1 port 0; yield it and its URL; stop it on exit."""
    identity = create_identity(data_dir / "relay.key")  # data_dir exists: it is a tmp_path
    relay = Relay(data_dir, identity=identity, **options)
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(relay.serve("127.0.0.1", 0, ready=ready.set_result))
    first: set[asyncio.Future[Any]] = {ready, task}
    await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # serving failed before it was ready: raise why
    try:
        yield relay, f"ws://127.0.0.1:{ready.result()}"
    finally:
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled():
            task.result()  # serving failed: raise why


async def connect_from(url: str, source: str) -> Transport:
    """Open a WebSocket to ``url`` from the local address ``source`` (another 127.0.0.x).

    The whole 127.0.0.0/8 is loopback on Linux, so each address stands in for another machine
    (or another NAT) as far as the relay's per-source bookkeeping is concerned.
    """
    from websockets.asyncio.client import connect  # noqa: PLC0415 - only tests bind sources

    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind((source, 0))
        async with asyncio.timeout(WAIT):
            await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        connection = await connect(url, sock=sock, open_timeout=WAIT, compression=None)
    except BaseException:
        sock.close()
        raise
    return WebSocketTransport(connection, url)


class Device:
    """A test device: one client ``SyncSession`` over a real transport, and a log in memory.

    Args:
        url: the relay.
        group: the group id.
        secret: the group secret (32 bytes).
        create: ask the relay to register the group.
        identity: reuse a device key (to connect the same device twice); default: a fresh one.
        source: connect from this local address (``connect_from``); default: the system's.
    """

    def __init__(
        self,
        url: str,
        group: str,
        secret: bytes,
        *,
        create: bool = False,
        identity: Ed25519PrivateKey | None = None,
        source: str | None = None,
    ) -> None:
        self.url = url
        self.source = source
        self.keys = GroupKeys.derive(group, secret)
        self.create = create
        self.identity = identity or Ed25519PrivateKey.generate()
        self.device_id = device_id_of(self.identity)
        self.log: dict[str, list[Envelope]] = {}
        self.presence: list[tuple[str, bool]] = []
        self.directs: list[Direct] = []  # directed frames received
        self.undelivered: list[UndeliveredReceived] = []
        self.online: tuple[str, ...] = ()
        self.acked: dict[str, int] = {}
        self.gaps = 0
        self.closed: Closed | None = None
        self.established = False
        self.session: SyncSession | None = None
        self._transport: Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self.reading = asyncio.Event()  # clear it to stop reading, as a stalled device would
        self.reading.set()
        self._changed = asyncio.Event()

    # -- state tests wait on -------------------------------------------------------------------

    @property
    def vector(self) -> dict[str, int]:
        """The highest seq held per origin."""
        return {origin: envs[-1].seq for origin, envs in self.log.items() if envs}

    def opened(self, origin: str) -> list[bytes]:
        """Return the plaintexts held from ``origin``, in order."""
        return [self.keys.open(env) for env in self.log.get(origin, [])]

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = WAIT,
    ) -> None:
        """Wait until ``predicate()`` holds, re-checking after every change of this device."""
        async with asyncio.timeout(timeout):
            while not predicate():
                changed = self._changed
                await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- life cycle ----------------------------------------------------------------------------

    async def connect(self) -> Device:
        """Connect and start the handshake; ``wait_established`` waits for its end."""
        self.closed, self.established = None, False
        if self.source is None:
            self._transport = await transports.connect(self.url, timeout=WAIT)
        else:
            self._transport = await connect_from(self.url, self.source)
        self.session = SyncSession(
            Role.CLIENT,
            local_id=self.device_id,
            nonce=os.urandom(32),
            now=asyncio.get_running_loop().time(),
            group=self.keys.group,
            group_auth=self.keys.auth,
            identity=self.identity,
            create=self.create,
        )
        self.session.start()
        await self._flush()
        self._task = asyncio.create_task(self._receive_loop(), name="test-device.receive_loop")
        return self

    async def wait_established(self) -> Device:
        """Wait until the relay welcomed us (fails if the session closes instead)."""
        await self.wait_until(lambda: self.established or self.closed is not None)
        assert self.established, f"session closed: {self.closed}"
        return self

    async def wait_closed(self) -> Closed:
        """Wait until the session closed; return how."""
        await self.wait_until(lambda: self.closed is not None)
        assert self.closed is not None
        return self.closed

    async def close(self) -> None:
        """Say goodbye and close the transport."""
        if self.session is not None and self._transport is not None:
            self.session.send_bye()
            with contextlib.suppress(TransportError):
                await self._flush()
            await self._transport.aclose()
        if self._task is not None:
            await asyncio.wait({self._task})

    # -- the log -------------------------------------------------------------------------------

    async def append(self, *texts: bytes) -> list[Envelope]:
        """Seal ``texts`` as this device's next events, keep them, and offer them if connected."""
        mine = self.log.setdefault(self.device_id, [])
        new = []
        for text in texts:
            seq = (mine[-1].seq if mine else 0) + 1
            envelope = self.keys.seal(self.device_id, seq, text)
            mine.append(envelope)
            new.append(envelope)
        if self.session is not None and self.session.is_open:
            self.session.offer(new)
            await self._flush()
        return new

    async def send_direct(self, frame: Direct) -> None:
        """Send a directed frame through the relay."""
        assert self.session is not None and self.session.is_open
        self.session.send_direct(frame)
        await self._flush()

    def _all(self) -> list[Envelope]:
        return [env for envs in self.log.values() for env in envs]

    # -- driving the session -------------------------------------------------------------------

    async def _flush(self) -> None:
        assert self.session is not None and self._transport is not None
        async with self._send_lock:  # one writer at a time keeps frames in session order
            for frame in self.session.frames_to_send():
                await self._transport.send(frame)

    async def _receive_loop(self) -> None:
        assert self.session is not None and self._transport is not None
        try:
            while not self.session.close_expected():
                await self.reading.wait()
                try:
                    frame = await self._transport.receive()
                except TransportError:
                    self.session.receive_eof()
                    break
                self.session.receive_frame(frame)
                for event in self.session.events_received():
                    self._on_event(event)
                with contextlib.suppress(TransportError):
                    await self._flush()
                self._notify()
        finally:
            for event in self.session.events_received():
                self._on_event(event)
            with contextlib.suppress(TransportError):
                await self._flush()
                await self._transport.aclose()
            self._notify()

    def _on_event(self, event: SessionEvent) -> None:
        assert self.session is not None
        if isinstance(event, Established):
            self.established, self.online = True, event.online
            self.session.send_have(self.vector)
        elif isinstance(event, HaveReceived):
            self.session.offer(self._all())
        elif isinstance(event, BatchReceived):
            self._receive_batch(event.envelopes)
        elif isinstance(event, AckReceived):
            self.acked = dict(event.vector)
        elif isinstance(event, PresenceReceived):
            self.presence.append((event.device, event.online))
        elif isinstance(event, DirectReceived):
            self.directs.append(event.frame)
        elif isinstance(event, UndeliveredReceived):
            self.undelivered.append(event)
        elif isinstance(event, Closed):
            self.closed = event

    def _receive_batch(self, envelopes: tuple[Envelope, ...]) -> None:
        assert self.session is not None
        gaps = 0
        for env in envelopes:
            placement = classify(self.vector, env.origin, env.seq)
            if placement is Placement.NEW:
                self.keys.open(env)  # a tampered envelope would raise here
                self.log.setdefault(env.origin, []).append(env)
            elif placement is Placement.GAP:
                gaps += 1
        self.gaps += gaps
        if self.session.is_open:
            self.session.send_ack(self.vector)
            if gaps:
                self.session.send_have(self.vector)
