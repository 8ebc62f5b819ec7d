"""A stand-in daemon for process tests: holds the home's pid lock and serves ping and shutdown.

Usage: ``python fake_daemon.py --home DIR [--ignore-shutdown] [--ignore-term]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

from switchboard.config import load_settings
from switchboard.daemon.api import ApiServer
from switchboard.daemon.process import hold_pid_lock


class Handlers:
    """``ping`` answers with our pid; ``shutdown`` stops us unless told to ignore it."""

    def __init__(self, stop: asyncio.Event, obey_shutdown: bool) -> None:
        self.stop = stop
        self.obey_shutdown = obey_shutdown

    async def ping(self, params: Any) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def shutdown(self, params: Any) -> dict[str, Any]:
        if self.obey_shutdown:
            asyncio.get_running_loop().call_soon(self.stop.set)
        return {"stopping": self.obey_shutdown}


async def serve(socket_path: Any, obey_shutdown: bool) -> None:
    stop = asyncio.Event()
    async with ApiServer(Handlers(stop, obey_shutdown), socket_path):
        print("fake daemon ready", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--ignore-shutdown", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    args = parser.parse_args()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settings = load_settings(env={}, home=args.home)
    with hold_pid_lock(settings):
        asyncio.run(serve(settings.socket_path, not args.ignore_shutdown))


if __name__ == "__main__":
    main()
