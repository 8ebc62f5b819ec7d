"""Codex CLI: ``[mcp_servers.switchboard]`` in ``config.toml``, hooks in ``hooks.json``.

Codex hooks mirror Claude Code's (same payload fields, ``additionalContext`` on SessionStart,
UserPromptSubmit and PostToolUse, ``decision: "block"`` on Stop), so the push is the same
minus the idle wake (Codex has no ``asyncRewake``): mid-turn at the next tool call, at the next
prompt, and a pending message blocks the Stop. Codex makes the user review and trust
non-managed hooks before they run (``/hooks`` in the TUI); we do not forge that trust.
Versions before hooks were on by default also need ``[features] codex_hooks = true``.
``codex app-server`` (``turn/steer``) would reach an idle session but only when the TUI runs
attached to a shared server (``codex --remote``); that is not wired here.
"""

from __future__ import annotations

from typing import Any, Final

import tomlkit
from tomlkit.items import Table

from switchboard.harnesses.configfiles import (
    SERVER_KEY,
    Edit,
    add_item,
    group_is_ours,
    group_key,
    json_edit,
    remove_items,
)
from switchboard.harnesses.jsonc import JsonDoc
from switchboard.harnesses.setup import Setup

NAME: Final = "codex"
TITLE: Final = "Codex CLI"
HOOK_TIMEOUT: Final = 10
EVENTS: Final = ("SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "PostCompact")
NOTES: Final = (
    "Codex: review and trust the Switchboard hooks once (run codex, then /hooks); older Codex "
    "versions also need [features] codex_hooks = true in config.toml."
)
_COMMENT: Final = "switchboard: managed entry (switchboard uninstall removes it)"


def detect(setup: Setup) -> bool:
    """Codex is installed: ``~/.codex`` exists or ``codex`` is on PATH."""
    return setup.user(".codex").is_dir() or setup.has_executable("codex")


def _server_table(setup: Setup) -> Table:
    entry = setup.mcp_stdio(NAME)
    table = tomlkit.table()
    table.add(tomlkit.comment(_COMMENT))
    table.add("command", entry["command"])
    table.add("args", entry["args"])
    env = tomlkit.inline_table()
    env.update(entry["env"])
    table.add("env", env)
    table.add(tomlkit.nl())
    return table


def _toml_install(setup: Setup) -> Any:
    def install(text: str | None) -> str:
        doc = tomlkit.parse(text or "")
        servers = doc.get("mcp_servers")
        wanted = _server_table(setup)
        if servers is None:
            servers = tomlkit.table(is_super_table=True)
            doc.add("mcp_servers", servers)
        current = servers.get(SERVER_KEY)
        if current is not None and current.unwrap() == wanted.unwrap():
            return text or ""
        if current is not None:
            del servers[SERVER_KEY]
        servers.add(SERVER_KEY, wanted)
        return tomlkit.dumps(doc)

    return install


def _toml_uninstall(text: str) -> str:
    doc = tomlkit.parse(text)
    servers = doc.get("mcp_servers")
    if servers is None or SERVER_KEY not in servers:
        return text
    if "switchboard" not in str(servers[SERVER_KEY].unwrap()):
        return text  # someone else's entry under our name: not ours to remove
    del servers[SERVER_KEY]
    if not servers:
        del doc["mcp_servers"]
    return tomlkit.dumps(doc)


def _add_hooks(setup: Setup) -> Any:
    def add(doc: JsonDoc) -> None:
        for event in EVENTS:
            handler = {
                "type": "command",
                "command": setup.hook_command(NAME, event),
                "timeout": HOOK_TIMEOUT,
            }
            group: dict[str, Any] = {"hooks": [handler]}
            if event == "PostToolUse":
                group = {"matcher": "*", **group}
            add_item(doc, ["hooks", event], group, group_key)

    return add


def _remove_hooks(doc: JsonDoc) -> None:
    for event in EVENTS:
        remove_items(doc, ["hooks", event], group_is_ours)


def edits(setup: Setup) -> list[Edit]:
    """The MCP server table in config.toml and the hooks in hooks.json."""
    config = setup.at((".codex", "config.toml"), (".codex", "config.toml"))
    hooks = setup.at((".codex", "hooks.json"), (".codex", "hooks.json"))
    return [
        Edit(config, _toml_install(setup), _toml_uninstall),
        json_edit(hooks, _add_hooks(setup), _remove_hooks),
    ]
