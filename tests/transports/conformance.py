"""One conformance suite for every ``Transport``, in the manner of trio's ``check_two_way_stream``.

A test module passes a ``make_pair`` factory: an async context manager yielding two connected
transports ``(a, b)``, closed on exit. ``check_transport(make_pair)`` runs every check, each on a
fresh pair and from both sides; ``CHECKS`` lets a module parametrize them one by one instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from switchboard.errors import ConnectionLost, TransportClosed
from switchboard.proto.frames import DEFAULT_MAX_FRAME_SIZE
from switchboard.transports.base import Transport

Pair = tuple[Transport, Transport]
MakePair = Callable[[], AbstractAsyncContextManager[Pair]]
Check = Callable[[MakePair], Awaitable[None]]


def flipped(make_pair: MakePair) -> MakePair:
    """Return a factory that yields the same pairs with the two ends swapped."""

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[Pair]:
        async with make_pair() as (a, b):
            yield b, a

    return make


async def _receiving(transport: Transport) -> asyncio.Task[bytes]:
    """Start ``transport.receive()`` in a task and return once it is waiting."""
    started = asyncio.Event()

    async def receive() -> bytes:
        started.set()
        return await transport.receive()

    task = asyncio.create_task(receive())
    await started.wait()  # the task ran up to receive() and yielded inside it
    return task


async def check_send_receive_both_ways(make_pair: MakePair) -> None:
    """A frame sent by one end is received whole by the other, in both directions."""
    async with make_pair() as (a, b):
        await a.send(b"ping")
        assert await b.receive() == b"ping"
        await b.send(b"pong")
        assert await a.receive() == b"pong"


async def check_ordering(make_pair: MakePair) -> None:
    """Frames arrive in the order they were sent, whatever their sizes."""
    async with make_pair() as (a, b):
        frames = [bytes([n % 256]) * (1 + (n * 7919) % 5000) for n in range(200)]
        for frame in frames:
            await a.send(frame)
        assert [await b.receive() for _ in frames] == frames


async def check_binary_frames(make_pair: MakePair) -> None:
    """Frames are opaque bytes: every byte value, invalid UTF-8 and a single zero survive."""
    async with make_pair() as (a, b):
        frames = [bytes(range(256)), b"\xff\xfe\x80", b"\x00"]
        for frame in frames:
            await a.send(frame)
        assert [await b.receive() for _ in frames] == frames


async def check_large_frame(make_pair: MakePair) -> None:
    """A frame exactly at the frame limit is delivered whole."""
    async with make_pair() as (a, b):
        frame = os.urandom(DEFAULT_MAX_FRAME_SIZE)
        await a.send(frame)
        assert await b.receive() == frame
        await b.send(frame)
        assert await a.receive() == frame


async def check_oversized_frame(make_pair: MakePair) -> None:
    """A frame over the receiver's limit breaks the connection for both ends."""
    async with make_pair() as (a, b):
        with contextlib.suppress(ConnectionLost):
            await a.send(b"x" * (DEFAULT_MAX_FRAME_SIZE + 1))
        with pytest.raises(ConnectionLost):
            await b.receive()
        with pytest.raises(ConnectionLost):
            await a.receive()


async def check_concurrent_send(make_pair: MakePair) -> None:
    """Concurrent senders each get every frame through, in their own order."""
    async with make_pair() as (a, b):

        async def sender(tag: bytes) -> None:
            for n in range(50):
                await a.send(tag + n.to_bytes(2, "big") + b"." * 3000)

        await asyncio.gather(sender(b"x"), sender(b"y"))
        received = [await b.receive() for _ in range(100)]
        for tag in (b"x", b"y"):
            numbers = [int.from_bytes(f[1:3], "big") for f in received if f[:1] == tag]
            assert numbers == list(range(50))


async def check_receive_after_peer_close(make_pair: MakePair) -> None:
    """Frames sent before the peer closed are received, then receive raises ConnectionLost."""
    async with make_pair() as (a, b):
        await a.send(b"one")
        await a.send(b"two")
        await a.aclose()
        assert await b.receive() == b"one"
        assert await b.receive() == b"two"
        with pytest.raises(ConnectionLost):
            await b.receive()
        with pytest.raises(ConnectionLost):
            await b.receive()


async def check_waiting_receive_sees_peer_close(make_pair: MakePair) -> None:
    """A receive waiting when the peer closes raises ConnectionLost."""
    async with make_pair() as (a, b):
        task = await _receiving(b)
        await a.aclose()
        with pytest.raises(ConnectionLost):
            await task


async def check_send_after_peer_close(make_pair: MakePair) -> None:
    """Sending after the peer closed raises ConnectionLost."""
    async with make_pair() as (a, b):
        await a.aclose()
        with pytest.raises(ConnectionLost):
            await b.send(b"too late")


async def check_use_after_own_close(make_pair: MakePair) -> None:
    """Sending or receiving after our own aclose raises TransportClosed."""
    async with make_pair() as (a, _b):
        await a.aclose()
        with pytest.raises(TransportClosed):
            await a.send(b"x")
        with pytest.raises(TransportClosed):
            await a.receive()


async def check_own_close_interrupts_receive(make_pair: MakePair) -> None:
    """A receive waiting when we close our end raises TransportClosed."""
    async with make_pair() as (a, _b):
        task = await _receiving(a)
        await a.aclose()
        with pytest.raises(TransportClosed):
            await task


async def check_aclose_idempotent(make_pair: MakePair) -> None:
    """Closing twice, or twice at once, is the same as closing once."""
    async with make_pair() as (a, b):
        await a.aclose()
        await a.aclose()
        await asyncio.gather(b.aclose(), b.aclose())
        with pytest.raises(TransportClosed):
            await b.receive()


async def check_describes_itself(make_pair: MakePair) -> None:
    """Both ends name their peer and promise ordered, reliable delivery."""
    async with make_pair() as (a, b):
        for end in (a, b):
            assert isinstance(end.peer, str) and end.peer
            assert end.guarantees.ordered and end.guarantees.reliable


CHECKS: tuple[Check, ...] = (
    check_send_receive_both_ways,
    check_ordering,
    check_binary_frames,
    check_large_frame,
    check_oversized_frame,
    check_concurrent_send,
    check_receive_after_peer_close,
    check_waiting_receive_sees_peer_close,
    check_send_after_peer_close,
    check_use_after_own_close,
    check_own_close_interrupts_receive,
    check_aclose_idempotent,
    check_describes_itself,
)


async def check_transport(make_pair: MakePair) -> None:
    """Run every check on fresh pairs from ``make_pair``, from both sides."""
    for check in CHECKS:
        await check(make_pair)
        await check(flipped(make_pair))
