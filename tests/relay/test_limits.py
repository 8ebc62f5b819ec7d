"""``AuthLimiter``: failed authentications per source and per device, on a clock moved by hand."""

from __future__ import annotations

from switchboard.relay.limits import AuthLimiter


def test_limiter_refuses_source_after_max_source_failures() -> None:
    """The fifth unproven failure within the window refuses the address; others are unaffected."""
    limiter = AuthLimiter(max_source_failures=5, window=60.0, refusal=60.0)
    assert [limiter.record_failure("10.0.0.1", now=float(n)) for n in range(5)] == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert limiter.is_refused("10.0.0.1", "NEWDEVICE", now=5.0)
    assert not limiter.is_refused("10.0.0.2", "NEWDEVICE", now=5.0)


def test_limiter_refused_source_still_admits_vouched_devices() -> None:
    """Devices that authenticated before keep connecting from an address a guesser got refused."""
    limiter = AuthLimiter(max_source_failures=3)
    limiter.record_success("HONEST", now=0.0)
    for n in range(10):
        limiter.record_failure("10.0.0.1", now=1.0 + n)  # a guesser behind the same NAT
    assert limiter.is_refused("10.0.0.1", "GUESSER", now=11.0)
    assert not limiter.is_refused("10.0.0.1", "HONEST", now=11.0)
    assert limiter.is_vouched("HONEST") and not limiter.is_vouched("GUESSER")


def test_limiter_unproven_failures_never_refuse_the_claimed_device() -> None:
    """Failures without a device proof count against the source only, never the device."""
    limiter = AuthLimiter(max_source_failures=1_000, max_device_failures=2)
    limiter.record_success("VICTIM", now=0.0)
    for n in range(50):
        limiter.record_failure("10.0.0.9", now=float(n))  # an impostor claiming VICTIM
    assert not limiter.is_refused("10.0.0.9", "VICTIM", now=50.0)
    assert not limiter.is_refused("10.0.0.1", "VICTIM", now=50.0)


def test_limiter_refuses_a_proven_device_after_max_device_failures() -> None:
    """A device that proves its key but keeps failing the group secret is refused, anywhere."""
    limiter = AuthLimiter(max_source_failures=100, max_device_failures=3, refusal=60.0)
    limiter.record_success("STALE", now=0.0)
    refused = [limiter.record_failure(f"10.0.0.{n}", 1.0 + n, device="STALE") for n in range(3)]
    assert refused == [False, False, False]  # the sources are far from their cap
    assert limiter.is_refused("10.0.0.7", "STALE", now=4.0)  # vouching does not override it
    assert not limiter.is_refused("10.0.0.7", "OTHER", now=4.0)
    assert not limiter.is_refused("10.0.0.7", "STALE", now=63.0)


def test_limiter_refusal_expires() -> None:
    """A refused address is admitted again once the refusal has run out."""
    limiter = AuthLimiter(max_source_failures=1, refusal=60.0)
    assert limiter.record_failure("a", now=100.0)
    assert limiter.is_refused("a", "D", now=159.9)
    assert not limiter.is_refused("a", "D", now=160.0)


def test_limiter_forgets_failures_outside_window() -> None:
    """Failures spread wider than the window never add up to a refusal."""
    limiter = AuthLimiter(max_source_failures=3, max_device_failures=3, window=10.0)
    for now in (0.0, 6.0, 12.0, 18.0, 24.0):
        assert not limiter.record_failure("a", now=now, device="D")
    assert not limiter.is_refused("a", "D", now=24.0)


def test_limiter_bounds_what_it_tracks() -> None:
    """An attacker with many addresses and made-up keys cannot grow the limiter past its bound."""
    limiter = AuthLimiter(max_source_failures=5, max_device_failures=1, max_tracked=100)
    for n in range(1000):
        limiter.record_failure(f"10.0.{n // 256}.{n % 256}", now=0.0, device=f"KEY{n}")
        limiter.record_success(f"OK{n}", now=0.0)
    assert limiter.tracked() <= 300  # sources: failures + refused; devices: refused
    assert limiter.is_vouched("OK999") and not limiter.is_vouched("OK0")
