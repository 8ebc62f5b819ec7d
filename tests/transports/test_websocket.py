"""The WebSocket transport on 127.0.0.1, plain and over TLS: conformance and failure modes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conformance import CHECKS, Check, MakePair, Pair, flipped
from websockets.asyncio.client import connect as raw_connect

from switchboard import transports
from switchboard.errors import ConnectError, TransportError, TransportTimeout
from switchboard.transports import websocket
from switchboard.transports.base import Transport


def websocket_pairs(
    server_ssl: ssl.SSLContext | None = None, client_ssl: ssl.SSLContext | None = None
) -> MakePair:
    """Return a factory of (client, server) ends of a real WebSocket on 127.0.0.1."""

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[Pair]:
        accepted: asyncio.Queue[Transport] = asyncio.Queue()
        done = asyncio.Event()

        async def handler(transport: Transport) -> None:
            await accepted.put(transport)
            await done.wait()  # the connection lives as long as its handler

        listener = await websocket.serve(handler, "127.0.0.1", 0, ssl=server_ssl)
        scheme = "wss" if server_ssl else "ws"
        try:
            client = await transports.connect(
                f"{scheme}://127.0.0.1:{listener.port}", ssl=client_ssl
            )
            server = await accepted.get()
            yield client, server
            await client.aclose()
        finally:
            done.set()
            await listener.aclose()

    return make


def free_port() -> int:
    """Return a port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_websocket_conforms(run: Callable[..., Any], check: Check) -> None:
    """A ws:// connection passes each conformance check from both sides."""
    run(check(websocket_pairs()))
    run(check(flipped(websocket_pairs())))


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_websocket_tls_conforms(
    run: Callable[..., Any], tls: tuple[ssl.SSLContext, ssl.SSLContext], check: Check
) -> None:
    """A wss:// connection with a self-signed certificate passes each check from both sides."""
    server_ssl, client_ssl = tls
    run(check(websocket_pairs(server_ssl, client_ssl)))
    run(check(flipped(websocket_pairs(server_ssl, client_ssl))))


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_websocket_conforms_on_uvloop(run: Callable[..., Any], check: Check) -> None:
    """On uvloop (the relay's loop, whose transports are not asyncio's), each check passes."""
    uvloop = pytest.importorskip("uvloop")
    for make_pair in (websocket_pairs(), flipped(websocket_pairs())):
        run(check(make_pair), loop_factory=uvloop.new_event_loop)


def test_websocket_listener_reports_bound_port(run: Callable[..., Any]) -> None:
    """Serving on port 0 reports the port the system picked."""

    async def handler(transport: Transport) -> None:
        await transport.aclose()

    async def main() -> int:
        listener = await websocket.serve(handler, "127.0.0.1", 0)
        await listener.aclose()
        return listener.port

    assert run(main()) > 0


def test_websocket_connect_refused_fails(run: Callable[..., Any]) -> None:
    """Connecting where nothing listens raises ConnectError naming the URL."""
    url = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectError, match=f"cannot connect to {url}"):
        run(transports.connect(url, timeout=5))


def test_websocket_connect_timeout_fails(run: Callable[..., Any]) -> None:
    """A server that accepts TCP but never answers the handshake times the client out."""

    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # until the client gives up and closes
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await transports.connect(f"ws://127.0.0.1:{port}", timeout=0.2)
        finally:
            server.close()
            await server.wait_closed()

    with pytest.raises(TransportTimeout, match="timed out"):
        run(main())


def test_websocket_untrusted_certificate_fails(
    run: Callable[..., Any], tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """A wss:// client that does not trust the server's certificate cannot connect."""
    server_ssl, _ = tls

    async def handler(transport: Transport) -> None:
        await transport.aclose()

    async def main() -> None:
        listener = await websocket.serve(handler, "127.0.0.1", 0, ssl=server_ssl)
        try:
            await transports.connect(
                f"wss://127.0.0.1:{listener.port}", ssl=ssl.create_default_context()
            )
        finally:
            await listener.aclose()

    with pytest.raises(ConnectError, match="certificate verify failed"):
        run(main())


def test_websocket_tls_context_with_ws_url_fails(run: Callable[..., Any]) -> None:
    """Passing TLS settings for a ws:// URL is refused instead of silently ignored."""
    with pytest.raises(ConnectError, match="tls context"):
        run(transports.connect("ws://127.0.0.1:1", ssl=ssl.create_default_context()))


def test_websocket_serve_port_in_use_fails(run: Callable[..., Any]) -> None:
    """Binding a port that is taken raises TransportError naming the address."""

    async def handler(transport: Transport) -> None:
        await transport.aclose()

    async def main() -> None:
        listener = await websocket.serve(handler, "127.0.0.1", 0)
        try:
            await websocket.serve(handler, "127.0.0.1", listener.port)
        finally:
            await listener.aclose()

    with pytest.raises(TransportError, match=r"cannot listen on ws://127\.0\.0\.1"):
        run(main())


def test_websocket_text_message_arrives_as_bytes(run: Callable[..., Any]) -> None:
    """A text message from a foreign client is handed over as bytes for the session to judge."""

    async def main() -> bytes:
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handler(transport: Transport) -> None:
            received.set_result(await transport.receive())

        listener = await websocket.serve(handler, "127.0.0.1", 0)
        try:
            async with raw_connect(f"ws://127.0.0.1:{listener.port}") as ws:
                await ws.send("hello")
                return await received
        finally:
            await listener.aclose()

    assert run(main()) == b"hello"


def test_websocket_http_request_is_refused(run: Callable[..., Any]) -> None:
    """A plain HTTP server is not a WebSocket server: connecting raises ConnectError."""

    async def main() -> None:
        async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await transports.connect(f"ws://127.0.0.1:{port}", timeout=5)
        finally:
            server.close()
            await server.wait_closed()

    with pytest.raises(ConnectError, match="handshake failed"):
        run(main())


# -- the server side's own boundaries (transports/wsserver.py) ---------------------------------


def test_websocket_server_answers_plain_http_and_keeps_serving(run: Callable[..., Any]) -> None:
    """A request that is not a WebSocket upgrade gets an HTTP error; the next client connects."""

    async def main() -> tuple[bytes, bytes]:
        async def handler(transport: Transport) -> None:
            await transport.send(await transport.receive())

        listener = await websocket.serve(handler, "127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()  # until the server closes
            writer.close()
            client = await transports.connect(f"ws://127.0.0.1:{listener.port}")
            await client.send(b"still here")
            echoed = await client.receive()
            await client.aclose()
            return answer, echoed
        finally:
            await listener.aclose()

    answer, echoed = run(main())
    assert answer.startswith(b"HTTP/1.1 426") and echoed == b"still here"


def test_websocket_server_cuts_a_silent_socket(run: Callable[..., Any]) -> None:
    """A socket that never sends its upgrade is cut after the open timeout."""

    async def main() -> bytes:
        async def handler(transport: Transport) -> None:
            raise AssertionError("never opened")

        listener = await websocket.serve(handler, "127.0.0.1", 0, open_timeout=0.2)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            data = await reader.read()  # returns once the server cut the socket
            writer.close()
            return data
        finally:
            await listener.aclose()

    assert run(main()) == b""


def test_websocket_server_joins_fragments(run: Callable[..., Any]) -> None:
    """A message sent in fragments is received whole."""

    async def main() -> bytes:
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handler(transport: Transport) -> None:
            received.set_result(await transport.receive())

        listener = await websocket.serve(handler, "127.0.0.1", 0)
        try:
            async with raw_connect(f"ws://127.0.0.1:{listener.port}") as ws:
                await ws.send([b"one ", b"two ", b"three"])
                return await received
        finally:
            await listener.aclose()

    assert run(main()) == b"one two three"


def test_websocket_server_handler_failure_closes_with_1011(run: Callable[..., Any]) -> None:
    """A handler that fails (a bug) closes its connection with 1011; the server keeps serving."""

    async def main() -> int | None:
        async def handler(transport: Transport) -> None:
            await transport.receive()
            raise RuntimeError("bug")

        listener = await websocket.serve(handler, "127.0.0.1", 0)
        try:
            async with raw_connect(f"ws://127.0.0.1:{listener.port}") as ws:
                await ws.send(b"boom")
                await ws.wait_closed()
                return ws.close_code
        finally:
            await listener.aclose()

    assert run(main()) == 1011
