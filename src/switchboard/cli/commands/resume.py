"""``resume AGENT`` and ``fork AGENT --dir PATH``: a stopped agent's harness session continued."""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchboard.cli import output
from switchboard.cli.calls import call, params

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def resume(args: argparse.Namespace, settings: Settings) -> int:
    """Resume the agent's last session; print its task (or why it did not start)."""
    values = params(agent=settings.acting_agent(), who=args.who, on=args.on,
                    terminal=args.terminal)  # fmt: skip
    return _report(args, call(settings, "resume", values, timeout=60.0))


def fork(args: argparse.Namespace, settings: Settings) -> int:
    """Fork the agent's last session into a new agent; print its task."""
    values = params(agent=settings.acting_agent(), who=args.who, on=args.on, dir=args.dir,
                    name=args.name, terminal=args.terminal)  # fmt: skip
    return _report(args, call(settings, "fork", values, timeout=60.0))


def _report(args: argparse.Namespace, result: dict[str, object]) -> int:
    if args.json:
        output.print_json(result)
    elif result["state"] == "running":
        print(
            f"{result['how']} of {args.who} (session {result['session']}) runs as "
            f"{result['agent']} (task {result['id']}, {result['messages']} message(s))"
        )
    else:
        print(f"{result['how']} {result['state']}: {result['reason']}")
    return 0 if result["state"] == "running" else 1
