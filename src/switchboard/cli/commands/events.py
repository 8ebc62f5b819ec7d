"""``events``: query the log, or follow it; ``--json`` prints JSON Lines."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from switchboard.cli import output
from switchboard.cli.calls import params
from switchboard.daemon.autostart import connect
from switchboard.daemon.client import Client

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def _emit(args: argparse.Namespace, event: dict[str, Any]) -> None:
    if args.json:
        output.print_json_line(event)
    else:
        print(output.event_line(event), flush=True)


def events(args: argparse.Namespace, settings: Settings) -> int:
    """Print matching events; with ``--follow`` or ``--wait``, keep printing new ones."""
    if getattr(args, "action", None):  # events sub|unsub|subs (cli/commands/deliveries.py)
        from switchboard.cli.commands import deliveries  # noqa: PLC0415

        return deliveries.subscriptions(args, settings)
    follow = args.follow or args.wait is not None
    # The acting agent reads: events of rooms it may not read are left out (issue #4).
    reader = settings.acting_agent()
    filters = params(type=args.type, agent=args.agent, where=args.where, reader=reader)
    with connect(settings) as client:
        if not follow:
            for row in client.call("events", {**filters, **params(last=args.last)}):
                _emit(args, row)
            return 0
        # Ctrl-C is how a follow ends, also while its --last rows are still printing: exit 0.
        with contextlib.suppress(KeyboardInterrupt):
            after = None
            if args.last is not None:
                rows = client.call("events", {**filters, **params(last=args.last)})
                for row in rows:
                    _emit(args, row)
                # Follow on from the last one shown; none matched so far means all new match.
                after = rows[-1]["id"] if rows else 0
            _follow(args, client, params(**filters, after=after, wait=args.wait))
    return 0


def _follow(args: argparse.Namespace, client: Client, values: dict[str, Any]) -> None:
    for event in client.stream("events.follow", values, duration=args.wait):
        _emit(args, event)
