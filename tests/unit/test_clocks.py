"""``daemon.clocks``: a peer's skew bounded from its events' times and its receipts' times."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from switchboard.daemon.clocks import WINDOW, Clocks
from switchboard.events import Event, format_ts

ME, PEER = "a" * 26, "b" * 26
T0 = 1_800_000_000.0  # our clock when the test starts, epoch seconds


def ts(seconds: float) -> str:
    return format_ts(dt.datetime.fromtimestamp(seconds, dt.UTC))


def clocks_after_our_message() -> Clocks:
    """Clocks that saw one message of ours (seq 7) posted at our T0."""
    clocks = Clocks(ME)
    posted = Event(origin=ME, seq=7, ts=ts(T0), type="message_posted", agent="luna", data={})
    clocks.observe([(0, posted)], T0)
    return clocks


def event(made: float, type: str = "status_changed", **data: object) -> Event:
    return Event(origin=PEER, seq=1, ts=ts(made), type=type, agent="nova", data=dict(data))


def report(clocks: Clocks, now: float) -> dict[str, object]:
    rows = [{"device_id": ME, "short": "AAAA"}, {"device_id": PEER, "short": "BBBB"}]
    (peer,) = clocks.report(rows, now)
    return msgspec.structs.asdict(peer)


def test_clocks_bound_a_peer_that_runs_ahead_from_both_sides() -> None:
    """A peer 40 s ahead: its live event says at least ~40 s, its receipt at most ~40 s."""
    clocks = clocks_after_our_message()
    skew, transit = 40.0, 0.05
    clocks.observe([(1, event(T0 + skew))], T0 + transit)
    receipt = event(T0 + transit + skew, "message_delivered", message=f"{ME}/7")
    clocks.observe([(2, receipt)], T0 + 2 * transit)
    peer = report(clocks, T0 + 1)
    assert peer["device"] == "BBBB"
    assert peer["skew_min"] == pytest.approx(skew - transit, abs=0.002)
    assert peer["skew_max"] == pytest.approx(skew + transit, abs=0.002)
    assert peer["samples"] == 2


def test_clocks_keep_the_tightest_bounds_and_ignore_our_own_events() -> None:
    """An old event caught up later loosens nothing; our own events and others' receipts and
    receipts of messages we do not hold give no bound."""
    clocks = clocks_after_our_message()
    clocks.observe([(1, event(T0 - 5))], T0)  # live, peer 5 s behind
    clocks.observe([(2, event(T0 - 3600))], T0 + 1)  # an hour-old event, caught up
    mine = Event(origin=ME, seq=8, ts=ts(T0 + 999), type="status_changed", agent="", data={})
    other = event(T0 - 10, "message_read", message=f"{'c' * 26}/7")
    unknown = event(T0 - 10, "message_read", message=f"{ME}/99")
    clocks.observe([(3, mine), (4, other), (5, unknown)], T0 + 2)
    peer = report(clocks, T0 + 3)
    assert peer["skew_min"] == pytest.approx(-5.0, abs=0.002)
    assert peer["skew_max"] is None


def test_clocks_forget_bounds_older_than_two_windows() -> None:
    """A clock that was fixed is judged by what it shows now: old bounds expire."""
    clocks = clocks_after_our_message()
    clocks.observe([(1, event(T0 + 100))], T0)
    assert report(clocks, T0 + WINDOW / 2)["skew_min"] == pytest.approx(100, abs=0.002)
    assert report(clocks, T0 + 1.5 * WINDOW)["skew_min"] == pytest.approx(100, abs=0.002)
    clocks.observe([(2, event(T0 + 2.5 * WINDOW))], T0 + 2.5 * WINDOW)
    assert report(clocks, T0 + 2.5 * WINDOW)["skew_min"] == pytest.approx(0, abs=0.002)


def test_clocks_report_every_peer_even_unmeasured() -> None:
    """A device never heard from is listed with no bounds."""
    peer = report(Clocks(ME), T0)
    assert (peer["skew_min"], peer["skew_max"], peer["samples"]) == (None, None, 0)


def test_a_caught_up_batch_bounds_from_its_newest_event_and_counts_every_one() -> None:
    """Thousands of old events stored together: the newest (the peer's last) gives the bound."""
    clocks = Clocks(ME)
    batch = [(n, event(T0 - 3600 + n)) for n in range(1000)]
    clocks.observe(batch, T0)
    peer = report(clocks, T0)
    assert peer["skew_min"] == pytest.approx(-3600 + 999, abs=0.002)
    assert peer["samples"] == 1000
