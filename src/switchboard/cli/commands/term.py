"""``term AGENT``: print an agent's terminal screen; with ``--type``/``--enter``/``--key``,
type into it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from switchboard.cli import output
from switchboard.cli.calls import call

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def term(args: argparse.Namespace, settings: Settings) -> int:
    """Print the screen, or type and say what was typed."""
    agent = settings.acting_agent()
    keys = [*args.keys, *(["Enter"] if args.enter else [])]
    if args.text is None and not keys:
        if args.secret:
            args.command_parser.error("--secret goes with --type")
        screen = call(settings, "term.read", {"agent": agent, "target": args.target,
                                              "lines": args.lines})  # fmt: skip
        if args.json:
            output.print_json(screen)
        else:
            lines = list(screen["lines"])
            while lines and not lines[-1].strip():
                lines.pop()
            output.print_lines(lines)
        return 0
    text = args.text or ""
    if text == "-":  # from stdin, so a secret need not be on the command line
        text = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    done = call(settings, "term.type", {"agent": agent, "target": args.target, "text": text,
                                        "keys": keys, "secret": args.secret})  # fmt: skip
    if args.json:
        output.print_json(done)
        return 0
    pressed = "".join(f" + {key}" for key in done["keys"])
    print(f"typed {done['typed']} characters{pressed} into {done['agent']}")
    return 0
