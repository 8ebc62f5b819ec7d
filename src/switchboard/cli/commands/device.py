"""``init`` and ``status``: this device."""

from __future__ import annotations

from switchboard.cli import output
from switchboard.cli.calls import call, params

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def init(args: argparse.Namespace, settings: Settings) -> int:
    """Create this device's identity (the daemon does, on first start) and print its ids."""
    device = call(settings, "init", params(name=args.name))
    if args.json:
        output.print_json(device)
    else:
        output.print_lines(output.device_lines(device))
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    """Show the device, the daemon, each group's link and the agents."""
    result = call(settings, "status")
    if args.json:
        output.print_json(result)
    else:
        output.print_lines(output.status_lines(result))
    return 0
