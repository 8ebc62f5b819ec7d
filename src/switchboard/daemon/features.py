"""The daemon's features, one line each: the registry the API and the daemon work through.

A new feature is one module ending in ``FEATURE = Feature(...)`` (daemon/registry.py) plus one
line here. Order matters only for reactions: they run in this order.
"""

from __future__ import annotations

from typing import Any, Final

from switchboard.daemon import coordination, messages, tasks
from switchboard.daemon.registry import Feature, Registry

# Transitional: the mixin methods not yet moved into feature modules, served through one
# ``Handlers`` per daemon. This list shrinks to nothing as the mixins become tables.
_LEGACY: Final = [
    "ping",
    "status",
    "init",
    "register",
    "agents",
    "send",
    "inbox",
    "events",
    "group.create",
    "invite",
    "join",
    "link.set",
    "link.status",
    "link.sync",
    "shutdown",
    "agent.hook",
    "agent.identify",
    "inbox.take",
    "message.get",
    "message.ack",
    "message.wait",
    "events.subscribe",
    "events.unsubscribe",
    "events.subscriptions",
    "room.create",
    "room.join",
    "room.leave",
    "room.invite",
    "room.kick",
    "room.list",
    "room.members",
    "room.read",
    "presence.set",
    "tags.set",
    "thread.show",
    "search",
    "sent",
    "event.record",
    "lease.acquire",
    "lease.release",
    "lease.list",
    "lease.check",
]
_LEGACY_STREAMS: Final = ("events.follow", "room.follow")


def _handlers(ctx: Any) -> Any:
    from switchboard.daemon.handlers import Handlers  # noqa: PLC0415 - transitional

    return Handlers(ctx)


def _legacy(name: str) -> Any:
    attr = name.replace(".", "_")

    def method(ctx: Any, params: Any) -> Any:
        return getattr(ctx.part(_handlers), attr)(params)

    method.__name__ = attr
    return method


_legacy_feature = Feature(
    "legacy",
    methods={name: _legacy(name) for name in _LEGACY},
    streams={name: _legacy(name) for name in _LEGACY_STREAMS},
)

#: Every feature of the daemon, in reaction order.
FEATURES: Final = (
    _legacy_feature,
    messages.FEATURE,
    coordination.FEATURE,
    tasks.FEATURE,
)

REGISTRY: Final = Registry(FEATURES)
