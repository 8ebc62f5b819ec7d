"""``group create``, ``join`` and ``link on | off | status``.

``group create`` and ``invite`` print the invite alone on the last line of stdout, so
``INVITE=$(switchboard invite | tail -n 1)`` works (DESIGN.md §5).
"""

from __future__ import annotations

import sys

from switchboard.cli import output
from switchboard.cli.calls import call, params
from switchboard.errors import UserError
from switchboard.links.cli import options_from_args

# Seconds ``join`` waits for the daemon: a code's inviting side may ask its person first.
JOIN_TIMEOUT = 200.0

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from switchboard.config import Settings


def _group_line(verb: str, group: dict[str, Any]) -> str:
    link = group.get("link") or {}
    return f"{verb} group {group.get('name')} ({group.get('id')}) on {link.get('url')}"


def create(args: argparse.Namespace, settings: Settings) -> int:
    """Create a group on a relay; print it, then its invite alone on the last line."""
    # An agent named with --as or SWITCHBOARD_AGENT is registered on joining; the login name
    # is not, so a group does not fill up with "root" and "user" agents.
    values = params(
        agent=settings.agent, name=args.name, relay=args.relay, options=options_from_args(args)
    )
    result = call(settings, "group.create", values)
    if args.json:
        output.print_json(result)
    else:
        output.print_lines([_group_line("created", result["group"]), result["invite"]])
    return 0


def join(args: argparse.Namespace, settings: Settings) -> int:
    """Join a group from an invite given as an argument, or on stdin with ``-``."""
    token = sys.stdin.readline().strip() if args.invite == "-" else args.invite.strip()
    if not token:
        raise UserError("no invite given")
    values = params(
        invite=token, agent=settings.agent, relay=args.relay, options=options_from_args(args)
    )
    # A code waits for the inviting device, whose person may be asked first (--confirm).
    result = call(settings, "join", values, timeout=JOIN_TIMEOUT)
    if args.json:
        output.print_json(result)
    else:
        lines = [_group_line("joined", result["group"])]
        inviter = result.get("inviter")
        if inviter:
            lines.append(
                f"invited by {inviter['name']} ({inviter['device']}), "
                f"key fingerprint {inviter['fingerprint']}"
            )
        output.print_lines(lines)
    return 0


def _links(args: argparse.Namespace, settings: Settings, method: str, **extra: Any) -> int:
    links = call(settings, method, params(group=args.group, **extra))
    if args.json:
        output.print_json(links)
    elif links:
        output.print_lines(output.link_rows(links))
    else:
        print("no groups (create one with 'switchboard group create --relay URL')")
    return 0


def link_on(args: argparse.Namespace, settings: Settings) -> int:
    """Resume replication; print the links."""
    return _links(args, settings, "link.set", on=True)


def link_off(args: argparse.Namespace, settings: Settings) -> int:
    """Pause replication, keeping the configuration; print the links."""
    return _links(args, settings, "link.set", on=False)


def link_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print each link: state, lag, last push."""
    return _links(args, settings, "link.status")
