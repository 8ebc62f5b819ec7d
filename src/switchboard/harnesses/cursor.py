"""Cursor (IDE agent and ``cursor-agent``): ``mcp.json`` and ``hooks.json`` under ``~/.cursor``.

Push: ``postToolUse`` returns ``additional_context`` (mid-turn); ``stop`` returns
``followup_message``, which Cursor submits as the next user message (our wrapper keeps it
attributed as peer data, and every line is quoted, so it can never start with a command),
bounded by the entry's ``loop_limit``. ``afterFileEdit`` and ``sessionStart``/``sessionEnd``
only record. No push into an idle agent: Cursor has no mechanism for it; the next turn's
tool calls and its stop deliver. Note: ``cursor-agent --print`` skips the stop hook.
"""

from __future__ import annotations

from typing import Any, Final

from switchboard.harnesses.configfiles import (
    SERVER_KEY,
    Edit,
    add_item,
    group_is_ours,
    group_key,
    json_edit,
    remove_items,
    remove_server,
    set_server,
)
from switchboard.harnesses.jsonc import JsonDoc
from switchboard.harnesses.setup import Setup

NAME: Final = "cursor"
TITLE: Final = "Cursor"
HOOK_TIMEOUT: Final = 10
# How many follow-ups in a row our stop hook may cause: enough for a short exchange, few
# enough that two agents cannot keep each other's Cursor busy for ever.
LOOP_LIMIT: Final = 3
EVENTS: Final = ("sessionStart", "postToolUse", "afterFileEdit", "stop", "sessionEnd")
NOTES: Final = "Cursor: reload the window (or restart cursor-agent) to load the hooks."


def detect(setup: Setup) -> bool:
    """Cursor is installed: ``~/.cursor`` exists or ``cursor-agent``/``cursor`` is on PATH."""
    return setup.user(".cursor").is_dir() or setup.has_executable("cursor-agent", "cursor")


def _add(setup: Setup) -> Any:
    def add(doc: JsonDoc) -> None:
        if doc.node(["version"]) is None:
            doc.set(["version"], 1)
        for event in EVENTS:
            entry: dict[str, Any] = {
                "command": setup.hook_command(NAME, event),
                "timeout": HOOK_TIMEOUT,
            }
            if event == "stop":
                entry["loop_limit"] = LOOP_LIMIT
            add_item(doc, ["hooks", event], entry, group_key)

    return add


def _remove(doc: JsonDoc) -> None:
    for event in EVENTS:
        remove_items(doc, ["hooks", event], group_is_ours)


def edits(setup: Setup) -> list[Edit]:
    """The MCP server entry and the hooks."""
    mcp = setup.at((".cursor", "mcp.json"), (".cursor", "mcp.json"))
    hooks = setup.at((".cursor", "hooks.json"), (".cursor", "hooks.json"))
    server = ["mcpServers", SERVER_KEY]
    entry = setup.mcp_stdio(NAME)
    return [
        json_edit(
            mcp, lambda doc: set_server(doc, server, entry), lambda doc: remove_server(doc, server)
        ),
        json_edit(hooks, _add(setup), _remove),
    ]
