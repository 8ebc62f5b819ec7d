"""Gemini CLI (``settings.json``) and its successor Antigravity CLI (``agy``).

Gemini CLI: ``mcpServers`` and ``hooks`` in ``~/.gemini/settings.json`` (``.gemini/`` for a
project). Hooks: ``SessionStart``/``BeforeAgent``/``AfterTool`` add ``additionalContext``
(to the first turn, the prompt, the tool result); ``AfterAgent`` ``deny`` rejects the final
answer and retries with our messages as the new prompt (the agent picks them up instead of
stopping); a manual ``PreCompress`` (``/compress``) marks a new context (an "auto" one fires
at every compression check, compressing or not, so it is ignored). Timeouts are milliseconds.
No idle push.

Antigravity CLI: MCP in ``~/.gemini/antigravity-cli/mcp_config.json`` (``.agents/`` for a
project); hooks in a *named* hooks file, ``~/.gemini/config/hooks.json`` (the path agy 1.0 reads
at run time; ``.agents/hooks.json`` for a project), timeouts in seconds, camelCase payloads.
``PreInvocation`` (before each model call) injects ``ephemeralMessage`` steps, which is how
messages reach it mid-turn; its ``PostToolUse`` and ``Stop`` answers carry no text, so those
only record. No idle push.
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
    prune,
    remove_items,
    remove_server,
    set_server,
)
from switchboard.harnesses.jsonc import JsonDoc
from switchboard.harnesses.setup import Setup

NAME: Final = "gemini"
TITLE: Final = "Gemini CLI"
HOOK_TIMEOUT_MS: Final = 10_000
EVENTS: Final = (
    "SessionStart",
    "BeforeAgent",
    "AfterTool",
    "AfterAgent",
    "PreCompress",
    "SessionEnd",
)
NOTES: Final = (
    "Gemini CLI: restart running sessions to load the hooks; versions that gate hooks need "
    "the hooks system on (/settings > Advanced > Enable Hooks System, tools.enableHooks)."
)


def detect(setup: Setup) -> bool:
    """Gemini CLI is installed: ``~/.gemini/settings.json`` exists or ``gemini`` is on PATH."""
    return setup.user(".gemini", "settings.json").is_file() or setup.has_executable("gemini")


def _add_hooks(setup: Setup) -> Any:
    def add(doc: JsonDoc) -> None:
        for event in EVENTS:
            handler = {
                "type": "command",
                "name": f"switchboard-{event}",
                "command": setup.hook_command(NAME, event),
                "timeout": HOOK_TIMEOUT_MS,
            }
            group: dict[str, Any] = {"hooks": [handler]}
            if event == "AfterTool":
                group = {"matcher": ".*", **group}
            add_item(doc, ["hooks", event], group, group_key)

    return add


def _remove_hooks(doc: JsonDoc) -> None:
    for event in EVENTS:
        remove_items(doc, ["hooks", event], group_is_ours)


def edits(setup: Setup) -> list[Edit]:
    """One settings.json holds both the MCP server and the hooks."""
    settings = setup.at((".gemini", "settings.json"), (".gemini", "settings.json"))
    server = ["mcpServers", SERVER_KEY]
    entry = setup.mcp_stdio(NAME)
    add_hooks = _add_hooks(setup)

    def add(doc: JsonDoc) -> None:
        set_server(doc, server, entry)
        add_hooks(doc)

    def remove(doc: JsonDoc) -> None:
        remove_server(doc, server)
        _remove_hooks(doc)

    return [json_edit(settings, add, remove)]


class Antigravity:
    """Antigravity CLI (``agy``), Gemini CLI's successor; same module, its own files."""

    NAME: Final = "antigravity"
    TITLE: Final = "Antigravity CLI"
    NOTES: Final = "Antigravity CLI: restart agy to load the hooks."
    HOOK_TIMEOUT: Final = 10

    @staticmethod
    def detect(setup: Setup) -> bool:
        """agy is installed: its config dir exists or ``agy`` is on PATH."""
        return setup.user(".gemini", "antigravity-cli").is_dir() or setup.has_executable("agy")

    @staticmethod
    def named_hook(setup: Setup) -> dict[str, Any]:
        """Our entry in agy's named hooks file."""

        def handler(event: str) -> dict[str, Any]:
            command = setup.hook_command(Antigravity.NAME, event)
            return {"type": "command", "command": command, "timeout": Antigravity.HOOK_TIMEOUT}

        return {
            "PreInvocation": [handler("PreInvocation")],
            "PostToolUse": [{"matcher": ".*", "hooks": [handler("PostToolUse")]}],
            "Stop": [handler("Stop")],
        }

    @staticmethod
    def edits(setup: Setup) -> list[Edit]:
        """The MCP config and our named hook."""
        mcp = setup.at(
            (".gemini", "antigravity-cli", "mcp_config.json"), (".agents", "mcp_config.json")
        )
        hooks = setup.at((".gemini", "config", "hooks.json"), (".agents", "hooks.json"))
        server = ["mcpServers", SERVER_KEY]
        entry = setup.mcp_stdio(Antigravity.NAME)
        named = Antigravity.named_hook(setup)

        def remove_named(doc: JsonDoc) -> None:
            node = doc.node([SERVER_KEY])
            if node is not None and "switchboard" in str(node.value):
                doc.delete([SERVER_KEY])
                prune(doc, [])

        return [
            json_edit(
                mcp,
                lambda doc: set_server(doc, server, entry),
                lambda doc: remove_server(doc, server),
            ),
            json_edit(hooks, lambda doc: set_server(doc, [SERVER_KEY], named), remove_named),
        ]
