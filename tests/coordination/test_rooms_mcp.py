"""The coordination MCP tools, called as the MCP server calls them, against a real daemon."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cluster import Device

from switchboard.errors import Forbidden
from switchboard.mcp.bridge import Bridge
from switchboard.mcp.registry import ToolRegistry
from switchboard.mcp.server import build_registry

TOOLS = (
    "room_create", "room_join", "room_leave", "room_invite", "room_kick", "room_list",
    "room_members", "room_read", "set_presence", "request", "thread_show", "search_messages",
    "sent_messages", "lease_acquire", "lease_release", "lease_list", "lease_check",
)  # fmt: skip


def test_rooms_mcp_tools_are_registered_with_descriptions() -> None:
    """Every coordination tool is in the server's registry, described for the model."""
    registry = build_registry()
    for name in TOOLS:
        tool = registry.get(name)
        assert tool is not None, name
        assert len(tool.description) > 40
        assert tool.input_schema["type"] == "object"


async def _call(registry: ToolRegistry, bridge: Bridge, name: str, **args: Any) -> Any:
    tool = registry.get(name)
    assert tool is not None
    jsonschema.validate(args, tool.input_schema)
    return await tool.handler(bridge, args)


async def _scenario(settings: Any) -> None:
    registry = build_registry()
    luna, nova = Bridge(settings, agent="luna"), Bridge(settings, agent="nova")
    try:
        created = await _call(registry, luna, "room_create", room="#crew", kind="private")
        assert created["kind"] == "private"
        with pytest.raises(Forbidden):
            await _call(registry, nova, "room_join", room="crew")
        await _call(registry, luna, "room_invite", room="crew", agent="@nova")
        joined = await _call(registry, nova, "room_join", room="crew")
        assert {m["name"] for m in joined["members"]} == {"luna", "nova"}
        assert [r["name"] for r in await _call(registry, nova, "room_list")] == ["crew"]
        await luna.call("send", {"to": ["#crew"], "text": "standup in five"})
        read = await _call(registry, nova, "room_read", room="crew")
        assert [m["text"] for m in read] == ["standup in five"]
        found = await _call(registry, nova, "search_messages", query="standup", room="crew")
        assert [m["text"] for m in found] == ["standup in five"]
        asked = await _call(registry, luna, "request", to=["nova"], text="status?")
        assert asked["result"] == "delivered"
        thread = await _call(registry, luna, "thread_show", id=str(asked["id"]))
        assert [m["intent"] for m in thread] == ["request"]
        sent = await _call(registry, luna, "sent_messages", last=1)
        assert sent[0]["recipients"][0]["state"] in ("delivered", "read")
        me = await _call(registry, nova, "set_presence", status="busy", summary="reviewing")
        assert (me["status"], me["summary"]) == ("busy", "reviewing")
        members = await _call(registry, luna, "room_members", room="crew")
        assert {m["name"]: m["status"] for m in members}["nova"] == "busy"
        await _call(registry, luna, "lease_acquire", paths=["a.py"], repo="r", exclusive=True)
        check = await _call(registry, nova, "lease_check", paths=["a.py"], repo="r")
        assert not check["ok"]
        assert [x["path"] for x in await _call(registry, nova, "lease_list", repo="r")] == ["a.py"]
        await _call(registry, luna, "lease_release", repo="r")
        await _call(registry, luna, "room_kick", room="crew", agent="@nova")
        await _call(registry, luna, "room_leave", room="crew")
    finally:
        await luna.aclose()
        await nova.aclose()


def test_rooms_mcp_tools_drive_the_daemon(tmp_path: Path) -> None:
    """The tools create, join and read rooms, search, request, set presence and lease."""
    device = Device(tmp_path / "solo", "solo").start()
    try:
        asyncio.run(_scenario(device.settings))
    finally:
        device.stop()
