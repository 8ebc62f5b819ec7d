"""The ``switchboard`` argument parser: every command, option and help text (DESIGN.md §5).

Each leaf command sets ``handler`` to ``"module:function"`` in ``switchboard.cli.commands``;
``cli.main`` imports only that module. ``COMMANDS`` names, for each top-level command, the
function that adds it; ``build_parser(command)`` builds only that one (what ``cli.main`` does
for every command it runs), ``build_parser()`` all of them, in the table's order (``--help``,
an unknown command). tests/e2e/test_cli_parsing.py checks that each command's parser is the
same either way.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from switchboard import __version__

TYPE_CHECKING = False  # no typing at run time (mypy treats TYPE_CHECKING as true)
if TYPE_CHECKING:
    from typing import Final

# Top-level command -> the function that adds it ("module:function", called with the builder
# and the subparsers; one function may add several commands, and a command named by none is
# still parsed, by the full parser). A new command is one line here.
COMMANDS: Final[dict[str, str]] = {
    "init": "switchboard.cli.parser:_add_device",
    "status": "switchboard.cli.parser:_add_device",
    "daemon": "switchboard.cli.parser:_add_device",
    "relay": "switchboard.cli.parser:_add_device",
    "group": "switchboard.cli.parser:_add_groups",
    "invite": "switchboard.cli.parser:_add_groups",
    "join": "switchboard.cli.parser:_add_groups",
    "link": "switchboard.cli.parser:_add_groups",
    "agents": "switchboard.cli.parser:_add_messages",
    "send": "switchboard.cli.parser:_add_messages",
    "inbox": "switchboard.cli.parser:_add_messages",
    "events": "switchboard.cli.parser:_add_events",
    "room": "switchboard.cli.parser_coordination:add_rooms",
    "set": "switchboard.cli.parser_coordination:add_presence",
    "thread": "switchboard.cli.parser_coordination:add_history",
    "search": "switchboard.cli.parser_coordination:add_history",
    "sent": "switchboard.cli.parser_coordination:add_history",
    "lease": "switchboard.cli.parser_coordination:add_leases",
    "mcp": "switchboard.cli.parser_harness:add_mcp",
    "hook": "switchboard.cli.parser_harness:add_mcp",
    "install": "switchboard.cli.parser_harness:add_install",
    "uninstall": "switchboard.cli.parser_harness:add_install",
    "doctor": "switchboard.cli.parser_harness:add_doctor",
    "ping": "switchboard.cli.parser:_add_device",
    "devices": "switchboard.cli.parser:_add_device",
    "discover": "switchboard.cli.parser:_add_device",
    "device": "switchboard.cli.parser:_add_device",
    "spawn": "switchboard.cli.parser_tasks:add_tasks",
    "tasks": "switchboard.cli.parser_tasks:add_tasks",
    "task": "switchboard.cli.parser_tasks:add_tasks",
    "approvals": "switchboard.cli.parser_tasks:add_tasks",
    "approve": "switchboard.cli.parser_tasks:add_tasks",
    "deny": "switchboard.cli.parser_tasks:add_tasks",
    "handoff": "switchboard.cli.parser_tasks:add_handoff",
    "resume": "switchboard.cli.parser_tasks:add_resume",
    "fork": "switchboard.cli.parser_tasks:add_resume",
    "transcript": "switchboard.cli.parser_transcripts:add_transcript",
    "file": "switchboard.cli.parser_files:add_files",
    "files": "switchboard.cli.parser_files:add_files",
    "run": "switchboard.cli.parser_tasks:add_plans",
    "plans": "switchboard.cli.parser_tasks:add_plans",
    "plan": "switchboard.cli.parser_tasks:add_plans",
    "term": "switchboard.cli.parser_term:add_term",
}

# config.DEFAULT_RELAY_PORT, repeated so that `--help` need not import config (a test checks
# that they agree).
DEFAULT_RELAY_PORT: Final = 7787

DESCRIPTION: Final = (
    "Coding agents on one machine or many find each other, talk and watch each other's work. "
    "Every command talks to this device's daemon and starts it when needed."
)
EPILOG: Final = (
    "Environment: SWITCHBOARD_HOME selects the data directory (one daemon per home), "
    "SWITCHBOARD_AGENT the acting agent. Exit status: 0 ok, 1 error (one line on stderr), "
    "2 usage error. Run 'switchboard COMMAND --help' for a command's options."
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text}")
    return value


def _duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h``: seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    scale = units.get(text[-1:].lower(), 1.0)
    number = text[:-1] if text[-1:].lower() in units else text
    return _seconds(number) * scale


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0-65535")
    return value


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized as it sizes itself but without importing shutil (bz2, lzma,
    fnmatch): every ``add_argument`` makes one, so every command would pay for it."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24) -> None:
        # shutil.get_terminal_size(): $COLUMNS, else the terminal's width, else 80.
        try:
            columns = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                columns = 0
        super().__init__(prog, indent_increment, max_help_position, (columns or 80) - 2)


def _common_options() -> argparse.ArgumentParser:
    # SUPPRESS keeps a leaf's unset option from overwriting the same option given before the
    # command name: both `switchboard --as luna send ...` and `switchboard send --as luna ...`.
    common = argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
    common.add_argument(
        "--as",
        dest="as_agent",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="act as agent NAME (default: $SWITCHBOARD_AGENT, else your login name)",
    )
    common.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="data directory of this device (default: $SWITCHBOARD_HOME, else the user data dir)",
    )
    return common


class _Builder:
    """Adds commands with the shared options, handler and help conventions."""

    def __init__(self) -> None:
        self.common = _common_options()

    def group(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
    ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = sub.add_parser(
            name, help=help, description=help, allow_abbrev=False, formatter_class=_Formatter
        )
        # An explicit prog spares argparse formatting the parent's usage for every group.
        return parser.add_subparsers(
            dest=f"{name}_command", metavar="COMMAND", required=True, prog=parser.prog
        )

    def command(
        self,
        sub: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: str,
        help: str,
        description: str | None = None,
        *,
        usage: str | None = None,
    ) -> argparse.ArgumentParser:
        parser = sub.add_parser(
            name,
            help=help,
            description=description or help,
            usage=usage,
            parents=[self.common],
            allow_abbrev=False,
            formatter_class=_Formatter,
        )
        parser.set_defaults(handler=handler, command_parser=parser)
        return parser


def _json_flag(parser: argparse.ArgumentParser, what: str = "a JSON array") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what}")


def _group_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", metavar="G", help="only the group with this name or id")


def _add_device(b: _Builder, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = b.command(
        sub,
        "init",
        "device:init",
        "create this device's identity (idempotent); print its ids",
        "Create this device's identity if it has none (running it again changes nothing, "
        "except the name with --name) and print the device's short id and full id.",
    )
    p.add_argument("--name", metavar="NAME", help="a name for this device (default: host name)")
    p = b.command(
        sub,
        "status",
        "device:status",
        "show the device, daemon, groups, links and agents",
    )
    _json_flag(p, "one JSON object")
    p = b.command(
        sub,
        "devices",
        "device:devices",
        "list the group's devices: name, short id, key fingerprint, last seen, link",
    )
    _json_flag(p)
    forget = b.group(sub, "device", "manage the group's devices: forget a lost one")
    p = b.command(
        forget,
        "forget",
        "device:forget",
        "remove a device from the group and rotate the group's keys",
        "Remove a device from the group: the group's secret is replaced, so it can read "
        "nothing written afterwards, the relay refuses it, and the other devices drop what it "
        "writes. The remaining devices switch to the new key, also those offline now (on "
        "their return). DEV is the device's short id, its name or its full id.",
    )
    p.add_argument("device", metavar="DEV", help="the device: short id (BOXE), name or id")
    p.add_argument(
        "--timeout", type=_seconds, default=10.0, metavar="SECS",
        help="seconds to wait for the relay (default: 10)",
    )  # fmt: skip
    _json_flag(p, "one JSON object")
    p = b.command(
        sub,
        "ping",
        "device:ping",
        "time the round trip to another device through the group's link",
        "Send a ping to another device of a group over its link's directed channel (sealed, "
        "never stored) and print how long the answer took. DEV is the device's short id, its "
        "name or its full id.",
    )
    p.add_argument("device", metavar="DEV", help="the device: short id (BOXE), name or id")
    p.add_argument(
        "--count", type=_positive_int, default=1, metavar="N", help="round trips (default: 1)"
    )
    p.add_argument(
        "--interval",
        type=_seconds,
        default=0.2,
        metavar="SECS",
        help="pause between round trips (default: 0.2)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="SECS",
        help="how long each round trip may take (default: 5)",
    )
    _json_flag(p, "one JSON object: device, id, name, link, rtt_ms, min_ms, avg_ms, max_ms")

    daemon = b.group(sub, "daemon", "run, start, stop or inspect this device's daemon")
    p = b.command(
        daemon,
        "run",
        "daemon:run",
        "run the daemon in the foreground (until Ctrl-C or SIGTERM)",
    )
    _json_flag(p, 'one JSON object, {"stopped": true, "pid": ...}, when it stops')
    b.command(daemon, "start", "daemon:start", "start the daemon in the background")
    p = b.command(daemon, "stop", "daemon:stop", "stop the background daemon")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECS",
        help="how long to wait for it to stop (default: 10)",
    )
    p = b.command(daemon, "status", "daemon:status", "say whether the daemon runs, and its pid")
    _json_flag(p, '{"running": ..., "pid": ..., "socket": ...}')

    relay = b.group(sub, "relay", "run a standalone relay for a group's devices")
    p = b.command(
        relay,
        "serve",
        "relay:serve",
        "run a relay in the foreground (until Ctrl-C)",
        "Run a relay in the foreground. It stores and forwards sealed envelopes for the "
        "groups whose devices connect to it, and can read none of them.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_RELAY_PORT,
        help=f"port to listen on (default: {DEFAULT_RELAY_PORT})",
    )
    p.add_argument("--data", metavar="DIR", help="the relay's store (default: HOME/relay)")
    p.add_argument(
        "--announce",
        action="store_true",
        help="announce the relay on the LAN (mDNS: its name, id and key fingerprint)",
    )
    p.add_argument("--name", help="the name it announces (default: the host name)")
    _json_flag(p, 'the listening line as one JSON object, {"url": ..., "id": ...}')

    p = b.command(
        sub,
        "discover",
        "pairing:discover",
        "list relays and devices announcing themselves on the LAN",
    )
    p.add_argument(
        "--wait",
        type=_seconds,
        default=2.0,
        metavar="SECS",
        help="how long to listen (default: 2)",
    )
    _json_flag(p)


def _add_groups(b: _Builder, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from switchboard.links.cli import add_link_flags  # noqa: PLC0415 - only these commands

    group = b.group(sub, "group", "create a group")
    p = b.command(
        group,
        "create",
        "group:create",
        "create a group on a relay; print its invite on the last line",
        "Create a group on a relay and print its invite alone on the last line of output, "
        "so INVITE=$(switchboard group create ... | tail -n 1) works.",
    )
    p.add_argument("--name", metavar="N", help="the group's name (default: default)")
    p.add_argument(
        "--relay",
        metavar="URL",
        help="where the group meets: ws://HOST:PORT (relay), mqtt[s]://HOST:PORT, "
        "mqtt-public, or nats://HOST:PORT[,HOST:PORT...]",
    )
    add_link_flags(p)

    p = b.command(
        sub,
        "invite",
        "pairing:invite",
        "print an invite for a group, alone on the last line; invite list | revoke ID",
        "Print an invite alone on the last line: the long token (default), or a short code "
        "that expires (--code 7-ember-violet, --words, --qr, --link). 'invite list' shows "
        "the open ones, 'invite revoke ID' ends one.",
    )
    p.add_argument("action", nargs="?", choices=("list", "revoke"), help="list or revoke")
    p.add_argument("id", nargs="?", metavar="ID", help="the invite to revoke")
    kinds = p.add_mutually_exclusive_group()
    for kind, help in (
        ("code", "a short code, 7-ember-violet"),
        ("words", "a phrase of four common words"),
        ("qr", "a QR code drawn in the terminal (it holds the link)"),
        ("link", "a switchboard://join link (the code and its relay)"),
    ):
        kinds.add_argument(f"--{kind}", dest="kind", action="store_const", const=kind, help=help)
    p.add_argument(
        "--ttl", type=_duration, default=600.0, metavar="T", help="expires after T (default 10m)"
    )
    p.add_argument("--uses", type=int, default=1, metavar="N", help="devices it admits (1)")
    p.add_argument(
        "--confirm", action="store_true", help="ask before admitting each joining device"
    )
    p.add_argument(
        "--relay",
        metavar="URL",
        help="the relay where the code meets (default: the group's relay, or [pairing] relay)",
    )
    _group_flag(p)
    _json_flag(p, "the invite as a JSON object")
    p = b.command(sub, "join", "group:join", "join a group from an invite")
    p.add_argument(
        "invite",
        metavar="INVITE",
        help="the token, code, phrase or link; '-' reads it from stdin (keeps it off ps)",
    )
    p.add_argument(
        "--relay",
        metavar="URL|NAME",
        help="where a code meets: a relay URL, or the name or id of one 'discover' shows",
    )
    add_link_flags(p)

    link = b.group(sub, "link", "pause, resume or inspect replication")
    for name, help in (
        ("on", "resume replication (all groups, or --group)"),
        ("off", "pause replication, keeping the group's configuration"),
        ("status", "show each link: state, lag, last push"),
    ):
        p = b.command(link, name, f"group:link_{name}", help)
        _group_flag(p)
        _json_flag(p)


def _add_messages(b: _Builder, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from switchboard.cli import parser_harness  # noqa: PLC0415 - send's harness options

    p = b.command(
        sub,
        "agents",
        "messages:agents",
        "list the agents of every device: address, status, harness, directory, last seen",
    )
    _json_flag(p)
    p = b.command(
        sub,
        "send",
        "messages:send",
        "send a message: send TARGET... -- TEXT (or the text on stdin, or --file PATH)",
        "Send a message and print, per recipient, whether it was delivered or queued (the "
        "recipient's device is offline). TARGET is @name, @name:DEV, #room, +tag (every agent "
        "with that tag) or @all. Put the text after '--'; without '--', the words after the "
        "targets are the text. The text '-', or no text while stdin is a pipe or a file, reads "
        "it from stdin; --file PATH reads it from a file (multi-line code and logs need no "
        "quoting).",
        usage="%(prog)s [-h] [--as NAME] [--home DIR] [--thread ID] [--reply-to ID] "
        "[--intent {request,inform,ack}] [--priority {normal,urgent}] "
        "[--wait {delivered,injected,read}] [--timeout S] [--file PATH] [--json] "
        "TARGET... [-- TEXT | -]",
    )
    p.add_argument(
        "targets", nargs="+", metavar="TARGET", help="@name, @name:DEV, #room, +tag or @all"
    )
    p.add_argument(
        "--file", metavar="PATH", help="send the contents of this file as the text ('-': stdin)"
    )
    p.add_argument("--thread", metavar="ID", help="reply in this thread")
    p.add_argument("--reply-to", metavar="ID", help="answer message ID (joins its thread)")
    p.add_argument(
        "--intent",
        choices=("request", "inform", "ack"),
        help="request: you are told if a recipient goes idle or offline without replying",
    )
    _json_flag(p, "the send result as JSON")
    parser_harness.extend_send(p)
    p = b.command(
        sub,
        "inbox",
        "messages:inbox",
        "show the acting agent's unread messages and mark them read",
    )
    p.add_argument(
        "--wait",
        type=_seconds,
        metavar="SECS",
        help="if there are none, wait up to SECS for one to arrive",
    )
    p.add_argument("--peek", action="store_true", help="don't mark the messages read")
    _json_flag(p)


def _add_events(b: _Builder, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from switchboard.cli import parser_harness  # noqa: PLC0415 - events' sub/unsub

    p = b.command(
        sub,
        "events",
        "events:events",
        "query or follow the event log",
        "Query the event log, or follow it as events are stored (--follow, --wait). --where "
        "is read-only SQL over the view events_view(id, ts, type, agent, device, origin, seq, "
        "data, display_data). data names agents by internal address (name:<full device id>); "
        "display_data is data with display addresses (name:DEV), and display(TEXT) does the "
        "same to any text: --where \"display_data LIKE '%nova:ABCD%'\".",
    )
    p.add_argument("--type", metavar="T", help="only events of this type, e.g. message_posted")
    p.add_argument("--agent", metavar="A", help="only events by this agent (name or name:DEV)")
    p.add_argument("--where", metavar="SQL", help="only events matching this SQL condition")
    p.add_argument("--last", type=_positive_int, metavar="N", help="only the last N events")
    p.add_argument("--follow", action="store_true", help="keep printing new events (Ctrl-C ends)")
    p.add_argument(
        "--wait", type=_seconds, metavar="SECS", help="follow for SECS seconds, then exit 0"
    )
    _json_flag(p, "JSON Lines: one event object a line")
    parser_harness.extend_events(p)


def _leaves(
    parser: argparse.ArgumentParser,
) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_leaves(sub) or [sub])
    return found


def _json_everywhere(parser: argparse.ArgumentParser) -> None:
    # Every command takes --json and then prints exactly one JSON value (listings an array,
    # actions an object; the followers print JSON Lines). Commands whose result is more than
    # "done" add their own flag with a better help text; the rest get this one.
    for leaf in _leaves(parser):
        if "--json" not in leaf._option_string_actions:
            _json_flag(leaf, "the result as one JSON object")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the ``switchboard`` parser: with every command, or only with ``command`` (and
    the commands its ``COMMANDS`` function adds with it) when the table names it."""
    builder = _Builder()
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[builder.common],
        allow_abbrev=False,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"switchboard {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, prog="switchboard"
    )
    chosen = [COMMANDS[command]] if command in COMMANDS else COMMANDS.values()
    for where in dict.fromkeys(chosen):  # each function once, in the table's order
        module, function = where.split(":")
        getattr(importlib.import_module(module), function)(builder, sub)
    _json_everywhere(parser)
    return parser
