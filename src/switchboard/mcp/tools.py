"""The core MCP tools: identity, agents, messages, events and subscriptions.

Descriptions are written for the model that calls them: what the tool does, when to use it,
and what comes back. Every result also carries the caller's unread messages (server.py).
"""

from __future__ import annotations

from typing import Any, Final

from switchboard.errors import UserError
from switchboard.mcp.registry import ToolContext, ToolRegistry, schema

# wait_for_message waits at most this long per call: MCP clients time tool calls out (Claude
# Code after minutes), and a model can simply call again.
MAX_WAIT_SECONDS: Final = 600
DEFAULT_WAIT_SECONDS: Final = 60
MAX_QUERY_ROWS: Final = 500

_TO = {
    "description": "Recipients: '@name' (every agent of that name), '@name:DEV' (one device), "
    "'#room', '+tag' (every agent with that tag) or '@all'. A bare name is taken as '@name'.",
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ],
}
_TEXT = {
    "type": "string",
    "minLength": 1,
    "description": "The message (plain text, at most 64 KiB).",
}
_PRIORITY = {
    "type": "string",
    "enum": ["normal", "urgent"],
    "description": "'urgent' interrupts the recipient where its harness allows; default normal.",
}


def _targets(to: Any) -> list[str]:
    items = [to] if isinstance(to, str) else list(to)
    return [
        t if t.startswith(("@", "#", "+")) else f"@{t}" for t in (str(i).strip() for i in items)
    ]


def _take_result(taken: dict[str, Any], read: bool) -> str:
    """A take answer for the model: what it holds, then the wrapped block."""
    ids = [m["id"] for m in taken["messages"]]
    if not ids and not taken["text"]:
        return "no unread messages"
    state = "marked read" if read else "still unread"
    head = f"{len(ids)} message(s) ({state}): ids {', '.join(map(str, ids)) or '-'}"
    if taken["left_out"]:
        head += f"; {taken['left_out']} more did not fit: call inbox again"
    return f"{head}\n{taken['text']}"


def register(registry: ToolRegistry) -> None:
    """Register the core tools."""
    _identity_tools(registry)
    _message_tools(registry)
    _event_tools(registry)


def _identity_tools(registry: ToolRegistry) -> None:
    @registry.tool(
        "whoami",
        "Return your own Switchboard identity: your address (name:DEVICE) that other agents "
        "use to message you, and how many unread messages you have.",
        schema({}),
        read_only=True,
    )
    async def whoami(ctx: ToolContext, args: dict[str, Any]) -> Any:
        unread = await ctx.call("inbox", {"peek": True})
        return {"address": ctx.address, "name": ctx.agent, "unread": len(unread)}

    @registry.tool(
        "register",
        "Set how other agents see you: a memorable name (changes your address), tags, and a "
        "one-line summary of what you are working on. Call it when you start a task so others "
        "know who to ask. All fields are optional.",
        schema(
            {
                "name": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9][A-Za-z0-9_.\\-]{0,31}$",
                    "description": "New agent name (letters, digits, '_', '.', '-').",
                },
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                "summary": {"type": "string", "maxLength": 200},
            }
        ),
    )
    async def register_tool(ctx: ToolContext, args: dict[str, Any]) -> Any:
        bridge: Any = ctx
        if args.get("name"):
            await bridge.identify(rename=args["name"])
        params = {"harness": bridge.harness, "summary": args.get("summary", "")}
        if "tags" in args:
            params["tags"] = args["tags"]
        return await ctx.call("register", params)

    @registry.tool(
        "list_agents",
        "List every agent on every device of your group: address, status (active, busy, idle, "
        "unreachable: its device is away, messages wait for it; offline), harness, working "
        "directory and a one-line summary of what it is doing. Use it to find who to message.",
        schema({}),
        read_only=True,
    )
    async def list_agents(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("agents", {}, act=False)


def _message_tools(registry: ToolRegistry) -> None:
    @registry.tool(
        "send",
        "Send a message to other agents. Returns per recipient whether it was delivered to "
        "its device, queued (its device is away) or offline (the agent is gone; it gets the "
        "message when it is back). Keep messages short and specific; say what "
        "you need and by when.",
        schema(
            {"to": _TO, "text": _TEXT, "thread": {"type": "string"}, "priority": _PRIORITY},
            ("to", "text"),
        ),
    )
    async def send(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {"to": _targets(args["to"]), "text": args["text"], "thread": args.get("thread")}
        params["priority"] = args.get("priority", "normal")
        return await ctx.call("send", {k: v for k, v in params.items() if v is not None})

    @registry.tool(
        "inbox",
        "Show your unread messages in full. By default they are then marked read "
        "(acknowledged), which tells their senders you have read them; pass acknowledge=false "
        "to only look.",
        schema({"acknowledge": {"type": "boolean", "default": True}}),
        piggyback=False,
    )
    async def inbox(ctx: ToolContext, args: dict[str, Any]) -> Any:
        bridge: Any = ctx
        ack = bool(args.get("acknowledge", True))
        return _take_result(await bridge.take("tool:inbox", all=True, ack=ack), ack)

    @registry.tool(
        "wait_for_message",
        "Wait until a message arrives for you (or until timeout seconds pass), then return "
        "your unread messages and mark them read. Use it when you are waiting for an answer "
        "and have nothing else to do.",
        schema(
            {
                "timeout": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": MAX_WAIT_SECONDS,
                    "default": DEFAULT_WAIT_SECONDS,
                    "description": "Seconds to wait at most.",
                }
            }
        ),
        piggyback=False,
    )
    async def wait_for_message(ctx: ToolContext, args: dict[str, Any]) -> Any:
        bridge: Any = ctx
        wait = float(args.get("timeout", DEFAULT_WAIT_SECONDS))
        taken = await bridge.take("tool:wait_for_message", all=True, ack=True, wait=wait)
        return _take_result(taken, True)

    @registry.tool(
        "reply",
        "Answer a message you received: sends your text to its sender, in the same thread, "
        "and marks the message read. 'id' is the message id shown in the message block.",
        schema(
            {"id": {"type": "integer", "minimum": 1}, "text": _TEXT, "priority": _PRIORITY},
            ("id", "text"),
        ),
    )
    async def reply(ctx: ToolContext, args: dict[str, Any]) -> Any:
        message = await ctx.call("message.get", {"id": args["id"]})
        if not any(r.startswith(f"{ctx.agent}:") for r in message.get("recipients", [])):
            raise UserError(f"message #{args['id']} was not sent to you")
        params = {
            "to": [f"@{message['from']}"],
            "text": args["text"],
            "thread": message.get("thread") or message["ref"],
            "priority": args.get("priority", "normal"),
        }
        result = await ctx.call("send", params)
        await ctx.call("message.ack", {"ids": [args["id"]]})
        return result


def _event_tools(registry: ToolRegistry) -> None:
    @registry.tool(
        "query_events",
        "Query the shared event log of every device: messages, status changes, file edits, "
        "commands run. Filter by type (e.g. file_edited) and acting agent, or pass 'where', a "
        "read-only SQL condition over events_view(id, ts, type, agent, device, origin, seq, "
        "data), e.g. \"json_extract(data, '$.path') LIKE '%.py'\". Returns the newest "
        "'last' events (default 50).",
        schema(
            {
                "type": {"type": "string"},
                "agent": {"type": "string", "description": "name or name:DEVICE"},
                "where": {"type": "string", "maxLength": 4096},
                "last": {"type": "integer", "minimum": 1, "maximum": MAX_QUERY_ROWS},
            }
        ),
        read_only=True,
    )
    async def query_events(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {k: args.get(k) for k in ("type", "agent", "where")}
        params["last"] = args.get("last", 50)
        clean = {k: v for k, v in params.items() if v is not None}
        if not ctx.agent:  # the caller reads (its rooms only): an acting call identifies it
            await ctx.call("ping")
        return await ctx.call("events", {**clean, "reader": ctx.agent}, act=False)

    @registry.tool(
        "subscribe",
        "Be told about future events from any device that match all given patterns (shell "
        "globs): event type (e.g. 'file_edited', 'command_run', '*'), acting agent (e.g. "
        "'nova' or 'nova:BOXE'), file path (e.g. '*.py', 'src/*'). Matching events then appear "
        "with your messages. Returns the subscription id.",
        schema(
            {
                "type": {"type": "string", "maxLength": 256},
                "agent": {"type": "string", "maxLength": 256},
                "file": {"type": "string", "maxLength": 256},
            }
        ),
    )
    async def subscribe(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {"type": args.get("type"), "of": args.get("agent"), "file": args.get("file")}
        if params["file"] and not params["type"]:
            params["type"] = "file_edited"
        return await ctx.call("events.subscribe", {k: v for k, v in params.items() if v})

    @registry.tool(
        "unsubscribe",
        "Stop a subscription by its id, or all of your subscriptions with all=true.",
        schema({"id": {"type": "integer", "minimum": 1}, "all": {"type": "boolean"}}),
    )
    async def unsubscribe(ctx: ToolContext, args: dict[str, Any]) -> Any:
        if "id" not in args and not args.get("all"):
            raise UserError("give the subscription id, or all=true")
        params = {} if args.get("all") else {"id": args["id"]}
        return await ctx.call("events.unsubscribe", params)
