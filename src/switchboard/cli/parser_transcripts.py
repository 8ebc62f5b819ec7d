"""Parser entry of ``transcript``: read, search, and who may read this device's transcripts.

``transcript AGENT`` reads; ``transcript search PATTERN``, ``transcript allow DEV`` and
``transcript deny DEV`` are the same command with a verb first (an agent named like a verb
is read as ``@search``). Like the parser, this imports nothing heavy.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no typing at run time
if TYPE_CHECKING:
    from typing import Any

#: The words ``transcript`` takes as a verb instead of an agent.
VERBS = ("search", "allow", "deny")


def add_transcript(b: Any, sub: Any) -> None:
    """Add ``transcript``."""
    from switchboard.cli.parser import _json_flag, _positive_int, _seconds  # noqa: PLC0415

    p = b.command(
        sub,
        "transcript",
        "transcripts:transcript",
        "read an agent's conversation from its harness's transcript, numbered by exchange",
        "Read an agent's conversation from its harness's own transcript files (Claude Code, "
        "Codex, Gemini CLI, OpenCode, Pi), numbered by exchange so messages can cite "
        "AGENT#12: its last N exchanges, summarised unless --full. An agent of another "
        "device is read there, over the directed channel, if that device lets this one "
        "(transcript allow on that device); transcripts never enter the log. 'transcript "
        "search PATTERN [--agent A]' finds text in this device's agents' transcripts (or "
        "A's); 'transcript allow DEV [--agent GLOB]' lets device DEV read the transcripts "
        "of this device's agents (all, or GLOB's); 'transcript deny DEV' takes it back.",
        usage="%(prog)s [-h] [--as NAME] [--home DIR] [--last N | --all] [--before N]\n"
        "                              [--full] [--session ID] [--json] AGENT\n"
        "       %(prog)s search PATTERN [--agent A] [--limit N] [--json]\n"
        "       %(prog)s allow DEV [--agent GLOB]...\n"
        "       %(prog)s deny DEV",
    )
    p.add_argument("target", metavar="AGENT", help="the agent (name, @name, name:DEV), or a verb")
    p.add_argument("arg", metavar="ARG", nargs="?", help="search: PATTERN; allow, deny: DEV")
    p.add_argument(
        "--last", type=_positive_int, default=20, metavar="N", help="the last N (default 20)"
    )
    p.add_argument("--all", action="store_true", help="every exchange (up to 500)")
    p.add_argument("--before", type=_positive_int, metavar="N", help="only exchanges before #N")
    p.add_argument("--full", action="store_true", help="whole texts and tool outputs")
    p.add_argument("--session", metavar="ID", help="that harness session (default: the latest)")
    p.add_argument(
        "--agent",
        metavar="A",
        action="append",
        default=[],
        help="search: only this agent; allow: agents (globs) DEV may read (default: all)",
    )
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="search: hits")
    p.add_argument(
        "--timeout", type=_seconds, default=30.0, metavar="SECS", help="for another device"
    )
    _json_flag(p, "JSON: the transcript (agent, harness, session, total, exchanges) or hits")
