"""``Rendezvous``: the relay's nameplates, where a pairing code's two devices meet.

A small mailbox in memory, apart from the envelope store: nothing of it is written to disk or
to any log, and it ends with the relay. A host (the inviting device) opens a nameplate and keeps
its connection for the invite's lifetime; a joiner claims the nameplate and the relay passes
``PairMsg`` bodies between the two (``proto/pairing.py``). The relay sees SPAKE2 messages and
sealed boxes only (``pake``): it learns no code, no secret and no group.

Guessing is slowed here, per source address (``limits.AuthLimiter``, its own instance: the
sync handshake's counters and vouched devices are untouched, so group members keep syncing
from an address that is refused here). A failure is a claim of a nameplate that is not open
(scanning) or an attempt the host reported as a wrong code; ``max_failures`` of them in a
window get the address's claims refused for a while. The host burns an invite after a few
wrong codes of its own (``daemon/pairing.py``), so one nameplate gets only a handful of guesses
from all addresses together. Hosts are never refused: opening a nameplate proves nothing and
costs a slot, bounded per address and in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from switchboard.errors import ProtocolError, TransportError
from switchboard.proto.pairing import (
    MAX_PAIR_TTL,
    PAIRING_VERSION,
    AnyPairFrame,
    PairBye,
    PairClaim,
    PairClaimed,
    PairEnd,
    PairFrame,
    PairMsg,
    PairOpen,
    PairOpened,
    PairPeer,
    PairResult,
    decode_pair,
    encode_pair,
)
from switchboard.relay.connection import source_of
from switchboard.relay.limits import AuthLimiter
from switchboard.transports.base import Transport

logger = logging.getLogger("switchboard.relay")

NAMEPLATES: Final = 256
# Nameplates one address may hold open: a team's few pending invites, not the whole table.
DEFAULT_MAX_OPEN_PER_SOURCE: Final = 16
# Wrong codes and unknown nameplates from one address before its claims are refused.
DEFAULT_MAX_PAIR_FAILURES: Final = 10
# Seconds a claimer may hold a nameplate: a person confirming on the host side included.
DEFAULT_CLAIM_TIMEOUT: Final = 180.0


@dataclass(eq=False)
class _Side:
    transport: Transport
    source: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, frame: PairFrame) -> None:
        async with self.lock:
            with contextlib.suppress(TransportError):
                await self.transport.send(encode_pair(frame))

    async def bye(self, code: PairEnd, reason: str) -> None:
        await self.send(PairBye(int(code), reason))
        self.done.set()


@dataclass(eq=False)
class _Nameplate:
    number: int
    host: _Side
    expires: float
    claimer: _Side | None = None


@dataclass
class RendezvousStatistics:
    """Counters of the rendezvous."""

    open: int = 0  # nameplates open now
    opened: int = 0  # since start
    claims: int = 0
    wrong: int = 0  # attempts the host reported as a wrong code
    refused: int = 0  # claims refused for the rate limit
    forwarded_bytes: int = 0  # bodies passed on, for tests that look at what crossed


class Rendezvous:
    """The relay's nameplates. See the module docstring.

    Args:
        limiter: failures per source address (default: ``max_failures`` per minute, then one
            minute refused).
        max_open_per_source: nameplates one address may hold open.
        claim_timeout: seconds a claimer may hold a nameplate.
        clock: wall clock (tests inject one).
        on_forward: called with each body passed on and its direction (tests, benchmarks).
    """

    def __init__(
        self,
        *,
        limiter: AuthLimiter | None = None,
        max_failures: int = DEFAULT_MAX_PAIR_FAILURES,
        max_open_per_source: int = DEFAULT_MAX_OPEN_PER_SOURCE,
        claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limiter = limiter or AuthLimiter(max_source_failures=max_failures)
        self.max_open_per_source = max_open_per_source
        self.claim_timeout = claim_timeout
        self._clock = clock
        self._plates: dict[int, _Nameplate] = {}
        self.stats = RendezvousStatistics()

    def statistics(self) -> RendezvousStatistics:
        """Return the counters (``open`` as of now)."""
        self.stats.open = len(self._plates)
        return self.stats

    async def serve(self, transport: Transport, first: bytes) -> None:
        """Serve one rendezvous connection whose first frame was ``first``."""
        side = _Side(transport, source_of(transport.peer))
        try:
            frame = decode_pair(first)
            if isinstance(frame, PairOpen) and frame.version == PAIRING_VERSION:
                await self._host(side, frame)
            elif isinstance(frame, PairClaim) and frame.version == PAIRING_VERSION:
                await self._claim(side, frame)
            else:
                await side.bye(PairEnd.PROTOCOL, "expected pair_open or pair_claim, version 1")
        except ProtocolError as exc:
            await side.bye(PairEnd.PROTOCOL, str(exc))
        finally:
            with contextlib.suppress(TransportError):
                await transport.aclose()

    # -- host --------------------------------------------------------------------------------

    async def _host(self, side: _Side, frame: PairOpen) -> None:
        held = sum(1 for plate in self._plates.values() if plate.host.source == side.source)
        free = [n for n in range(1, NAMEPLATES + 1) if n not in self._plates]
        if held >= self.max_open_per_source or not free:
            await side.bye(PairEnd.FULL, "no nameplate free for this address: try again later")
            return
        ttl = min(frame.ttl, MAX_PAIR_TTL)
        plate = _Nameplate(free[0], side, self._clock() + ttl)
        self._plates[plate.number] = plate
        self.stats.opened += 1
        logger.info("= nameplate %d opened from %s for %.0f s", plate.number, side.source, ttl)
        try:
            await side.send(PairOpened(plate.number, ttl))
            reader = asyncio.ensure_future(self._host_frames(plate))
            waiter = asyncio.ensure_future(side.done.wait())
            await asyncio.wait({reader, waiter}, timeout=ttl, return_when="FIRST_COMPLETED")
            for task in (reader, waiter):
                task.cancel()
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                logger.info("x nameplate %d: %s", plate.number, reader.exception())
        finally:
            del self._plates[plate.number]
            if plate.claimer is not None:
                await plate.claimer.bye(PairEnd.GONE, "the inviting device went away")
            await side.bye(PairEnd.EXPIRED, "nameplate closed")
            logger.info("= nameplate %d closed", plate.number)

    async def _host_frames(self, plate: _Nameplate) -> None:
        while True:
            try:
                frame = decode_pair(await plate.host.transport.receive())
            except TransportError:
                return
            claimer = plate.claimer
            if isinstance(frame, PairMsg):
                if claimer is not None:
                    self.stats.forwarded_bytes += len(frame.body)
                    await claimer.send(frame)
            elif isinstance(frame, PairResult):
                if claimer is None:
                    continue
                plate.claimer = None
                if frame.code == PairEnd.WRONG_CODE:
                    self.stats.wrong += 1
                    self._limiter.record_failure(claimer.source, self._clock())
                    await claimer.bye(PairEnd.WRONG_CODE, "wrong pairing code")
                elif frame.code == PairEnd.REFUSED:
                    await claimer.bye(PairEnd.REFUSED, "the inviting device refused this device")
                else:
                    await claimer.bye(PairEnd.DONE, "paired")
            else:
                raise ProtocolError(f"unexpected {type(frame).__name__} from a host")

    # -- joiner ------------------------------------------------------------------------------

    async def _claim(self, side: _Side, frame: PairClaim) -> None:
        self.stats.claims += 1
        now = self._clock()
        if self._limiter.is_refused(side.source, "", now):
            self.stats.refused += 1
            await side.bye(PairEnd.RATE_LIMITED, "too many wrong pairing codes from this address")
            return
        plate = self._plates.get(frame.nameplate)
        if plate is None or plate.expires <= now:
            self._limiter.record_failure(side.source, now)
            await side.bye(PairEnd.UNKNOWN, "no such pairing code: expired, used or mistyped")
            return
        if plate.claimer is not None:
            await side.bye(PairEnd.BUSY, "another device is using this code now: try again")
            return
        plate.claimer = side
        await side.send(PairClaimed())
        await plate.host.send(PairPeer(True, side.source))
        reader = asyncio.ensure_future(self._claimer_frames(plate, side))
        waiter = asyncio.ensure_future(side.done.wait())
        try:
            timeout = min(self.claim_timeout, max(plate.expires - now, 0.0))
            done, _ = await asyncio.wait(
                {reader, waiter}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
            if not done:
                await side.bye(PairEnd.EXPIRED, "pairing took too long")
        finally:
            for task in (reader, waiter):
                task.cancel()
            if plate.claimer is side:  # it left (or timed out) before the host's result
                plate.claimer = None
                await plate.host.send(PairPeer(False, side.source))

    async def _claimer_frames(self, plate: _Nameplate, side: _Side) -> None:
        while True:
            try:
                frame: AnyPairFrame = decode_pair(await side.transport.receive())
            except TransportError:
                return
            except ProtocolError:
                return
            if not isinstance(frame, PairMsg):
                return
            if plate.claimer is side:
                self.stats.forwarded_bytes += len(frame.body)
                await plate.host.send(frame)
