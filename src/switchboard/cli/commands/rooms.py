"""``room create|join|leave|invite|kick|list|members|read``."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from switchboard.cli import output
from switchboard.cli.calls import call, params
from switchboard.daemon.autostart import connect

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def _room_line(room: dict[str, Any]) -> str:
    flags = "member" if room.get("member") else "invited" if room.get("invited") else ""
    return f"#{room['name']}  {room['kind']}  {room['members']} members  {flags}".rstrip()


def _call(settings: Settings, method: str, args: argparse.Namespace, **extra: Any) -> Any:
    values = {"agent": settings.acting_agent(), "name": args.name, **extra}
    return call(settings, method, values)


def _member_rows(members: list[dict[str, Any]]) -> list[str]:
    rows = ((m.get("address"), m.get("status"), m.get("summary")) for m in members)
    return output.table(("MEMBER", "STATUS", "SUMMARY"), rows)


def create(args: argparse.Namespace, settings: Settings) -> int:
    """Create a room."""
    kind = "secret" if args.secret else "private" if args.private else "public"
    room = _call(settings, "room.create", args, kind=kind, description=args.description)
    if args.json:
        output.print_json(room)
    else:
        print(f"created {_room_line(room)}")
    return 0


def join(args: argparse.Namespace, settings: Settings) -> int:
    """Join a room and print its members."""
    result = _call(settings, "room.join", args)
    if args.json:
        output.print_json(result)
    else:
        print(f"joined {_room_line(result['room'])}")
        output.print_lines(_member_rows(result["members"]))
    return 0


def leave(args: argparse.Namespace, settings: Settings) -> int:
    """Leave a room."""
    result = _call(settings, "room.leave", args)
    if args.json:
        output.print_json(result)
    else:
        print(f"left #{args.name.removeprefix('#')}")
    return 0


def invite(args: argparse.Namespace, settings: Settings) -> int:
    """Invite an agent into a room."""
    result = _call(settings, "room.invite", args, member=args.member)
    if args.json:
        output.print_json(result)
    else:
        print(f"invited {args.member} to #{args.name.removeprefix('#')}")
    return 0


def kick(args: argparse.Namespace, settings: Settings) -> int:
    """Remove a member from a room."""
    result = _call(settings, "room.kick", args, member=args.member)
    if args.json:
        output.print_json(result)
    else:
        print(f"removed {args.member} from #{args.name.removeprefix('#')}")
    return 0


def list_rooms(args: argparse.Namespace, settings: Settings) -> int:
    """List the rooms the acting agent may see."""
    rooms = call(settings, "room.list", {"agent": settings.acting_agent()})
    if args.json:
        output.print_json(rooms)
    elif rooms:
        rows = (
            (
                f"#{r['name']}",
                r["kind"],
                r["members"],
                "yes" if r["member"] else "",
                r["description"],
            )
            for r in rooms
        )
        output.print_lines(output.table(("ROOM", "KIND", "MEMBERS", "JOINED", "ABOUT"), rows))
    else:
        print("no rooms yet")
    return 0


def members(args: argparse.Namespace, settings: Settings) -> int:
    """List a room's members with their status."""
    result = _call(settings, "room.members", args)
    if args.json:
        output.print_json(result)
    else:
        output.print_lines(_member_rows(result))
    return 0


def _emit(args: argparse.Namespace, message: dict[str, Any]) -> None:
    if args.json:
        output.print_json_line(message)
    else:
        output.print_lines(output.message_lines(message))


def read(args: argparse.Namespace, settings: Settings) -> int:
    """Print a room's messages from the reader's cursor; follow with --follow/--wait."""
    follow = args.follow or args.wait is not None
    values = params(agent=settings.acting_agent(), name=args.name, since=args.since)
    with connect(settings) as client:
        rows = client.call("room.read", {**values, **params(last=args.last)})
        for row in rows:
            _emit(args, row)
        if not rows and not follow and not args.json:
            print("no new messages")
        if follow:
            after = rows[-1]["id"] if rows else None
            stream = {**values, **params(since=after, wait=args.wait)}
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a follow: exit 0
                for message in client.stream("room.follow", stream, duration=args.wait):
                    _emit(args, message)
    return 0
