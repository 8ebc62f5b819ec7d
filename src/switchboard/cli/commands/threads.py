"""``thread show``, ``search`` and ``sent`` (the inbox's grouping by thread is in output.py)."""

from __future__ import annotations

from switchboard.cli import output
from switchboard.cli.calls import call, params

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from switchboard.config import Settings


def _print_messages(args: argparse.Namespace, messages: list[dict[str, Any]], empty: str) -> None:
    if args.json:
        output.print_json(messages)
    elif messages:
        for message in messages:
            output.print_lines(output.message_lines(message))
    else:
        print(empty)


def show(args: argparse.Namespace, settings: Settings) -> int:
    """Print a thread's messages."""
    messages = call(settings, "thread.show", {"agent": settings.acting_agent(), "id": args.id})
    _print_messages(args, messages, "no messages")
    return 0


def search(args: argparse.Namespace, settings: Settings) -> int:
    """Print the messages matching a query, best first."""
    values = params(
        agent=settings.acting_agent(),
        query=" ".join(args.query),
        room=args.room,
        sender=args.agent,
        limit=args.limit,
    )
    _print_messages(args, call(settings, "search", values), "no match")
    return 0


def sent(args: argparse.Namespace, settings: Settings) -> int:
    """Print the acting agent's sent messages with each recipient's receipt state."""
    messages = call(settings, "sent", {"agent": settings.acting_agent(), "last": args.last})
    if args.json:
        output.print_json(messages)
        return 0
    if not messages:
        print("nothing sent yet")
    for message in messages:
        output.print_lines(output.message_lines(message))
        states = [f"{r['address']} {r['state']}" for r in message.get("recipients") or []]
        print("  -> " + (", ".join(states) or "(no recipients)"))
    return 0
