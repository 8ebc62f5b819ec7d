"""How far each peer's clock is from ours, bounded from the timestamps its events carry.

Theory of operation
-------------------
Every event carries its origin's clock (``ts``). Call a peer's skew ``s`` (its clock minus
ours). Two kinds of observation bound it, with no extra traffic:

- **Any event** the peer made, stored here at our time ``r``: it was made before we stored
  it, so ``ts - r <= s``: a lower bound (tight when the event came live; an old event caught
  up later only gives a weak one). Of the events stored together, the peer's last (newest)
  one gives the tightest, so only that one is read.
- **A receipt** the peer made (``message_delivered``, ``message_read``, ``message_injected``)
  for a message of ours posted at our time ``t0``: it was made after our message existed, so
  ``s <= ts - t0``: an upper bound.

So ``s`` lies in ``[max lower, min upper]``. Clocks are set and drift, so each bound is the
best of the last ``WINDOW`` to ``2 * WINDOW`` seconds (two buckets), not of all time.
``status`` reports the bounds per peer (``clock``); ``switchboard doctor`` judges them.

The feature is an ``after_commit`` reaction over every stored event. It remembers when our own
recent messages were posted (``POSTED_KEPT`` of them), so a receipt needs no read; a receipt
for a message older than that, or posted before a restart, gives no upper bound.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from switchboard.daemon.registry import Feature, after_commit
from switchboard.daemon.shapes import PeerClock

if TYPE_CHECKING:
    from collections.abc import Iterable

    from switchboard.daemon.context import Context
    from switchboard.events import Event

# How long one bucket of observations counts (seconds): a clock corrected by NTP shows within
# 10 to 20 minutes, and a peer that posts now and then still has a bound.
WINDOW: Final = 600.0
# Receipts: the events a peer writes about a message it received.
RECEIPTS: Final = frozenset({"message_delivered", "message_read", "message_injected"})
# Our own messages whose posting time is kept, for the receipts that will answer them.
POSTED_KEPT: Final = 4096


def _epoch(ts: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class _Bound:
    """The best value seen in this bucket and the one before (``largest``: keep the max)."""

    largest: bool
    best: float | None = None
    previous: float | None = None
    since: float = 0.0

    def _roll(self, now: float) -> None:
        if now - self.since < WINDOW:
            return
        self.previous = self.best if now - self.since < 2 * WINDOW else None
        self.best, self.since = None, now

    def _pick(self, a: float | None, b: float | None) -> float | None:
        if a is None or b is None:
            return a if b is None else b
        return max(a, b) if self.largest else min(a, b)

    def add(self, value: float, now: float) -> None:
        self._roll(now)
        self.best = self._pick(self.best, value)

    def value(self, now: float) -> float | None:
        self._roll(now)
        return self._pick(self.best, self.previous)


@dataclass
class _Peer:
    lower: _Bound = field(default_factory=lambda: _Bound(largest=True))
    upper: _Bound = field(default_factory=lambda: _Bound(largest=False))
    samples: int = 0


class Clocks:
    """Skew bounds per peer device, fed with what the log stores (``observe``)."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self._peers: dict[str, _Peer] = {}
        self._posted: OrderedDict[str, float] = OrderedDict()  # our message ref -> posted at

    def observe(self, stored: Iterable[tuple[int, Event]], now: float) -> None:
        """Take the bounds that newly stored events give (``now``: our clock, epoch seconds).

        The lower bound is taken once per peer per call, from that peer's last event in
        ``stored``: every event gives a valid bound, and an origin writes in order, so its last
        one is its newest (the tightest). Parsing one timestamp per batch instead of one per
        event keeps a catch-up of thousands of events from paying for this feature."""
        newest: dict[str, str] = {}
        for _, event in stored:
            origin = event.origin
            if origin == self.device_id:
                if event.type == "message_posted" and (made := _epoch(event.ts)) is not None:
                    self._posted[f"{origin}/{event.seq}"] = made
                    if len(self._posted) > POSTED_KEPT:
                        self._posted.popitem(last=False)
                continue
            newest[origin] = event.ts
            peer = self._peers.get(origin) or self._peers.setdefault(origin, _Peer())
            peer.samples += 1
            if event.type not in RECEIPTS:
                continue
            ref = event.data.get("message")
            posted = self._posted.get(ref) if isinstance(ref, str) else None
            if posted is not None and (made := _epoch(event.ts)) is not None:
                peer.upper.add(made - posted, now)
        for origin, ts in newest.items():
            if (made := _epoch(ts)) is not None:
                self._peers[origin].lower.add(made - now, now)

    def report(self, devices: Iterable[dict[str, Any]], now: float) -> list[PeerClock]:
        """One entry per known peer: ``skew_min``/``skew_max`` seconds (``None``: unknown)."""
        out = []
        for row in devices:
            device = row["device_id"]
            if device == self.device_id:
                continue
            peer = self._peers.get(device, _Peer())
            low, high = peer.lower.value(now), peer.upper.value(now)
            out.append(
                PeerClock(
                    device=row.get("short") or device[:4].upper(),
                    name=row.get("name") or "",
                    skew_min=None if low is None else round(low, 3),
                    skew_max=None if high is None else round(high, 3),
                    samples=peer.samples,
                )
            )
        return out


def clocks_of(ctx: Context) -> Clocks:
    """This daemon's clock bounds (its ``part``)."""
    return ctx.part(_make)


def _make(ctx: Context) -> Clocks:
    return Clocks(ctx.device_id)


def _observe(ctx: Context, stored: list[tuple[int, Event]]) -> None:
    clocks_of(ctx).observe(stored, time.time())


FEATURE = Feature("clocks", reactions=[after_commit(_observe)])
