"""The in-process transport: conformance, fault knobs and the named server registry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conformance import CHECKS, Check, Pair, check_transport, flipped

from switchboard import transports
from switchboard.errors import ConnectError, ConnectionLost, TransportError
from switchboard.transports import memory
from switchboard.transports.base import Transport
from switchboard.transports.memory import memory_pair


@contextlib.asynccontextmanager
async def make_memory_pair() -> AsyncIterator[Pair]:
    """Yield a connected in-process pair."""
    a, b = memory_pair()
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


@contextlib.asynccontextmanager
async def make_registry_pair() -> AsyncIterator[Pair]:
    """Yield (client, server) ends connected through ``connect("memory://...")``."""
    accepted: asyncio.Queue[Transport] = asyncio.Queue()
    done = asyncio.Event()

    async def handler(transport: Transport) -> None:
        await accepted.put(transport)
        await done.wait()

    listener = await memory.serve(handler, "conformance")
    try:
        client = await transports.connect("memory://conformance")
        server = await accepted.get()
        yield client, server
        await client.aclose()
    finally:
        done.set()
        await listener.aclose()


async def drain(transport: Transport) -> list[bytes]:
    """Receive until the peer's close; return what arrived."""
    frames = []
    with contextlib.suppress(ConnectionLost):
        while True:
            frames.append(await transport.receive())
    return frames


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_memory_pair_conforms(run: Callable[..., Any], check: Check) -> None:
    """A memory pair passes each conformance check from both sides."""
    run(check(make_memory_pair))
    run(check(flipped(make_memory_pair)))


def test_memory_registry_conforms(run: Callable[..., Any]) -> None:
    """A pair connected through a named in-process server passes the whole suite."""
    run(check_transport(make_registry_pair), timeout=30)


def test_memory_pair_loss_drops_frames_reproducibly(run: Callable[..., Any]) -> None:
    """With loss=0.5 some frames vanish, and the same seed loses the same frames."""

    async def once() -> list[bytes]:
        a, b = memory_pair(loss=0.5, seed=7)
        assert not a.guarantees.reliable
        for n in range(100):
            await a.send(n.to_bytes(1, "big"))
        await a.aclose()
        return await drain(b)

    first, second = run(once()), run(once())
    assert 0 < len(first) < 100
    assert first == second
    assert first == sorted(first)


def test_memory_pair_duplicate_delivers_twice(run: Callable[..., Any]) -> None:
    """With duplicate=1.0 every frame arrives twice, in order."""

    async def main() -> list[bytes]:
        a, b = memory_pair(duplicate=1.0)
        for frame in (b"1", b"2"):
            await a.send(frame)
        await a.aclose()
        return await drain(b)

    assert run(main()) == [b"1", b"1", b"2", b"2"]


def test_memory_pair_delay_keeps_order(run: Callable[..., Any]) -> None:
    """Delayed frames arrive late but in order."""

    async def main() -> tuple[list[bytes], float]:
        a, b = memory_pair(delay=0.05)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(5):
            await a.send(bytes([n]))
        first = await b.receive()
        elapsed = loop.time() - start
        rest = [await b.receive() for _ in range(4)]
        return [first, *rest], elapsed

    frames, elapsed = run(main())
    assert frames == [bytes([n]) for n in range(5)]
    assert elapsed >= 0.04


def test_memory_connect_unknown_name_fails(run: Callable[..., Any]) -> None:
    """Connecting to a name nobody serves raises ConnectError."""
    with pytest.raises(ConnectError, match="no in-process server"):
        run(transports.connect("memory://nobody-here"))


def test_memory_serve_duplicate_name_fails(run: Callable[..., Any]) -> None:
    """A second server under a taken name is refused; the name frees up on aclose."""

    async def handler(transport: Transport) -> None:
        await transport.aclose()

    async def main() -> None:
        listener = await memory.serve(handler, "taken")
        try:
            with pytest.raises(TransportError, match="already in use"):
                await memory.serve(handler, "taken")
        finally:
            await listener.aclose()
        again = await memory.serve(handler, "taken")
        await again.aclose()

    run(main())


def test_memory_listener_aclose_ends_connections(run: Callable[..., Any]) -> None:
    """Closing a listener closes its connections, and clients see ConnectionLost."""

    async def main() -> None:
        started = asyncio.Event()

        async def handler(transport: Transport) -> None:
            started.set()
            await drain(transport)

        listener = await memory.serve(handler, "closing")
        client = await transports.connect("memory://closing")
        await started.wait()
        await listener.aclose()
        with pytest.raises(ConnectionLost):
            await client.receive()

    run(main())


def test_memory_failing_handler_is_contained(run: Callable[..., Any]) -> None:
    """A handler that raises closes its connection; the server keeps serving."""

    async def handler(transport: Transport) -> None:
        frame = await transport.receive()
        if frame == b"boom":
            raise RuntimeError("handler bug")
        await transport.send(frame)

    async def main() -> None:
        listener = await memory.serve(handler, "contained")
        try:
            bad = await transports.connect("memory://contained")
            await bad.send(b"boom")
            with pytest.raises(ConnectionLost):
                await bad.receive()
            good = await transports.connect("memory://contained")
            await good.send(b"echo")
            assert await good.receive() == b"echo"
        finally:
            await listener.aclose()

    run(main())


def test_connect_unsupported_scheme_fails(run: Callable[..., Any]) -> None:
    """An http:// URL is refused with a message naming the supported schemes."""
    with pytest.raises(ConnectError, match="unsupported scheme 'http'"):
        run(transports.connect("http://example.com"))


def test_memory_listener_aclose_right_after_connect(run: Callable[..., Any]) -> None:
    """Closing a listener before a new connection's handler ran still ends that handler."""

    async def main() -> None:
        async def handler(transport: Transport) -> None:
            await drain(transport)

        listener = await memory.serve(handler, "early-close")
        client = await transports.connect("memory://early-close")
        await listener.aclose()  # the handler task has not started yet
        with pytest.raises(ConnectionLost):
            await client.receive()

    run(main(), timeout=5)
