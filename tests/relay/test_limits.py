"""``AuthLimiter``: failed authentications per address, on a clock the test moves by hand."""

from __future__ import annotations

from switchboard.relay.limits import AuthLimiter


def test_limiter_refuses_after_max_failures() -> None:
    """The fifth failure within the window gets the address refused; others are unaffected."""
    limiter = AuthLimiter(max_failures=5, window=60.0, refusal=60.0)
    assert [limiter.record_failure("10.0.0.1", now=float(n)) for n in range(5)] == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert limiter.is_refused("10.0.0.1", now=5.0)
    assert not limiter.is_refused("10.0.0.2", now=5.0)


def test_limiter_refusal_expires() -> None:
    """A refused address is admitted again once the refusal has run out."""
    limiter = AuthLimiter(max_failures=1, refusal=60.0)
    limiter.record_failure("a", now=100.0)
    assert limiter.is_refused("a", now=159.9)
    assert not limiter.is_refused("a", now=160.0)
    assert not limiter.record_failure("b", now=0.0) or limiter.is_refused("b", now=0.0)


def test_limiter_forgets_failures_outside_window() -> None:
    """Failures spread wider than the window never add up to a refusal."""
    limiter = AuthLimiter(max_failures=3, window=10.0)
    for now in (0.0, 6.0, 12.0, 18.0, 24.0):
        assert not limiter.record_failure("a", now=now)


def test_limiter_bounds_the_sources_it_tracks() -> None:
    """An attacker with many addresses cannot grow the limiter past max_sources."""
    limiter = AuthLimiter(max_failures=5, max_sources=100)
    for n in range(1000):
        limiter.record_failure(f"10.0.{n // 256}.{n % 256}", now=0.0)
    assert limiter.tracked() <= 100
