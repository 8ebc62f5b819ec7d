"""The relay on 127.0.0.1, driven by real client sessions over WebSocket."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from relay_client import Device, running_relay

from switchboard.crypto import create_identity
from switchboard.errors import AuthError, ByeCode, Rejected
from switchboard.relay.server import Relay
from switchboard.transports import memory


def test_relay_registers_group_and_admits_second_device(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """The creator registers the group; a second device with the secret joins it."""

    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            assert b.online == (a.device_id,)
            assert a.session is not None and a.session.peer == relay.relay_id
            stats = relay.statistics()
            assert (stats.groups, stats.devices, stats.connections) == (1, 2, 2)
            await a.close()
            await b.close()

    run(main())


def test_relay_forwards_live_and_collects_acks(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Envelopes from A reach B while both are online, and both get acks for them."""

    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            await a.append(b"hello", b"world")
            await b.wait_until(lambda: b.vector.get(a.device_id) == 2)
            assert b.opened(a.device_id) == [b"hello", b"world"]
            await a.wait_until(lambda: a.acked.get(a.device_id) == 2)
            await b.append(b"back")
            await a.wait_until(lambda: a.vector.get(b.device_id) == 1)
            # Forwarding does not wait for the mailbox; the ack does.
            await b.wait_until(lambda: b.acked.get(b.device_id) == 1)
            stats = relay.statistics()
            assert stats.envelopes_stored == 3 and stats.envelopes_held == 3
            assert stats.envelopes_forwarded >= 3
            assert a.gaps == b.gaps == 0
            await a.close()
            await b.close()

    run(main())


def test_relay_serves_missed_envelopes_after_restart(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """B, offline while A sends, gets everything on reconnect, even from a restarted relay."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            await b.close()
            # More than one catch-up round and more than one Batch frame.
            await a.append(*(b"event %d" % n for n in range(3000)))
            await a.wait_until(lambda: a.acked.get(a.device_id) == 3000)
            await a.close()
        async with running_relay(tmp_path) as (relay, url):
            assert relay.statistics().envelopes_held == 3000
            b.url = url
            await (await b.connect()).wait_established()
            await b.wait_until(lambda: b.vector.get(a.device_id) == 3000)
            assert b.opened(a.device_id)[-1] == b"event 2999"
            assert b.gaps == 0
            await b.close()

    run(main(), timeout=60)


def test_relay_announces_presence(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Devices of the group hear when another device connects and disconnects."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            await a.wait_until(lambda: (b.device_id, True) in a.presence)
            await b.close()
            await a.wait_until(lambda: (b.device_id, False) in a.presence)
            assert a.presence == [(b.device_id, True), (b.device_id, False)]
            await a.close()

    run(main())


def test_relay_devices_joining_together_hear_of_each_other(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Devices connecting at once are announced in shared Presences rounds: the first hears
    of every other, and of one leaving."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            first = await (await Device(url, *group, create=True).connect()).wait_established()
            others = [Device(url, *group) for _ in range(8)]
            for device in others:
                await device.connect()
            for device in others:
                await device.wait_established()
            ids = {device.device_id for device in others}
            await first.wait_until(lambda: {d for d, on in first.presence if on} == ids)
            await others[0].close()
            gone = others[0].device_id
            await first.wait_until(lambda: (gone, False) in first.presence)
            for device in [first, *others[1:]]:
                await device.close()

    run(main())


def test_relay_newer_connection_replaces_older(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A device connecting twice keeps the newer connection; the older gets Bye(GOING_AWAY)."""

    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            old = await (await Device(url, *group).connect()).wait_established()
            new = Device(url, *group, identity=old.identity)
            await (await new.connect()).wait_established()
            closed = await old.wait_closed()
            assert closed.code == ByeCode.GOING_AWAY and closed.error is None
            await a.append(b"still here")
            await new.wait_until(lambda: new.vector.get(a.device_id) == 1)
            assert (old.device_id, False) not in a.presence
            assert relay.statistics().devices == 2
            await new.close()
            await a.wait_until(lambda: (old.device_id, False) in a.presence)
            await a.close()

    run(main())


def test_relay_wrong_group_secret_fails_auth(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """A device with the wrong secret is refused: its session closes with AuthError."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            intruder = await Device(url, group[0], bytes(32)).connect()
            closed = await intruder.wait_closed()
            assert isinstance(closed.error, AuthError)
            assert "wrong group secret" in str(closed.error)
            assert closed.code == ByeCode.AUTH_FAILED
            await a.close()

    run(main())


def test_relay_second_creator_with_other_secret_fails_auth(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Asking to create a group that exists does not replace its key (trust on first use)."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            squatter = await Device(url, group[0], bytes(32), create=True).connect()
            closed = await squatter.wait_closed()
            assert isinstance(closed.error, AuthError)
            await a.close()

    run(main())


def test_relay_unknown_group_is_rejected(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Joining a group nobody created is refused with UNKNOWN_GROUP."""

    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            device = await Device(url, *group).connect()
            closed = await device.wait_closed()
            assert isinstance(closed.error, Rejected)
            assert closed.error.reason_code == ByeCode.UNKNOWN_GROUP
            assert relay.statistics().groups == 0

    run(main())


def test_relay_statistics_after_close(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """When devices leave, the relay counts no connections and no devices."""

    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            await a.close()
            assert relay.statistics().groups == 1

    run(main())


@pytest.mark.parametrize("bad_secret", [True, False], ids=["wrong-secret", "right-secret"])
def test_relay_device_can_reconnect_after_close(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes], bad_secret: bool
) -> None:
    """One failed or finished session does not stop the same address from joining again."""

    async def main() -> None:
        async with running_relay(tmp_path) as (_, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            other = Device(url, group[0], bytes(32) if bad_secret else group[1])
            await other.connect()
            if bad_secret:
                await other.wait_closed()
            else:
                await other.wait_established()
                await other.close()
            b = await (await Device(url, *group).connect()).wait_established()
            await b.close()
            await a.close()

    run(main())


def test_relay_serves_in_process_over_memory(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """The same relay serves in-process devices through a named memory server."""

    async def main() -> None:
        relay = Relay(tmp_path, identity=create_identity(tmp_path / "relay.key"))
        await relay.open()
        listener = await memory.serve(relay.handle, "test-relay")
        try:
            a = await Device("memory://test-relay", *group, create=True).connect()
            await a.wait_established()
            b = await (await Device("memory://test-relay", *group).connect()).wait_established()
            await a.append(b"in process")
            await b.wait_until(lambda: b.vector.get(a.device_id) == 1)
            await a.close()
            await b.close()
        finally:
            await listener.aclose()
            await relay.aclose()

    run(main())
