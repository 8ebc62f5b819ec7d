"""Parser entries of the coordination commands: room, set, thread, search, sent, lease.

``cli.parser.COMMANDS`` names the functions that add them; like the parser, this imports
nothing heavy, so building it stays cheap.
"""

from __future__ import annotations

import argparse
import re

TYPE_CHECKING = False  # no typing at run time
if TYPE_CHECKING:
    from typing import Any, Final

_DURATION: Final = r"(\d+(?:\.\d+)?)([smhd]?)"  # compiled by re on first use
_UNITS: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
Sub = "argparse._SubParsersAction[argparse.ArgumentParser]"


def duration(text: str) -> float:
    """Parse ``90``, ``90s``, ``30m``, ``2h`` or ``1d`` into seconds."""
    match = re.fullmatch(_DURATION, text.strip().lower())
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 30m, 2h or 90s, got {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def whole(text: str) -> int:
    """Parse a whole number of at least 1 (``#42`` allowed, for message ids)."""
    try:
        value = int(text.removeprefix("#"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _json(parser: argparse.ArgumentParser, what: str = "a JSON array") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what}")


def add_coordination(b: Any, sub: Any) -> None:
    """Add ``room``, ``set``, ``thread``, ``search``, ``sent`` and ``lease`` to ``sub``
    (``cli.parser.COMMANDS`` adds them one by one)."""
    add_rooms(b, sub)
    add_presence(b, sub)
    add_history(b, sub)
    add_leases(b, sub)


def add_rooms(b: Any, sub: Any) -> None:
    """Add ``room``."""
    room = b.group(sub, "room", "create, join, read and manage rooms")
    p = b.command(
        room,
        "create",
        "rooms:create",
        "create a room (public unless --private or --secret); you are its first member",
        "Create a room. public: listed, anyone joins and reads; private: listed, join by "
        "invitation, members read; secret: invisible to non-members, join by invitation.",
    )
    p.add_argument("name", metavar="NAME", help="the room's name (without #)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--private", action="store_true", help="join by invitation, members read")
    kind.add_argument("--secret", action="store_true", help="like --private, and unlisted")
    p.add_argument("--description", metavar="TEXT", default="", help="what the room is for")
    _json(p, "the room as JSON")
    p = b.command(room, "join", "rooms:join", "join a room; print its members and their status")
    p.add_argument("name", metavar="NAME", help="the room")
    _json(p, '{"room": ..., "members": [...]}')
    p = b.command(room, "leave", "rooms:leave", "leave a room")
    p.add_argument("name", metavar="NAME", help="the room")
    for verb, help in (
        ("invite", "invite an agent into a room (members invite)"),
        ("kick", "remove a member and its invitation (the room's creator only)"),
    ):
        p = b.command(room, verb, f"rooms:{verb}", help)
        p.add_argument("name", metavar="NAME", help="the room")
        p.add_argument("member", metavar="AGENT", help="@name or name:DEV")
    p = b.command(room, "list", "rooms:list_rooms", "list the rooms you may see")
    _json(p)
    p = b.command(room, "members", "rooms:members", "list a room's members with their status")
    p.add_argument("name", metavar="NAME", help="the room")
    _json(p)
    p = b.command(
        room,
        "read",
        "rooms:read",
        "read a room from where you left off (or --last N, --since ID); --follow keeps reading",
        "Print a room's messages from your cursor (where your last read stopped) and move the "
        "cursor; --last N shows the last N, --since ID those after message ID; --follow (or "
        "--wait SECS) keeps printing new ones.",
    )
    p.add_argument("name", metavar="NAME", help="the room")
    p.add_argument("--last", type=whole, metavar="N", help="only the last N messages")
    p.add_argument("--since", type=whole, metavar="ID", help="messages after message ID")
    p.add_argument("--follow", action="store_true", help="keep printing new messages")
    p.add_argument("--wait", type=duration, metavar="SECS", help="follow for SECS, then exit 0")
    _json(p, "JSON Lines: one message object a line")


def add_presence(b: Any, sub: Any) -> None:
    """Add ``set``."""
    group = b.group(sub, "set", "set your status, summary, tags or visibility")
    p = b.command(
        group, "status", "presence:status", "set your status: active, idle, busy or offline"
    )
    p.add_argument("value", metavar="STATUS", choices=("active", "idle", "busy", "offline"))
    _json(p, "the agent as JSON")
    p = b.command(group, "summary", "presence:summary", "set the one line on what you work on")
    p.add_argument("value", metavar="TEXT", nargs="+", help="the summary")
    _json(p, "the agent as JSON")
    p = b.command(
        group,
        "tags",
        "presence:tags",
        "set your tags (replacing them): set tags backend,db; send +backend reaches you",
    )
    p.add_argument("value", metavar="TAG", nargs="*", help="tags, space- or comma-separated")
    p.add_argument("--clear", action="store_true", help="remove all your tags")
    _json(p, "the agent as JSON")
    p = b.command(
        group,
        "visibility",
        "presence:visibility",
        "visible (listed), hidden (reachable by exact address) or ghost (neither)",
    )
    p.add_argument("value", metavar="LEVEL", choices=("visible", "hidden", "ghost"))
    _json(p, "the agent as JSON")


def add_history(b: Any, sub: Any) -> None:
    """Add ``thread``, ``search`` and ``sent``."""
    thread = b.group(sub, "thread", "show conversation threads")
    p = b.command(thread, "show", "threads:show", "show a thread: a message id or a thread id")
    p.add_argument("id", metavar="ID", help="a message's id (42) or a thread id")
    _json(p)
    p = b.command(
        sub,
        "search",
        "threads:search",
        'search the messages you may see (words, "a phrase", prefix*)',
    )
    p.add_argument("query", metavar="QUERY", nargs="+", help="words; quote a phrase")
    p.add_argument("--room", metavar="NAME", help="only messages to this room")
    p.add_argument("--agent", metavar="ADDR", help="only messages from @name or name:DEV")
    p.add_argument("--limit", type=whole, default=50, metavar="N", help="at most N (default 50)")
    _json(p)
    p = b.command(
        sub, "sent", "threads:sent", "show your sent messages and each recipient's receipt state"
    )
    p.add_argument("--last", type=whole, default=20, metavar="N", help="the last N (default 20)")
    _json(p)


def add_leases(b: Any, sub: Any) -> None:
    """Add ``lease``."""
    lease = b.group(sub, "lease", "announce the files you work on (file leases)")
    p = b.command(
        lease,
        "acquire",
        "leases:acquire",
        "lease paths or globs of this repository; refused if another agent holds them exclusively",
    )
    p.add_argument("paths", metavar="PATH_OR_GLOB", nargs="+", help="relative to here")
    p.add_argument(
        "--ttl", type=duration, default=1800.0, metavar="DURATION", help="e.g. 30m (default)"
    )
    p.add_argument("--reason", metavar="TEXT", default="", help="what you are doing")
    p.add_argument("--exclusive", action="store_true", help="nobody else may lease them")
    _json(p, "the result as JSON")
    p = b.command(lease, "release", "leases:release", "release your leases (all, or PATHs)")
    p.add_argument("paths", metavar="PATH_OR_GLOB", nargs="*", help="only these")
    p = b.command(lease, "list", "leases:list_leases", "list active leases of this repository")
    p.add_argument(
        "--all", action="store_true", help="every repository, with expired and released ones"
    )
    _json(p)
    p = b.command(
        lease,
        "check",
        "leases:check",
        "fail if paths are leased exclusively by another agent (the pre-commit hook runs it)",
        "Exit 1 naming the holders if any path is leased exclusively by another agent. "
        "--staged checks the files staged for commit. SWITCHBOARD_LEASE_OVERRIDE=1 skips it.",
    )
    p.add_argument("paths", metavar="PATH", nargs="*", help="paths to check")
    p.add_argument("--staged", action="store_true", help="check the files staged for commit")
    hook = b.group(lease, "git-hook", "manage the git pre-commit hook that checks leases")
    p = b.command(
        hook,
        "install",
        "leases:hook_install",
        "add a pre-commit hook that blocks commits of paths others lease exclusively",
    )
    p.add_argument("--force", action="store_true", help="replace an existing pre-commit hook")
