"""A task's lifecycle as a table: states, the events that move them, and how a run ends.

Theory of operation
-------------------
Every step of a task is an event in the log of the device that runs it (the receiving
device writes them all, so they arrive everywhere in one order). ``TRANSITIONS`` maps
``(state, input)`` to the next state, where the input is the event's type, and for
``task_ended`` the outcome it reports (``task_ended:completed``). A pair missing from the
table is not a step this lifecycle allows: the daemon never writes one, and a projection
folding someone else's log ignores it. ``None`` is the state before the request.

::

    requested -> accepted | refused(reason)
    accepted  -> running(pid, start time, agent) | failed (could not start) | lost
    running  <-> blocked(prompt)
    running, blocked -> completed | failed(exit status) | stopped | killed | lost

``task_progress`` and ``task_interrupted`` (a stop or kill was asked) keep the state.
``outcome`` says how a run that ended is reported. The table in docs/cli.md is generated
from ``TRANSITIONS`` (``table_markdown``) and a test compares them.
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class State(Enum):
    """Where a task stands."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    RUNNING = "running"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    KILLED = "killed"
    LOST = "lost"


#: States a task does not leave.
FINAL: Final = frozenset(
    {State.REFUSED, State.COMPLETED, State.FAILED, State.STOPPED, State.KILLED, State.LOST}
)
#: States in which a process may exist (the daemon watches these).
LIVE: Final = frozenset({State.ACCEPTED, State.RUNNING, State.BLOCKED})
#: How ``task_ended`` may end a task.
ENDINGS: Final = ("completed", "failed", "stopped", "killed", "lost")

_R, _A, _RUN, _B = State.REQUESTED, State.ACCEPTED, State.RUNNING, State.BLOCKED

TRANSITIONS: Final[dict[tuple[State | None, str], State]] = {
    (None, "task_requested"): _R,
    (_R, "task_accepted"): _A,
    (_R, "task_refused"): State.REFUSED,
    (_A, "task_started"): _RUN,
    (_A, "task_interrupted"): _A,
    (_A, "task_ended:failed"): State.FAILED,
    (_A, "task_ended:stopped"): State.STOPPED,
    (_A, "task_ended:killed"): State.KILLED,
    (_A, "task_ended:lost"): State.LOST,
    (_RUN, "task_blocked"): _B,
    (_B, "task_blocked"): _B,  # a second prompt while one is pending (parallel tool calls)
    (_B, "task_unblocked"): _RUN,
    (_RUN, "task_progress"): _RUN,
    (_B, "task_progress"): _B,
    (_RUN, "task_interrupted"): _RUN,
    (_B, "task_interrupted"): _B,
    **{(s, f"task_ended:{end}"): State(end) for s in (_RUN, _B) for end in ENDINGS},
}


def input_of(event_type: str, data: dict[str, object]) -> str:
    """The table's input for an event: its type, and for ``task_ended`` its outcome."""
    if event_type == "task_ended":
        return f"task_ended:{data.get('state')}"
    return event_type


def step(state: State | None, event_type: str, data: dict[str, object]) -> State | None:
    """The state after the event, or ``None`` if the lifecycle does not allow it here."""
    return TRANSITIONS.get((state, input_of(event_type, data)))


def can(state: State | None, event_type: str, data: dict[str, object] | None = None) -> bool:
    """Whether the event is a step the lifecycle allows from ``state``."""
    return step(state, event_type, data or {}) is not None


def outcome(exit_status: int | None, *, stop_asked: bool, kill_asked: bool) -> str:
    """How a run that ended is reported.

    A kill asked for is ``killed`` and a stop ``stopped``, whatever the exit status (a
    harness may exit 0 on SIGTERM); otherwise 0 is ``completed``, another status ``failed``,
    and no status at all (nothing recorded it) ``lost``.
    """
    if kill_asked:
        return "killed"
    if stop_asked:
        return "stopped"
    if exit_status is None:
        return "lost"
    return "completed" if exit_status == 0 else "failed"


def table_markdown() -> str:
    """The transition table as a Markdown table (docs/cli.md holds a copy)."""
    rows = ["| from | event | to |", "|---|---|---|"]
    for (state, event), target in TRANSITIONS.items():
        shown = state.value if state is not None else "(none)"
        rows.append(f"| {shown} | `{event}` | {target.value} |")
    return "\n".join(rows)
