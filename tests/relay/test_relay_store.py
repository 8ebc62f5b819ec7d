"""What the relay keeps: only ciphertext, within retention, and enough to catch anyone up."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from relay_client import Device, FakeClock, running_relay

MARKER = b"PLAINTEXT-MARKER-7f3a9c"


def relay_files(data_dir: Path) -> bytes:
    """Return the bytes of the relay's database and its WAL, whichever exist."""
    return b"".join(
        path.read_bytes()
        for path in (data_dir / "relay.db", data_dir / "relay.db-wal")
        if path.exists()
    )


def test_relay_store_never_holds_plaintext(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Sealed events pass through and are stored, but their plaintext never reaches disk."""

    async def main() -> bytes:
        async with running_relay(tmp_path) as (_, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            sent = await a.append(*(MARKER + b" %d" % n for n in range(50)))
            await b.wait_until(lambda: b.vector.get(a.device_id) == 50)
            assert MARKER in b.opened(a.device_id)[0]
            assert MARKER not in relay_files(tmp_path)
            await a.close()
            await b.close()
        stored = relay_files(tmp_path)
        assert MARKER not in stored
        return sent[0].box if sent[0].box in stored else b""

    assert run(main()), "the sealed envelope itself should be in the relay's file"


def test_relay_retention_drops_old_envelopes(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Envelopes older than max_age are dropped; the relay still knows how far origins got."""
    clock = FakeClock()

    async def main() -> None:
        async with running_relay(tmp_path, clock=clock, max_age=100.0) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            await a.append(b"one", b"two", b"three")
            await a.wait_until(lambda: a.acked.get(a.device_id) == 3)
            clock.now += 50
            assert await relay.prune() == 0
            await a.append(b"four")
            await a.wait_until(lambda: a.acked.get(a.device_id) == 4)
            clock.now += 60
            assert await relay.prune() == 3
            assert relay.statistics().envelopes_held == 1
            # The vector survived: the next envelope is accepted, not taken for a gap.
            await a.append(b"five")
            await a.wait_until(lambda: a.acked.get(a.device_id) == 5)
            assert relay.statistics().envelopes_held == 2
            await a.close()

    run(main())


def test_relay_retention_caps_bytes_per_group(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """Past max_bytes, the oldest envelopes of the group are dropped first."""

    async def main() -> None:
        async with running_relay(tmp_path, max_bytes=10_000) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            await a.append(*(bytes(1000) for _ in range(30)))
            await a.wait_until(lambda: a.acked.get(a.device_id) == 30)
            dropped = await relay.prune()
            stats = relay.statistics()
            assert dropped + stats.envelopes_held == 30
            assert 0 < stats.bytes_held <= 10_000
            await a.close()

    run(main())


def test_relay_slow_reader_catches_up_from_mailbox(
    run: Callable[..., Any],
    tmp_path: Path,
    group: tuple[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer that stops reading is served from the mailbox afterwards, in order, no gaps."""

    async def main() -> None:
        async with running_relay(tmp_path, max_pending_bytes=0) as (_, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            b.reading.clear()
            # ~32 MB: more than the socket buffers and websockets' queue can hold, so the
            # relay's writes to b stall and its outbox fills.
            for n in range(160):
                await a.append(os.urandom(200_000) + b"%d" % n)
            await a.wait_until(lambda: a.acked.get(a.device_id) == 160)
            b.reading.set()
            await b.wait_until(lambda: b.vector.get(a.device_id) == 160)
            assert b.gaps == 0
            assert b.opened(a.device_id)[-1].endswith(b"159")
            await a.close()
            await b.close()

    with caplog.at_level(logging.DEBUG, logger="switchboard.relay"):
        run(main(), timeout=60)
    assert any("live -> catching_up" in r.getMessage() for r in caplog.records)


def test_relay_asks_again_after_a_gap(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """An envelope after a missing one is dropped, and the relay's Have gets the rest sent."""

    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            b = await (await Device(url, *group).connect()).wait_established()
            await a.append(b"1", b"2", b"3")
            await a.wait_until(lambda: a.acked.get(a.device_id) == 3)
            # A fourth and fifth envelope arrive with the fourth lost on the way.
            a.log[a.device_id].extend(
                [a.keys.seal(a.device_id, 4, b"4"), a.keys.seal(a.device_id, 5, b"5")]
            )
            assert a.session is not None
            a.session.send_batch([a.log[a.device_id][4]])
            await a._flush()
            await b.wait_until(lambda: b.vector.get(a.device_id) == 5)
            assert b.opened(a.device_id) == [b"1", b"2", b"3", b"4", b"5"]
            await a.wait_until(lambda: a.acked.get(a.device_id) == 5)  # stored, not only sent on
            assert relay.statistics().envelopes_held == 5
            await a.close()
            await b.close()

    run(main())
