"""Version vectors: classify, merge, missing, lag, dominates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.proto.cursors import Placement, classify, dominates, lag, merge, missing

vectors = st.dictionaries(st.sampled_from("abcd"), st.integers(0, 20), max_size=4)


@pytest.mark.parametrize(
    ("seq", "placement"),
    [(1, Placement.DUPLICATE), (3, Placement.DUPLICATE), (4, Placement.NEW), (5, Placement.GAP)],
)
def test_cursors_classify_against_held_origin(seq: int, placement: Placement) -> None:
    """Seqs up to the held one are duplicates, the next is new, later ones follow a gap."""
    assert classify({"a": 3}, "a", seq) is placement


def test_cursors_classify_unknown_origin_starts_at_one() -> None:
    """For an origin not held yet, seq 1 is new and seq 2 follows a gap."""
    assert classify({}, "a", 1) is Placement.NEW
    assert classify({}, "a", 2) is Placement.GAP


def test_cursors_merge_takes_per_origin_maximum() -> None:
    """merge keeps the higher seq of each origin and every origin of both."""
    assert merge({"a": 3, "b": 1}, {"a": 2, "b": 4, "c": 1}) == {"a": 3, "b": 4, "c": 1}


def test_cursors_missing_names_where_to_resume() -> None:
    """missing returns, per origin where mine is ahead, the seq theirs holds."""
    assert missing({"a": 3, "b": 2, "c": 1}, {"a": 1, "b": 2}) == {"a": 1, "c": 0}


def test_cursors_lag_counts_events_behind() -> None:
    """lag counts the events theirs lacks of mine, ignoring where theirs is ahead."""
    assert lag({"a": 3, "b": 2, "c": 1}, {"a": 1, "b": 5}) == 3


def test_cursors_dominates_compares_every_origin() -> None:
    """dominates holds when a has at least b's seq for each of b's origins."""
    assert dominates({"a": 3, "b": 1}, {"a": 3})
    assert not dominates({"a": 3}, {"a": 3, "b": 1})
    assert dominates({}, {"a": 0})


@given(vectors, vectors)
def test_cursors_merge_dominates_both_and_closes_lag(a: dict[str, int], b: dict[str, int]) -> None:
    """The merge of two vectors dominates each, lags neither, and does not depend on order."""
    merged = merge(a, b)
    assert dominates(merged, a) and dominates(merged, b)
    assert lag(a, merged) == 0 and lag(b, merged) == 0
    # A zero entry means the same as an absent origin, so compare without zeros.
    assert {k: v for k, v in merge(b, a).items() if v} == {k: v for k, v in merged.items() if v}


@given(vectors, vectors)
def test_cursors_missing_agrees_with_lag(mine: dict[str, int], theirs: dict[str, int]) -> None:
    """Sending what missing names covers exactly lag events, after which theirs dominates mine."""
    gaps = missing(mine, theirs)
    assert sum(mine[origin] - seq for origin, seq in gaps.items()) == lag(mine, theirs)
    assert (lag(mine, theirs) == 0) == dominates(theirs, mine)
    assert dominates(merge(theirs, mine), mine)
