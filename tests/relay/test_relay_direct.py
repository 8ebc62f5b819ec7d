"""Directed frames through the relay: forwarded to the one device, never stored, refused clearly."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relay_client import Device, running_relay

from switchboard.crypto import new_group_secret
from switchboard.proto.frames import Direct, UndeliveredCode


def sealed(sender: Device, recipient: str, ref: int, payload: bytes = b"for you only") -> Direct:
    """A directed frame sealed and signed by ``sender`` for ``recipient``."""
    return sender.keys.seal_direct(sender.identity, recipient, ref, payload)


def test_relay_direct_reaches_only_its_recipient_and_is_not_stored(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A directed frame goes to its one recipient, unchanged; the third device and the
    mailbox never see it, and nothing of it is on the relay's disk."""

    async def main() -> Direct:
        async with running_relay(tmp_path) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            c = await (await Device(url, *group).connect()).wait_established()
            frame = sealed(a, b.device_id, 7, b"secret words " * 100)
            await a.send_direct(frame)
            await b.wait_until(lambda: len(b.directs) == 1)
            assert b.directs == [frame]
            assert b.keys.open_direct(b.directs[0], b.device_id) == b"secret words " * 100
            await a.append(b"an event after it")  # ordered behind the direct frame on c
            await c.wait_until(lambda: a.device_id in c.vector)
            await a.wait_until(lambda: a.acked.get(a.device_id) == 1)  # stored by now
            assert c.directs == [] and a.undelivered == []
            stats = relay.statistics()
            assert (stats.directs_forwarded, stats.directs_refused) == (1, 0)
            assert stats.envelopes_held == 1  # the event, not the frame
            for device in (a, b, c):
                await device.close()
            return frame

    frame = run(main())
    for path in tmp_path.glob("relay.db*"):
        assert frame.box[:32] not in path.read_bytes()


def test_relay_direct_to_a_device_not_connected_is_undelivered(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A frame for a device that is not connected (gone, or of another group) is answered
    with Undelivered(NOT_CONNECTED) naming it and the ref; nobody receives it."""

    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            other_group = (secrets.token_hex(13), new_group_secret())
            c = await (await Device(url, *other_group, create=True).connect()).wait_established()
            await b.close()
            await a.wait_until(lambda: (b.device_id, False) in a.presence)
            await a.send_direct(sealed(a, b.device_id, 1))
            await a.send_direct(sealed(a, c.device_id, 2))
            await a.wait_until(lambda: len(a.undelivered) == 2)
            assert [(u.recipient, u.ref, u.code) for u in a.undelivered] == [
                (b.device_id, 1, UndeliveredCode.NOT_CONNECTED),
                (c.device_id, 2, UndeliveredCode.NOT_CONNECTED),
            ]
            assert a.undelivered[0].reason == "not connected to the relay"
            assert c.directs == []
            assert relay.statistics().directs_refused == 2
            await a.close()
            await c.close()

    run(main())


def test_relay_direct_with_a_forged_sender_is_refused(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A member that sends a frame naming another device as sender gets Undelivered(FORGED)
    and the recipient gets nothing: the relay knows which device each connection proved."""

    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            mallory = await (await Device(url, *group).connect()).wait_established()
            genuine = sealed(a, b.device_id, 3)
            await mallory.send_direct(genuine)  # replayed from a, say, under a's name
            await mallory.wait_until(lambda: len(mallory.undelivered) == 1)
            assert mallory.undelivered[0].code == UndeliveredCode.FORGED
            await a.send_direct(genuine)
            await b.wait_until(lambda: len(b.directs) == 1)  # the genuine one only
            assert relay.statistics().directs_refused == 1
            for device in (a, b, mallory):
                await device.close()

    run(main())


def test_relay_direct_to_a_device_that_does_not_read_is_dropped_as_busy(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A recipient that stops reading costs the relay at most max_pending_bytes: beyond it
    frames are refused as BUSY (a loss the channel resends), never queued without bound."""

    async def main() -> None:
        async with running_relay(tmp_path, max_pending_bytes=64 * 1024) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            b.reading.clear()
            payload = b"x" * (200 * 1024)
            for ref in range(60):  # 12 MiB: more than the socket buffers and the outbox
                await a.send_direct(sealed(a, b.device_id, ref, payload))
            await a.wait_until(lambda: len(a.undelivered) > 0)
            assert {u.code for u in a.undelivered} == {UndeliveredCode.BUSY}
            stats = relay.statistics()
            assert stats.directs_forwarded + stats.directs_refused <= 60
            b.reading.set()
            await a.close()
            await b.close()

    run(main())
