"""MCP tools that move an agent's work: handoff (an agent hands itself over to a successor on
another device, its uncommitted git changes applied there first), resume and fork (a stopped
agent's harness session continued)."""

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

    @registry.tool(
        "resume",
        "Restart a stopped agent of this device in its last harness session (the harness's "
        "own resume), as the same agent, its unread messages as its first prompt; through "
        "this device's spawn policy. Refused while it runs or when no session of it is known.",
        schema({"agent": {"type": "string", "minLength": 1, "description": "The agent."}},
               ("agent",)),
    )  # fmt: skip
    async def resume(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("resume", {"who": args["agent"]})

    @registry.tool(
        "fork",
        "Start a new agent from a copy of an agent's last harness session (the harness's own "
        "fork) in a directory of this device; through this device's spawn policy.",
        schema(
            {
                "agent": {"type": "string", "minLength": 1, "description": "The agent."},
                "dir": {"type": "string", "minLength": 1, "description": "The new one's dir."},
                "name": {"type": "string", "description": "Its name (default: NAME-fork)."},
            },
            ("agent", "dir"),
        ),
    )
    async def fork(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {"who": args["agent"], "dir": args["dir"], "name": args.get("name", "")}
        return await ctx.call("fork", params)
