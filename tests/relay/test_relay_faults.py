"""The relay under bad input: garbage frames, failed authentication, floods and shutdown."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from relay_client import Device, FakeClock, device_id_of, running_relay

from switchboard import transports
from switchboard.crypto import GroupKeys, public_bytes
from switchboard.errors import AuthError, ByeCode, ConnectionLost, Rejected
from switchboard.proto import handshake
from switchboard.proto.frames import (
    DEFAULT_MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
    AnyFrame,
    Bye,
    Challenge,
    Hello,
    Ping,
    Proof,
    decode_frame,
    encode_frame,
)
from switchboard.relay.limits import AuthLimiter


def hello(
    group: str,
    group_key: bytes,
    version: int = PROTOCOL_VERSION,
    *,
    device: str = "",
    device_key: bytes = b"",
) -> Hello:
    """Return a client Hello for ``group`` offering ``group_key``, from a fresh device.

    ``device`` and ``device_key`` override the device it claims to be, to build impostors.
    """
    identity = Ed25519PrivateKey.generate()
    return Hello(
        version=version,
        group=group,
        device=device or device_id_of(identity),
        nonce=os.urandom(32),
        group_key=group_key,
        device_key=device_key or public_bytes(identity),
    )


async def exchange(url: str, *frames: bytes) -> tuple[list[AnyFrame], ConnectionLost]:
    """Send raw frames to the relay; return the frames it answered and how the link ended."""
    transport = await transports.connect(url)
    for frame in frames:
        with contextlib.suppress(ConnectionLost):
            await transport.send(frame)
    answers: list[AnyFrame] = []
    while True:
        try:
            answers.append(decode_frame(await transport.receive()))
        except ConnectionLost as exc:
            return answers, exc


async def synced_pair(url: str, group: tuple[str, bytes], *, create: bool) -> None:
    """Check that two devices of ``group`` still sync through the relay at ``url``."""
    a = await (await Device(url, *group, create=create).connect()).wait_established()
    b = await (await Device(url, *group).connect()).wait_established()
    await a.append(b"still serving")
    await b.wait_until(lambda: b.vector.get(a.device_id) == 1)
    await a.close()
    await b.close()


GARBAGE = {
    "garbage-bytes": lambda group: b"\xc1\x00 not msgpack",
    "truncated-hello": lambda group: encode_frame(hello(group, bytes(32)))[:40],
    "frame-out-of-turn": lambda group: encode_frame(Ping(1)),
    "empty-frame": lambda group: b"",
}


@pytest.mark.parametrize("make_frame", GARBAGE.values(), ids=GARBAGE.keys())
def test_relay_answers_bad_frame_with_bye(
    run: Callable[..., Any],
    tmp_path: Path,
    group: tuple[str, bytes],
    make_frame: Callable[[str], bytes],
) -> None:
    """A bad first frame gets Bye(PROTOCOL_ERROR) and a close; other devices are unaffected."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            answers, _ = await exchange(url, make_frame(group[0]))
            assert len(answers) == 1 and isinstance(answers[0], Bye)
            assert answers[0].code == ByeCode.PROTOCOL_ERROR
            await synced_pair(url, group, create=True)

    run(main())


def test_relay_refuses_unsupported_version(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A Hello of another protocol version gets Bye(UNSUPPORTED_VERSION)."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            frame = encode_frame(hello(group[0], bytes(32), version=PROTOCOL_VERSION + 1))
            answers, _ = await exchange(url, frame)
            assert [a.code for a in answers if isinstance(a, Bye)] == [ByeCode.UNSUPPORTED_VERSION]

    run(main())


def test_relay_cuts_oversized_frame(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A frame over the limit is refused by the WebSocket layer (1009); others still sync."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            answers, lost = await exchange(url, b"\x00" * (DEFAULT_MAX_FRAME_SIZE + 1))
            assert answers == []
            assert "1009" in str(lost)
            await synced_pair(url, group, create=True)

    run(main())


def test_relay_closes_established_device_on_garbage(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A joined device that sends garbage is closed with Bye; the others hear it left."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            assert b._transport is not None
            await b._transport.send(b"\x92\xa5batch\x91")  # a batch frame cut short
            closed = await b.wait_closed()
            assert closed.code == ByeCode.PROTOCOL_ERROR
            await a.wait_until(lambda: (b.device_id, False) in a.presence)
            await a.close()

    run(main())


def test_relay_refuses_bad_proof(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Claiming a group's public key without its private half fails with AUTH_FAILED."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            transport = await transports.connect(url)
            key = GroupKeys.derive(*group).auth_public
            await transport.send(encode_frame(hello(group[0], key)))
            challenge = decode_frame(await transport.receive())
            assert isinstance(challenge, Challenge)
            await transport.send(encode_frame(Proof(proof=bytes(64), device_proof=bytes(64))))
            bye = decode_frame(await transport.receive())
            assert isinstance(bye, Bye) and bye.code == ByeCode.AUTH_FAILED
            await transport.aclose()
            await a.close()

    run(main())


def test_relay_refuses_device_impersonation(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A member cannot connect as another device: the victim stays connected and unannounced.

    First it claims the victim's id with its own key (refused at Hello), then the victim's id and
    public key with a valid group proof but its own device signature (refused at Proof).
    """

    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            victim = await (await Device(url, *group, create=True).connect()).wait_established()
            watcher = await (await Device(url, *group).connect()).wait_established()
            keys = GroupKeys.derive(*group)

            claim = hello(group[0], keys.auth_public, device=victim.device_id)
            (refusal,), _ = await exchange(url, encode_frame(claim))
            assert isinstance(refusal, Bye) and refusal.code == ByeCode.AUTH_FAILED
            assert "device id does not match its key" in refusal.reason

            stolen = hello(
                group[0],
                keys.auth_public,
                device=victim.device_id,
                device_key=public_bytes(victim.identity),
            )
            transport = await transports.connect(url)
            await transport.send(encode_frame(stolen))
            challenge = decode_frame(await transport.receive())
            assert isinstance(challenge, Challenge)
            data = handshake.transcript(
                stolen, challenge.nonce, challenge.server, challenge.server_key
            )
            proof = Proof(
                proof=handshake.client_proof(keys.auth, data),
                device_proof=handshake.device_proof(Ed25519PrivateKey.generate(), data),
            )
            await transport.send(encode_frame(proof))
            bye = decode_frame(await transport.receive())
            assert isinstance(bye, Bye) and bye.code == ByeCode.AUTH_FAILED
            assert "device key proof is invalid" in bye.reason
            await transport.aclose()

            await victim.append(b"still me")
            await watcher.wait_until(lambda: watcher.vector.get(victim.device_id) == 1)
            assert victim.closed is None and victim.session is not None
            assert victim.session.is_open
            assert (victim.device_id, False) not in watcher.presence
            assert relay.statistics().devices == 2
            await watcher.close()
            await victim.close()

    run(main())


def test_relay_rate_limits_failed_authentications(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """After max_source_failures an address is refused for 60 s, even a new device with the
    right secret; a device that connected before is still admitted."""
    clock = FakeClock()

    async def main() -> None:
        limiter = AuthLimiter(max_source_failures=5)
        async with running_relay(tmp_path, clock=clock, limiter=limiter) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            await a.close()
            for _ in range(5):
                closed = await (await Device(url, group[0], bytes(32)).connect()).wait_closed()
                assert isinstance(closed.error, AuthError)
            closed = await (await Device(url, *group).connect()).wait_closed()
            assert isinstance(closed.error, Rejected)
            assert closed.error.reason_code == ByeCode.RATE_LIMITED
            assert relay.statistics().refused == 1
            again = await Device(url, *group, identity=a.identity).connect()
            await (await again.wait_established()).close()
            clock.now += 59
            closed = await (await Device(url, *group).connect()).wait_closed()
            assert isinstance(closed.error, Rejected)
            clock.now += 2
            b = await (await Device(url, *group).connect()).wait_established()
            await b.close()

    run(main())


def test_relay_displaces_stalled_handshake_at_the_cap(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Beyond max_handshakes, the stalled handshake gets OVERLOADED and the newcomer is served."""

    async def main() -> None:
        async with running_relay(tmp_path, max_handshakes=1) as (relay, url):
            silent = await transports.connect(url)  # holds the only handshake slot
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            bye = decode_frame(await silent.receive())
            assert isinstance(bye, Bye) and bye.code == ByeCode.OVERLOADED
            with contextlib.suppress(ConnectionLost):
                while True:
                    await silent.receive()
            assert relay.statistics().displaced == 1
            await a.close()

    run(main())


def test_relay_says_goodbye_on_shutdown(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Stopping the relay sends connected devices Bye(GOING_AWAY)."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
        closed = await a.wait_closed()
        assert closed.code == ByeCode.GOING_AWAY
        assert closed.reason == "relay shutting down"

    run(main())
