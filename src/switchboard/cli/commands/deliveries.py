"""``send --wait STATE`` and ``events sub|unsub|subs``: receipts and subscriptions."""

from __future__ import annotations

from switchboard.cli import output
from switchboard.cli.calls import call, params
from switchboard.daemon.client import DEFAULT_CALL_TIMEOUT

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from switchboard.config import Settings


def wait_send(
    settings: Settings, result: dict[str, Any], state: str, timeout: float, *, as_json: bool
) -> Any:
    """Wait until every recipient of a sent message reached ``state``; return the send result
    with each recipient's state brought up to date (and ``complete``).

    When the wait times out, the result so far is printed (as JSON with ``as_json``, else one
    line per recipient) before the error.

    Raises:
        SwitchboardError: the wait timed out before every recipient got there.
    """
    from switchboard.errors import SwitchboardError  # noqa: PLC0415

    values = {"id": result["id"], "state": state, "timeout": timeout}
    waited = call(settings, "message.wait", values, timeout=timeout + DEFAULT_CALL_TIMEOUT)
    states = {r["address"]: r["state"] for r in waited["recipients"]}
    for recipient in result["recipients"]:
        recipient["state"] = states.get(recipient["address"], recipient["state"])
    result["complete"] = waited["complete"]
    if not waited["complete"]:
        behind = [a for a, s in states.items() if s != state and _behind(s, state)]
        if as_json:
            output.print_json(result)
        else:
            output.print_lines(output.send_lines(result))
        raise SwitchboardError(
            f"not every recipient reached {state} within {timeout:g} s: {', '.join(behind)}"
        )
    return result


def _behind(have: str, want: str) -> bool:
    order = ("queued", "delivered", "injected", "read")
    return order.index(have) < order.index(want)


def subscriptions(args: argparse.Namespace, settings: Settings) -> int:
    """``events sub`` (subscribe the acting agent), ``unsub`` and ``subs`` (list)."""
    agent = settings.acting_agent()
    if args.action == "sub":
        values = params(agent=agent, type=args.type, of=args.agent, file=args.file)
        if args.file and not args.type:
            values["type"] = "file_edited"
        result = call(settings, "events.subscribe", values)
        if args.json:
            output.print_json(result)
        else:
            print(f"subscription #{result['id']}: {_describe(result)} -> {agent}")
        return 0
    if args.action == "unsub":
        result = call(settings, "events.unsubscribe", params(agent=agent, id=args.id))
        if args.json:
            output.print_json(result)
        else:
            print(f"removed {result['removed']} subscription(s)")
        return 0
    rows = call(settings, "events.subscriptions", {"agent": agent})
    if args.json:
        output.print_json(rows)
    for row in rows if not args.json else []:
        print(f"#{row['id']} {_describe(row)}")
    if not rows and not args.json:
        print("no subscriptions")
    return 0


def _describe(row: dict[str, Any]) -> str:
    parts = [f"type={row['type']}", f"agent={row['agent']}"]
    if row.get("file"):
        parts.append(f"file={row['file']}")
    return " ".join(parts)
