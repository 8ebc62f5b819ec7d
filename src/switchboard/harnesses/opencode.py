"""OpenCode: MCP in ``opencode.json(c)``, and a plugin (package data) that pushes messages.

The plugin (assets/opencode-plugin.js, OpenCode 1.x plugin API) calls ``switchboard hook
opencode EVENT`` and uses the in-process SDK client: ``tool.execute.after`` appends messages
to the tool output (mid-turn); on ``session.idle`` and on a 5-second poll while idle it
starts a turn with ``client.session.promptAsync`` (idle push). OpenCode 2 runs only plugins
written for its new API; this one is skipped there (MCP tools and tool results still work).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Final

from switchboard.harnesses.configfiles import (
    SERVER_KEY,
    Edit,
    json_edit,
    remove_server,
    set_server,
    write_file_edit,
)
from switchboard.harnesses.setup import Setup

NAME: Final = "opencode"
TITLE: Final = "OpenCode"
NOTES: Final = "OpenCode: restart it to load the plugin (OpenCode 1.x plugin API)."


def detect(setup: Setup) -> bool:
    """OpenCode is installed: its config dir exists or ``opencode`` is on PATH."""
    return setup.user(".config", "opencode").is_dir() or setup.has_executable("opencode")


def plugin_source(setup: Setup, asset: str = "opencode-plugin.js") -> str:
    """The plugin's source with our command filled in."""
    text = resources.files("switchboard.harnesses").joinpath("assets", asset).read_text()
    return text.replace("__SWITCHBOARD_COMMAND__", json.dumps(setup.argv()))


def _config_path(setup: Setup) -> tuple[str, ...]:
    base = setup.project if setup.project is not None else setup.user(".config", "opencode")
    for name in ("opencode.jsonc", "opencode.json"):
        if (base / name).exists():
            return (name,)
    return ("opencode.json",)


def edits(setup: Setup) -> list[Edit]:
    """The MCP entry and the plugin file."""
    name = _config_path(setup)
    config = setup.at((".config", "opencode", *name), name)
    plugin = setup.at(
        (".config", "opencode", "plugins", "switchboard.js"),
        (".opencode", "plugins", "switchboard.js"),
    )
    server = ["mcp", SERVER_KEY]
    entry = {
        "type": "local",
        "command": setup.argv("mcp"),
        "environment": setup.mcp_env(NAME),
        "enabled": True,
    }
    return [
        json_edit(
            config,
            lambda doc: set_server(doc, server, entry),
            lambda doc: remove_server(doc, server),
        ),
        write_file_edit(plugin, plugin_source(setup)),
    ]
