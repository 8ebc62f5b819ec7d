"""``doctor``: check this device's daemon, links, clocks and harness entries; say how to fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from switchboard.cli import output

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def doctor(args: argparse.Namespace, settings: Settings) -> int:
    """Run every check; one line each (``--json``: one array); exit 1 if any failed."""
    from switchboard.cli import checks  # noqa: PLC0415 - subprocess, the installers

    ctx = checks.Context(
        settings=settings,
        env=dict(os.environ),
        cwd=Path.cwd(),
        home=Path(os.path.expanduser("~")),
    )
    found = checks.run(ctx)
    if args.json:
        output.print_json([check.as_json() for check in found])
    else:
        for check in found:
            fix = f"; fix: {check.fix}" if check.fix else ""
            output.print_lines([f"{check.status:<4}  {check.name}: {check.detail}{fix}"])
    return 1 if any(check.status == "fail" for check in found) else 0
