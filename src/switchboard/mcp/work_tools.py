"""MCP tools that move an agent's work: handoff (an agent hands itself over to a successor on
another device, its uncommitted git changes applied there first)."""

from __future__ import annotations

from typing import Any

from switchboard.mcp.registry import ToolContext, ToolRegistry, schema


def register(registry: ToolRegistry) -> None:
    """Register the tools that move work."""

    @registry.tool(
        "handoff",
        "Hand your work over to a successor agent on another device of your group (device: "
        "its short id or name), for example before this machine goes away. The successor "
        "starts there (if that device's spawn policy allows this one) with a brief: your "
        "summary, your last exchanges, recent messages and open requests, your branch and "
        "last commit; your uncommitted changes are applied to its checkout of the same "
        "repository first (a conflict there is reported and nothing is changed). Messages to "
        "you are offered to the successor from then on. Returns its address and task id.",
        schema(
            {
                "device": {"type": "string", "minLength": 1, "description": "Where it runs."},
                "dir": {
                    "type": "string",
                    "description": "Its directory there (default: the same path as yours).",
                },
                "harness": {
                    "type": "string",
                    "enum": ["claude", "codex", "gemini", "opencode", "pi", "cmd"],
                    "description": "Its agent program (default: yours).",
                },
                "note": {"type": "string", "maxLength": 2000, "description": "A word for it."},
            },
            ("device",),
        ),
    )
    async def handoff(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {"to": args["device"], "dir": args.get("dir", ""),
                  "harness": args.get("harness", ""), "note": args.get("note", "")}  # fmt: skip
        return await ctx.call("handoff", params)
