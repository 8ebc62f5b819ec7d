"""MCP tool of terminals: read_terminal, the screen of an agent that runs in tmux.

Reading only: typing into another agent's terminal is left to people (``switchboard term
--type``), whose every keystroke injection is an event; a model that wants another agent to
do something sends it a message.
"""

from __future__ import annotations

from typing import Any, Final

from switchboard.mcp.registry import ToolContext, ToolRegistry, schema

# daemon/term.py MAX_SCROLLBACK (the daemon checks it again).
MAX_LINES: Final = 10_000


def register(registry: ToolRegistry) -> None:
    """Register the terminal tool."""

    @registry.tool(
        "read_terminal",
        "Read the current screen of another agent's terminal (an agent started with spawn "
        "terminal=true, or one whose harness runs in tmux), on this device or another one "
        "(agent: name or name:DEV), to see where it is stuck. Another device shows it only "
        "if its policy lets this device read that agent's terminal. Returns its lines, "
        "cursor and size; lines adds that many scrollback lines above the screen.",
        schema(
            {
                "agent": {"type": "string", "minLength": 1, "description": "name or name:DEV"},
                "lines": {"type": "integer", "minimum": 0, "maximum": MAX_LINES},
            },
            ("agent",),
        ),
        read_only=True,
    )
    async def read_terminal(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {"target": args["agent"], "lines": int(args.get("lines", 0))}
        return await ctx.call("term.read", params)
