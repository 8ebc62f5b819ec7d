"""In-process transports: a connected pair with fault knobs, and named in-process servers.

``memory_pair()`` returns two connected ``MemoryTransport`` ends. It is a real transport (it
passes the conformance suite) with knobs for the faults a network adds: ``loss`` and
``duplicate`` are per-frame probabilities drawn from a seeded ``random.Random``, ``delay`` is a
fixed latency per frame (order is kept). ``serve(handler, name)`` registers an in-process server
so that ``connect("memory://name")`` works in a single process, as the demo and tests need.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlsplit

from switchboard.errors import ConnectError, ConnectionLost, TransportClosed, TransportError
from switchboard.proto.frames import DEFAULT_MAX_FRAME_SIZE
from switchboard.transports.base import Guarantees, Transport

logger = logging.getLogger(__name__)

Handler = Callable[[Transport], Awaitable[None]]


class _Marker:
    """A queue item that is not a frame."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_EOF: Final = _Marker("eof")  # the peer closed: frames before it are still delivered
_WAKE: Final = _Marker("wake")  # we closed: wakes a waiting receive()

_Item = tuple[float, bytes] | _Marker


class MemoryTransport:
    """One end of an in-process connection. Create pairs with ``memory_pair()``."""

    def __init__(
        self,
        peer: str,
        *,
        guarantees: Guarantees,
        rng: random.Random,
        loss: float,
        duplicate: float,
        delay: float,
        max_frame_size: int,
    ) -> None:
        self.peer = peer
        self.guarantees = guarantees
        self._rng = rng
        self._loss = loss
        self._duplicate = duplicate
        self._delay = delay
        self._max_frame_size = max_frame_size
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._other: MemoryTransport | None = None
        self._closed = False  # by us
        self._lost = False  # by the peer, or broken by an oversized frame

    async def send(self, frame: bytes) -> None:
        """Send one frame (see ``Transport.send``)."""
        if self._closed:
            raise TransportClosed(f"connection to {self.peer} is closed")
        other = self._other
        assert other is not None, "use memory_pair() to create connected transports"
        if self._lost or other._closed or other._lost:
            raise ConnectionLost(f"connection to {self.peer} closed by peer")
        if self._loss and self._rng.random() < self._loss:
            return
        copies = 2 if self._duplicate and self._rng.random() < self._duplicate else 1
        deliver_at = asyncio.get_running_loop().time() + self._delay
        for _ in range(copies):
            other._inbox.put_nowait((deliver_at, bytes(frame)))

    async def receive(self) -> bytes:
        """Return the next frame (see ``Transport.receive``)."""
        self._check_open()
        item = await self._inbox.get()
        self._check_open()
        if isinstance(item, _Marker):
            self._lost = True
            raise ConnectionLost(f"connection to {self.peer} closed by peer")
        deliver_at, frame = item
        wait = deliver_at - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)  # the configured latency: this *is* the transport
            self._check_open()
        if len(frame) > self._max_frame_size:
            # Like a WebSocket refusing a message over max_size: the connection fails for both.
            self._break()
            raise ConnectionLost(
                f"connection to {self.peer} failed: frame of {len(frame)} bytes exceeds limit "
                f"of {self._max_frame_size} bytes"
            )
        return frame

    async def aclose(self) -> None:
        """Close this end; the peer receives what was sent, then ``ConnectionLost``."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put_nowait(_WAKE)
        if self._other is not None and not self._lost:
            self._other._inbox.put_nowait(_EOF)

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed(f"connection to {self.peer} is closed")
        if self._lost:
            raise ConnectionLost(f"connection to {self.peer} closed by peer")

    def _break(self) -> None:
        self._lost = True
        if self._other is not None and not self._other._closed:
            self._other._inbox.put_nowait(_EOF)


def memory_pair(
    *,
    loss: float = 0.0,
    duplicate: float = 0.0,
    delay: float = 0.0,
    seed: int | None = None,
    names: tuple[str, str] = ("memory://a", "memory://b"),
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Return two connected in-process transports.

    Args:
        loss: probability that a frame is silently dropped.
        duplicate: probability that a frame is delivered twice.
        delay: seconds each frame takes to arrive; order is kept.
        seed: seed of the random source that draws losses and duplicates (``None``: random).
        names: ``peer`` of the first end (what it is connected to) and of the second.
        max_frame_size: security limit of each receiving end.

    Returns:
        The two ends; what one sends, the other receives.
    """
    assert 0.0 <= loss <= 1.0 and 0.0 <= duplicate <= 1.0 and delay >= 0.0
    rng = random.Random(seed)
    guarantees = Guarantees(ordered=True, reliable=loss == 0.0 and duplicate == 0.0)
    a, b = (
        MemoryTransport(
            name,
            guarantees=guarantees,
            rng=rng,
            loss=loss,
            duplicate=duplicate,
            delay=delay,
            max_frame_size=max_frame_size,
        )
        for name in names
    )
    a._other, b._other = b, a
    return a, b


# -- named in-process servers ------------------------------------------------------------------

_servers: dict[str, MemoryListener] = {}
_client_numbers: Final = itertools.count(1)


class MemoryListener:
    """An in-process server registered under a name; ``connect("memory://name")`` reaches it."""

    port = 0

    def __init__(self, name: str, handler: Handler, max_frame_size: int) -> None:
        self.name = name
        self._handler = handler
        self._max_frame_size = max_frame_size
        self._tasks: set[asyncio.Task[None]] = set()
        self._transports: set[MemoryTransport] = set()

    def _accept(self) -> MemoryTransport:
        number = next(_client_numbers)
        client, server = memory_pair(
            names=(f"memory://{self.name}", f"memory://{self.name}#client-{number}"),
            max_frame_size=self._max_frame_size,
        )
        # Registered now, not when the task starts: aclose() right after connect() must see it.
        self._transports.add(server)
        task = asyncio.get_running_loop().create_task(
            self._handle(server), name=f"switchboard[memory://{self.name}#{number}].handler"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return client

    async def _handle(self, transport: MemoryTransport) -> None:
        try:
            await self._handler(transport)
        except TransportError as exc:
            logger.debug("x handler for %s ended: %s", transport.peer, exc)
        except Exception:
            # The one supervisor of a connection: log it and keep serving the others, as
            # websockets' server does for its handlers.
            logger.exception("! handler for %s failed", transport.peer)
        finally:
            self._transports.discard(transport)
            await transport.aclose()

    async def aclose(self) -> None:
        """Unregister, close open connections and wait for their handlers."""
        if _servers.get(self.name) is self:
            del _servers[self.name]
        for transport in list(self._transports):
            await transport.aclose()
        if self._tasks:
            await asyncio.wait(list(self._tasks))


async def serve(
    handler: Handler, name: str, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> MemoryListener:
    """Register an in-process server; each connection runs ``handler`` in its own task.

    Raises:
        TransportError: a server of that name is already registered.
    """
    if name in _servers:
        raise TransportError(f"cannot listen on memory://{name}: name already in use")
    listener = MemoryListener(name, handler, max_frame_size)
    _servers[name] = listener
    return listener


async def connect(
    url: str,
    *,
    timeout: float = 10.0,
) -> MemoryTransport:
    """Connect to the in-process server named in ``memory://NAME``.

    Raises:
        ConnectError: no server of that name is registered.
    """
    del timeout  # connecting in process cannot take time
    name = urlsplit(url).netloc
    listener = _servers.get(name)
    if listener is None:
        raise ConnectError(url, "no in-process server of that name")
    return listener._accept()
