"""``agents``, ``send`` and ``inbox``."""

from __future__ import annotations

import os
import sys

from switchboard.cli import output
from switchboard.cli.calls import call, params
from switchboard.daemon.client import DEFAULT_CALL_TIMEOUT

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def agents(args: argparse.Namespace, settings: Settings) -> int:
    """List the agents of every device."""
    result = call(settings, "agents")
    if args.json:
        output.print_json(result)
    elif result:
        output.print_lines(output.agent_rows(result))
    else:
        print("no agents yet")
    return 0


def _read_text(source: str) -> str:
    """The message text from stdin (``-``) or a file; trailing newlines are dropped.

    Raises:
        UserError: the text is empty.
        OSError: the file cannot be read.
    """
    from switchboard.errors import UserError  # noqa: PLC0415

    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(os.path.expanduser(source), "rb") as file:
            data = file.read()
    text = data.decode("utf-8", errors="replace").rstrip("\r\n")
    if not text.strip():
        raise UserError(f"no message text in {'stdin' if source == '-' else source}")
    return text


def send(args: argparse.Namespace, settings: Settings) -> int:
    """Send ``args.text`` to ``args.targets``; print each recipient's delivery state."""
    text = args.text if args.text_source is None else _read_text(args.text_source)
    values = params(agent=settings.acting_agent(), to=args.targets, text=text, thread=args.thread)
    values.update(params(intent=args.intent, reply_to=args.reply_to))
    values.update(params(priority=getattr(args, "priority", None)))
    result = call(settings, "send", values)
    if getattr(args, "wait_for", None):  # send --wait delivered|injected|read
        from switchboard.cli.commands import deliveries  # noqa: PLC0415 - only for --wait

        result = deliveries.wait_send(
            settings, result, args.wait_for, args.timeout, as_json=args.json
        )
    if args.json:
        output.print_json(result)
    else:
        output.print_lines(output.send_lines(result))
    return 0


def inbox(args: argparse.Namespace, settings: Settings) -> int:
    """Print the acting agent's unread messages (marking them read unless ``--peek``)."""
    wait = args.wait or 0.0
    values = params(agent=settings.acting_agent(), peek=args.peek, wait=wait)
    if wait and not args.json:
        output.ready_times()  # what arrives is printed at once
    try:
        messages = call(settings, "inbox", values, timeout=wait + DEFAULT_CALL_TIMEOUT)
    except KeyboardInterrupt:
        return 0  # ending a wait is how a wait ends
    if args.json:
        output.print_json(messages)
    elif messages:
        output.print_lines(output.grouped_lines(messages))  # grouped by thread
    else:
        print("no unread messages")
    return 0
