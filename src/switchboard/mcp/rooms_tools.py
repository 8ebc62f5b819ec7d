"""MCP tools for rooms, presence, threads, search, receipts, requests and file leases.

Thin calls into the daemon's API (daemon/rooms.py, presence.py, threads.py, leases.py); the
descriptions are written for the model that calls them.
"""

from __future__ import annotations

from typing import Any, Final

from switchboard.mcp.registry import ToolContext, ToolRegistry, schema

_ROOM: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": 65,
    "description": "Room name, with or without '#'.",
}
_AGENT: Final = {
    "type": "string",
    "minLength": 1,
    "description": "An agent: '@name' or 'name:DEVICE' (use name:DEVICE if several share a name).",
}
_PATHS: Final = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "minItems": 1,
    "maxItems": 1000,
    "description": "Paths or globs relative to the repository's top directory, e.g. "
    "'src/app.py' or 'src/api/*.py'.",
}
_REPO: Final = {
    "type": "string",
    "description": "The repository: its origin URL, else its top directory's name (default: "
    "the repository of your working directory as the CLI would find it; pass it to be sure).",
}


def _with_repo(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments with ``repo`` defaulting to the working directory's repository."""
    if "repo" in args:
        return dict(args)
    from switchboard.repos import repository  # noqa: PLC0415 - light, lazy

    return {**args, "repo": repository()[1]}


def register(registry: ToolRegistry) -> None:
    """Register the rooms, presence, history and lease tools."""
    _room_tools(registry)
    _presence_tools(registry)
    _history_tools(registry)
    _lease_tools(registry)


def _room_tools(registry: ToolRegistry) -> None:
    @registry.tool(
        "room_create",
        "Create a chat room for a team of agents; you become its first member. kind: 'public' "
        "(listed, anyone joins and reads), 'private' (listed, join by invitation, members "
        "read) or 'secret' (invisible to non-members). Post to it with send to '#name'.",
        schema(
            {
                "room": _ROOM,
                "kind": {"type": "string", "enum": ["public", "private", "secret"]},
                "description": {"type": "string", "maxLength": 500},
            },
            ("room",),
        ),
    )
    async def room_create(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {"name": args["room"], "kind": args.get("kind", "public")}
        return await ctx.call("room.create", {**params, "description": args.get("description", "")})

    @registry.tool(
        "room_join",
        "Join a room (private and secret rooms need an invitation). Returns the room and its "
        "members with their status. You then receive its messages and notices of members "
        "joining, leaving and changing status.",
        schema({"room": _ROOM}, ("room",)),
    )
    async def room_join(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("room.join", {"name": args["room"]})

    @registry.tool(
        "room_leave",
        "Leave a room: you stop receiving its messages.",
        schema({"room": _ROOM}, ("room",)),
    )
    async def room_leave(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("room.leave", {"name": args["room"]})

    @registry.tool(
        "room_invite",
        "Invite an agent into a room you are a member of; it is told and may then join.",
        schema({"room": _ROOM, "agent": _AGENT}, ("room", "agent")),
    )
    async def room_invite(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("room.invite", {"name": args["room"], "member": args["agent"]})

    @registry.tool(
        "room_kick",
        "Remove a member (and its invitation) from a room you created.",
        schema({"room": _ROOM, "agent": _AGENT}, ("room", "agent")),
    )
    async def room_kick(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("room.kick", {"name": args["room"], "member": args["agent"]})

    @registry.tool(
        "room_list",
        "List the rooms you can see: name, kind, member count, and whether you are a member "
        "or invited.",
        schema({}),
        read_only=True,
    )
    async def room_list(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("room.list", {})

    @registry.tool(
        "room_members",
        "List a room's members with their status (active, idle, busy, offline) and summary.",
        schema({"room": _ROOM}, ("room",)),
        read_only=True,
    )
    async def room_members(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("room.members", {"name": args["room"]})

    @registry.tool(
        "room_read",
        "Read a room's messages from where you last left off (your read position moves past "
        "what is returned). Pass 'last' for the last N messages instead, or 'since' for those "
        "after a message id.",
        schema(
            {
                "room": _ROOM,
                "last": {"type": "integer", "minimum": 1, "maximum": 1000},
                "since": {"type": "integer", "minimum": 0},
            },
            ("room",),
        ),
    )
    async def room_read(ctx: ToolContext, args: dict[str, Any]) -> Any:
        params = {"name": args["room"], "last": args.get("last"), "since": args.get("since")}
        return await ctx.call("room.read", {k: v for k, v in params.items() if v is not None})


def _presence_tools(registry: ToolRegistry) -> None:
    @registry.tool(
        "set_presence",
        "Tell others how you are: status ('active', 'idle', 'busy', 'offline'), a one-line "
        "summary of what you are working on, and/or visibility ('visible': listed; 'hidden': "
        "not listed, reachable by exact address; 'ghost': neither). Rooms you are in are told "
        "of status changes.",
        schema(
            {
                "status": {"type": "string", "enum": ["active", "idle", "busy", "offline"]},
                "summary": {"type": "string", "maxLength": 200},
                "visibility": {"type": "string", "enum": ["visible", "hidden", "ghost"]},
            },
            minProperties=1,
        ),
    )
    async def set_presence(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("presence.set", dict(args))

    @registry.tool(
        "request",
        "Ask agents for something and expect an answer: like send, but you are told if a "
        "recipient goes idle, stops or goes offline without replying. Replies (the reply tool, "
        "or send with reply_to) cancel the watch.",
        schema(
            {
                "to": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                "text": {"type": "string", "minLength": 1},
                "reply_to": {"type": "integer", "minimum": 1},
            },
            ("to", "text"),
        ),
    )
    async def request(ctx: ToolContext, args: dict[str, Any]) -> Any:
        to = [t if t.startswith(("@", "#")) else f"@{t}" for t in args["to"]]
        params = {"to": to, "text": args["text"], "intent": "request"}
        if args.get("reply_to"):
            params["reply_to"] = args["reply_to"]
        return await ctx.call("send", params)


def _history_tools(registry: ToolRegistry) -> None:
    @registry.tool(
        "thread_show",
        "Show a conversation thread: the first message and every reply. 'id' is a message id "
        "(any message of the thread) or a thread id.",
        schema({"id": {"type": "string", "minLength": 1}}, ("id",)),
        read_only=True,
    )
    async def thread_show(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("thread.show", {"id": str(args["id"])})

    @registry.tool(
        "search_messages",
        "Full-text search over the messages you may see (yours, those sent to you, and rooms "
        "you may read). Words must all match; quote a phrase (\"build failed\"); 'word*' "
        "matches a prefix. Optionally only one room or one sender.",
        schema(
            {
                "query": {"type": "string", "minLength": 1, "maxLength": 500},
                "room": _ROOM,
                "sender": _AGENT,
                "limit": {"type": "integer", "minimum": 1, "maximum": 200},
            },
            ("query",),
        ),
        read_only=True,
    )
    async def search_messages(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("search", dict(args))

    @registry.tool(
        "sent_messages",
        "Your last sent messages with each recipient's state: queued, delivered or read.",
        schema({"last": {"type": "integer", "minimum": 1, "maximum": 200}}),
        read_only=True,
    )
    async def sent_messages(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("sent", {"last": args.get("last", 20)})


def _lease_tools(registry: ToolRegistry) -> None:
    @registry.tool(
        "lease_acquire",
        "Announce the files you are about to edit, so agents on this machine and others do not "
        "edit them at the same time. exclusive=true refuses others (and is refused if someone "
        "holds them); shared leases only warn. Leases expire after ttl seconds (default 1800). "
        "If refused, the answer names the holder: message them or work elsewhere.",
        schema(
            {
                "paths": _PATHS,
                "repo": _REPO,
                "exclusive": {"type": "boolean"},
                "reason": {"type": "string", "maxLength": 500},
                "ttl": {"type": "number", "exclusiveMinimum": 0, "maximum": 604800},
            },
            ("paths",),
        ),
    )
    async def lease_acquire(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("lease.acquire", _with_repo(args))

    @registry.tool(
        "lease_release",
        "Release your leases when done: the given paths, or all of them in the repository.",
        schema({"paths": {**_PATHS, "minItems": 0}, "repo": _REPO}),
    )
    async def lease_release(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("lease.release", _with_repo(args))

    @registry.tool(
        "lease_list",
        "List active file leases: who works on which paths, why, and until when. Leave 'repo' "
        "out for every repository.",
        schema({"repo": _REPO}),
        read_only=True,
    )
    async def lease_list(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("lease.list", {"repo": args.get("repo", "")}, act=False)

    @registry.tool(
        "lease_check",
        "Check whether paths are free of other agents' exclusive leases before editing or "
        "committing them.",
        schema({"paths": _PATHS, "repo": _REPO}, ("paths",)),
        read_only=True,
    )
    async def lease_check(ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await ctx.call("lease.check", _with_repo(args))
