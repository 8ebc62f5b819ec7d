"""``AuthLimiter``: pure bookkeeping of failed authentications, per source and per device.

No clock of its own: every call takes ``now``, so tests drive time by hand.

Theory of operation
-------------------
A relay must slow down whoever guesses group secrets without letting that guesser lock out
honest devices that share its address (a team behind one NAT or reverse proxy). Failures are
therefore counted twice, each in a sliding window of ``window`` seconds:

- **per claimed device**, the device id a Hello claims, but only for failures *after* the
  client proved it holds that device's private key (the relay checks the device proof before
  it reveals whether the group secret matched, see ``relay.server``). ``max_device_failures``
  of them get that device refused for ``refusal`` seconds. Only the holder of a device key can
  make it fail, so nobody can lock out another's device this way.
- **per source address**, every failure, proven or not. ``max_source_failures`` is high (a team
  behind one NAT with stale invites stays under it) and gets the source refused for
  ``refusal`` seconds, but a refused source still admits **vouched** devices: devices that
  authenticated successfully before (``record_success``). A guesser cannot use a vouched
  device's id: it would have to prove that device's key before learning anything about the
  group secret, and its failures then count against its source alone.

So a guesser is slowed to ``max_source_failures`` guesses per window per address (and to
``max_device_failures`` per device key it makes up), while devices that have connected before
keep connecting from the same address. A device that never connected, behind an address that
is refused, waits out the refusal like the guesser: the relay cannot tell the two apart.

Memory is bounded: at most ``max_tracked`` entries per table, the stalest forgotten first.
"""

from __future__ import annotations

from collections import deque
from typing import Final

# Failures from one source address before it is refused. A team behind one NAT shares it: a few
# people with a stale invite or a mistyped secret stay well under it; a guesser gets this many
# tries a window. The group secret is 32 random bytes, so what this limits is the noise.
DEFAULT_MAX_SOURCE_FAILURES: Final = 30
# Failures of one proven device key before that device is refused: a device with a stale secret
# gets a few tries (it backs off anyway); guessing with one key is slowed to a handful a minute.
DEFAULT_MAX_DEVICE_FAILURES: Final = 5
# Failures older than this no longer count.
DEFAULT_AUTH_FAILURE_WINDOW: Final = 60.0
# How long a refused source or device stays refused.
DEFAULT_REFUSAL_SECONDS: Final = 60.0
# Entries kept per table (sources, devices, vouched devices): bounds the memory an attacker
# with many addresses or made-up keys can make us use.
DEFAULT_MAX_TRACKED: Final = 10_000


class _Window:
    """Failures per key in a sliding window, and the keys refused until a time."""

    def __init__(self, max_failures: int, window: float, refusal: float, max_keys: int) -> None:
        self.max_failures, self.window, self.refusal = max_failures, window, refusal
        self.max_keys = max_keys
        # Insertion order is recency order: a key is moved to the end when it fails.
        self.failures: dict[str, deque[float]] = {}
        self.refused_until: dict[str, float] = {}

    def is_refused(self, key: str, now: float) -> bool:
        until = self.refused_until.get(key)
        if until is None:
            return False
        if now < until:
            return True
        del self.refused_until[key]
        return False

    def record(self, key: str, now: float) -> None:
        failures = self.failures.pop(key, None) or deque()
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) >= self.max_failures:
            self.refused_until.pop(key, None)
            self.refused_until[key] = now + self.refusal
        else:
            self.failures[key] = failures
        self._forget_stale(now)

    def _forget_stale(self, now: float) -> None:
        if len(self.failures) > self.max_keys:
            for key in list(self.failures):
                if self.failures[key][-1] <= now - self.window:
                    del self.failures[key]
            while len(self.failures) > self.max_keys:
                del self.failures[next(iter(self.failures))]
        if len(self.refused_until) > self.max_keys:
            for key, until in list(self.refused_until.items()):
                if until <= now:
                    del self.refused_until[key]
            while len(self.refused_until) > self.max_keys:  # the soonest to expire go first
                del self.refused_until[next(iter(self.refused_until))]

    def __len__(self) -> int:
        return len(self.failures) + len(self.refused_until)


class AuthLimiter:
    """Count failed authentications per source and per device. See the module docstring.

    Args:
        max_source_failures: failures from one address within ``window`` that get it refused
            (for devices it has not vouched for).
        max_device_failures: failures of one proven device key within ``window`` that get
            that device refused.
        window: seconds a failure counts for.
        refusal: seconds a source or device stays refused.
        max_tracked: entries kept per table; the stalest are forgotten first.
    """

    def __init__(
        self,
        *,
        max_source_failures: int = DEFAULT_MAX_SOURCE_FAILURES,
        max_device_failures: int = DEFAULT_MAX_DEVICE_FAILURES,
        window: float = DEFAULT_AUTH_FAILURE_WINDOW,
        refusal: float = DEFAULT_REFUSAL_SECONDS,
        max_tracked: int = DEFAULT_MAX_TRACKED,
    ) -> None:
        assert max_source_failures >= 1 and max_device_failures >= 1
        assert window > 0 and refusal >= 0 and max_tracked >= 1
        self.window, self.refusal, self.max_tracked = window, refusal, max_tracked
        self._sources = _Window(max_source_failures, window, refusal, max_tracked)
        self._devices = _Window(max_device_failures, window, refusal, max_tracked)
        self._vouched: dict[str, float] = {}  # device -> last success; insertion = recency

    def is_refused(self, source: str, device: str, now: float) -> bool:
        """Return whether a Hello from ``source`` claiming ``device`` is refused at ``now``."""
        if self._devices.is_refused(device, now):
            return True
        return self._sources.is_refused(source, now) and device not in self._vouched

    def record_failure(self, source: str, now: float, device: str | None = None) -> bool:
        """Count a failed authentication; return whether ``source`` is now refused.

        Args:
            source: the address it came from.
            now: the time.
            device: the device id, only when the client proved it holds that device's key
                (its failure was the group secret); ``None`` when nothing was proven.
        """
        self._sources.record(source, now)
        if device is not None:
            self._devices.record(device, now)
        return self._sources.is_refused(source, now)

    def record_success(self, device: str, now: float) -> None:
        """A device authenticated: vouch for it, so a refused source still admits it."""
        self._vouched.pop(device, None)
        self._vouched[device] = now
        while len(self._vouched) > self.max_tracked:
            del self._vouched[next(iter(self._vouched))]

    def is_vouched(self, device: str) -> bool:
        """Return whether ``device`` authenticated successfully before (and is remembered)."""
        return device in self._vouched

    def tracked(self) -> int:
        """Return how many sources and devices have failures counted or are refused."""
        return len(self._sources) + len(self._devices)
