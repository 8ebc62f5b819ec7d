"""Switchboard: coding agents on one machine or many find each other and talk.

Nothing is imported here eagerly, so ``switchboard send`` starts at once: the public names load
on first use (PEP 562). ``Client`` and ``AsyncClient`` are the local API's clients,
``connect()`` opens a ``Client`` and starts the daemon if it is not running, and the result
shapes (``Agent``, ``Message``, ``SendResult``, ``Status``, ``EventRow``) are msgspec Structs
(docs/python-api.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from switchboard.daemon.autostart import connect_home as connect
    from switchboard.daemon.client import AsyncClient, Client
    from switchboard.daemon.shapes import Agent, EventRow, Message, SendResult, Status

_LAZY = {
    "Client": ("switchboard.daemon.client", "Client"),
    "AsyncClient": ("switchboard.daemon.client", "AsyncClient"),
    "connect": ("switchboard.daemon.autostart", "connect_home"),
    "Agent": ("switchboard.daemon.shapes", "Agent"),
    "EventRow": ("switchboard.daemon.shapes", "EventRow"),
    "Message": ("switchboard.daemon.shapes", "Message"),
    "SendResult": ("switchboard.daemon.shapes", "SendResult"),
    "Status": ("switchboard.daemon.shapes", "Status"),
}

__all__ = [
    "Agent",
    "AsyncClient",
    "Client",
    "EventRow",
    "Message",
    "SendResult",
    "Status",
    "__version__",
    "connect",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'switchboard' has no attribute {name!r}") from None
    import importlib  # noqa: PLC0415 - only when a public name is first used

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
