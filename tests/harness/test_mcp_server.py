"""The official MCP client drives ``switchboard mcp`` (stdio) through every tool."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import msgspec
from harness_kit import PY, Device, Lines, Session, free_port, mcp_env, timeout
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_kit import StdioProbe, call, mcp_session, run

from switchboard.daemon import shapes

TOOLS = {
    "whoami", "register", "list_agents", "send", "inbox", "wait_for_message", "reply",
    "query_events", "subscribe", "unsubscribe",
}  # fmt: skip


def _exactly(value: Any, cls: Any) -> None:
    typed = msgspec.convert(value, cls, strict=True)
    assert msgspec.to_builtins(typed) == value, f"{cls} does not declare all of {value!r}"


def test_mcp_results_are_the_api_shapes(device: Device) -> None:
    """What register, list_agents, send and query_events return is exactly the shape the CLI's
    --json prints and the typed client decodes (daemon/shapes.py)."""
    device.call("register", agent="nova")

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "luna"}) as s:
            _exactly((await call(s, "register", summary="typing shapes")).value, shapes.Agent)
            _exactly((await call(s, "list_agents")).value, list[shapes.Agent])
            _exactly((await call(s, "send", to="nova", text="shapes?")).value, shapes.SendResult)
            events = (await call(s, "query_events", type="message_posted")).value
            assert events
            _exactly(events, list[shapes.EventRow])
            room = (await call(s, "room_create", room="typed")).value
            _exactly(room, shapes.Room)
            _exactly((await call(s, "room_list")).value, list[shapes.Room])
            await call(s, "send", to="#typed", text="rooms are typed too")
            _exactly((await call(s, "room_read", room="typed", last=1)).value,
                     list[shapes.HistoryMessage])  # fmt: skip
            granted = (await call(s, "lease_acquire", paths=["docs/*.md"])).value
            _exactly(granted, shapes.LeaseGrant)
            _exactly((await call(s, "lease_list")).value, list[shapes.Lease])
            _exactly((await call(s, "sent_messages")).value, list[shapes.SentMessage])

    run(body)


def test_mcp_tools_are_listed_with_schemas(device: Device) -> None:
    """Every core tool is listed with a description for the model and an object schema."""

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "luna"}) as session:
            listed = {t.name: t for t in (await session.list_tools()).tools}
            assert set(listed) >= TOOLS
            for name in TOOLS:
                assert len(listed[name].description or "") > 40
                assert listed[name].input_schema["type"] == "object"

    run(body)


def test_mcp_every_tool_round_trip(device: Device) -> None:
    """whoami, register, list_agents, send, inbox, wait, reply, query, (un)subscribe all work."""
    device.call("register", agent="nova")

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "luna"}) as s:
            me = await call(s, "whoami")
            assert me.value["address"] == f"luna:{device.short}"
            reg = await call(s, "register", summary="porting the parser", tags=["py"])
            assert reg.value["summary"] == "porting the parser"
            agents = {a["name"] for a in (await call(s, "list_agents")).value}
            assert {"luna", "nova"} <= agents
            sent = await call(s, "send", to="nova", text="can you review #12?")
            assert sent.value["result"] == "delivered"
            nova_inbox = device.call("inbox", agent="nova")
            assert nova_inbox[0]["text"] == "can you review #12?"
            device.call("send", agent="nova", to=["@luna"], text="sure, after lunch", thread="t1")
            peek = await call(s, "inbox", acknowledge=False)
            assert "sure, after lunch" in peek.text and "still unread" in peek.text
            waited = await call(s, "wait_for_message", timeout=5)
            assert "sure, after lunch" in waited.text and "marked read" in waited.text
            message_id = device.call("send", agent="nova", to=["@luna"], text="ping?")["id"]
            local_id = device.call("inbox", agent="luna", peek=True)[0]["id"]
            assert local_id == message_id
            replied = await call(s, "reply", id=message_id, text="pong")
            assert replied.value["recipients"][0]["address"] == f"nova:{device.short}"
            assert device.call("inbox", agent="nova")[0]["text"] == "pong"
            assert device.call("inbox", agent="luna", peek=True) == []
            events = await call(s, "query_events", type="message_posted", last=2)
            assert [e["type"] for e in events.value] == ["message_posted"] * 2
            sql = await call(s, "query_events", where="json_extract(data, '$.text') = 'pong'")
            assert len(sql.value) == 1
            sub = await call(s, "subscribe", file="*.py")
            assert sub.value["file"] == "*.py"
            assert (await call(s, "unsubscribe", id=sub.value["id"])).value["removed"] == 1

    run(body)


def test_mcp_unread_messages_ride_on_tool_results_once(device: Device) -> None:
    """A message for the caller appears on its next tool result, wrapped, and not again."""
    device.call("register", agent="nova")

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "luna"}) as s:
            assert (await call(s, "whoami")).unread == ""
            device.call("send", agent="nova", to=["@luna"], text="heads up: main is frozen")
            first = await call(s, "list_agents")
            assert "heads up: main is frozen" in first.unread
            assert "<switchboard-inbox-" in first.unread and "from other agents" in first.unread
            assert (await call(s, "whoami")).unread == ""

    run(body)


def test_mcp_tool_errors_are_clear(device: Device) -> None:
    """Bad arguments, unknown agents, oversized messages and unknown tools are tool errors."""

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "luna"}) as s:
            cases = [
                (await call(s, "send", text="hi"), "'to' is a required property"),
                (await call(s, "send", to="@ghost", text="hi"), "unknown agent @ghost"),
                (await call(s, "send", to="@luna", text="x" * 70_000), "exceeds limit"),
                (await call(s, "reply", id=999_999, text="hi"), "no message #999999"),
                (await call(s, "query_events", where="1; DROP TABLE events"), "error"),
                (await call(s, "unsubscribe"), "give the subscription id"),
                (await call(s, "no_such_tool"), "unknown tool"),
            ]
            for result, expected in cases:
                assert result.is_error, expected
                assert expected in result.text, (expected, result.text)
            assert not (await call(s, "whoami")).is_error  # still serving

    run(body)


def test_mcp_and_hooks_agree_on_the_agent_through_the_anchor(device: Device) -> None:
    """Without SWITCHBOARD_AGENT, the MCP server finds the agent its harness's hooks named."""
    claude = Session(device, "claude", "anchor-1")
    start = claude.hook("SessionStart")
    named = start.out["hookSpecificOutput"]["additionalContext"].split("You are agent ")[1]
    address = named.split(" ", 1)[0]

    async def body() -> None:
        async with mcp_session(mcp_env(claude)) as s:
            assert (await call(s, "whoami")).value["address"] == address
            device.call("send", agent="nova", to=[f"@{address}"], text="hook or tool?")
            first = await call(s, "list_agents")
            assert "hook or tool?" in first.unread
            assert claude.hook("PostToolUse").out == {}  # same context: not injected twice

    device.call("register", agent="nova")
    run(body)


def test_mcp_channel_pushes_to_a_client_that_declares_it(device: Device) -> None:
    """A client declaring claude/channel receives notifications/claude/channel with the message."""
    device.call("register", agent="nova")
    probe = StdioProbe({**device.env, "SWITCHBOARD_AGENT": "luna"})
    try:
        init = {
            "protocolVersion": "2025-06-18",
            "capabilities": {"experimental": {"claude/channel": {}}},
            "clientInfo": {"name": "probe", "version": "0"},
        }
        probe.send({"id": 1, "method": "initialize", "params": init})
        reply = probe.read_until(lambda m: m.get("id") == 1)
        assert "claude/channel" in reply["result"]["capabilities"]["experimental"]
        probe.send({"method": "notifications/initialized"})
        probe.send({"id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
        probe.read_until(lambda m: m.get("id") == 2)
        sent = device.call("send", agent="nova", to=["@luna"], text="pushed to you")
        pushed = probe.read_until(lambda m: m.get("method") == "notifications/claude/channel")
        assert "pushed to you" in pushed["params"]["content"]
        assert "<switchboard-inbox-" in pushed["params"]["content"]
        meta = pushed["params"]["meta"]
        assert meta["from"] == f"nova:{device.short}"
        assert meta["message_ids"] == str(sent["id"])
        assert all(isinstance(value, str) for value in meta.values())
        waited = device.call("message.wait", id=sent["id"], state="injected", timeout=timeout(10))
        assert waited["complete"]
    finally:
        probe.close()


def test_mcp_tool_calls_do_not_queue_behind_the_channel_wait(device: Device) -> None:
    """While the push channel waits for a message (a 50 s long poll), tool calls are answered
    at once: the wait runs on a connection of its own."""
    device.call("register", agent="nova")
    probe = StdioProbe({**device.env, "SWITCHBOARD_AGENT": "luna"})
    try:
        init = {
            "protocolVersion": "2025-06-18",
            "capabilities": {"experimental": {"claude/channel": {}}},
            "clientInfo": {"name": "probe", "version": "0"},
        }
        probe.send({"id": 1, "method": "initialize", "params": init})
        probe.read_until(lambda m: m.get("id") == 1)
        probe.send({"method": "notifications/initialized"})
        for n in range(2, 6):  # the channel is identified and waiting after the first
            probe.send({"id": n, "method": "tools/call",
                        "params": {"name": "whoami", "arguments": {}}})  # fmt: skip
            answer = probe.read_until(lambda m, n=n: m.get("id") == n, within=20)
            assert "luna" in json.dumps(answer["result"])
        sent = device.call("send", agent="nova", to=["@luna"], text="still pushed")
        pushed = probe.read_until(lambda m: m.get("method") == "notifications/claude/channel")
        assert meta_ids(pushed) == str(sent["id"])
    finally:
        probe.close()


def meta_ids(pushed: dict[str, Any]) -> str:
    return str(pushed["params"]["meta"]["message_ids"])


def test_mcp_no_channel_push_without_the_capability(device: Device) -> None:
    """A client that does not declare claude/channel gets no push; the message waits for it."""
    device.call("register", agent="nova")

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "luna"}) as s:
            await call(s, "whoami")
            sent = device.call("send", agent="nova", to=["@luna"], text="not pushed")
            waited = device.call("message.wait", id=sent["id"], state="injected", timeout=1)
            assert not waited["complete"]
            assert "not pushed" in (await call(s, "whoami")).unread

    run(body)


def test_mcp_register_renames_the_agent(device: Device) -> None:
    """register(name=...) changes the caller's address; the old auto-name goes offline (and,
    picked and never used, out of listings)."""
    claude = Session(device, "claude", "rename-1")

    async def body() -> None:
        async with mcp_session(mcp_env(claude)) as s:
            old = (await call(s, "whoami")).value["name"]
            # Not a name the daemon could have picked (ids.NAMES holds "atlas").
            renamed = await call(s, "register", name="Atlas-2", summary="renamed")
            assert renamed.value["address"] == f"atlas-2:{device.short}"
            assert (await call(s, "whoami")).value["name"] == "atlas-2"
            agents = {a["name"]: a for a in device.call("agents", all=True)}
            assert agents[old]["status"] == "offline"
            assert agents["atlas-2"]["summary"] == "renamed"
            assert {a["name"] for a in device.call("agents")} == {"atlas-2"}

    run(body)


def test_mcp_http_transport_serves_tools(device: Device) -> None:
    """`switchboard mcp --http` serves the same tools over streamable HTTP."""
    port = free_port()
    env = {**device.env, "SWITCHBOARD_AGENT": "luna"}
    proc = subprocess.Popen(
        [PY, "-m", "switchboard", "mcp", "--http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    Lines(proc.stderr).wait_for("listening on http://", 30)

    async def body() -> None:
        url = f"http://127.0.0.1:{port}/mcp"
        async with (
            streamable_http_client(url) as (read, write, *_),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            result = await s.call_tool("whoami", {})
            assert json.loads(result.content[0].text)["address"] == f"luna:{device.short}"

    try:
        run(body)
    finally:
        proc.terminate()
        proc.wait(timeout(20))
