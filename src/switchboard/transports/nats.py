"""NATS adapter (nats-py): connections with mapped errors.

Theory of operation
-------------------
Everything that touches nats-py for Switchboard goes through here, so its exceptions stop at
``map_nats_errors``: ``connect`` returns a ``NatsJetStream``, the
``transports.brokers.JetStreamClient`` the NATS link uses. It opens a client with reconnects
*off*: a link that loses its server ends its session and reconnects through its own backoff
loop, which rebuilds every subscription from the store's cursor. That is one recovery path to
test instead of two.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import nats
import nats.errors
import nats.js.errors
from nats.js import api
from nats.protocol.parser import AUTHORIZATION_VIOLATION

from switchboard.errors import (
    AuthError,
    ConnectError,
    ConnectionLost,
    SwitchboardError,
    TransportTimeout,
)
from switchboard.transports import tls
from switchboard.transports.brokers import NoResponders, PublishAck, StreamInfo, StreamMessage

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from switchboard.transports.options import LinkOptions

DEFAULT_PORT: Final = 4222
ACK_TOKENS: Final = 9  # tokens of a consumer's reply subject without domain and account
WRONG_LAST_SEQUENCE: Final = 10071  # JetStream's err_code for a failed expected-last check


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


class NatsJetStream:
    """An open nats-py connection with JetStream: the ``transports.brokers.JetStreamClient``.

    Every call maps nats-py's exceptions (``map_nats_errors``); "not found" and "not the
    expected last sequence" are answers here, not errors.
    """

    def __init__(self, nc: NatsClient, endpoint: str) -> None:
        self.endpoint = endpoint
        self._nc = nc
        self._js = nc.jetstream()
        self._ended = asyncio.Event()
        self._why: Exception = ConnectionLost(f"connection to {endpoint} ended")

    @property
    def server(self) -> str:
        """The server that answered (``host:port``), else the URL we were given."""
        return self._nc.connected_url.netloc if self._nc.connected_url else self.endpoint

    def _end(self, exc: Exception) -> None:
        if not self._ended.is_set():
            self._why = exc
            self._ended.set()

    async def ensure_stream(
        self, name: str, subjects: list[str], *, replicas: int, duplicate_window: float,
        max_consumers: int,
    ) -> StreamInfo:  # fmt: skip
        """Create the stream unless it exists; raise an older stream's consumer limit."""
        with map_nats_errors(self.endpoint):
            try:
                info = await self._js.stream_info(name)
            except nats.js.errors.NotFoundError:
                config = api.StreamConfig(
                    name=name,
                    subjects=subjects,
                    storage=api.StorageType.FILE,
                    duplicate_window=duplicate_window,
                    num_replicas=replicas,
                    allow_direct=True,
                    max_consumers=max_consumers,
                )
                info = await self._js.add_stream(config)
            if (info.config.max_consumers or 0) < max_consumers:  # made by an older Switchboard
                config = replace(info.config, max_consumers=max_consumers)
                with contextlib.suppress(nats.js.errors.APIError):  # servers before 2.12 refuse
                    info = await self._js.update_stream(config)
        return StreamInfo(created=str(info.created or ""), last_seq=info.state.last_seq)

    async def ensure_bucket(self, name: str, *, ttl: float, replicas: int) -> NatsBucket:
        """Open the key-value bucket, creating it unless it exists."""
        with map_nats_errors(self.endpoint):
            try:
                kv = await self._js.key_value(name)
            except nats.js.errors.BucketNotFoundError:
                config = api.KeyValueConfig(bucket=name, ttl=ttl, history=1, replicas=replicas)
                kv = await self._js.create_key_value(config)
        return NatsBucket(kv, self.endpoint)

    async def last_message(self, stream: str, subject: str) -> StreamMessage | None:
        """The stream's last message on ``subject``, or ``None``."""
        with map_nats_errors(self.endpoint):
            try:
                raw = await self._js.get_last_msg(stream, subject)
            except nats.js.errors.NotFoundError:
                return None
        return StreamMessage(subject=subject, data=raw.data or b"", stream_seq=raw.seq or 0)

    async def publish(
        self, subject: str, payload: bytes, *, msg_id: str, expected_last_subject_seq: int
    ) -> PublishAck | None:
        """Publish with ``Nats-Msg-Id`` and ``Nats-Expected-Last-Subject-Sequence``."""
        headers = {
            "Nats-Msg-Id": msg_id,
            "Nats-Expected-Last-Subject-Sequence": str(expected_last_subject_seq),
        }
        with map_nats_errors(self.endpoint):
            try:
                ack = await self._js.publish(subject, payload, headers=headers)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise
                return None
        return PublishAck(stream=ack.stream, seq=ack.seq, duplicate=bool(ack.duplicate))

    async def consume(
        self,
        stream: str,
        subjects: str,
        *,
        after: int,
        on_batch: Callable[[list[StreamMessage]], Awaitable[None]],
        max_batch: int,
    ) -> None:
        """Read the stream with an ordered consumer (server side: ephemeral, in memory)."""
        batch: list[StreamMessage] = []
        sub: list[JetStreamContext.PushSubscription] = []

        async def deliver(msg: Msg) -> None:
            # nats-py calls this for one message at a time, in order, and buffers the rest:
            # while more are buffered (a replay), gather them to hand over in one call.
            if self._ended.is_set():
                return  # the connection is ending; what was not handled is read again
            batch.append(StreamMessage(msg.subject, msg.data, stream_seq(msg)))
            if len(batch) < max_batch and sub and sub[0].pending_msgs:
                return
            msgs = batch[:]
            batch.clear()
            try:
                await on_batch(msgs)
            except Exception as exc:  # noqa: BLE001 - raised again by wait_closed
                self._end(exc)

        if after:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
            )
        else:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        with map_nats_errors(self.endpoint):
            sub.append(await self._js.subscribe(
                subjects, stream=stream, cb=deliver, ordered_consumer=True, config=config,
                idle_heartbeat=2.0,
            ))  # fmt: skip

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> bool:
        """A core NATS request; ``False`` when no answer came in time (see the protocol)."""
        with map_nats_errors(self.endpoint):
            try:
                await self._nc.request(subject, payload, timeout=timeout)
            except nats.errors.NoRespondersError as exc:
                raise NoResponders(f"nobody subscribed to the subject on {self.endpoint}") from exc
            except (TimeoutError, nats.errors.TimeoutError):
                return False
        return True

    async def serve_requests(self, subject: str, on_request: Callable[[bytes], None]) -> None:
        """Answer every request on ``subject`` at once, then hand its payload over."""

        async def answer(msg: Msg) -> None:
            if msg.reply:
                with contextlib.suppress(nats.errors.Error, OSError):  # gone meanwhile: moot
                    await msg.respond(b"")
            on_request(msg.data)

        with map_nats_errors(self.endpoint):
            await self._nc.subscribe(subject, cb=answer)

    async def wait_closed(self) -> None:
        """Wait until the connection ends or a consumer's ``on_batch`` failed; raise why."""
        await self._ended.wait()
        raise self._why

    async def aclose(self) -> None:
        """Close the connection; what nats-py says about one already gone is moot."""
        with contextlib.suppress(Exception):
            await self._nc.close()


class NatsBucket:
    """A JetStream key-value bucket: the ``transports.brokers.PresenceBucket``."""

    def __init__(self, kv: KeyValue, endpoint: str) -> None:
        self._kv = kv
        self._endpoint = endpoint

    async def put(self, key: str, value: bytes) -> None:
        """Put ``key`` (refreshes its TTL)."""
        with map_nats_errors(self._endpoint):
            await self._kv.put(key, value)

    async def delete(self, key: str) -> None:
        """Delete ``key``."""
        with map_nats_errors(self._endpoint):
            await self._kv.delete(key)

    async def watch(self) -> AsyncIterator[tuple[str, bool]]:
        """Yield ``(key, present)`` for every key, then for every change."""
        with map_nats_errors(self._endpoint):
            watcher = await self._kv.watchall()
            async for entry in watcher:
                if entry is None:
                    continue  # the initial values were all delivered
                yield entry.key, entry.operation not in ("DEL", "PURGE")


def stream_seq(msg: Msg) -> int:
    """The stream sequence of a message a consumer delivered.

    It is the sixth token of the reply (ack) subject, ``$JS.ACK.<stream>.<consumer>.<delivered>.
    <stream seq>.<consumer seq>.<time>.<pending>``; ``msg.metadata`` parses the same and more
    (a timestamp) at several times the cost, and still reads any other form of that subject.
    """
    tokens = (msg.reply or "").split(".")
    if len(tokens) == ACK_TOKENS and tokens[5].isdigit():
        return int(tokens[5])
    return msg.metadata.sequence.stream


async def connect(
    url: str,
    options: LinkOptions,
    *,
    timeout: float = 10.0,
    name: str = "switchboard",
) -> NatsJetStream:
    """Connect to a NATS server or cluster, reconnects off.

    Args:
        url: ``nats://`` (or ``tls://``) with one host or a comma-separated seed list, and
            optionally a query (``?replicas=3``, the link's).
        options: login, ``.creds`` and TLS files.
        timeout: seconds for connecting.
        name: the client name servers show in their monitoring.

    Raises:
        ConnectError: no server accepted the connection.
        AuthError: the credentials were refused.
    """
    servers = servers_of(url)
    endpoint = url.split("?", 1)[0]
    client: list[NatsJetStream] = []

    async def closed() -> None:
        if client:
            client[0]._end(ConnectionLost(f"connection to {endpoint} ended"))

    async def error(exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            await closed()

    with map_nats_errors(url, connecting=True):
        nc = await nats.connect(
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
    client.append(NatsJetStream(nc, endpoint))
    return client[0]
