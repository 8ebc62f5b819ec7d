"""Who the relay lets in under attack: guessers behind the devices' own address, and floods of
handshakes that never finish. Each 127.0.0.x source address stands in for another machine."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from relay_client import WAIT, Device, FakeClock, connect_from, running_relay
from websockets.asyncio.client import ClientConnection

from switchboard import transports
from switchboard.crypto import public_bytes
from switchboard.errors import ByeCode
from switchboard.proto import handshake
from switchboard.proto.frames import (
    PROTOCOL_VERSION,
    Bye,
    Challenge,
    Hello,
    Proof,
    decode_frame,
    encode_frame,
)
from switchboard.relay.limits import DEFAULT_MAX_DEVICE_FAILURES, DEFAULT_MAX_SOURCE_FAILURES

HONEST = "127.0.0.1"  # the honest devices' address, their NAT
ELSEWHERE = "127.0.0.2"


async def closing_code(device: Device) -> int:
    """Connect ``device``, wait for the relay to close the session, return the Bye code."""
    closed = await (await device.connect()).wait_closed()
    return closed.code


async def impostor_attempt(url: str, victim: Device) -> Bye:
    """Claim ``victim``'s id and public key with a right group proof, sign with another key."""
    keys = victim.keys
    claim = Hello(
        version=PROTOCOL_VERSION,
        group=keys.group,
        device=victim.device_id,
        nonce=b"n" * 32,
        group_key=keys.auth_public,
        device_key=public_bytes(victim.identity),
    )
    transport = await transports.connect(url)
    try:
        await transport.send(encode_frame(claim))
        challenge = decode_frame(await transport.receive())
        assert isinstance(challenge, Challenge)
        data = handshake.transcript(claim, challenge.nonce, challenge.server, challenge.server_key)
        proof = Proof(
            proof=handshake.client_proof(keys.auth, data),
            device_proof=handshake.device_proof(Ed25519PrivateKey.generate(), data),
        )
        await transport.send(encode_frame(proof))
        bye = decode_frame(await transport.receive())
        assert isinstance(bye, Bye)
        return bye
    finally:
        await transport.aclose()


def test_relay_guessers_cannot_lock_out_devices_behind_their_address(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Guessers on the devices' address and elsewhere are refused; the devices still connect."""
    clock = FakeClock()

    async def main() -> None:
        async with running_relay(tmp_path, clock=clock) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            await a.close()
            await b.close()

            # Guessers with made-up device keys and a wrong secret, on both addresses: first
            # AUTH_FAILED, then RATE_LIMITED once their address used up its failures.
            for source in (ELSEWHERE, HONEST):
                codes = [
                    await closing_code(Device(url, group[0], bytes(32), source=source))
                    for _ in range(DEFAULT_MAX_SOURCE_FAILURES + 3)
                ]
                assert (
                    codes
                    == [ByeCode.AUTH_FAILED] * DEFAULT_MAX_SOURCE_FAILURES
                    + [ByeCode.RATE_LIMITED] * 3
                )
            # An impostor of a, on the devices' address: it holds the group keys but not a's
            # device key, so it fails, again and again, and learns nothing.
            for _ in range(DEFAULT_MAX_DEVICE_FAILURES + 2):
                bye = await impostor_attempt(url, a)
                assert bye.code == ByeCode.AUTH_FAILED
                assert "device key proof is invalid" in bye.reason

            # The honest devices still connect from their address, and still sync.
            a2 = Device(url, *group, identity=a.identity, source=HONEST)
            b2 = Device(url, *group, identity=b.identity, source=HONEST)
            await (await a2.connect()).wait_established()
            await (await b2.connect()).wait_established()
            await a2.append(b"still here")
            await b2.wait_until(lambda: b2.vector.get(a2.device_id) == 1)

            # The guessers are still refused, and so is a device never seen before (the relay
            # cannot tell it from a guesser) until the refusal runs out.
            for source in (ELSEWHERE, HONEST):
                refused = Device(url, group[0], bytes(32), source=source)
                assert await closing_code(refused) == ByeCode.RATE_LIMITED
            assert await closing_code(Device(url, *group, source=HONEST)) == ByeCode.RATE_LIMITED
            clock.now += 61
            newcomer = Device(url, *group, source=HONEST)
            await (await newcomer.connect()).wait_established()
            assert relay.statistics().devices == 3
            for device in (a2, b2, newcomer):
                await device.close()

    run(main())


def test_relay_refuses_a_guesser_that_keeps_its_device_key(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A proven device key failing the secret is refused, from any address, before its source."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            first = Device(url, group[0], bytes(32), create=True)
            await (await first.connect()).wait_established()  # registers the group with a key
            await first.close()
            guesser = Device(url, *group)  # the right group id, another secret, one device key
            codes = []
            for n in range(DEFAULT_MAX_DEVICE_FAILURES + 1):
                again = Device(url, *group, identity=guesser.identity, source=f"127.0.0.{n + 3}")
                codes.append(await closing_code(again))
            assert codes == [ByeCode.AUTH_FAILED] * DEFAULT_MAX_DEVICE_FAILURES + [
                ByeCode.RATE_LIMITED
            ]

    run(main())


def test_relay_drops_a_handshake_that_does_not_progress(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    """A connection that never sends its Hello is closed with TIMEOUT at the handshake deadline."""

    async def main() -> None:
        async with running_relay(tmp_path, handshake_timeout=0.2) as (relay, url):
            silent = await transports.connect(url)
            bye = decode_frame(await silent.receive())
            assert isinstance(bye, Bye) and bye.code == ByeCode.TIMEOUT
            await silent.aclose()
            assert relay.statistics().displaced == 0

    run(main())


async def stall(url: str, source: str, held: list[ClientConnection]) -> None:
    """Open a WebSocket from ``source`` and send nothing: a handshake that never progresses."""
    transport = await connect_from(url, source)
    held.append(transport._ws)  # held open by the test, closed in bulk at the end


async def close_all(held: list[ClientConnection]) -> None:
    """Close what ``stall`` opened, without a closing handshake (they are stalled peers)."""
    for connection in held:
        connection.transport.abort()
    await asyncio.gather(*(c.wait_closed() for c in held), return_exceptions=True)


def raise_fd_limit(needed: int) -> None:
    """Raise this process's soft file-descriptor limit to ``needed`` if the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        top = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


def test_relay_serves_reconnects_through_a_thousand_stalled_handshakes(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """1,000 handshakes that never send a Hello, from one address, keep no reconnect out.

    Beside them, connections that never even finish the WebSocket upgrade: those the WebSocket
    server times out on its own, and they hold no handshake slot.
    """
    stalls, reconnects, openers, raw = 1_000, 10, 20, 100
    raise_fd_limit(2 * (stalls + raw) + 256)  # both ends of each stall live in this process

    async def main() -> None:
        # A deadline longer than the test: only the per-source cap clears the stalls.
        async with running_relay(tmp_path, handshake_timeout=60.0) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            await a.close()
            held: list[ClientConnection] = []
            opened = asyncio.Condition()
            silent = [
                await asyncio.open_connection(
                    *urlsplit(url).netloc.split(":"), local_addr=(ELSEWHERE, 0)
                )
                for _ in range(raw)
            ]

            async def opener(count: int) -> None:
                for _ in range(count):
                    await stall(url, ELSEWHERE, held)
                    async with opened:
                        opened.notify_all()

            flood = [asyncio.create_task(opener(stalls // openers)) for _ in range(openers)]
            try:
                for n in range(reconnects):
                    async with opened:  # spread the reconnects over the flood
                        await opened.wait_for(lambda n=n: len(held) >= n * stalls // reconnects)
                    device = Device(url, *group, identity=a.identity)
                    await (await device.connect()).wait_established()
                    await device.close()
                await asyncio.gather(*flood)
                assert len(held) == stalls
                stats = relay.statistics()
                assert stats.handshakes <= relay.max_handshakes_per_source
                assert stats.displaced >= stalls - relay.max_handshakes_per_source
                assert stats.refused == 0
            finally:
                for task in flood:
                    task.cancel()
                await close_all(held)
                for _, writer in silent:
                    writer.transport.abort()

    run(main(), timeout=25)


def test_relay_global_cap_displaces_the_busiest_source(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """At the global cap, a newcomer displaces a stalled handshake of the busiest source."""

    async def main() -> None:
        options = {"max_handshakes": 8, "max_handshakes_per_source": 4, "handshake_timeout": 60.0}
        async with running_relay(tmp_path, **options) as (relay, url):
            held: list[ClientConnection] = []
            try:
                for source in ("127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3"):
                    await stall(url, source, held)
                for source in ("127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"):
                    await stall(url, source, held)
                # Counted already: the relay starts a connection's handler (which counts its
                # handshake first thing) before it writes the upgrade's answer that ends
                # ``stall``, and the test shares the relay's loop.
                assert relay.statistics().handshakes == 8
                a = await (await Device(url, *group, create=True).connect()).wait_established()
                # The first of 127.0.0.2, the busiest source, made room; the others stay.
                async with asyncio.timeout(WAIT):
                    await held[0].wait_closed()
                assert [c.state.name for c in held[1:]] == ["OPEN"] * 7
                assert relay.statistics().displaced == 1
                await a.close()
            finally:
                await close_all(held)

    run(main())
