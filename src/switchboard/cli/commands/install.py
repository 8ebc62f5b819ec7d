"""``install`` and ``uninstall``: wire Switchboard into harnesses, or take it out again."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchboard.cli import output

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def _setup(args: argparse.Namespace, settings: Settings) -> Any:
    from switchboard.harnesses.setup import Setup  # noqa: PLC0415

    pinned = os.environ.get("SWITCHBOARD_HOME") or getattr(args, "home", None)
    return Setup(
        home=Path(os.path.expanduser("~")),
        project=Path.cwd() if args.project else None,
        switchboard_home=str(Path(pinned).absolute()) if pinned else None,
        path=os.environ.get("PATH", ""),
    )


def _run(args: argparse.Namespace, settings: Settings, *, remove: bool) -> int:
    from switchboard.harnesses import install as installer  # noqa: PLC0415

    setup = _setup(args, settings)
    chosen = installer.select(args.harnesses, setup, detect=not remove)
    if not chosen:
        if args.json:
            output.print_json({"harnesses": [], "dry_run": args.dry_run})
        else:
            print("no harness found (name one: switchboard install claude codex ...)")
        return 0
    reports = installer.run(chosen, setup, remove=remove, dry_run=args.dry_run)
    if args.json:
        output.print_json(
            {"harnesses": [_report_json(r) for r in reports], "dry_run": args.dry_run}
        )
        for report in reports:
            if report.error:
                print(output.error_line(report.error), file=sys.stderr)
        return 1 if any(report.error for report in reports) else 0
    failed = False
    for report in reports:
        print(f"{report.title}:")
        for outcome in report.outcomes:
            print(f"  {outcome.action:<9} {outcome.path}")
            if args.dry_run and outcome.diff:
                print(outcome.diff, end="")
        if report.error:
            failed = True
            print(output.error_line(report.error), file=sys.stderr)
        if report.notes:
            print(f"  note: {report.notes}")
    if args.dry_run:
        print("dry run: nothing was written")
    return 1 if failed else 0


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "harness": report.harness,
        "title": report.title,
        "outcomes": [
            {"action": o.action, "path": str(o.path), "diff": o.diff or None}
            for o in report.outcomes
        ],
        "notes": report.notes,
        "error": report.error or None,
    }


def install(args: argparse.Namespace, settings: Settings) -> int:
    """Install into the named harnesses, or every one detected."""
    return _run(args, settings, remove=False)


def uninstall(args: argparse.Namespace, settings: Settings) -> int:
    """Remove exactly our entries from the named harnesses (default: all)."""
    return _run(args, settings, remove=True)
