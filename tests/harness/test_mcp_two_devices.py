"""Two MCP servers on two devices (temp homes, a relay on loopback) exchange messages."""

from __future__ import annotations

import anyio
from harness_kit import Device, timeout
from mcp_kit import call, mcp_session, run


def test_mcp_two_devices_exchange_messages_and_receipts(pair: tuple[Device, Device]) -> None:
    """luna on alpha and nova on beta find each other, talk, reply, and see receipts."""
    alpha, beta = pair

    async def body() -> None:
        async with (
            mcp_session({**alpha.env, "SWITCHBOARD_AGENT": "luna"}) as luna,
            mcp_session({**beta.env, "SWITCHBOARD_AGENT": "nova"}) as nova,
        ):
            await call(luna, "register", summary="writing docs")
            await call(nova, "register", summary="fixing CI")
            with anyio.fail_after(timeout(30)):
                while "luna" not in {a["name"] for a in (await call(nova, "list_agents")).value}:
                    await call(nova, "wait_for_message", timeout=0.5)
            seen = {a["name"]: a for a in (await call(nova, "list_agents")).value}
            assert (
                seen["luna"]["device"] == alpha.short and seen["luna"]["summary"] == "writing docs"
            )
            # ... and alpha knows nova before luna sends to her.
            nova_address = f"nova:{beta.short}"
            await anyio.to_thread.run_sync(
                lambda: alpha.wait_events(1, type="agent_registered", agent=nova_address)
            )

            sent = await call(luna, "send", to=f"nova:{beta.short}", text="is CI green yet?")
            assert not sent.is_error, sent.text
            got = await call(nova, "wait_for_message", timeout=30)
            assert "is CI green yet?" in got.text and f'from="luna:{alpha.short}"' in got.text
            message_id = int(got.text.split("ids ", 1)[1].split()[0].rstrip(";"))
            replied = await call(nova, "reply", id=message_id, text="yes, all green")
            assert not replied.is_error, replied.text
            answer = await call(luna, "wait_for_message", timeout=30)
            assert "yes, all green" in answer.text

            receipt = alpha.call(
                "message.wait", id=sent.value["id"], state="read", timeout=timeout(30)
            )
            assert receipt["complete"], receipt
            assert receipt["recipients"][0]["state"] == "read"

    run(body, 120)


def test_mcp_two_devices_unread_rides_on_remote_tool_result(pair: tuple[Device, Device]) -> None:
    """A message from another device shows up on the recipient's next tool result."""
    alpha, beta = pair
    beta.call("register", agent="nova")
    alpha.wait_events(1, type="agent_registered", where="json_extract(data, '$.name') = 'nova'")

    async def body() -> None:
        async with mcp_session({**alpha.env, "SWITCHBOARD_AGENT": "luna"}) as luna:
            await call(luna, "whoami")
            beta.wait_events(
                1, type="agent_registered", where="json_extract(data, '$.name') = 'luna'"
            )
            beta.call("send", agent="nova", to=["@luna"], text="from the other machine")
            alpha.wait_events(1, type="message_posted")
            result = await call(luna, "list_agents")
            assert "from the other machine" in result.unread
            assert f'device="{beta.short}"' in result.unread

    run(body, 120)
