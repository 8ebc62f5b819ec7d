"""Parser entries for agents in harnesses: mcp, hook, install, uninstall, doctor; send --wait;
events sub.

``cli.parser.COMMANDS`` names the functions that add them; like the parser, this imports
nothing heavy.
"""

from __future__ import annotations

import argparse

TYPE_CHECKING = False  # no typing at run time
if TYPE_CHECKING:
    from typing import Any, Final

HARNESS_NAMES: Final = ("claude", "codex", "gemini", "antigravity", "opencode", "cursor", "pi")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text}")
    return value


def add_harness(b: Any, sub: Any) -> None:
    """Add ``mcp``, ``hook``, ``install``, ``uninstall``, ``doctor`` (``cli.parser.COMMANDS``
    adds them one by one; send and events call ``extend_send`` and ``extend_events``)."""
    add_mcp(b, sub)
    add_install(b, sub)
    add_doctor(b, sub)


def add_mcp(b: Any, sub: Any) -> None:
    """Add ``mcp`` and ``hook``."""
    p = b.command(
        sub,
        "mcp",
        "mcp:mcp",
        "run the MCP server (stdio; streamable HTTP with --http)",
        "Run the MCP server that gives an agent its Switchboard tools (whoami, register, "
        "list_agents, send, inbox, wait_for_message, reply, query_events, subscribe, "
        "unsubscribe). Harnesses start it on stdio; --http serves streamable HTTP on /mcp.",
    )
    p.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="HTTP port (default: 8765)")
    p.add_argument(
        "--json", action="store_true", help="accepted for uniformity: MCP speaks JSON-RPC anyway"
    )
    p = b.command(
        sub,
        "hook",
        "hook:hook",
        "entry point for harness hooks (JSON on stdin, JSON on stdout)",
        "Run one harness hook: read the harness's JSON payload on stdin, record what it says "
        "and print the harness's JSON answer, carrying messages for the agent. Always exits 0 "
        "with a no-op answer when something is wrong (daemon down, bad input), within "
        "SWITCHBOARD_HOOK_TIMEOUT seconds (default 2).",
    )
    p.add_argument("harness", metavar="HARNESS", help=f"one of {', '.join(HARNESS_NAMES)}")
    p.add_argument("event", metavar="EVENT", help="the harness's event name, e.g. PostToolUse")
    p.add_argument("--wait", type=_seconds, metavar="SECS", help="idle hooks: wait this long")
    p.add_argument(
        "--json", action="store_true", help="accepted for uniformity: a hook prints one JSON object"
    )


def add_install(b: Any, sub: Any) -> None:
    """Add ``install`` and ``uninstall``."""
    for name, help, description in (
        (
            "install",
            "wire Switchboard into installed harnesses (MCP server, hooks, plugins)",
            "Detect Claude Code, Codex CLI, Gemini CLI, Antigravity CLI, OpenCode, Cursor and "
            "Pi (or take the names given) and merge Switchboard's MCP server and hooks or "
            "plugin into their config files, keeping your entries and comments; what it "
            "changed is recorded in this device's data directory, not beside the files. "
            "Running it again changes nothing. --project writes files a team can commit: they "
            "run switchboard from PATH and name no path of this machine.",
        ),
        (
            "uninstall",
            "remove exactly what install added",
            "Remove Switchboard's entries (and plugin files) from the harnesses' config "
            "files, leaving everything else; a file nobody else changed gets its bytes back, "
            "files and directories install created go once nothing else is in them. Lists "
            "only what it changed or kept, and why it kept it.",
        ),
    ):
        p = b.command(sub, name, f"install:{name}", help, description)
        p.add_argument(
            "harnesses", nargs="*", metavar="HARNESS", help=f"{', '.join(HARNESS_NAMES)}"
        )
        p.add_argument(
            "--project", action="store_true", help="project-level config in this directory"
        )
        p.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
        if name == "install":
            p.add_argument(
                "--prepare",
                action="store_true",
                help="OpenCode: install its plugin dependencies now, not at its next start",
            )
            p.add_argument(
                "--trust",
                action="store_true",
                help="also record the harness's trust in our hooks (Codex: the hooks, and the "
                "project with --project), as its own review would",
            )


def add_doctor(b: Any, sub: Any) -> None:
    """Add ``doctor``."""
    p = b.command(
        sub,
        "doctor",
        "doctor:doctor",
        "check the daemon, its socket, links, clocks and harness entries; say how to fix",
        "Check that this device's daemon runs and answers, that its socket is yours alone, "
        "each group's link (state and lag), the clocks of the other devices, and that every "
        "Switchboard entry the harnesses hold (user level, and the project in this "
        "directory) runs an existing switchboard whose hooks answer, and what each harness "
        "still asks (Codex hook trust, Gemini folder trust and sign-in, Claude Code server "
        "approval). One line per check, each problem with its fix; exit status 1 when a "
        "check fails. Changes nothing and starts nothing.",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON array of {"name", "status", "detail", "fix"}',
    )


def extend_send(p: argparse.ArgumentParser) -> None:
    """Add send's ``--wait``, ``--timeout`` and ``--priority``."""
    p.add_argument(
        "--wait",
        dest="wait_for",
        choices=("delivered", "injected", "read"),
        help="wait until every recipient's device holds it (delivered), it is in the "
        "recipient agent's context (injected), or the agent acknowledged it (read)",
    )
    p.add_argument(
        "--timeout", type=_seconds, default=60.0, metavar="S", help="for --wait (default: 60)"
    )
    p.add_argument(
        "--priority", choices=("normal", "urgent"), help="urgent interrupts where it can"
    )


def extend_events(p: argparse.ArgumentParser) -> None:
    """Add events' ``sub``/``unsub``/``subs`` action, ``--file`` and ``--id``."""
    p.add_argument(
        "action",
        nargs="?",
        choices=("sub", "unsub", "subs"),
        help="sub: have matching events delivered to the acting agent; unsub: stop (--id N, "
        "or all); subs: list subscriptions",
    )
    p.add_argument("--file", metavar="GLOB", help="sub: only file edits matching GLOB")
    p.add_argument("--id", type=int, metavar="N", help="unsub: the subscription to stop")
