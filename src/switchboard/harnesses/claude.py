"""Claude Code: MCP server in ``~/.claude.json`` (``.mcp.json``), hooks in ``settings.json``.

Push into Claude Code, best first (reference §1.1; each degrades to the next):

1. MCP channel: ``notifications/claude/channel`` from our MCP server, when Claude runs with
   ``--dangerously-load-development-channels server:switchboard`` (mcp/channel.py).
2. ``Stop`` ``asyncRewake`` hook (``hook claude Idle``): after each turn a background hook
   waits for a message and, when one comes, exits 2, which wakes the idle session with it.
3. ``Stop`` hook (sync): a message pending when the agent finishes blocks the stop, and the
   agent reads it as its next instruction.
4. ``UserPromptSubmit`` / ``PostToolUse`` hooks: ``additionalContext`` at the next prompt or
   tool call (mid-turn).
5. Tool results of our MCP tools carry unread messages (the pull floor).

``PermissionRequest`` (hook ``hook claude PermissionRequest``) lets a permission prompt travel:
the agent shows ``blocked`` everywhere and ``approve``/``deny`` from a device the policy allows
decides it; with no answer in time the hook gives no decision and Claude asks as it would
(daemon/approvals.py).

``SessionStart`` registers the agent and binds the session id; ``SessionEnd`` marks it gone.
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

NAME: Final = "claude"
TITLE: Final = "Claude Code"
# Our hooks answer in milliseconds and give up after 2 s (harnesses/hook.py); the timeout
# only bounds a wedged interpreter. The idle hook waits for messages for up to an hour.
HOOK_TIMEOUT: Final = 10
IDLE_TIMEOUT: Final = 3_600
# The permission hook waits for an answer from elsewhere (SWITCHBOARD_PROMPT_WAIT, 120 s) and
# then gives no decision; Claude Code's own default for a hook is 600 s.
PERMISSION_TIMEOUT: Final = 600
EVENTS: Final = (
    "SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "SessionEnd", "PermissionRequest",
)  # fmt: skip
NOTES: Final = (
    "Claude Code: restart running sessions to load the hooks. For instant push into idle "
    "sessions, start Claude with --dangerously-load-development-channels server:switchboard."
)


def detect(setup: Setup) -> bool:
    """Claude Code is installed: its config dir exists or ``claude`` is on PATH."""
    return setup.user(".claude").is_dir() or setup.has_executable("claude")


def hook_groups(setup: Setup) -> dict[str, list[dict[str, Any]]]:
    """Our hook groups, per event, in Claude Code's settings shape."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for event in EVENTS:
        handler = {
            "type": "command",
            "command": setup.hook_command(NAME, event),
            "timeout": PERMISSION_TIMEOUT if event == "PermissionRequest" else HOOK_TIMEOUT,
        }
        group: dict[str, Any] = {"hooks": [handler]}
        if event in ("PostToolUse", "PermissionRequest"):
            group = {"matcher": "*", **group}
        groups[event] = [group]
    idle = {
        "type": "command",
        "command": setup.hook_command(NAME, "Idle"),
        "timeout": IDLE_TIMEOUT,
        "async": True,
        "asyncRewake": True,
    }
    groups["Stop"].append({"hooks": [idle]})
    return groups


def _add_hooks(setup: Setup) -> Any:
    def add(doc: JsonDoc) -> None:
        for event, groups in hook_groups(setup).items():
            for group in groups:
                add_item(doc, ["hooks", event], group, group_key)

    return add


def _remove_hooks(doc: JsonDoc) -> None:
    for event in (*EVENTS, "PreCompact"):
        remove_items(doc, ["hooks", event], group_is_ours)


def edits(setup: Setup) -> list[Edit]:
    """The files to change: the MCP server entry and the hooks."""
    entry = {"type": "stdio", **setup.mcp_stdio(NAME)}
    mcp_path = setup.at((".claude.json",), (".mcp.json",))
    settings = setup.at((".claude", "settings.json"), (".claude", "settings.json"))
    server = ["mcpServers", SERVER_KEY]
    return [
        json_edit(
            mcp_path,
            lambda doc: set_server(doc, server, entry),
            lambda doc: remove_server(doc, server),
            # ~/.claude.json is Claude Code's own state, rewritten at every start: a copy of
            # it would be stale at once, and removing exactly our entry is the restore.
            rewritten=setup.project is None,
        ),
        json_edit(settings, _add_hooks(setup), _remove_hooks),
    ]
