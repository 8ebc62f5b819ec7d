"""MCP tools of shared files: share_file and get_file.

An agent hands another agent (on this device or another one) a file by its bytes: the
recipients get a message naming it, and get_file returns a path in the calling agent's own
downloads directory that it can read.
"""

from __future__ import annotations

import os
from typing import Any, Final

from switchboard.mcp.registry import ToolContext, ToolRegistry, schema

# get_file waits at most this long for a fetch (MCP clients time out long tool calls).
MAX_WAIT_SECONDS: Final = 600


def register(registry: ToolRegistry) -> None:
    """Register the file tools."""

    @registry.tool(
        "share_file",
        "Share a file with agents of your group (the same targets as send: @name, "
        "@name:DEVICE, #room, +tag, @all). Its bytes are copied and sent device to device, "
        "so the recipients can open it even on another machine; they get a message naming "
        "the file, its size, SHA-256, type and you. path: the file (relative paths are from "
        "your working directory).",
        schema(
            {
                "to": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "path": {"type": "string", "minLength": 1},
                "note": {"type": "string", "description": "A line to go with it."},
                "name": {"type": "string", "description": "Share it under this file name."},
            },
            ("to", "path"),
        ),
    )
    async def share_file(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {"to": args["to"], "path": _absolute(args["path"]), "note": args.get("note", "")}
        if args.get("name"):
            params["name"] = args["name"]
        result = await ctx.call("file.send", params)
        return {key: result[key] for key in ("hash", "name", "size", "mime")} | {
            "recipients": result["message"]["recipients"]
        }

    @registry.tool(
        "get_file",
        "Get a file shared with you (its SHA-256, a prefix of 6+ hex digits, or its name, "
        "as the message announcing it says): fetched from a device that holds it if need "
        "be, checked against its SHA-256, and saved in your downloads directory. Returns "
        "the path to read it from, its size and type.",
        schema(
            {
                "file": {"type": "string", "minLength": 1},
                "force": {
                    "type": "boolean",
                    "description": "Replace an older file of the same name in downloads.",
                },
            },
            ("file",),
        ),
    )
    async def get_file(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {"file": args["file"], "force": bool(args.get("force")),
                  "wait": MAX_WAIT_SECONDS}  # fmt: skip
        saved = await ctx.call("file.fetch", params)
        return {"path": saved["saved"], "name": saved["name"], "size": saved["size"],
                "mime": saved["mime"], "sha256": saved["hash"]}  # fmt: skip


def _absolute(path: str) -> str:
    """``path`` from the agent's working directory (where this server runs)."""
    return os.path.abspath(os.path.expanduser(path))
