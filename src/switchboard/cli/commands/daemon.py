"""``daemon run | start | stop | status``."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from switchboard.cli import output
from switchboard.daemon import process
from switchboard.daemon.autostart import connect

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the daemon in the foreground; Ctrl-C stops it and exits 0."""
    from switchboard.daemon import service  # noqa: PLC0415 - the heavy part, only here

    with contextlib.suppress(KeyboardInterrupt):
        service.run(settings)
    if args.json:
        output.print_json({"stopped": True, "pid": os.getpid()})
    return 0


def start(args: argparse.Namespace, settings: Settings) -> int:
    """Start the daemon in the background unless it runs; wait until it answers."""
    before = process.read_status(settings)
    if not before["running"]:
        connect(settings).close()
    after = process.read_status(settings)
    if args.json:
        output.print_json({**after, "started": not before["running"]})
    elif before["running"]:
        print(f"daemon already running (pid {before['pid']})")
    else:
        print(f"daemon started (pid {after['pid']})")
    return 0


def stop(args: argparse.Namespace, settings: Settings) -> int:
    """Stop the daemon; say so, or that none was running (both exit 0)."""
    stopped = process.stop(settings, timeout=args.timeout)
    if args.json:
        output.print_json({"stopped": stopped, "running": False})
    elif stopped:
        print("daemon stopped")
    else:
        print("no daemon running")
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    """Say whether the daemon runs (exit 0 either way; --json for scripts)."""
    result = process.read_status(settings)
    if args.json:
        output.print_json(result)
    elif result["running"]:
        print(f"daemon running (pid {result['pid']}) on {result['socket']}")
    else:
        print(f"daemon not running for {settings.home}")
    return 0
