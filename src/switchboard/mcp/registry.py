"""Tools of the MCP server: how a module declares them, and what a tool handler is given.

A tool module exposes ``register(registry: ToolRegistry) -> None`` and is listed once in
``mcp.server.TOOL_MODULES``. Inside, each tool is an ``async def`` decorated with
``@registry.tool(name, description, schema)``; it receives a ``ToolContext`` and the validated
arguments, and returns a JSON-able value (shown to the model as JSON). Raise
``switchboard.errors.SwitchboardError`` (or a subclass) for a clear tool error.

Example (a rooms module)::

    def register(registry: ToolRegistry) -> None:
        @registry.tool("room_join", "Join a room ...", {"type": "object", ...})
        async def room_join(ctx: ToolContext, args: dict[str, Any]) -> Any:
            return await ctx.call("room.join", {"room": args["room"]})

The server adds the caller's unread messages to every tool result (``piggyback=True``), so a
harness without push still sees them at its next tool call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


class ToolContext(Protocol):
    """What a tool handler may use: the daemon, acting as the calling agent."""

    @property
    def agent(self) -> str:
        """The calling agent's name (registered on first use)."""
        ...

    @property
    def address(self) -> str:
        """The calling agent's display address (``luna:BOXE``)."""
        ...

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, act: bool = True
    ) -> Any:
        """Call a daemon API method; with ``act``, ``params["agent"]`` is the calling agent."""
        ...


Handler = Callable[[ToolContext, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Tool:
    """One tool: its name, a description written for a model, a JSON schema and a handler."""

    name: str
    description: str
    input_schema: dict[str, Any]
    handler: Handler
    piggyback: bool = True
    read_only: bool = False


class ToolRegistry:
    """The server's tools, in registration order; names are unique."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def add(self, tool: Tool) -> None:
        """Add a tool; a second tool of the same name is a programming error."""
        assert tool.name not in self._tools, f"duplicate tool {tool.name}"
        assert tool.input_schema.get("type") == "object", f"{tool.name}: schema must be an object"
        self._tools[tool.name] = tool

    def tool(
        self,
        name: str,
        description: str,
        input_schema: dict[str, Any],
        *,
        piggyback: bool = True,
        read_only: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Decorator form of ``add``."""

        def decorate(handler: Handler) -> Handler:
            self.add(Tool(name, description, input_schema, handler, piggyback, read_only))
            return handler

        return decorate

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or ``None``."""
        return self._tools.get(name)

    def __iter__(self) -> Any:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)


def schema(
    properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    """A JSON schema for an object with ``properties`` (no other keys allowed)."""
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }
    if required:
        out["required"] = list(required)
    return out
