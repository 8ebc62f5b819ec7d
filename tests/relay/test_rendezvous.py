"""The relay's rendezvous in process, over real WebSockets: nameplates, the exchange, limits.

Sources are told apart by binding 127.0.0.x addresses (``relay_client.connect_from``), so the
per-address limit can be shown to spare an honest joiner elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from relay_client import connect_from, running_relay

from switchboard.errors import InvalidInvite, TransportError
from switchboard.links.rendezvous import (
    Hello,
    RendezvousClient,
    Welcome,
    open_nameplate,
    redeem,
    redeem_on,
)
from switchboard.pake import HostSide
from switchboard.proto.pairing import (
    PAIRING_VERSION,
    PairBye,
    PairClaim,
    PairClaimed,
    PairEnd,
    PairMsg,
    PairPeer,
    PairResult,
)
from switchboard.relay.rendezvous import Rendezvous

WELCOME = Welcome(invite="sb1.not-a-real-token", name="host", key=b"\x01" * 32)
HELLO = Hello(name="joiner", key=b"\x02" * 32)


async def host(client: RendezvousClient, code: str, results: list[str]) -> None:
    """The host's side, for as long as the connection lasts: admit every proven joiner."""
    side: HostSide | None = None
    while True:
        try:
            frame = await client.receive()
        except TransportError:  # the test closed it
            return
        if isinstance(frame, PairPeer):
            side = HostSide(code) if frame.present else None
        elif isinstance(frame, PairMsg) and side is not None:
            if not side.answered:
                await client.send(PairMsg(side.answer(frame.body)))
                continue
            try:
                msgspec.msgpack.decode(side.open_hello(frame.body), type=Hello)
            except InvalidInvite:
                results.append("wrong")
                await client.send(PairResult(int(PairEnd.WRONG_CODE)))
            else:
                results.append("admitted")
                box = side.welcome(msgspec.msgpack.encode(WELCOME))
                await client.send(PairMsg(box))
                await client.send(PairResult(int(PairEnd.DONE)))
            side = None
        elif isinstance(frame, PairBye):
            return


def test_a_right_code_gets_the_welcome_and_a_wrong_one_nothing(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            client, nameplate, _ = await open_nameplate(url, 60)
            code = f"{nameplate}-ember-violet"
            results: list[str] = []
            hosting = asyncio.create_task(host(client, code, results))
            with pytest.raises(InvalidInvite, match="wrong pairing code"):
                await redeem(url, f"{nameplate}-ember-tiger", nameplate, HELLO)
            stats = relay.rendezvous.statistics()
            assert stats.wrong == 1 and results == ["wrong"]
            # Nothing sealed went to the guesser: its SPAKE2 message and ours, and its hello.
            assert stats.forwarded_bytes < 33 * 2 + 200
            assert await redeem(url, code, nameplate, HELLO) == WELCOME
            assert results == ["wrong", "admitted"]
            await client.aclose()
            await asyncio.wait({hosting}, timeout=5)

    run(main())


def test_unknown_busy_and_gone(run: Callable[..., Any], tmp_path: Path) -> None:
    async def main() -> None:
        async with running_relay(tmp_path) as (relay, url):
            with pytest.raises(InvalidInvite, match="no such pairing code"):
                await redeem(url, "9-ember-violet", 9, HELLO)
            client, nameplate, _ = await open_nameplate(url, 60)
            holder = await RendezvousClient.connect(url)
            await holder.send(PairClaim(PAIRING_VERSION, nameplate))
            assert isinstance(await holder.receive(5), PairClaimed)
            assert isinstance(await client.receive(5), PairPeer)
            with pytest.raises(InvalidInvite, match="another device is using this code"):
                await redeem(url, f"{nameplate}-ember-violet", nameplate, HELLO)
            await client.aclose()  # the host goes away
            bye = await holder.receive(5)
            assert isinstance(bye, PairBye) and bye.code == PairEnd.GONE
            await holder.aclose()
            assert relay.rendezvous.statistics().open == 0

    run(main())


def test_the_limit_is_per_address_and_spares_other_joiners(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    """Three failures refuse 127.0.0.2's claims; a joiner at 127.0.0.3 still pairs."""

    async def main() -> None:
        rendezvous = Rendezvous(max_failures=3)
        async with running_relay(tmp_path, rendezvous=rendezvous) as (_, url):
            client, nameplate, _ = await open_nameplate(url, 60)
            code = f"{nameplate}-ember-violet"
            results: list[str] = []
            hosting = asyncio.create_task(host(client, code, results))
            errors = []
            for guess in ("fox-tiger", "lemon-piano", "fox-lemon", "ember-violet"):
                guesser = RendezvousClient(await connect_from(url, "127.0.0.2"))
                with pytest.raises(InvalidInvite) as caught:
                    await redeem_on(guesser, f"{nameplate}-{guess}", nameplate, HELLO)
                errors.append(str(caught.value))
            assert [e.split(" (")[0] for e in errors[:3]] == ["wrong pairing code"] * 3
            # Refused even with the right code: the address spent its tries.
            assert "too many wrong pairing codes" in errors[3]
            honest = RendezvousClient(await connect_from(url, "127.0.0.3"))
            assert await redeem_on(honest, code, nameplate, HELLO) == WELCOME
            assert rendezvous.statistics().refused == 1
            await client.aclose()
            await asyncio.wait({hosting}, timeout=5)

    run(main())


def test_a_second_open_from_one_address_gets_its_own_nameplate(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    async def main() -> None:
        async with running_relay(tmp_path, rendezvous=Rendezvous(max_open_per_source=2)) as (
            _,
            url,
        ):
            first, a, _ = await open_nameplate(url, 60)
            second, b, _ = await open_nameplate(url, 60)
            assert {a, b} == {1, 2}
            with pytest.raises(Exception, match="no room for another pairing code"):
                await open_nameplate(url, 60)
            await first.aclose()
            await second.aclose()

    run(main())
