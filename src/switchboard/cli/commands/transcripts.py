"""``transcript``: read an agent's transcript, search transcripts, allow or deny a device."""

from __future__ import annotations

from switchboard.cli import output
from switchboard.cli.calls import call, params
from switchboard.cli.parser_transcripts import VERBS
from switchboard.daemon.client import DEFAULT_CALL_TIMEOUT
from switchboard.errors import UserError

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from switchboard.config import Settings

# How much of a text the plain listing shows without --full.
TEXT_WIDTH = 400


def transcript(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch ``transcript AGENT`` and its verbs."""
    verb = args.target if args.target in VERBS else ""
    if verb and not args.arg:
        raise UserError(f"transcript {verb} needs {'PATTERN' if verb == 'search' else 'DEV'}")
    if not verb and args.arg:
        raise UserError(f"unexpected {args.arg[:30]!r}: transcript AGENT takes one agent")
    wait = args.timeout + DEFAULT_CALL_TIMEOUT
    if verb == "search":
        return _search(args, settings, wait)
    if verb in ("allow", "deny"):
        values = params(device=args.arg, agent=args.agent or None)
        result = call(settings, f"transcript.{verb}", values)
        if args.json:
            output.print_json(result)
        else:
            allowed = ", ".join(result["transcripts"]) or "none"
            print(f"device {result['device']} may read transcripts of: {allowed}")
        return 0
    values = params(target=args.target, last=0 if args.all else args.last, before=args.before,
                    full=args.full or None, session=args.session, timeout=args.timeout)  # fmt: skip
    read = call(settings, "transcript.read", values, timeout=wait)
    if args.json:
        output.print_json(read)
        return 0
    output.print_lines(transcript_lines(read, full=args.full))
    return 0


def _search(args: argparse.Namespace, settings: Settings, wait: float) -> int:
    target = args.agent[0] if args.agent else None
    values = params(pattern=args.arg, target=target, limit=args.limit, timeout=args.timeout)
    hits = call(settings, "transcript.search", values, timeout=wait)
    if args.json:
        output.print_json(hits)
    elif not hits:
        print("no match")
    for hit in [] if args.json else hits:
        print(f"{hit['agent']}#{hit['n']} {output.when(hit['ts'])} {hit['role']}: {hit['text']}")
    return 0


def transcript_lines(read: dict[str, Any], *, full: bool = False) -> list[str]:
    """A transcript as text: a header, then each exchange's prompt, tool calls and replies."""
    shown = read["exchanges"]
    lines = [f"{read['agent']} ({read['harness']} session {read['session']}): "
             f"{read['total']} exchanges, showing {len(shown)}"]  # fmt: skip
    name = read["agent"].partition(":")[0]
    for exchange in shown:
        lines.append("")
        lines.append(f"{name}#{exchange['n']}  {output.when(exchange['ts'])}")
        for message in exchange["messages"]:
            text = message.get("text") or ""
            if not full:
                text = output.clip(text, TEXT_WIDTH)
            if text:
                who = "user" if message["role"] == "user" else "agent"
                lines.extend(f"  {who}: {line}" if i == 0 else f"    {line}"
                             for i, line in enumerate(text.splitlines() or [""]))  # fmt: skip
            for tool in message.get("tools") or []:
                mark = " (error)" if tool.get("error") else ""
                lines.append(f"  tool {tool['name']}: {tool.get('input', '')}{mark}")
                if full and tool.get("output"):
                    lines.extend(f"    | {line}" for line in tool["output"].splitlines())
    return lines
