"""Version vectors: pure compare and merge of per-origin high-water marks.

A vector maps an origin device id to the highest seq held *contiguously* from 1. Because every
log holder (device or relay) accepts an origin's events only in order, one number per origin
says exactly which events it holds.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Placement(enum.Enum):
    """Where an incoming event falls relative to what is held."""

    NEW = "new"  # the next one: store it
    DUPLICATE = "duplicate"  # already held: drop it (at-least-once delivery is normal)
    GAP = "gap"  # something before it is missing: drop it and ask again with Have


def classify(vector: Mapping[str, int], origin: str, seq: int) -> Placement:
    """Classify event ``(origin, seq)`` against ``vector``."""
    held = vector.get(origin, 0)
    if seq <= held:
        return Placement.DUPLICATE
    if seq == held + 1:
        return Placement.NEW
    return Placement.GAP


def merge(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """Return the per-origin maximum of two vectors."""
    merged = dict(a)
    for origin, seq in b.items():
        if seq > merged.get(origin, 0):
            merged[origin] = seq
    return merged


def missing(mine: Mapping[str, int], theirs: Mapping[str, int]) -> dict[str, int]:
    """Return, for each origin where ``mine`` is ahead, the seq ``theirs`` holds (send after it)."""
    return {
        origin: theirs.get(origin, 0) for origin, seq in mine.items() if seq > theirs.get(origin, 0)
    }


def lag(mine: Mapping[str, int], theirs: Mapping[str, int]) -> int:
    """Return how many events ``theirs`` lacks of ``mine``."""
    return sum(
        seq - theirs.get(origin, 0) for origin, seq in mine.items() if seq > theirs.get(origin, 0)
    )


def dominates(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """Return whether ``a`` holds everything ``b`` holds."""
    return all(a.get(origin, 0) >= seq for origin, seq in b.items())
