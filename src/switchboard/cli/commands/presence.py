"""``set status``, ``set summary`` and ``set visibility``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from switchboard.cli import output
from switchboard.cli.calls import call

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def _set(args: argparse.Namespace, settings: Settings, field: str, value: Any) -> int:
    agent = call(settings, "presence.set", {"agent": settings.acting_agent(), field: value})
    if args.json:
        output.print_json(agent)
    else:
        summary = f"  {agent['summary']}" if agent.get("summary") else ""
        print(f"{agent['address']}  {agent['status']}  {agent['visibility']}{summary}")
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    """Set the acting agent's status."""
    return _set(args, settings, "status", args.value)


def summary(args: argparse.Namespace, settings: Settings) -> int:
    """Set the acting agent's one-line summary."""
    return _set(args, settings, "summary", " ".join(args.value))


def visibility(args: argparse.Namespace, settings: Settings) -> int:
    """Set the acting agent's visibility."""
    return _set(args, settings, "visibility", args.value)
