"""The Switchboard entries a harness's config holds now: what ``switchboard doctor`` checks.

The installers (install.py) say which files each harness has at each level; this module reads
those files as they are and finds our entries in them: MCP servers (the ``switchboard`` key
under ``mcpServers``, ``mcp`` or ``mcp_servers``), hook commands (``switchboard ... hook
HARNESS EVENT``, configfiles.is_ours) and our plugin files (their ``COMMAND`` array).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from switchboard.harnesses import jsonc
from switchboard.harnesses.configfiles import FILE_MARKER, SERVER_KEY, is_ours
from switchboard.harnesses.install import HARNESSES
from switchboard.harnesses.setup import Setup

_SERVER_PARENTS: Final = frozenset({"mcpServers", "mcp", "mcp_servers"})
_COMMAND_ARRAY = re.compile(r"COMMAND\s*=\s*(\[[^\]\n]*\])")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# The event a plugin's hook command is probed with: one the plugin really sends.
PLUGIN_EVENTS: Final = {"opencode": "poll", "pi": "poll"}


@dataclass(frozen=True)
class Entry:
    """One entry of ours in a harness config file.

    ``argv`` is the program and its arguments (``()`` when unreadable); ``command`` is the
    shell command a hook runs (``""`` for an MCP server); ``home`` is the
    ``SWITCHBOARD_HOME`` it pins (``None``: the harness's environment decides).
    """

    harness: str
    level: str  # "user" or "project"
    path: Path
    kind: str  # "mcp", "hook" or "plugin"
    argv: tuple[str, ...]
    command: str = ""
    home: str | None = None


def _pinned(argv: list[str], env: Any = None) -> str | None:
    if "--home" in argv[:-1]:
        return argv[argv.index("--home") + 1]
    value = env.get("SWITCHBOARD_HOME") if isinstance(env, dict) else None
    return value if isinstance(value, str) else None


def _split(command: Any) -> list[str]:
    if isinstance(command, list):
        return [str(part) for part in command]
    try:
        words = shlex.split(str(command))
    except ValueError:
        return []
    while words and _ASSIGNMENT.match(words[0]):  # VAR=value before the program
        words = words[1:]
    return words


def _walk(value: Any, parent: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every object with our MCP server or hook command: ``("mcp" | "hook", object)``."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(value, dict):
        server = value.get(SERVER_KEY) if parent in _SERVER_PARENTS else None
        for key, item in value.items():
            if item is server and isinstance(item, dict) and "command" in item:
                found.append(("mcp", item))
            elif isinstance(item, dict) and is_ours(item.get("command")):
                found.append(("hook", item))
            else:
                found += _walk(item, key)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and is_ours(item.get("command")):
                found.append(("hook", item))
            else:
                found += _walk(item, parent)
    return found


def _read_config(path: Path, text: str) -> Any:
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return None
    try:
        return jsonc.parse(text).value
    except jsonc.JsoncError:
        return None


def _plugin(harness: str, level: str, path: Path, text: str) -> list[Entry]:
    if FILE_MARKER not in text.split("\n", 1)[0]:
        return []
    match = _COMMAND_ARRAY.search(text)
    try:
        argv = [str(a) for a in json.loads(match[1])] if match else []
    except ValueError:
        argv = []
    event = PLUGIN_EVENTS.get(harness, "poll")
    command = shlex.join([*argv, "hook", harness, event]) if argv else ""
    return [Entry(harness, level, path, "plugin", tuple(argv), command, _pinned(argv))]


def read_entries(harness: str, level: str, path: Path) -> list[Entry]:
    """Our entries in one config file (``[]`` if it is missing or holds none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if path.suffix in (".js", ".ts", ".mjs"):
        return _plugin(harness, level, path, text)
    entries = []
    for kind, item in _walk(_read_config(path, text)):
        if kind == "mcp":
            command = item.get("command")
            argv = _split(command) if isinstance(command, list) else [str(command)]
            argv += [str(a) for a in item.get("args") or []]
            env = item.get("env") or item.get("environment")
            entries.append(Entry(harness, level, path, "mcp", tuple(argv), "", _pinned(argv, env)))
        else:
            command = item["command"]
            text_command = shlex.join(command) if isinstance(command, list) else str(command)
            argv = _split(command)
            entries.append(
                Entry(harness, level, path, "hook", tuple(argv), text_command, _pinned(argv))
            )
    return entries


def installed(setup: Setup) -> list[Entry]:
    """Our entries in every harness's files at ``setup``'s level (user, or the project)."""
    level = "project" if setup.project is not None else "user"
    found: list[Entry] = []
    seen: set[Path] = set()
    for harness in HARNESSES.values():
        for edit in harness.edits(setup):
            if edit.path in seen or (
                setup.project is not None and not edit.path.is_relative_to(setup.project)
            ):
                continue  # a user-level file a project install also edits (Codex's trust)
            seen.add(edit.path)
            found += read_entries(harness.name, level, edit.path)
    return found
