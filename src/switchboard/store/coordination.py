"""The coordination and task projections' handlers by event type, for ``apply_many``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from switchboard.store import handoffs, keys, leases, plans, prompts, rooms, search, tasks

Handler = Callable[..., None]


def _merge(*tables: dict[str, Any]) -> dict[str, tuple[Handler, ...]]:
    merged: dict[str, tuple[Handler, ...]] = {}
    for table in tables:
        for tag, handler in table.items():
            merged[tag] = (*merged.get(tag, ()), handler)
    return merged


#: Event type -> the handlers that fold it, in order; each runs after the foundation's own.
HANDLERS: Final = _merge(
    rooms.HANDLERS,
    search.HANDLERS,
    leases.HANDLERS,
    tasks.HANDLERS,
    handoffs.HANDLERS,
    prompts.HANDLERS,
    plans.HANDLERS,
    keys.HANDLERS,
)


#: Event type -> one handler of a run of consecutive events of it, equivalent to folding each
#: with ``HANDLERS`` in turn (the foundation has no handler of these types).
RUN_HANDLERS: Final[dict[str, Callable[..., None]]] = dict(leases.RUN_HANDLERS)
assert all(HANDLERS[tag] == (leases.HANDLERS[tag],) for tag in RUN_HANDLERS)
