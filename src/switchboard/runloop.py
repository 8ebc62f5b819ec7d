"""``run``: the event loop of a long-running process (daemon, relay): uvloop where installed.

uvloop (libuv) runs the same asyncio code with cheaper socket reads, writes and wake-ups; every
hop of a message (API socket, relay link, relay fan-out) pays those. It is a dependency on the
platforms it supports; ``SWITCHBOARD_LOOP=asyncio`` forces the standard loop (to compare, or to
rule uvloop out when chasing a bug).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_kind() -> str:
    """``"uvloop"`` if ``run`` uses it here, else ``"asyncio"``."""
    if os.environ.get("SWITCHBOARD_LOOP", "").lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401, PLC0415 - optional, and only long-running processes need it
    except ImportError:
        return "asyncio"
    return "uvloop"


def new_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind ``run`` uses."""
    if loop_kind() == "uvloop":
        import uvloop  # noqa: PLC0415

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop (see the module notes), like ``asyncio.run``."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)
