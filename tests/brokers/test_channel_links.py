"""One conformance suite for the directed channel, run over every link: an in-process relay
over memory://, the relay on a loopback WebSocket, a real Mosquitto and a real nats-server."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from brokerlab import Mosquitto, NatsServer
from channel_kit import (
    CHUNK,
    Backend,
    MosquittoBackend,
    NatsBackend,
    RelayBackend,
    chunk_of,
    devices,
    wait_until,
)
from cluster import timeout

from switchboard.crypto import public_bytes
from switchboard.errors import RemoteError, TransportTimeout, Unreachable
from switchboard.proto.calls import MAX_BODY, Call, encode_message
from switchboard.proto.channel import DEFAULT_WINDOW

STREAM_CHUNKS = 1024  # 64 MiB in chunks of 64 KiB
# What either side may hold of a stream at once: the window of chunks on the caller, as many
# sent and unacknowledged on the responder, and the frames queued for the link, with room for
# one window sent again. A side that buffered the stream would hold 64 MiB.
MAX_BUFFERED = 3 * DEFAULT_WINDOW * CHUNK


@pytest.fixture(params=["memory", "websocket", "mosquitto", "nats"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each link's far end: the relay (memory://, ws://), Mosquitto, nats-server."""
    if request.param in ("memory", "websocket"):
        return RelayBackend("memory" if request.param == "memory" else "ws")
    if request.param == "mosquitto":
        broker: Mosquitto = request.getfixturevalue("mosquitto")
        return MosquittoBackend(broker.url, broker.port)
    server: NatsServer = request.getfixturevalue("nats_server")
    return NatsBackend(server.url)


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_channel_request_and_response(
    run: Callable[..., Any], tmp_path: Path, backend: Backend
) -> None:
    """A call gets its answer; a handler's error arrives as RemoteError with its code; a
    kind nobody serves is not_found; a body over the limit is refused before it leaves."""

    async def main() -> None:
        async with devices(backend, tmp_path) as (a, b):
            body = os.urandom(MAX_BODY)
            assert await a.link.channel.call(b.id, "echo", body) == body
            assert await b.link.channel.call(a.id, "echo", b"back") == b"back"
            with pytest.raises(RemoteError) as failed:
                await a.link.channel.call(b.id, "fail")
            assert failed.value.remote_code == "bad_request"
            assert "this call always fails" in str(failed.value)
            with pytest.raises(RemoteError) as unknown:
                await a.link.channel.call(b.id, "nobody-serves-this")
            assert unknown.value.remote_code == "not_found"
            with pytest.raises(Exception, match="exceeds limit"):
                await a.link.channel.call(b.id, "echo", body + b"!")
            assert b.calls == ["echo", "fail"] and a.calls == ["echo"]
            assert await a.link.channel.call(a.id, "echo", b"self") == b"self"

    run(main(), timeout=60)


def test_channel_streams_64_mib_with_bounded_memory(
    run: Callable[..., Any], tmp_path: Path, backend: Backend
) -> None:
    """A 64 MiB stream arrives whole and in order while neither side ever buffers more than a
    few windows of chunks (and the process does not grow by anything like the stream)."""

    async def main() -> tuple[int, int, int]:
        async with devices(backend, tmp_path) as (a, b):
            before, peak = rss_bytes(), 0
            digest, expected = hashlib.sha256(), hashlib.sha256()
            received = 0
            async with a.link.channel.stream(b.id, "blob", b"%d" % STREAM_CHUNKS) as chunks:
                async for chunk in chunks:
                    expected.update(chunk_of(received))
                    digest.update(chunk)
                    received += 1
                    if received % 64 == 0:
                        peak = max(peak, rss_bytes() - before)
            assert received == STREAM_CHUNKS and digest.digest() == expected.digest()
            assert b.produced == STREAM_CHUNKS
            caller = a.link.channel.statistics().max_buffered_bytes
            responder = b.link.channel.statistics().max_buffered_bytes
            assert caller <= MAX_BUFFERED, f"caller buffered {caller} bytes"
            assert responder <= MAX_BUFFERED, f"responder buffered {responder} bytes"
            # The caller's last word (all held: forget it) frees the responder's window.
            await wait_until(
                lambda: b.link.channel.statistics().buffered_bytes == 0, 20, "b holds no chunk"
            )
            return caller, responder, peak

    caller, responder, peak = run(main(), timeout=240)
    print(f"{backend.name}: buffered at most {caller} B (caller), {responder} B (responder); "
          f"RSS grew {peak >> 20} MiB during the stream")  # fmt: skip
    assert peak < STREAM_CHUNKS * CHUNK // 2, "the process grew by half the stream or more"


def test_channel_peer_going_away_mid_stream_ends_it_with_a_clear_error(
    run: Callable[..., Any], tmp_path: Path, backend: Backend
) -> None:
    """When the responding device stops in the middle of a stream, the caller's iteration
    ends with an error naming the device (no hang), and the caller's channel holds nothing."""

    async def main() -> None:
        async with devices(backend, tmp_path) as (a, b):
            got = 0
            with pytest.raises((Unreachable, TransportTimeout)) as gone:
                async with a.link.channel.stream(b.id, "blob", b"1000000") as chunks:
                    async for _ in chunks:
                        got += 1
                        if got == 20:
                            await b.link.stop()
            assert b.id[:12] in str(gone.value)
            assert got >= 20 and b.stream_closed.is_set()
            assert a.link.channel.statistics().buffered_bytes == 0
            with pytest.raises(Unreachable):
                await a.link.channel.call(b.id, "echo", timeout=timeout(20))

    run(main(), timeout=60)


def test_channel_unknown_device_is_unreachable(
    run: Callable[..., Any], tmp_path: Path, backend: Backend
) -> None:
    """Calling a device that is not in the group fails at once with Unreachable naming it."""

    async def main() -> None:
        async with devices(backend, tmp_path) as (a, _):
            stranger = "x" * 26
            with pytest.raises(Unreachable, match=r"device xxxxxxxxxxxx is unreachable"):
                await a.link.channel.call(stranger, "echo", b"hi", timeout=timeout(20))
            with pytest.raises(Unreachable):
                async with a.link.channel.stream(stranger, "blob", b"3") as chunks:
                    async for _ in chunks:
                        pass

    run(main(), timeout=60)


def test_channel_payload_tampered_in_transit_is_rejected_and_reported(
    run: Callable[..., Any], tmp_path: Path, backend: Backend
) -> None:
    """A frame the relay or broker altered (box, ref or recipient) never reaches a handler:
    the receiving link counts it as tampered and says why; a genuine frame still works."""

    async def main() -> None:
        async with devices(backend, tmp_path) as (a, b):
            genuine = a.link.keys.seal_direct(a.identity, b.id, 42, b"not a call")
            box = bytearray(genuine.box)
            box[len(box) // 2] ^= 0x01
            for bad in (
                msgspec.structs.replace(genuine, box=bytes(box)),
                msgspec.structs.replace(genuine, ref=43),
            ):
                await backend.inject(a.group, b.id, bad)
            await wait_until(
                lambda: b.link.status.tampered >= 2, 20, "b counted both tampered frames"
            )
            assert b.link.channel.statistics().tampered == 2
            assert "signature is invalid" in (b.link.status.last_error or "")
            assert b.calls == []
            assert await a.link.channel.call(b.id, "echo", b"still fine") == b"still fine"

    run(main(), timeout=60)


def test_channel_forged_sender_is_rejected(
    run: Callable[..., Any], tmp_path: Path, backend: Backend
) -> None:
    """A member posing as another device (its id with its own key, or the victim's key with
    its own signature) is refused by the receiver and runs nothing there."""

    async def main() -> None:
        async with devices(backend, tmp_path, count=3) as (a, b, mallory):
            call = encode_message(Call(1, "echo", b"as a", False, 1, time.time()))
            mine = mallory.link.keys.seal_direct(mallory.identity, b.id, 1, call)
            for forged in (
                msgspec.structs.replace(mine, sender=a.id),  # a's id, mallory's key
                msgspec.structs.replace(mine, sender=a.id, sender_key=public_bytes(a.identity)),
            ):
                await backend.inject(a.group, b.id, forged)
            await wait_until(
                lambda: b.link.status.tampered >= 2, 20, "b counted both tampered frames"
            )
            assert b.link.channel.statistics().tampered == 2
            assert "signature is invalid" in (b.link.status.last_error or "")
            assert b.calls == []
            await backend.inject(a.group, b.id, mine)  # as itself, mallory may call b
            await wait_until(lambda: b.calls == ["echo"], 20, "b served mallory's own call")

    run(main(), timeout=60)
