"""The directed channel as the daemon offers it to features: what this device serves, and
calls of one device through the link that reaches it (``Context.call_device``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from switchboard.errors import Unreachable
from switchboard.links.channel import Handlers, Request, StreamHandler, UnaryHandler

if TYPE_CHECKING:
    from switchboard.daemon.context import Context, RequestHandler
    from switchboard.daemon.context import StreamHandler as FeatureStream
    from switchboard.daemon.registry import Registry
    from switchboard.links.base import Link


def handlers_of(registry: Registry, ctx: Context) -> Handlers:
    """The channel's table of what this device serves: every feature's ``requests`` and
    ``request_streams``, each called with the context."""
    handlers = Handlers()
    for kind, fn in registry.requests.items():
        handlers.register(kind, _unary(ctx, fn))
    for kind, stream in registry.request_streams.items():
        handlers.register(kind, _streaming(ctx, stream), stream=True)
    return handlers


def link_to(links: Mapping[str, Link], device: str) -> Link | None:
    """The link a call of ``device`` should take: one that has it online, else (ourselves, or
    a device no link has heard of yet) the first, whose answer is then authoritative."""
    for link in links.values():
        if device in link.online:
            return link
    return next(iter(links.values()), None)


async def call_device(
    links: Mapping[str, Link], device: str, kind: str, payload: bytes, *, timeout: float
) -> bytes:
    """Call ``device`` through the link that reaches it (``Context.call_device``)."""
    link = link_to(links, device)
    if link is None:
        raise Unreachable(device, "this device is in no group")
    return await link.channel.call(device, kind, payload, timeout=timeout)


async def stream_device(
    links: Mapping[str, Link], device: str, kind: str, payload: bytes, *, timeout: float | None
) -> AsyncIterator[bytes]:
    """Iterate a stream from ``device`` (``Context.stream_device``); closing it stops it."""
    link = link_to(links, device)
    if link is None:
        raise Unreachable(device, "this device is in no group")
    async with link.channel.stream(device, kind, payload, timeout=timeout) as chunks:
        async for chunk in chunks:
            yield chunk


def _unary(ctx: Context, fn: RequestHandler) -> UnaryHandler:
    async def serve(request: Request) -> bytes:
        return await fn(ctx, request.sender, request.body)

    return serve


def _streaming(ctx: Context, fn: FeatureStream) -> StreamHandler:
    def serve(request: Request) -> AsyncIterator[bytes]:
        return fn(ctx, request.sender, request.body)

    return serve
