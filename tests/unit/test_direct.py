"""The daemon's side of the directed channel (daemon/direct.py) over two real DirectChannels.

The channels are real; only the wire between them is a dict in this process (``Wire``), which
hands each sealed frame to its recipient's channel, as a link does after the relay or broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pairing import KEYS, device_id, private_key

from switchboard.daemon import direct
from switchboard.errors import RemoteError, Unreachable, UserError
from switchboard.links.channel import DirectChannel
from switchboard.proto.frames import Direct

A, B = device_id("a"), device_id("b")


@dataclass
class Wire:
    """Delivers frames to the channel of their recipient, or says it is not connected."""

    channels: dict[str, DirectChannel] = field(default_factory=dict)

    async def send_direct(self, frame: Direct) -> None:
        target = self.channels.get(frame.recipient)
        if target is None:
            raise Unreachable(frame.recipient, "not connected to the wire")
        asyncio.get_running_loop().call_soon(target.frame_received, frame)


@dataclass
class FakeLink:
    """What daemon/direct.py reads of a link: its channel and who it has online."""

    channel: DirectChannel
    online: set[str]
    url: str = "wire://"


@dataclass
class Features:
    """The registry's two request tables."""

    requests: dict[str, Any]
    request_streams: dict[str, Any]


async def double(ctx: Any, sender: str, payload: bytes) -> bytes:
    ctx.seen.append(sender)
    if payload == b"refuse":
        raise UserError("not that")
    return payload * 2


async def pages(ctx: Any, sender: str, payload: bytes) -> AsyncIterator[bytes]:
    for n in range(int(payload)):
        yield b"page %d" % n


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_direct_feature_requests_and_streams_reach_the_other_device() -> None:
    """A feature's request handler gets the context and the calling device; its stream
    handler's chunks arrive in order; its errors come back as RemoteError; a device no link
    reaches is Unreachable."""

    class Ctx:
        seen: list[str] = []

    async def main() -> None:
        wire = Wire()
        features: Any = Features({"double": double}, {"pages": pages})
        a = DirectChannel(KEYS, private_key("a"), A, wire, direct.handlers_of(features, Ctx()))
        b = DirectChannel(KEYS, private_key("b"), B, wire, direct.handlers_of(features, Ctx()))
        wire.channels = {A: a, B: b}
        links: Any = {"g": FakeLink(a, online={B})}
        assert direct.link_to(links, B) is links["g"]
        answer = await direct.call_device(links, B, "double", b"ab", timeout=5)
        assert answer == b"abab" and Ctx.seen == [A]
        chunks = [c async for c in direct.stream_device(links, B, "pages", b"3", timeout=5)]
        assert chunks == [b"page 0", b"page 1", b"page 2"]
        with pytest.raises(RemoteError) as refused:
            await direct.call_device(links, B, "double", b"refuse", timeout=5)
        assert refused.value.remote_code == "bad_request"
        with pytest.raises(Unreachable, match="not connected to the wire"):
            await direct.call_device(links, "c" * 26, "double", b"", timeout=5)
        with pytest.raises(Unreachable, match="in no group"):
            await direct.call_device({}, B, "double", b"", timeout=5)
        await a.aclose()
        await b.aclose()

    run(main())
