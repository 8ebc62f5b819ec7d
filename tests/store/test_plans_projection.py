"""The ``plans`` projection: steps move forward only, and only by the plan's own device."""

from __future__ import annotations

from store_helpers import ME, OTHER, PEER, remote

from switchboard.events import (
    PlanEnded,
    PlanStarted,
    PlanStep,
    PlanStepEnded,
    PlanStepStarted,
    TaskRequested,
)
from switchboard.store import plans
from switchboard.store.log import EventLog

STEPS = [
    PlanStep(name="build", prompt="b", device=PEER),
    PlanStep(name="ship", prompt="s", device=OTHER, depends_on=["build"]),
]


def _states(log: EventLog) -> dict[str, tuple[str, str, str]]:
    row = plans.get_plan(log.db.reader(), "p1")
    assert row is not None
    return {s["name"]: (s["state"], s["task"], s["reason"]) for s in row["steps"]}


def test_plans_projection_folds_a_plan_to_its_end(fresh_store: EventLog) -> None:
    """Started, a step running then failed, the next skipped, the plan ended: one row says so."""
    fresh_store.receive_sync([
        remote(PEER, 1, PlanStarted(plan="p1", name="rel", steps=STEPS), agent="boss"),
        remote(PEER, 2, PlanStepStarted(plan="p1", step="build", task="t1")),
        remote(PEER, 3, PlanStepEnded(plan="p1", step="build", state="failed", reason="exit 3")),
        remote(PEER, 4, PlanStepEnded(plan="p1", step="ship", state="skipped", reason="dep")),
        remote(PEER, 5, PlanEnded(plan="p1", state="failed")),
    ])  # fmt: skip
    assert _states(fresh_store) == {"build": ("failed", "t1", "exit 3"),
                                    "ship": ("skipped", "", "dep")}  # fmt: skip
    row = plans.get_plan(fresh_store.db.reader(), "p")
    assert row is not None and row["state"] == "failed" and row["agent"] == "boss"
    assert row["version"] == 5 and row["ended_ts"] is not None
    assert [r["plan"] for r in plans.list_plans(fresh_store.db.reader())] == ["p1"]
    assert plans.running_plans_of(fresh_store.db.reader(), PEER) == []


def test_plans_projection_ignores_other_devices_and_going_back(fresh_store: EventLog) -> None:
    """Another device's plan events, a second start of a step and a change after its end do
    not move the plan."""
    fresh_store.receive_sync([
        remote(PEER, 1, PlanStarted(plan="p1", name="rel", steps=STEPS)),
        remote(OTHER, 1, PlanStepStarted(plan="p1", step="build", task="forged")),
        remote(PEER, 2, PlanStepStarted(plan="p1", step="build", task="t1")),
        remote(PEER, 3, PlanStepStarted(plan="p1", step="build", task="t2")),
        remote(PEER, 4, PlanStepEnded(plan="p1", step="build", state="completed")),
        remote(PEER, 5, PlanStepEnded(plan="p1", step="build", state="failed")),
        remote(PEER, 6, PlanStepEnded(plan="p1", step="ship", state="bogus")),
        remote(OTHER, 2, PlanEnded(plan="p1", state="completed")),
    ])  # fmt: skip
    assert _states(fresh_store) == {"build": ("completed", "t1", ""),
                                    "ship": ("pending", "", "")}  # fmt: skip
    running = plans.running_plans_of(fresh_store.db.reader(), PEER)
    assert [r["plan"] for r in running] == ["p1"]


def test_plans_projection_finds_a_steps_task_by_its_tag(fresh_store: EventLog) -> None:
    """``task_tagged`` finds the task a device runs for a step, and nothing for another tag
    or device."""
    asked = TaskRequested(task="t9", requester=f"boss:{ME}", harness="cmd", text="x",
                          tags=["plan-p1.2"])  # fmt: skip
    fresh_store.receive_sync([remote(PEER, 1, asked)])
    reader = fresh_store.db.reader()
    assert plans.task_tagged(reader, PEER, "plan-p1.2") == {"task": "t9", "state": "requested"}
    assert plans.task_tagged(reader, PEER, "plan-p1.1") is None
    assert plans.task_tagged(reader, OTHER, "plan-p1.2") is None
