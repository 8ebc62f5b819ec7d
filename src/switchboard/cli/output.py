"""What commands print: ``--json`` output, and the human-readable forms of DESIGN.md §5 shapes.

JSON goes out exactly as the daemon returned it, so scripts see the documented shapes. Human
output is for people: it may change between versions, and it tolerates missing fields.
"""

from __future__ import annotations

import sys

from switchboard import jsonlite

TYPE_CHECKING = False  # no typing at run time: every command starts with this module
if TYPE_CHECKING:
    import datetime
    from collections.abc import Iterable, Sequence
    from typing import Any


def print_json(value: Any) -> None:
    """Print one JSON document (a listing's array, or an object), indented: what
    ``json.dumps(value, indent=2, ensure_ascii=False)`` writes, without importing json."""
    print(jsonlite.dumps(value, indent=2, ascii=False))


def print_json_line(value: Any) -> None:
    """Print one compact JSON object as a line and flush it (JSON Lines, also when following)."""
    print(jsonlite.dumps(value, compact=True, ascii=False), flush=True)


def print_lines(lines: Iterable[str]) -> None:
    """Print each line, flushing at the end."""
    for line in lines:
        print(line)
    sys.stdout.flush()


def error_line(message: str) -> str:
    """Return the one stderr line for an error: ``switchboard: <message>``."""
    text = " ".join(message.split()) or "error"
    return f"switchboard: {text}"


def _datetime() -> Any:
    """The ``datetime`` module, imported on first use: its C half ``_datetime`` where there is
    one, which has the same classes (``datetime`` re-exports them) without the ~1 ms of
    running datetime.py's pure-Python definitions first."""
    try:
        import _datetime as dt  # type: ignore[import-not-found]  # noqa: PLC0415 - lazy
    except ImportError:  # pragma: no cover - not CPython
        import datetime as dt  # noqa: PLC0415

    return dt


def ready_times() -> None:
    """Import what ``when`` needs now: before a wait, so what arrives is printed at once."""
    _datetime()


def when(ts: Any, *, sep: str = " ") -> str:
    """Show an ISO 8601 time in local time: ``10:12:11`` today, ``2024-05-01 10:12:11`` before.

    Args:
        ts: the time, as the daemon sends it.
        sep: what goes between date and time (``T`` keeps a log line's fields space-separated).
    """
    if not isinstance(ts, str) or not ts:
        return "-"
    dt = _datetime()
    try:
        moment: datetime.datetime = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        moment = moment.astimezone()
    except ValueError:
        return ts
    if moment.date() == dt.datetime.now().astimezone().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Align columns with two spaces between them; the last column is not padded."""
    cells = [list(headers)]
    cells += [["-" if c in (None, "") else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]


def device_lines(device: dict[str, Any]) -> list[str]:
    """``init``: the device's short id, name and full id."""
    name = f"  {device['name']}" if device.get("name") else ""
    return [f"device {device.get('short', '?')}{name}", f"id     {device.get('id', '?')}"]


# The SUMMARY column is cut to this many characters (with "..."), so a row stays one line.
MAX_SUMMARY_WIDTH = 40


def clip(text: Any, width: int) -> str:
    """One line of at most ``width`` characters: whitespace folded, ``...`` where it was cut."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= width else line[: width - 3].rstrip() + "..."


def agent_status(agent: dict[str, Any]) -> str:
    """An agent's status for a table: ``unreachable (since 10:12:11)`` names when its device
    was last seen."""
    status = str(agent.get("status") or "-")
    if status == "unreachable" and agent.get("device_last_seen"):
        return f"unreachable (since {when(agent['device_last_seen'])})"
    return status


def agent_rows(agents: Iterable[dict[str, Any]]) -> list[str]:
    """``agents``: one aligned row per agent (tags as ``+tag``)."""
    rows = (
        (
            a.get("address"),
            agent_status(a),
            a.get("harness"),
            when(a.get("last_seen")),
            clip(a.get("summary"), MAX_SUMMARY_WIDTH),
            " ".join(f"+{t}" for t in a.get("tags") or []),
            a.get("cwd"),
        )
        for a in agents
    )
    headers = ("ADDRESS", "STATUS", "HARNESS", "LAST SEEN", "SUMMARY", "TAGS", "DIRECTORY")
    return table(headers, rows)


def link_rows(links: Iterable[dict[str, Any]]) -> list[str]:
    """``link status``: one aligned row per group's link."""
    rows = (
        (
            link.get("name"),
            link.get("url"),
            link.get("state"),
            link.get("lag"),
            when(link.get("last_push")),
            "on" if link.get("enabled", True) else "off",
        )
        for link in links
    )
    return table(("GROUP", "URL", "STATE", "LAG", "LAST PUSH", "LINK"), rows)


def status_lines(status: dict[str, Any]) -> list[str]:
    """``status``: device, daemon, each group's link, then the agents."""
    device = status.get("device") or {}
    daemon = status.get("daemon") or {}
    lines = [
        f"device  {device.get('short', '?')}  {device.get('name') or ''}".rstrip(),
        f"daemon  {'running' if daemon.get('running') else 'not running'}"
        + (f", pid {daemon['pid']}" if daemon.get("pid") else ""),
    ]
    groups = status.get("groups") or []
    if not groups:
        lines.append("groups  none (create one with 'switchboard group create --relay URL')")
    for group in groups:
        link = group.get("link") or {}
        lag = "-" if link.get("lag") is None else link["lag"]
        detail = f"lag {lag}, last push {when(link.get('last_push'))}"
        if link.get("kind"):
            kind = link["kind"] + (f" ({link['protocol']})" if link.get("protocol") else "")
            detail = f"{kind} link, {detail}"
        lines.append(
            f"group   {group.get('name')}  {link.get('url')}  {link.get('state')}  {detail}"
        )
        if link.get("last_error"):
            lines.append(f"        last error: {link['last_error']}")
    for transfer in status.get("transfers") or []:  # shared files being fetched
        lines.append(
            f"file    {clip(transfer['name'], 40)}  {transfer['held']}/{transfer['chunks']} "
            f"chunks, {transfer['bytes']} of {transfer['size']} bytes from "
            f"{str(transfer['from'])[:4].upper() or '-'}  {transfer['state']}"
        )
    agents = status.get("agents") or []
    lines.append(f"agents  {len(agents)}")
    if agents:
        lines.extend("  " + row for row in agent_rows(agents))
    return lines


def send_lines(result: dict[str, Any]) -> list[str]:
    """``send``: ``delivered  nova:ABCD`` / ``queued     nova:ABCD``, one line per recipient."""
    recipients = result.get("recipients") or []
    if not recipients:
        return [f"{result.get('result', 'queued'):<10} (no recipients)"]
    return [f"{r.get('state', '?'):<10} {r.get('address', '?')}" for r in recipients]


def _notice_head(message: dict[str, Any], notice: dict[str, Any]) -> str:
    """``notice member_joined about nova:ABCD (from LGTG)``, ``event file_edited by nova:ABCD``."""
    if notice.get("kind") == "event":
        return f"event {notice.get('type')} by {notice.get('subject') or message.get('from')}"
    about = f" about {notice['subject']}" if notice.get("subject") else ""
    room = f" in #{notice['room']}" if notice.get("room") else ""
    return f"notice {notice.get('kind')}{about}{room} (from {message.get('from')})"


def message_lines(message: dict[str, Any]) -> list[str]:
    """``inbox``: a header line, then the text indented by two spaces.

    A notice (``notice`` set: a device's notice, or an event a subscription matched) says
    what it is and whom it concerns in place of the sender.
    """
    to = ", ".join(message.get("to") or []) or "-"
    thread = f"  [thread {message['thread']}]" if message.get("thread") else ""
    notice = message.get("notice")
    who = _notice_head(message, notice) if isinstance(notice, dict) else message.get("from")
    header = f"#{message.get('id')} {when(message.get('ts'))} {who} -> {to}{thread}"
    text = str(message.get("text", ""))
    return [header, *("  " + line for line in text.splitlines() or [""])]


def grouped_lines(messages: Iterable[dict[str, Any]]) -> list[str]:
    """``inbox``: messages grouped by thread, each group in the order of its first message;
    messages outside any thread stay where they are."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for index, message in enumerate(messages):
        key = message.get("thread") or f"\0{index}"
        groups.setdefault(key, []).append(message)
    lines: list[str] = []
    for key, members in groups.items():
        if not key.startswith("\0"):
            lines.append(f"thread {key} ({len(members)} new)")
        for message in members:
            lines.extend(message_lines(message))
    return lines


def event_line(event: dict[str, Any]) -> str:
    """``events``: ``#42 10:12:11 luna:BOXE message_posted {...}``."""
    who = event.get("agent") or event.get("device") or "-"
    data = jsonlite.dumps(event.get("data", {}), ascii=False)
    return f"#{event.get('id')} {when(event.get('ts'), sep='T')} {who} {event.get('type')} {data}"
