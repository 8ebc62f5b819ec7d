"""``run PLAN.toml``, ``plans``, ``plan show``: task graphs across devices."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from switchboard.cli import output
from switchboard.cli.calls import call
from switchboard.daemon.autostart import connect
from switchboard.errors import DaemonUnavailable, TransportError, UserError

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings

# One wait of a follower (it asks again after each): short enough to notice a restart.
FOLLOW_WAIT = 30.0
# How often a follower reconnects to a daemon that went away before it gives up.
MAX_RECONNECTS = 10


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run (or with ``--dry-run`` check) a plan file; follow it and print its report."""
    path = os.path.abspath(os.path.expanduser(args.file))
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read plan {args.file}: {exc.__class__.__name__}") from None
    values = {"agent": settings.acting_agent(), "text": text, "file": path,
              "dry_run": args.dry_run}  # fmt: skip
    report = call(settings, "plan.run", values)
    if args.dry_run:
        if args.json:
            output.print_json(report)
        else:
            output.print_lines(dry_run_lines(report))
        return 0 if all(s["verdict"] == "allowed" for s in report["steps"]) else 1
    if args.detach:
        if args.json:
            output.print_json(report)
        else:
            print(f"plan {report['id']} {report['name']}: {len(report['steps'])} tasks")
        return 0
    if not args.json:
        print(f"plan {report['id']} {report['name']}: {len(report['steps'])} tasks", flush=True)
    try:
        report = _follow(settings, report, quiet=args.json)
    except KeyboardInterrupt:
        print(f"\ndetached; plan {report['id']} keeps running "
              f"(switchboard plan show {report['id']})", file=sys.stderr)  # fmt: skip
        return 0
    if args.json:
        output.print_json(report)
    else:
        output.print_lines(report_lines(report))
    return 0 if report["state"] == "completed" else 1


def _follow(settings: Settings, report: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Print each step's changes until the plan ends; return its last report."""
    seen = {s["name"]: s["state"] for s in report["steps"]}
    failures = 0
    while report["state"] == "running":
        try:
            with connect(settings) as client:
                while report["state"] == "running":
                    values = {"plan": report["id"], "wait": FOLLOW_WAIT,
                              "after": report["version"]}  # fmt: skip
                    report = client.call("plan.show", values, timeout=FOLLOW_WAIT + 30)
                    failures = 0
                    for step in report["steps"]:
                        if seen.get(step["name"]) != step["state"] and not quiet:
                            print(step_line(step), flush=True)
                        seen[step["name"]] = step["state"]
        except (
            DaemonUnavailable,
            TransportError,
        ):  # the daemon restarted: the plan carries on there
            failures += 1
            if failures > MAX_RECONNECTS:
                raise
    return report


def step_line(step: dict[str, Any]) -> str:
    """One step as a line: ``test on VPS: failed: exit status 3``."""
    where = f"{step['name']} on {step['device']}"
    state = step["state"]
    if state in ("running", "blocked") and step["task"]:
        agent = f" as {step['agent']}" if step.get("agent") else ""
        return f"{where}: {state} (task {step['task']}{agent})"
    return f"{where}: {state}" + (f": {step['reason']}" if step.get("reason") else "")


def report_lines(report: dict[str, Any]) -> list[str]:
    """A plan's report for a person."""
    lines = [f"plan {report['id']} {report['name']}: {report['state']}"]
    rows = (
        (s["name"], s["device"], s["harness"], s["state"], s["task"] or "-",
         output.clip(s["reason"] or _last_line(s["result"]), 60))
        for s in report["steps"]
    )  # fmt: skip
    lines += output.table(("TASK", "DEVICE", "HARNESS", "STATE", "ID", "WHY / RESULT"), rows)
    return lines


def dry_run_lines(report: dict[str, Any]) -> list[str]:
    """A dry run: each task, its device and that device's verdict."""
    rows = (
        (s["name"], s["device"], s["harness"], ", ".join(s["depends_on"]) or "-",
         s["verdict"] + (f": {s['reason']}" if s["reason"] else f" in {s['dir']}"))
        for s in report["steps"]
    )  # fmt: skip
    head = f"plan {report['name']} (dry run: nothing started)"
    return [head, *output.table(("TASK", "DEVICE", "HARNESS", "AFTER", "VERDICT"), rows)]


def _last_line(text: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


def list_plans(args: argparse.Namespace, settings: Settings) -> int:
    """List plans of every device."""
    rows = call(settings, "plans", {})
    if args.json:
        output.print_json(rows)
        return 0
    if not rows:
        print("no plans")
        return 0
    table = (
        (r["id"], r["name"], r["state"], r["requester"], output.when(r["started"]),
         " ".join(f"{s['name']}:{s['state']}" for s in r["steps"]))
        for r in rows
    )  # fmt: skip
    output.print_lines(output.table(("ID", "NAME", "STATE", "BY", "STARTED", "TASKS"), table))
    return 0


def show(args: argparse.Namespace, settings: Settings) -> int:
    """Show one plan's report (``--wait``: once it ended)."""
    report = call(settings, "plan.show", {"plan": args.id})
    if args.wait:
        report = _follow(settings, report, quiet=True)
    if args.json:
        output.print_json(report)
    else:
        output.print_lines(report_lines(report))
    return 0
