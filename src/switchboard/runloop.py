"""``run``: the event loop of a long-running process (daemon, relay).

uvloop (libuv) where it is installed, which is everywhere but Windows: cheaper socket reads,
writes and wake-ups on every hop of a message (``make bench``: latency p50 about a fifth lower).
``SWITCHBOARD_LOOP=asyncio`` runs the same code on the standard loop, to tell a loop problem
from ours.
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
        import uvloop  # noqa: F401, PLC0415 - not on Windows
    except ImportError:
        return "asyncio"
    return "uvloop"


def new_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind ``run`` uses."""
    if loop_kind() == "uvloop":
        import uvloop  # noqa: PLC0415

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop (see the module notes), like ``asyncio.run``."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)
