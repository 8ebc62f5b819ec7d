"""``ReplayWindow``: which calls a responder accepted lately, so none is accepted twice.

A call carries its caller's wall clock (``ts``). A responder accepts a call only if that is
within ``max_age`` of its own clock and it has not accepted the same call id from the same
device before; it remembers each id it accepted for as long as a call of that age could still
be accepted. Memory is bounded: past ``max_remembered`` ids the oldest are forgotten and the
**floor** rises to the newest ``ts`` forgotten, so a call not newer than it is refused (a
flood of calls cannot reopen the window for a replay; an honest caller's next call is newer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Key = tuple[str, int]  # (device, call id)


@dataclass
class ReplayWindow:
    """The replay memory of one responder (pure: the wall clock is passed in).

    Args:
        max_age: seconds either way a call's ``ts`` may be from our clock.
        max_remembered: ids kept at most.
    """

    max_age: float
    max_remembered: int
    _seen: dict[Key, float] = field(init=False, default_factory=dict)  # arrival order
    _floor: float = field(init=False, default=float("-inf"))

    def __contains__(self, key: Key) -> bool:
        return key in self._seen

    def is_fresh(self, ts: float, wall: float) -> bool:
        """Whether a call stamped ``ts`` may be accepted now (NaN never is)."""
        self._forget(wall)
        return abs(wall - ts) <= self.max_age and ts > self._floor

    def remember(self, key: Key, ts: float) -> None:
        """Record an accepted call."""
        self._seen[key] = ts
        while len(self._seen) > self.max_remembered:
            oldest = next(iter(self._seen))
            self._floor = max(self._floor, self._seen.pop(oldest))

    def _forget(self, wall: float) -> None:
        # Calls stamped before the window would be refused anyway: their ids can go. They are
        # in arrival order, so this stops at the first recent one (the rest wait a little).
        while self._seen:
            oldest = next(iter(self._seen))
            if self._seen[oldest] >= wall - self.max_age:
                break
            del self._seen[oldest]
