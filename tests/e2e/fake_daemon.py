"""A stand-in daemon for process tests: holds the home's pid lock and serves ping and shutdown.

Usage: ``python fake_daemon.py --home DIR [--ignore-shutdown] [--ignore-term] [--hand-over]``.

``--hand-over`` plays a second daemon that takes the home over as this one stops: on shutdown
a forked child keeps the locked pid file (the lock is never free in between), writes its own
pid once this one is gone and then waits, without an API, for SIGTERM (30 s at most).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
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
        self.hand_over_fd = -1  # kept open until this process ends

    async def ping(self, params: Any) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def shutdown(self, params: Any) -> dict[str, Any]:
        if self.obey_shutdown:
            if self.pid_path is not None:
                # The successor learns we are gone when our end of this pipe closes with us.
                gone, self.hand_over_fd = os.pipe()
                if os.fork() == 0:
                    os.close(self.hand_over_fd)
                    _successor(self.pid_path, gone)
                os.close(gone)
            asyncio.get_running_loop().call_soon(self.stop.set)
        return {"stopping": self.obey_shutdown}


def _successor(pid_path: Any, gone: int) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # taken by sigtimedwait below
    select.select([gone], [], [], 30)  # end of file: the first one exited (its pid file emptied)
    fd = os.open(pid_path, os.O_WRONLY)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    signal.sigtimedwait({signal.SIGTERM}, 30)  # the inherited lock goes with the process
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
