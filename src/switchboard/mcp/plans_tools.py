"""MCP tools of plans (task graphs): run_plan, plan_status.

An agent hands Switchboard a plan of several tasks across devices (the TOML of ``switchboard
run``) and follows it; each task goes through its device's spawn policy, and a task whose
dependency failed or was refused is skipped with the reason.
"""

from __future__ import annotations

import os
from typing import Any, Final

from switchboard.mcp.registry import ToolContext, ToolRegistry, schema

# plan_status waits at most this long per call (MCP clients time out long tool calls).
MAX_WAIT_SECONDS: Final = 600


def register(registry: ToolRegistry) -> None:
    """Register the plan tools."""

    @registry.tool(
        "run_plan",
        "Run a plan of several tasks across devices of your group and return its id and "
        "first report at once. The plan is TOML: [[task]] tables with name, prompt, and "
        "optionally harness (default claude), device (short id or name; default this one), "
        "dir and depends_on (names of tasks that must complete first). Each device's spawn "
        "policy decides its tasks; a task whose dependency failed or was refused is skipped, "
        "and the report says why. dry_run=true only asks each device's policy and starts "
        "nothing. Follow it with plan_status.",
        schema(
            {
                "plan": {"type": "string", "minLength": 1, "description": "The plan's TOML."},
                "dry_run": {"type": "boolean", "description": "Only check (default false)."},
            },
            ("plan",),
        ),
    )
    async def run_plan(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {"text": args["plan"], "dry_run": bool(args.get("dry_run", False)),
                  "file": os.path.join(os.getcwd(), "plan.toml")}  # fmt: skip
        return await ctx.call("plan.run", params)

    @registry.tool(
        "plan_status",
        "A plan's report: its state (running, completed, failed) and each task's state "
        "(pending, running, blocked, completed, failed, refused, stopped, killed, lost, "
        "skipped), task id, agent, reason and result. wait_seconds waits until the plan "
        "ends (at most 600 s per call; call again to keep waiting).",
        schema(
            {
                "plan": {"type": "string", "minLength": 1, "description": "The plan id."},
                "wait_seconds": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
            },
            ("plan",),
        ),
        read_only=True,
    )
    async def plan_status(ctx: ToolContext, args: dict[str, Any]) -> Any:
        wait = min(float(args.get("wait_seconds", 0)), MAX_WAIT_SECONDS)
        return await ctx.call("plan.show", {"plan": args["plan"], "wait": wait}, act=False)
