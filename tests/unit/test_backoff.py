"""``Backoff``: the relay link's reconnect schedule, pure (the jitter is passed in)."""

from __future__ import annotations

from switchboard.links.backoff import FAST_RETRY_ATTEMPTS, FAST_RETRY_CAP, MAX_RETRY, Backoff


def top(low: float, high: float) -> float:
    """A "random" draw that always picks the top of the range."""
    return high


def test_backoff_retries_quickly_then_grows_to_the_cap() -> None:
    """Retries stay at most FAST_RETRY_CAP apart for FAST_RETRY_ATTEMPTS, then double to MAX."""
    backoff = Backoff()
    delays = [backoff.next_delay(top) for _ in range(FAST_RETRY_ATTEMPTS + 12)]
    assert delays[:3] == [0.1, 0.2, 0.2]
    assert max(delays[:FAST_RETRY_ATTEMPTS]) == FAST_RETRY_CAP
    assert delays[FAST_RETRY_ATTEMPTS : FAST_RETRY_ATTEMPTS + 3] == [0.4, 0.8, 1.6]
    assert delays[-1] == MAX_RETRY
    assert delays == sorted(delays)


def test_backoff_restarts_from_the_first_step_after_a_session() -> None:
    """After a reset (a session was established) the next retry is the first step again."""
    backoff = Backoff()
    for _ in range(FAST_RETRY_ATTEMPTS + 20):  # a relay that stayed away for minutes
        backoff.next_delay(top)
    assert backoff.next_delay(top) == MAX_RETRY
    backoff.reset()
    assert [backoff.next_delay(top) for _ in range(2)] == [0.1, 0.2]


def test_backoff_jitters_between_half_and_the_whole_base() -> None:
    """Each delay is drawn between half its base and its base."""
    backoff = Backoff()
    ranges: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        ranges.append((low, high))
        return low

    assert backoff.next_delay(record) == 0.05
    backoff.next_delay(record)
    assert ranges == [(0.05, 0.1), (0.1, 0.2)]


def test_backoff_slows_down_at_once_when_retrying_is_pointless() -> None:
    """After slow_down (a wrong secret, rate limited) the next delay is at the cap."""
    backoff = Backoff()
    backoff.next_delay(top)
    backoff.slow_down()
    assert backoff.next_delay(top) == MAX_RETRY
    backoff.reset()
    assert backoff.next_delay(top) == 0.1
