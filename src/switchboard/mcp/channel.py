"""Push messages into a running Claude Code session over an MCP channel.

Claude Code's channels (research preview, v2.1.80+): a stdio MCP server that declares the
experimental capability ``claude/channel`` may send ``notifications/claude/channel`` with
``{"content": str, "meta": {str: str}}``; Claude Code shows each as a
``<channel source="switchboard" ...>`` turn, also to an idle session. It does so only when the
user started Claude with ``--dangerously-load-development-channels server:switchboard`` (or an
allowlisted plugin); otherwise the notifications are dropped silently, which is why hooks and
tool results remain the floor.

We push only to a client that declared the same capability in its ``initialize`` (or when
``SWITCHBOARD_CHANNEL=1`` says it is wanted), from one background task per server:
``inbox.take`` waits for what is due and holds it (``via="channel"``), the notification goes
out, and only once it is written is the block recorded as injected (a failed write releases it,
to be offered again; daemon/inject.py). The SDK's typed notification path reshapes custom
params, so the raw ``notify(method, params)`` of the session's connection is used, reached in
``_raw_notify``: the one place that depends on an SDK internal (pinned ``mcp>=2.3,<3``).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Final

import anyio

from switchboard.errors import SwitchboardError

if TYPE_CHECKING:
    from mcp.server.session import ServerSession

    from switchboard.mcp.bridge import Bridge

log = logging.getLogger("switchboard.mcp.channel")

CHANNEL_CAPABILITY: Final = "claude/channel"
CHANNEL_METHOD: Final = "notifications/claude/channel"
# One long wait per round: the daemon answers as soon as something is due.
POLL_WAIT: Final = 50.0
# Until the agent is known (the SessionStart hook binds it), look again this often.
IDENTIFY_RETRY: Final = 2.0


def client_wants_channel(session: ServerSession) -> bool:
    """Whether the client declared the ``claude/channel`` capability (or it is forced on)."""
    if os.environ.get("SWITCHBOARD_CHANNEL") == "1":
        return True
    capabilities = session.client_capabilities
    experimental = getattr(capabilities, "experimental", None) or {}
    return CHANNEL_CAPABILITY in experimental


async def _raw_notify(session: ServerSession, params: dict[str, Any]) -> None:
    connection = getattr(session, "_connection", None)
    notify = getattr(connection, "notify", None)
    if notify is None:  # the SDK changed shape: degrade to no push (hooks still deliver)
        raise RuntimeError("this mcp SDK version offers no raw notify; channel push is off")
    await notify(CHANNEL_METHOD, params)


class Channel:
    """The push task of one MCP server; idle until a channel-capable client shows up."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.session: ServerSession | None = None
        self._ready = anyio.Event()
        self.sent = 0

    def offer(self, session: ServerSession) -> None:
        """Called on each request: start pushing once a client that wants it is connected."""
        if self.session is None and client_wants_channel(session):
            self.session = session
            self._ready.set()

    async def run(self) -> None:
        """Push due messages to the client until cancelled."""
        await self._ready.wait()
        assert self.session is not None
        while True:  # until the SessionStart hook (or a tool call) has named the agent
            if await self._identified():
                break
            await anyio.sleep(IDENTIFY_RETRY)
        while True:
            try:
                taken = await self.bridge.take("channel", wait=POLL_WAIT, hold=True)
            except SwitchboardError as exc:
                log.warning("! channel: %s", exc)
                await anyio.sleep(IDENTIFY_RETRY)
                continue
            if not taken["text"]:
                continue
            error = await self._push(taken)
            if taken.get("handover"):
                await self._settle(taken["handover"], error)

    async def _identified(self) -> bool:
        try:
            return bool(self.bridge.agent) or await self.bridge.identify(create=False)
        except SwitchboardError as exc:
            log.warning("! channel: %s", exc)
            return False

    async def _settle(self, handover: str, error: str) -> None:
        params = {"harness": self.bridge.harness, "handover": handover, "error": error}
        kind = "inject_failed" if error else "injected"
        try:
            await self.bridge.call("agent.hook", {**params, "kind": kind}, act=False)
        except SwitchboardError as exc:  # the hold lapses; the message is offered again
            log.warning("! channel: could not settle the delivery: %s", exc)

    async def _push(self, taken: dict[str, Any]) -> str:
        """Send one notification; return ``""``, or what went wrong."""
        assert self.session is not None
        messages = taken["messages"]
        meta = {
            "agent": self.bridge.address,
            "count": str(len(messages)),
            "message_ids": ",".join(str(m["id"]) for m in messages),
        }
        if messages:
            meta["from"] = str(messages[0]["from"])
        try:
            await _raw_notify(self.session, {"content": taken["text"], "meta": meta})
        except (RuntimeError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            log.warning("! channel push failed: %s", exc)
            return f"channel push failed: {exc}"[:300] or "channel push failed"
        self.sent += 1
        return ""
