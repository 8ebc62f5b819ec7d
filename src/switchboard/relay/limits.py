"""``AuthLimiter``: pure bookkeeping of failed authentications per source address.

No clock of its own: every call takes ``now``, so tests drive time by hand. An address that
fails ``max_failures`` times within ``window`` seconds is refused for ``refusal`` seconds.
"""

from __future__ import annotations

from collections import deque
from typing import Final

# Failed authentications from one address before it is refused: a person mistyping a secret
# or a stale invite gets a few tries; guessing is slowed to a handful of attempts a minute.
DEFAULT_MAX_AUTH_FAILURES: Final = 5
# Failures older than this no longer count.
DEFAULT_AUTH_FAILURE_WINDOW: Final = 60.0
# How long a refused address stays refused.
DEFAULT_REFUSAL_SECONDS: Final = 60.0
# Addresses tracked at once: bounds the memory an attacker with many addresses can make us use.
DEFAULT_MAX_TRACKED_SOURCES: Final = 10_000


class AuthLimiter:
    """Count failed authentications per source and refuse sources that fail too often.

    Args:
        max_failures: failures within ``window`` that get a source refused.
        window: seconds a failure counts for.
        refusal: seconds a source stays refused.
        max_sources: sources tracked at once; the stalest are forgotten first.
    """

    def __init__(
        self,
        *,
        max_failures: int = DEFAULT_MAX_AUTH_FAILURES,
        window: float = DEFAULT_AUTH_FAILURE_WINDOW,
        refusal: float = DEFAULT_REFUSAL_SECONDS,
        max_sources: int = DEFAULT_MAX_TRACKED_SOURCES,
    ) -> None:
        assert max_failures >= 1 and window > 0 and refusal >= 0 and max_sources >= 1
        self.max_failures = max_failures
        self.window = window
        self.refusal = refusal
        self.max_sources = max_sources
        # Insertion order is recency order: a source is moved to the end when it fails.
        self._failures: dict[str, deque[float]] = {}
        self._refused_until: dict[str, float] = {}

    def is_refused(self, source: str, now: float) -> bool:
        """Return whether ``source`` is refused at ``now``."""
        until = self._refused_until.get(source)
        if until is None:
            return False
        if now < until:
            return True
        del self._refused_until[source]
        return False

    def record_failure(self, source: str, now: float) -> bool:
        """Count a failed authentication from ``source``; return whether it is now refused."""
        failures = self._failures.pop(source, None) or deque()
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) >= self.max_failures:
            self._refused_until[source] = now + self.refusal
        else:
            self._failures[source] = failures
        self._forget_stale(now)
        return self.is_refused(source, now)

    def _forget_stale(self, now: float) -> None:
        if len(self._failures) > self.max_sources:
            for source in list(self._failures):
                if self._failures[source][-1] <= now - self.window:
                    del self._failures[source]
            while len(self._failures) > self.max_sources:
                del self._failures[next(iter(self._failures))]
        if len(self._refused_until) > self.max_sources:
            for source, until in list(self._refused_until.items()):
                if until <= now:
                    del self._refused_until[source]

    def tracked(self) -> int:
        """Return how many sources have failures counted or are refused."""
        return len(self._failures) + len(self._refused_until)
