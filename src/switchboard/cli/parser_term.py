"""Parser entry of ``term``: an agent's terminal screen, and typing into it.

``cli.parser.build_parser`` calls ``add_term``; like the parser, this imports nothing heavy.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no typing at run time (mypy treats TYPE_CHECKING as true)
if TYPE_CHECKING:
    from typing import Any

# daemon/term.py MAX_SCROLLBACK, repeated so the parser need not import the daemon.
MAX_SCROLLBACK = 10_000


def _lines(text: str) -> int:
    import argparse  # noqa: PLC0415 - already imported by the parser

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= MAX_SCROLLBACK:
        raise argparse.ArgumentTypeError(f"expected 0 to {MAX_SCROLLBACK}")
    return value


def add_term(b: Any, sub: Any) -> None:
    """Add ``term``."""
    p = b.command(
        sub,
        "term",
        "term:term",
        "print an agent's terminal screen, or type into it",
        "Print the screen of an agent that runs in a tmux pane Switchboard knows (a spawn "
        "--terminal task, or an agent whose hooks run inside tmux), here or on another "
        "device. With --type, --enter or --key, type into it instead: locally, or on another "
        "device only where its policy allows this device (spawn allow DEV --term-type AGENT "
        "there; by default no other device may type, and reads only the tasks it started). "
        "Every typing is an event (terminal_typed) in the log, with the text unless --secret.",
        usage="%(prog)s AGENT [--lines N] [--json] | AGENT [--type TEXT|-] [--enter] "
        "[--key KEY] [--secret]",
    )
    p.add_argument("target", metavar="AGENT", help="name (this device's) or name:DEV")
    p.add_argument("--lines", type=_lines, default=0, metavar="N",
                   help="also N lines of scrollback above the screen")  # fmt: skip
    p.add_argument("--type", dest="text", metavar="TEXT",
                   help="type TEXT literally (one line; '-' reads it from stdin)")  # fmt: skip
    p.add_argument("--enter", action="store_true", help="press Enter after the text")
    p.add_argument("--key", dest="keys", action="append", default=[], metavar="KEY",
                   help="then press a named key (Escape, C-c ...; repeatable)")  # fmt: skip
    p.add_argument("--secret", action="store_true",
                   help="keep the typed text out of the log (its length is recorded)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
