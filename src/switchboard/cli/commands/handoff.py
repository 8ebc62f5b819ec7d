"""``handoff AGENT --to DEV``: a successor on another device takes the agent's work over."""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchboard.cli import output
from switchboard.cli.calls import call, params

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def handoff(args: argparse.Namespace, settings: Settings) -> int:
    """Hand the agent over; print the successor (or why the target refused)."""
    values = params(
        agent=settings.acting_agent(), who=args.who, to=args.to, dir=args.dir,
        harness=args.harness, name=args.name, note=args.note,
    )  # fmt: skip
    result = call(settings, "handoff", values, timeout=120.0)
    if args.json:
        output.print_json(result)
    elif result["state"] == "running":
        print(f"{args.who} handed off to {result['successor']} (task {result['id']})")
        if result["applied"]:
            print(f"changes applied on {result['device']}:\n{result['applied'].rstrip()}")
    else:
        print(f"handoff {result['state']} on {result['device']}: {result['reason']}")
    return 0 if result["state"] == "running" else 1
