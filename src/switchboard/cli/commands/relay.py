"""``relay serve``: a standalone relay in the foreground."""

from __future__ import annotations

import contextlib
from pathlib import Path

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the relay until Ctrl-C (then exit 0)."""
    from switchboard import runloop  # noqa: PLC0415 - only servers need the event loop
    from switchboard.relay.service import run_relay  # noqa: PLC0415 - the heavy part, only here

    data_dir = Path(args.data).expanduser() if args.data else None  # None: <home>/relay
    with contextlib.suppress(KeyboardInterrupt):
        serving = run_relay(
            settings.home, args.host, args.port, data_dir, as_json=args.json,
            announce=args.announce, name=args.name,
        )  # fmt: skip
        runloop.run(serving)
    return 0
