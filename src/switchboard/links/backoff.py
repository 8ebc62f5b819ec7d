"""``Backoff``: when a link retries its relay or broker, quick while it restarts, then ever slower.

Quick, jittered retries while a relay or broker restarts (the first within 50-100 ms of a drop,
then at most 200 ms apart for about ten seconds), then exponential up to 30 s for one that stays
away. Once a connection is established the schedule starts again from its first step.
Authentication failures and rate limiting go to the cap at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# The first retry after a drop waits between half this and this: quick, since most drops are a
# relay restarting or a network blip, and jittered, so a team does not reconnect in lockstep.
FIRST_RETRY: Final = 0.1
# Retries right after a drop are at most this far apart: a relay back up is found within it
# (a restart takes a second or two), and a refused connect costs the relay's host next to
# nothing, so even a team retrying this often is cheap.
FAST_RETRY_CAP: Final = 0.2
# Quick retries before the delays grow: about ten seconds of them, the length of a restart.
FAST_RETRY_ATTEMPTS: Final = 64
# Retries of a relay that stays away end up this far apart.
MAX_RETRY: Final = 30.0


@dataclass
class Backoff:
    """When to retry a relay: quick while it restarts, then ever slower. Pure: no clock.

    The base delay of the attempt ``k`` since ``reset`` is ``first * 2**k`` capped at
    ``fast_cap`` for the first ``fast_attempts`` attempts, then doubles from ``fast_cap`` up
    to ``cap``. Each delay is drawn between half its base and its base ("equal jitter"), so
    retries never bunch at zero and devices spread out.

    Args:
        first: base delay of the first retry.
        fast_cap: longest base delay of the quick retries.
        fast_attempts: how many retries are quick.
        cap: longest base delay.
    """

    first: float = FIRST_RETRY
    fast_cap: float = FAST_RETRY_CAP
    fast_attempts: int = FAST_RETRY_ATTEMPTS
    cap: float = MAX_RETRY
    attempts: int = 0  # retries since the last reset

    def reset(self) -> None:
        """A session was established: the next drop starts from the first step."""
        self.attempts = 0

    def slow_down(self) -> None:
        """Retrying soon is pointless (a wrong secret, rate limited): go to the cap at once."""
        self.attempts = max(self.attempts, self.fast_attempts + 64)

    def base(self) -> float:
        """The base delay of the next retry."""
        k = self.attempts
        if k < self.fast_attempts:
            return min(self.first * 2.0 ** min(k, 32), self.fast_cap)
        return min(self.fast_cap * 2.0 ** min(k - self.fast_attempts + 1, 32), self.cap)

    def next_delay(self, uniform: Callable[[float, float], float] = random.uniform) -> float:
        """Return the seconds to wait before the next retry, and count the retry.

        Args:
            uniform: draws a number between its two arguments (``random.uniform``; tests pass
                their own).
        """
        base = self.base()
        self.attempts += 1
        return uniform(base / 2, base)
