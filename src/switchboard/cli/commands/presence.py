"""``set status``, ``set summary``, ``set tags`` and ``set visibility``."""

from __future__ import annotations

from switchboard.cli import output
from switchboard.cli.calls import call

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from switchboard.config import Settings


def _set(
    args: argparse.Namespace, settings: Settings, field: str, value: Any, method: str = ""
) -> int:
    values = {"agent": settings.acting_agent(), field: value}
    agent = call(settings, method or "presence.set", values)
    if args.json:
        output.print_json(agent)
    else:
        tags = "".join(f"  +{tag}" for tag in agent.get("tags") or [])
        summary = f"  {agent['summary']}" if agent.get("summary") else ""
        print(f"{agent['address']}  {agent['status']}  {agent['visibility']}{tags}{summary}")
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    """Set the acting agent's status."""
    return _set(args, settings, "status", args.value)


def summary(args: argparse.Namespace, settings: Settings) -> int:
    """Set the acting agent's one-line summary."""
    return _set(args, settings, "summary", " ".join(args.value))


def tags(args: argparse.Namespace, settings: Settings) -> int:
    """Set (replace) the acting agent's tags, or clear them with ``--clear``."""
    if not args.value and not args.clear:
        args.command_parser.error("give tags (set tags backend,db) or --clear")
    if args.value and args.clear:
        args.command_parser.error("give tags or --clear, not both")
    return _set(args, settings, "tags", [] if args.clear else list(args.value), "tags.set")


def visibility(args: argparse.Namespace, settings: Settings) -> int:
    """Set the acting agent's visibility."""
    return _set(args, settings, "visibility", args.value)
