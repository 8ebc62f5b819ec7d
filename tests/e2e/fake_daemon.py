"""A stand-in daemon for process tests: holds the home's pid lock and serves ping and shutdown.

Usage: ``python fake_daemon.py --home DIR [--ignore-shutdown] [--ignore-term] [--hand-over]``.

``--hand-over`` plays a second daemon that takes the home over as this one stops: on shutdown
a forked child keeps the locked pid file (the lock is never free in between), writes its own
pid once this one is gone and then waits, without an API, until SIGTERM (30 s at most).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from typing import Any

from switchboard.config import load_settings
from switchboard.daemon.api import ApiServer
from switchboard.daemon.process import hold_pid_lock


class Handlers:
    """``ping`` answers with our pid; ``shutdown`` stops us unless told to ignore it."""

    def __init__(self, stop: asyncio.Event, obey_shutdown: bool, pid_path: Any = None) -> None:
        self.stop = stop
        self.obey_shutdown = obey_shutdown
        self.pid_path = pid_path  # set: hand the home over on shutdown

    async def ping(self, params: Any) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def shutdown(self, params: Any) -> dict[str, Any]:
        if self.obey_shutdown:
            if self.pid_path is not None and os.fork() == 0:
                _successor(self.pid_path)
            asyncio.get_running_loop().call_soon(self.stop.set)
        return {"stopping": self.obey_shutdown}


def _successor(pid_path: Any) -> None:
    parent = os.getppid()
    while os.getppid() == parent:  # its hold_pid_lock empties the file as it leaves
        time.sleep(0.005)
    fd = os.open(pid_path, os.O_WRONLY)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    time.sleep(30)  # SIGTERM ends this sooner; the inherited lock goes with the process
    os._exit(0)


async def serve(socket_path: Any, obey_shutdown: bool, pid_path: Any) -> None:
    stop = asyncio.Event()
    async with ApiServer(Handlers(stop, obey_shutdown, pid_path), socket_path):
        print("fake daemon ready", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--ignore-shutdown", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--hand-over", action="store_true")
    args = parser.parse_args()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settings = load_settings(env={}, home=args.home)
    with hold_pid_lock(settings):
        pid_path = settings.pid_path if args.hand_over else None
        asyncio.run(serve(settings.socket_path, not args.ignore_shutdown, pid_path))


if __name__ == "__main__":
    main()
