"""Plans through the real ``switchboard`` command: ``run``, ``run --dry-run``, ``plans``,
``plan show``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec
from cluster import Device
from test_plans_run import _task

from switchboard.tasks.plan import PlanReport


def _write(folder: Path, text: str) -> Path:
    path = folder / "nightly.toml"
    path.write_text(text)
    return path


def test_plans_cli_run_refused_task_skips_its_dependants(device: Device, work: Path) -> None:
    """A task refused by the policy skips the one after it; the independent one completes;
    ``run`` follows to the end, prints why, and exits 1."""
    path = _write(work, _task("lint", "say linted", dir=".")
                  + _task("bad", "say never", dir="/")
                  + _task("after", "say never either", depends_on=["bad"]))  # fmt: skip
    done = device.cli("run", str(path), agent="boss", check=False)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert out.splitlines()[0].startswith("plan ") and "nightly: 3 tasks" in out
    short = device.short
    assert f"bad on {short}: refused: directory / is outside the allowed directories" in out
    assert f"after on {short}: skipped: depends on bad, which was refused (directory /" in out
    assert f"lint on {short}: completed" in out
    assert ": failed" in out  # the report's head line
    plan_id = out.split()[1]
    listed = device.cli_json("plans")
    assert [p["id"] for p in listed] == [plan_id] and listed[0]["name"] == "nightly"
    shown = device.cli_json("plan", "show", plan_id[:5])
    report = msgspec.convert(shown, PlanReport)  # the --json shape is the report Struct
    steps = {s.name: s for s in report.steps}
    assert steps["lint"].dir == str(work)  # "." is the plan file's folder
    assert steps["after"].task == ""
    text = device.cli("plan", "show", plan_id).stdout
    assert "WHY / RESULT" in text and "linted" in text


def test_plans_cli_dry_run_and_detach(device: Device, work: Path) -> None:
    """``--dry-run`` prints each verdict (exit 1 if one is refused); ``--detach --json``
    returns at once and ``plan show --wait`` gives the ending."""
    refused = _write(work, _task("a", "say x", dir=str(work)) + _task("b", "say y", dir="/"))
    dry = device.cli("run", "--dry-run", str(refused), agent="boss", check=False)
    assert dry.returncode == 1
    assert "dry run: nothing started" in dry.stdout
    assert f"allowed in {work}" in dry.stdout and "refused: directory /" in dry.stdout
    assert device.call("events", type="task_requested", all_rooms=True) == []
    good = _write(work, _task("a", "say one", dir=str(work))
                  + _task("b", "say two", dir=str(work), depends_on=["a"]))  # fmt: skip
    assert device.cli("run", "--dry-run", str(good), agent="boss").returncode == 0
    started: dict[str, Any] = device.cli_json("run", "--detach", str(good), agent="boss")
    assert started["state"] == "running"
    ended = json.loads(device.cli("plan", "show", "--wait", "--json", started["id"]).stdout)
    assert ended["state"] == "completed"
    assert [s["state"] for s in ended["steps"]] == ["completed", "completed"]
    assert "two" in ended["steps"][1]["result"]


def test_plans_cli_bad_plan_is_refused_before_anything_runs(device: Device, work: Path) -> None:
    """A plan with an unknown dependency is one error naming the task and line; nothing is
    written."""
    path = _write(work, _task("a", "say x") + _task("b", "say y", depends_on=["zz"]))
    done = device.cli("run", str(path), agent="boss", check=False)
    assert done.returncode == 1
    assert "plan: task 'b' (line 6): depends on unknown task 'zz'" in done.stderr
    missing = device.cli("run", str(work / "nope.toml"), agent="boss", check=False)
    assert missing.returncode == 1 and "cannot read plan" in missing.stderr
    assert device.call("events", type="plan_started", all_rooms=True) == []


def test_plans_mcp_run_plan_and_wait_for_the_report(device: Device, work: Path) -> None:
    """An agent checks a plan with run_plan dry_run, runs it, and plan_status waits for the
    report."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))
    from mcp_kit import call, mcp_session, run  # noqa: PLC0415

    plan = _task("one", "say first", dir=str(work)) + _task(
        "two", "say second", dir=str(work), depends_on=["one"])  # fmt: skip

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "lead"}) as s:
            checked = await call(s, "run_plan", plan=plan, dry_run=True)
            assert not checked.is_error, checked.text
            assert [st["verdict"] for st in checked.value["steps"]] == ["allowed", "allowed"]
            started = await call(s, "run_plan", plan=plan)
            assert started.value["state"] == "running"
            status = await call(s, "plan_status", plan=started.value["id"], wait_seconds=60)
            assert status.value["state"] == "completed", status.value
            assert "second" in status.value["steps"][1]["result"]
            assert status.value["requester"].startswith("lead:")
            bad = await call(s, "run_plan", plan='[[task]]\nname = "x"\n')
            assert bad.is_error and "missing 'prompt'" in bad.text

    run(body, 120)
