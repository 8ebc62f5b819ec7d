"""NATS adapter (nats-py): connections with mapped errors, and a frame pipe ``Transport``.

Theory of operation
-------------------
Everything that touches nats-py for Switchboard goes through here, so its exceptions stop at
``map_nats_errors``. ``connect`` opens a client with reconnects *off*: a link that loses its
server ends its session and reconnects through its own backoff loop, which rebuilds every
subscription from the store's cursor. That is one recovery path to test instead of two.

``NatsPipe`` carries whole frames between two subjects over core NATS, for the transport
conformance suite and as a plain floor in benchmarks. It uses the MQTT pipe's one-byte kinds
(``D`` data, ``C`` close, ``A`` close acknowledged). Core NATS delivers over one TCP
connection per end, in order; it drops messages only for a *slow consumer*, which nats-py
reports through ``error_cb``, and the pipe then breaks instead of going on with a hole, so
"every frame sent while connected arrives" holds. NATS has no last will: a peer that dies
without ``C`` is found by the sync session's own heartbeats (``Ping``/``Pong``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import nats
import nats.errors
import nats.js.errors
from nats.protocol.parser import AUTHORIZATION_VIOLATION

from switchboard.errors import (
    AuthError,
    ConnectError,
    ConnectionLost,
    SwitchboardError,
    TransportClosed,
    TransportTimeout,
)
from switchboard.proto.frames import DEFAULT_MAX_FRAME_SIZE
from switchboard.transports import tls
from switchboard.transports.base import Guarantees

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

    from switchboard.links.base import LinkOptions

DEFAULT_PORT: Final = 4222
_DATA, _CLOSE, _ACK = b"D", b"C", b"A"
CLOSE_WAIT: Final = 1.0


def servers_of(url: str) -> list[str]:
    """Split ``nats://h1:4222,h2:4222`` (a cluster's seed list) into one URL per server.

    Raises:
        ConnectError: not a ``nats://`` or ``tls://`` URL, or it carries credentials.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    hosts = rest.split("/", 1)[0].split("?", 1)[0]
    if not sep or scheme not in ("nats", "tls") or not hosts:
        raise ConnectError(url, "expected nats://HOST[:PORT][,HOST[:PORT]...]")
    if "@" in hosts:
        raise ConnectError(scheme + "://...", "credentials go in --username/--password-file")
    out = []
    for raw in hosts.split(","):
        host = raw.strip()
        if host.rpartition(":")[2].isdigit() and not host.endswith("]"):
            out.append(f"{scheme}://{host}")
        else:
            out.append(f"{scheme}://{host}:{DEFAULT_PORT}")
    return out


@contextlib.contextmanager
def map_nats_errors(endpoint: str, *, connecting: bool = False) -> Iterator[None]:
    """Translate nats-py exceptions raised inside the block into our tree.

    Raises:
        AuthError: the server refused our credentials.
        ConnectError: connecting failed.
        TransportTimeout: a request timed out.
        ConnectionLost: the connection broke or was closed under us.
    """
    try:
        yield
    except SwitchboardError:
        raise
    except (nats.errors.AuthorizationError, nats.errors.InvalidUserCredentialsError) as exc:
        raise AuthError(f"nats server {endpoint} refused the credentials") from exc
    except (TimeoutError, nats.errors.TimeoutError) as exc:
        if connecting:
            raise ConnectError(endpoint, "timed out") from exc
        raise TransportTimeout(f"nats server {endpoint} did not answer in time") from exc
    except nats.js.errors.APIError as exc:
        raise ConnectionLost(f"jetstream at {endpoint} failed: {exc.description}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise tls.untrusted_certificate(endpoint, exc) from exc
    except (nats.errors.Error, OSError, ssl.SSLError) as exc:
        if isinstance(exc, ssl.SSLError) and (refused := tls.refused(endpoint, exc)):
            raise refused from exc
        # While connecting, nats-py reports a refused login as a plain Error carrying the
        # server's "-ERR 'Authorization Violation'", not as AuthorizationError.
        if AUTHORIZATION_VIOLATION in str(exc).lower():
            raise AuthError(f"nats server {endpoint} refused the credentials") from exc
        if connecting:
            raise ConnectError(endpoint, str(exc).lower() or type(exc).__name__) from exc
        raise ConnectionLost(f"connection to {endpoint} broke: {type(exc).__name__}") from exc


async def connect(
    url: str,
    options: LinkOptions,
    *,
    timeout: float = 10.0,
    on_lost: Any = None,
    name: str = "switchboard",
) -> NatsClient:
    """Connect to a NATS server or cluster, reconnects off.

    Args:
        url: ``nats://`` (or ``tls://``) with one host or a comma-separated seed list.
        options: login, ``.creds`` and TLS files.
        timeout: seconds for connecting.
        on_lost: ``async def on_lost()`` called once when the connection ends.
        name: the client name servers show in their monitoring.

    Raises:
        ConnectError: no server accepted the connection.
        AuthError: the credentials were refused.
    """
    servers = servers_of(url)

    async def closed() -> None:
        if on_lost is not None:
            await on_lost()

    async def error(exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError) and on_lost is not None:
            await on_lost()

    with map_nats_errors(url, connecting=True):
        return await nats.connect(
            servers=servers,
            name=name,
            user=options.username,
            password=options.password,
            user_credentials=options.creds,
            tls=tls.context(options, servers[0].startswith("tls://")),
            allow_reconnect=False,
            # nats-py tries each server of the list until it failed this many times more
            # (0 would mean "forever"); our link's own backoff takes over after that.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            connect_timeout=max(1, int(timeout)),
            closed_cb=closed,
            disconnected_cb=closed,
            error_cb=error,
        )


class NatsPipe:
    """A frame ``Transport`` between two core NATS subjects (see the module docstring)."""

    guarantees = Guarantees(ordered=True, reliable=True)

    def __init__(self, url: str, local: str, remote: str, max_frame_size: int) -> None:
        self.peer = f"{url}/{remote}"
        self._url, self._local, self._remote, self._max = url, local, remote, max_frame_size
        self._nc: NatsClient | None = None
        self._inbox: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._acked = asyncio.Event()
        self._peer_closed = False
        self._closed = False

    async def _start(self, options: LinkOptions) -> None:
        self._nc = await connect(self._url, options, on_lost=self._on_lost)
        with map_nats_errors(self._url):
            await self._nc.subscribe(self._local, cb=self._dispatch, pending_msgs_limit=-1)
            await self._nc.flush()

    async def _on_lost(self) -> None:
        if not self._closed:
            self._lost(ConnectionLost(f"connection to {self._url} broke"))

    async def _dispatch(self, msg: Msg) -> None:
        kind, body = msg.data[:1], msg.data[1:]
        if kind == _DATA and len(body) > self._max:
            self._lost(ConnectionLost(f"frame of {len(body)} bytes from {self.peer}"))
            with contextlib.suppress(SwitchboardError):
                await self._publish(_CLOSE)
        elif kind == _DATA and not self._peer_closed:
            self._inbox.put_nowait(body)
        elif kind == _CLOSE and not self._peer_closed:
            self._lost(ConnectionLost(f"{self.peer} closed"))
            with contextlib.suppress(SwitchboardError):
                await self._publish(_ACK)
        elif kind == _ACK:
            self._acked.set()

    def _lost(self, exc: ConnectionLost) -> None:
        if not self._peer_closed:
            self._peer_closed = True
            self._inbox.put_nowait(exc)

    async def _publish(self, payload: bytes) -> None:
        assert self._nc is not None
        with map_nats_errors(self._url):
            await self._nc.publish(self._remote, payload)
            await self._nc.flush()

    async def send(self, frame: bytes) -> None:
        """Send one frame (returns once the server has it: ``flush``)."""
        if self._closed:
            raise TransportClosed(f"pipe to {self.peer} is closed")
        if self._peer_closed:
            raise ConnectionLost(f"{self.peer} closed")
        await self._publish(_DATA + frame)

    async def receive(self) -> bytes:
        """Return the next frame."""
        if self._closed:
            raise TransportClosed(f"pipe to {self.peer} is closed")
        item = await self._inbox.get()
        if isinstance(item, BaseException):
            self._inbox.put_nowait(item)
            raise item
        return item

    async def aclose(self) -> None:
        """Close: tell the peer (and wait briefly for its acknowledgement), then disconnect."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put_nowait(TransportClosed(f"pipe to {self.peer} is closed"))
        if not self._peer_closed:
            with contextlib.suppress(SwitchboardError, TimeoutError):
                await self._publish(_CLOSE)
                await asyncio.wait_for(self._acked.wait(), CLOSE_WAIT)
        if self._nc is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self._nc.close()


async def connect_pipe(
    url: str,
    local: str,
    remote: str,
    options: LinkOptions,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> NatsPipe:
    """Open a pipe end that receives on subject ``local`` and sends to ``remote``.

    Returns once subscribed (the server has our subscription).

    Raises:
        ConnectError: the server could not be reached.
        AuthError: the credentials were refused.
    """
    pipe = NatsPipe(url, local, remote, max_frame_size)
    await pipe._start(options)  # the constructor's second half, kept async
    return pipe
