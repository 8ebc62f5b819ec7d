"""NATS adapter (nats-py): connections with mapped errors.

Theory of operation
-------------------
Everything that touches nats-py for Switchboard goes through here, so its exceptions stop at
``map_nats_errors``. ``connect`` opens a client with reconnects *off*: a link that loses its
server ends its session and reconnects through its own backoff loop, which rebuilds every
subscription from the store's cursor. That is one recovery path to test instead of two.
"""

from __future__ import annotations

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
    TransportError,
    TransportTimeout,
)
from switchboard.transports import tls

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

    from switchboard.transports.options import LinkOptions

DEFAULT_PORT: Final = 4222


class NoResponders(TransportError):
    """Nobody is subscribed to the subject a request went to."""


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


async def request(
    nc: NatsClient, subject: str, payload: bytes, *, timeout: float, endpoint: str
) -> bool:
    """Send a core NATS request and wait for its answer; return ``False`` if none came in time.

    Core NATS may lose a message (docs/links.md), so a caller that needs it delivered sends it
    again after ``False``; the answer only acknowledges receipt.

    Raises:
        NoResponders: nobody is subscribed to ``subject`` (the server says so at once).
        ConnectionLost: the connection broke.
    """
    with map_nats_errors(endpoint):
        try:
            await nc.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError as exc:
            raise NoResponders(f"nobody subscribed to the subject on {endpoint}") from exc
        except (TimeoutError, nats.errors.TimeoutError):
            return False
    return True


async def acknowledge(msg: Msg) -> None:
    """Answer a request (``request``'s acknowledgement); a connection gone meanwhile is fine."""
    if msg.reply:
        with contextlib.suppress(nats.errors.Error, OSError):
            await msg.respond(b"")
