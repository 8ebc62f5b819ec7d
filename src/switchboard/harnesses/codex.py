"""Codex CLI: ``[mcp_servers.switchboard]`` in ``config.toml``, hooks in ``hooks.json``.

Codex hooks mirror Claude Code's (same payload fields, ``additionalContext`` on SessionStart,
UserPromptSubmit and PostToolUse, ``decision: "block"`` on Stop), so the push is the same
minus the idle wake (Codex has no ``asyncRewake``): mid-turn at the next tool call, at the next
prompt, and a pending message blocks the Stop. ``SessionEnd`` marks the agent gone, and
``PermissionRequest`` (Claude Code's shape) lets an approval prompt travel (daemon/approvals.py).

Codex runs a non-managed hook only once the user trusted it (``/hooks`` in the TUI), and reads
a project's ``.codex/`` only once the project is trusted. ``install codex --trust`` records
both (harnesses/asks.trust_codex: the hooks through Codex's own app-server, as the TUI does;
the project as a tagged ``projects`` table); uninstall removes the trust of our hooks, and a
project's trust only if we tagged it. Versions before hooks were on by default also need
``[features] codex_hooks = true``.
``codex app-server`` (``turn/steer``) would reach an idle session but only when the TUI runs
attached to a shared server (``codex --remote``); that is not wired here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import tomlkit
from tomlkit.items import Table

from switchboard.harnesses import codexapp, jsonc
from switchboard.harnesses.configfiles import (
    SERVER_KEY,
    Edit,
    add_item,
    group_is_ours,
    group_key,
    is_ours,
    json_edit,
    remove_items,
)
from switchboard.harnesses.jsonc import JsonDoc
from switchboard.harnesses.setup import Setup

NAME: Final = "codex"
TITLE: Final = "Codex CLI"
HOOK_TIMEOUT: Final = 10
# Codex 0.171 clamps a SessionEnd hook's timeout to 3 s (and warns at every start otherwise);
# our hook gives up after 2 s anyway.
SESSION_END_TIMEOUT: Final = 3
EVENTS: Final = (
    "SessionStart",
    "UserPromptSubmit",
    "PostToolUse",
    "Stop",
    "PostCompact",
    "SessionEnd",
    "PermissionRequest",
)
# The permission hook waits for an answer from elsewhere (SWITCHBOARD_PROMPT_WAIT, 120 s).
PERMISSION_TIMEOUT: Final = 600
NOTES: Final = (
    "Codex: restart running sessions to load the hooks; older Codex versions also need "
    "[features] codex_hooks = true in config.toml."
)
_COMMENT: Final = "switchboard: managed entry (switchboard uninstall removes it)"
_TRUST_COMMENT: Final = "switchboard: trusted by install --trust (switchboard uninstall removes it)"


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


def _toml_uninstall(hooks_files: tuple[Path, ...], *, server: bool = True) -> Any:
    """Remove the trust of our hooks in ``hooks_files`` and (with ``server``) our MCP server."""

    def uninstall(text: str) -> str:
        doc = tomlkit.parse(text)
        changed = _remove_trust(doc, hooks_files)
        servers = doc.get("mcp_servers") if server else None
        entry = servers.get(SERVER_KEY) if servers is not None else None
        # Someone else's entry under our name is not ours to remove.
        if servers is not None and entry is not None and "switchboard" in str(entry.unwrap()):
            del servers[SERVER_KEY]
            if not servers:
                del doc["mcp_servers"]
            changed = True
        return tomlkit.dumps(doc) if changed else text

    return uninstall


def trust_keys(hooks_file: Path) -> set[str]:
    """Codex's keys of our hooks in one hooks.json (``path:event:group:handler``)."""
    try:
        value = jsonc.parse(hooks_file.read_text(encoding="utf-8")).value
    except (OSError, jsonc.JsoncError):
        return set()
    hooks = value.get("hooks") if isinstance(value, dict) else None
    keys = set()
    for event, groups in (hooks or {}).items():
        for g, group in enumerate(groups if isinstance(groups, list) else []):
            handlers = group.get("hooks", []) if isinstance(group, dict) else []
            for h, handler in enumerate(handlers if isinstance(handlers, list) else []):
                if isinstance(handler, dict) and is_ours(handler.get("command")):
                    for path in {str(hooks_file), str(hooks_file.resolve())}:
                        keys.add(f"{path}:{codexapp.event_word(event)}:{g}:{h}")
    return keys


def trust_project(config: Path, root: Path) -> None:
    """Mark the project ``root`` trusted in the user's ``config`` (Codex's
    ``[projects."<root>"] trust_level``), tagged so that uninstall takes it back."""
    doc = tomlkit.parse(config.read_text(encoding="utf-8") if config.exists() else "")
    projects = doc.get("projects")
    if projects is None:
        projects = tomlkit.table(is_super_table=True)
        doc.add("projects", projects)
    table = tomlkit.table()
    table.add(tomlkit.comment(_TRUST_COMMENT))
    table.add("trust_level", "trusted")
    if str(root) in projects:
        del projects[str(root)]
    projects.add(str(root), table)
    config.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.with_name(f".{config.name}.switchboard-tmp")
    tmp.write_text(tomlkit.dumps(doc), encoding="utf-8")
    os.replace(tmp, config)


def _remove_trust(doc: Any, hooks_files: tuple[Path, ...]) -> bool:
    """Drop the trust ``install --trust`` recorded: ``[hooks.state."<key>"]`` of our hooks, and
    a project's trust that we (not the user) set."""
    keys = set().union(*(trust_keys(path) for path in hooks_files))
    hooks: Any = doc.get("hooks") or {}
    state: Any = hooks.get("state") or {}
    gone = [key for key in state if key in keys]
    for key in gone:
        del state[key]
    if gone and not state:
        del hooks["state"]
        if not hooks:
            del doc["hooks"]
    projects = doc.get("projects")
    tagged = []
    if projects is not None:
        tagged = [k for k, item in projects.items() if _TRUST_COMMENT in item.as_string()]
        for key in tagged:
            del projects[key]
        if tagged and not projects:
            del doc["projects"]
    return bool(gone or tagged)


def _add_hooks(setup: Setup) -> Any:
    def add(doc: JsonDoc) -> None:
        for event in EVENTS:
            handler = {
                "type": "command",
                "command": setup.hook_command(NAME, event),
                "timeout": {"SessionEnd": SESSION_END_TIMEOUT,
                            "PermissionRequest": PERMISSION_TIMEOUT}.get(event, HOOK_TIMEOUT),
            }  # fmt: skip
            group: dict[str, Any] = {"hooks": [handler]}
            if event in ("PostToolUse", "PermissionRequest"):
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
    edits = [
        Edit(config, _toml_install(setup), _toml_uninstall((hooks,))),
        json_edit(hooks, _add_hooks(setup), _remove_hooks),
    ]
    user_config = setup.user(".codex", "config.toml")
    if setup.project is not None and user_config != config and user_config.exists():
        # The trust of a project's hooks lives in the user's config; it goes first, while
        # the hooks it names are still there to be recognised.
        remove = _toml_uninstall((hooks,), server=False)
        edits.insert(0, Edit(user_config, lambda text: text or "", remove))
    return edits
