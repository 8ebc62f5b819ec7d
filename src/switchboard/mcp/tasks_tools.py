"""MCP tools of delegation: spawn, task_status, task_nudge, task_stop; approvals, approve; and
permission_prompt, the tool Claude Code's ``--permission-prompt-tool`` calls in a spawned task.

An agent delegates work to a new agent on this device or another one, waits for the result,
steers it with a nudge, or stops it. The receiving device's spawn policy decides; a refusal
comes back with its reason.
"""

from __future__ import annotations

import json
import os
from typing import Any, Final

from switchboard.mcp.registry import ToolContext, ToolRegistry, schema

# task_status waits at most this long per call (MCP clients time out long tool calls).
MAX_WAIT_SECONDS: Final = 600
_TASK: Final = {"type": "string", "minLength": 1, "description": "The task id spawn returned."}


def _brief(task: dict[str, Any]) -> dict[str, Any]:
    """A task as the model needs it: state, where, who, and the result once it ended."""
    keys = ("id", "state", "device", "agent", "harness", "dir", "runtime", "exit_status",
            "reason", "progress", "prompt", "result", "diff_stat")  # fmt: skip
    return {key: task.get(key) for key in keys}


def register(registry: ToolRegistry) -> None:
    """Register the delegation tools."""

    @registry.tool(
        "spawn",
        "Start another coding agent with a task, on this device or on another device of your "
        "group (device: its short id or name), and return the task id at once. The new agent "
        "is a member of the group: message it with send, or with task_nudge. The receiving "
        "device's spawn policy decides which harnesses and directories are allowed; a refusal "
        "comes back with its reason. Follow it with task_status (wait_seconds to wait for the "
        "end and its result).",
        schema(
            {
                "task": {"type": "string", "minLength": 1, "description": "What to do."},
                "device": {"type": "string", "description": "Where (default: this device)."},
                "harness": {
                    "type": "string",
                    "enum": ["claude", "codex", "gemini", "opencode", "pi", "cmd"],
                    "description": "Which agent program (default claude).",
                },
                "dir": {
                    "type": "string",
                    "description": "Its working directory (default: yours here; the policy's "
                    "first allowed directory on another device).",
                },
                "name": {"type": "string", "description": "Its agent name (default: a free one)."},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
            },
            ("task",),
        ),
    )
    async def spawn(ctx: ToolContext, args: dict[str, Any]) -> Any:
        device = args.get("device", "")
        directory = args.get("dir") or ("" if device else os.getcwd())
        params = {
            "text": args["task"], "on": device, "harness": args.get("harness", "claude"),
            "dir": directory, "name": args.get("name", ""), "tags": args.get("tags", []),
        }  # fmt: skip
        return await ctx.call("spawn", params)

    @registry.tool(
        "task_status",
        "The state of a task you (or anyone) spawned: requested, accepted, running, blocked "
        "(waiting on a permission prompt, shown in prompt), completed, failed, stopped, killed, "
        "refused or lost; with its agent, runtime, last progress line and, once it ended, its "
        "exit status, result (the end of its output) and diff_stat. wait_seconds waits until "
        "it ends (at most 600 s per call; call again to keep waiting).",
        schema(
            {
                "task": _TASK,
                "wait_seconds": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
            },
            ("task",),
        ),
        read_only=True,
    )
    async def task_status(ctx: ToolContext, args: dict[str, Any]) -> Any:
        wait = float(args.get("wait_seconds", 0))
        task = await ctx.call("task.show", {"task": args["task"], "wait": wait}, act=False)
        return _brief(task)

    @registry.tool(
        "task_nudge",
        "Send a running task's agent a message; it reaches the agent at its next tool call "
        "(urgent push). Use it to steer or add information.",
        schema({"task": _TASK, "text": {"type": "string", "minLength": 1}}, ("task", "text")),
    )
    async def task_nudge(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("task.nudge", {"task": args["task"], "text": args["text"]})

    @registry.tool(
        "task_stop",
        "Stop a task: its agent gets SIGTERM, and SIGKILL after a grace period; kill=true "
        "kills it at once.",
        schema({"task": _TASK, "kill": {"type": "boolean"}}, ("task",)),
    )
    async def task_stop(ctx: ToolContext, args: dict[str, Any]) -> Any:
        method = "task.kill" if args.get("kill") else "task.stop"
        return await ctx.call(method, {"task": args["task"]})


def _detail(tool: str, given: Any) -> str:
    """What a permission is for: the command, the path, or the input itself (cut short)."""
    given = given if isinstance(given, dict) else {}
    for key in ("command", "file_path", "path", "notebook_path", "url", "pattern"):
        if isinstance(given.get(key), str):
            return str(given[key])
    return json.dumps(given, ensure_ascii=False)[:300]


def register_approvals(registry: ToolRegistry) -> None:
    """Register the permission-prompt tools."""

    @registry.tool(
        "permission_prompt",
        "Ask Switchboard to decide a permission prompt of this spawned task: whoever its "
        "device allows answers it from any device (switchboard approve/deny). Claude Code "
        "calls it through --permission-prompt-tool mcp__switchboard__permission_prompt.",
        schema(
            {
                "tool_name": {"type": "string"},
                "input": {"type": "object"},
                "tool_use_id": {"type": "string"},
            },
            ("tool_name",),
            additionalProperties=True,
        ),
        piggyback=False,
    )
    async def permission_prompt(ctx: ToolContext, args: dict[str, Any]) -> Any:
        tool = str(args.get("tool_name", ""))
        given = args.get("input") or {}
        asked = {"tool": tool, "detail": _detail(tool, given)}
        answer = await ctx.call("prompt.ask", asked)
        if answer["allowed"]:
            return {"behavior": "allow", "updatedInput": given}
        why = answer.get("reason") or "denied"
        by = f" by {answer['by']}" if answer.get("by") else ""
        return {"behavior": "deny", "message": f"{answer['answer']}{by}: {why}"}

    @registry.tool(
        "approvals",
        "The permission prompts pending on every device of your group: prompt id, task, "
        "agent, tool and the command or path it asks for.",
        schema({}),
        read_only=True,
    )
    async def approvals(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("approvals", {}, act=False)

    @registry.tool(
        "approve",
        "Answer a pending permission prompt (its prompt id, or its task id): allow, or deny "
        "with a reason. The task's device decides whether you may; the first answer wins.",
        schema(
            {
                "prompt": {"type": "string", "minLength": 1},
                "allow": {"type": "boolean", "description": "true: allow; false: deny"},
                "reason": {"type": "string"},
            },
            ("prompt", "allow"),
        ),
    )
    async def approve(ctx: ToolContext, args: dict[str, Any]) -> Any:
        answer = "allow" if args["allow"] else "deny"
        return await ctx.call("prompt.answer", {"prompt": args["prompt"], "answer": answer,
                                                "reason": args.get("reason", "")})  # fmt: skip
