"""``Bridge``: the MCP server's way into the daemon, acting as one agent.

The MCP server is a thin client of the daemon's local API (``AsyncClient``). The bridge adds
who is calling: the agent is resolved lazily, at the first tool call, by ``agent.identify``
with ``SWITCHBOARD_AGENT`` (if set) and the *anchor* of the harness process that spawned us,
the same anchor the harness's hooks report, so hook and MCP server agree on one agent
(daemon/sessions.py). Lazily, because the harness runs its SessionStart hook (which binds the
session) before the model can call a tool.

When the daemon is down the bridge starts it (``autostart.connect``) once per failing call.

A connection to the daemon answers one call at a time, so a call that waits on purpose (the
push channel's long ``inbox.take``, ``wait_for_message``) runs on a connection of its own,
kept for the next such wait: tool calls never queue behind a wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import TYPE_CHECKING, Any, Final

from switchboard.daemon.autostart import connect
from switchboard.daemon.client import AsyncClient
from switchboard.errors import DaemonUnavailable
from switchboard.harnesses.hook import anchor as harness_anchor
from switchboard.harnesses.hook import terminal

if TYPE_CHECKING:
    from switchboard.config import Settings

log = logging.getLogger("switchboard.mcp")

# A tool call waits this long for the daemon unless it waits on purpose (wait_for_message):
# the daemon answers in milliseconds; a stuck call must turn into a tool error, not a hang.
DEFAULT_CALL_TIMEOUT: Final = 30.0


class Bridge:
    """Daemon calls on behalf of the agent this MCP server serves.

    Args:
        settings: the device's home.
        harness: the harness that spawned us (``SWITCHBOARD_HARNESS``, set by the installer).
        agent: the agent name from ``SWITCHBOARD_AGENT``/``--as``, or ``""``.
    """

    def __init__(self, settings: Settings, *, harness: str = "", agent: str = "") -> None:
        self.settings = settings
        self.harness = harness or os.environ.get("SWITCHBOARD_HARNESS", "") or "mcp"
        self.client = AsyncClient(settings.socket_path)
        self._waiting: list[AsyncClient] = []  # idle connections for calls that wait
        self.anchor = harness_anchor()
        self.hint = f"mcp:{uuid.uuid4().hex[:12]}"
        self._agent_env = agent
        self._name = ""
        self._address = ""

    @property
    def agent(self) -> str:
        """The agent's name (empty until identified)."""
        return self._name

    @property
    def address(self) -> str:
        """The agent's display address (empty until identified)."""
        return self._address

    async def raw(self, method: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        """Call the daemon, starting it once if it is not running (a call that waits on
        purpose, ``params["wait"]``, on a connection of its own)."""
        if not params.get("wait"):
            return await self._on(self.client, method, params, timeout)
        client = self._waiting.pop() if self._waiting else AsyncClient(self.settings.socket_path)
        try:
            return await self._on(client, method, params, timeout)
        finally:
            self._waiting.append(client)

    async def _on(
        self, client: AsyncClient, method: str, params: dict[str, Any], timeout: float | None
    ) -> Any:
        limit = DEFAULT_CALL_TIMEOUT if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await client.call(method, params)
        except DaemonUnavailable:
            await client.aclose()
            await asyncio.to_thread(lambda: connect(self.settings).close())
            async with asyncio.timeout(limit):
                return await client.call(method, params)
        except TimeoutError:
            raise DaemonUnavailable(f"the daemon did not answer {method} in {limit:g} s") from None

    async def identify(self, *, create: bool = True, rename: str | None = None) -> bool:
        """Resolve the acting agent; ``False`` if unknown and ``create`` is off."""
        params = {
            "harness": self.harness,
            "anchor": self.anchor,
            "agent": self._name or self._agent_env,
            "hint": self.hint,
            "create": create,
            "rename": rename,
            "cwd": os.environ.get("CLAUDE_PROJECT_DIR") or os.getcwd(),
            **terminal(),
        }
        found = await self.raw("agent.identify", params)
        if not found:
            return False
        self._name, self._address = found["name"], found["agent"]
        return True

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, act: bool = True
    ) -> Any:
        """Call a daemon method; with ``act``, as this agent (``params["agent"]``)."""
        params = dict(params or {})
        if act:
            if not self._name:
                await self.identify()
            params.setdefault("agent", self._name)
        timeout = float(params.get("wait") or 0.0) + DEFAULT_CALL_TIMEOUT
        return await self.raw(method, params, timeout)

    async def take(self, via: str, **options: Any) -> dict[str, Any]:
        """What is due for this agent's context (``inbox.take``), wrapped."""
        params = {"hint": self.hint, "anchor": self.anchor, "via": via, **options}
        result: dict[str, Any] = await self.call("inbox.take", params)
        return result

    async def aclose(self) -> None:
        """Close the daemon connections."""
        await self.client.aclose()
        for client in self._waiting:
            await client.aclose()
