"""Pi: an extension (package data) that pushes messages with ``pi.sendUserMessage``.

Pi has no MCP by design, so there is no server entry: the extension
(assets/pi-extension.ts) calls ``switchboard hook pi EVENT``, appends due messages to tool
results (mid-turn) and sends them with ``sendUserMessage`` after a run ends and on a 5-second
poll while idle (``followUp`` starts a run when idle; ``steer`` for urgent ones). The agent
answers with the command line (``switchboard send``), as the wrapper tells it.
"""

from __future__ import annotations

from typing import Final

from switchboard.harnesses.configfiles import Edit, write_file_edit
from switchboard.harnesses.opencode import plugin_source
from switchboard.harnesses.setup import Setup

NAME: Final = "pi"
TITLE: Final = "Pi"
NOTES: Final = "Pi: run /reload (or restart pi) to load the extension."


def detect(setup: Setup) -> bool:
    """Pi is installed: ``~/.pi`` exists or ``pi`` is on PATH."""
    return setup.user(".pi").is_dir() or setup.has_executable("pi")


def edits(setup: Setup) -> list[Edit]:
    """The extension file."""
    path = setup.at(
        (".pi", "agent", "extensions", "switchboard.ts"), (".pi", "extensions", "switchboard.ts")
    )
    return [write_file_edit(path, plugin_source(setup, "pi-extension.ts"))]
