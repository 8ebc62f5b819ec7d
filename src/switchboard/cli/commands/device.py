"""``init``, ``status``, ``devices``, ``device forget`` and ``ping``: this device, the group's,
forgetting one, and the round trip to another."""

from __future__ import annotations

from switchboard.cli import output
from switchboard.cli.calls import call, params
from switchboard.daemon.client import DEFAULT_CALL_TIMEOUT

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


def devices(args: argparse.Namespace, settings: Settings) -> int:
    """List the group's devices: name, short id, key fingerprint, last seen, link."""
    found = call(settings, "devices")
    if args.json:
        output.print_json(found)
        return 0
    rows = (
        (
            d["short"] + (" *" if d["this"] else ""),
            d["name"],
            d["fingerprint"] + ("" if d["key_ok"] or not d["fingerprint"] else " (bad key)"),
            "now" if d["this"] else ("online" if d["online"] else output.when(d["last_seen"])),
            d["link"],
        )
        for d in found
    )
    headers = ("DEVICE", "NAME", "KEY FINGERPRINT", "LAST SEEN", "LINK")
    output.print_lines(output.table(headers, rows))
    return 0


def forget(args: argparse.Namespace, settings: Settings) -> int:
    """Remove a device from the group and rotate the group's keys."""
    values = params(device=args.device, timeout=args.timeout)
    result = call(settings, "device.forget", values, timeout=args.timeout + DEFAULT_CALL_TIMEOUT)
    if args.json:
        output.print_json(result)
        return 0
    name = f" ({result['name']})" if result["name"] else ""
    if result["already"]:
        output.print_lines([f"device {result['short']}{name} was already forgotten"])
    else:
        output.print_lines(
            [f"forgot device {result['short']}{name}; the group's keys were rotated"]
        )
    return 0


def ping(args: argparse.Namespace, settings: Settings) -> int:
    """Time the round trip to another device through the group's link."""
    values = params(device=args.device, count=args.count, interval=args.interval,
                    timeout=args.timeout)  # fmt: skip
    wait = args.count * (args.timeout + args.interval) + DEFAULT_CALL_TIMEOUT
    pong = call(settings, "device.ping", values, timeout=wait)
    if args.json:
        output.print_json(pong)
        return 0
    name = f" ({pong['name']})" if pong["name"] else ""
    lines = [
        f"pong from {pong['device']}{name} via {pong['link']}: {rtt:.2f} ms"
        for rtt in pong["rtt_ms"]
    ]
    if len(pong["rtt_ms"]) > 1:
        lines.append(
            f"{len(pong['rtt_ms'])} round trips: min {pong['min_ms']:.2f}, "
            f"avg {pong['avg_ms']:.2f}, max {pong['max_ms']:.2f} ms"
        )
    output.print_lines(lines)
    return 0
