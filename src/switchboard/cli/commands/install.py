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

    home = Path(os.path.expanduser("~"))
    path = os.environ.get("PATH", "")
    if args.project:
        # Files a team commits: `switchboard` from each member's PATH, and no data directory
        # of this machine (their harness's environment decides, as for any other command).
        return Setup.for_project(home, Path.cwd(), path=path, state=settings.home)
    pinned = os.environ.get("SWITCHBOARD_HOME") or getattr(args, "home", None)
    return Setup(
        home=home,
        switchboard_home=str(Path(pinned).absolute()) if pinned else None,
        path=path,
        state=settings.home,
    )


def _general_notes(args: argparse.Namespace, setup: Any, remove: bool) -> list[str]:
    """Notes about the whole install (not one harness)."""
    import shutil  # noqa: PLC0415

    if remove or setup.project is None:
        return []
    notes = []
    if shutil.which("switchboard", path=setup.path or None) is None:
        notes.append(
            "the project files run `switchboard` from PATH, and it is not on this PATH: "
            "install it where every harness finds it (pipx install, uv tool install) or link "
            "it into a directory on PATH"
        )
    if os.environ.get("SWITCHBOARD_HOME") or getattr(args, "home", None):
        notes.append(
            "the project files name no data directory: harnesses started with this "
            "SWITCHBOARD_HOME use it, others the default one"
        )
    return notes


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
    notes = _general_notes(args, setup, remove)
    if remove and not (args.json and args.harnesses):  # only what it changed or kept
        reports = [r for r in reports if r.outcomes or r.error]
    if args.json:
        result = {"harnesses": [_report_json(r) for r in reports], "dry_run": args.dry_run}
        output.print_json({**result, "notes": notes})
        for report in reports:
            if report.error:
                print(output.error_line(report.error), file=sys.stderr)
        return 1 if any(report.error for report in reports) else 0
    failed = _print_reports(reports, dry_run=args.dry_run)
    if remove and not reports:
        print("nothing of Switchboard's found to remove")
    for note in notes:
        print(f"note: {note}")
    if getattr(args, "prepare", False) and not args.dry_run and not remove:
        failed = _prepare(setup, [r.harness for r in reports]) or failed
    if args.dry_run:
        print("dry run: nothing was written")
    return 1 if failed else 0


def _print_reports(reports: list[Any], *, dry_run: bool) -> bool:
    failed = False
    for report in reports:
        print(f"{report.title}:")
        for outcome in report.outcomes:
            note = f" ({outcome.note})" if outcome.note else ""
            print(f"  {outcome.action:<9} {outcome.path}{note}")
            if dry_run and outcome.diff:
                print(outcome.diff, end="")
        if report.error:
            failed = True
            print(output.error_line(report.error), file=sys.stderr)
        if report.notes:
            print(f"  note: {report.notes}")
    return failed


def _prepare(setup: Any, harnesses: list[str]) -> bool:
    """``install opencode --prepare``: OpenCode's plugin dependencies, now; True if it failed."""
    from switchboard.errors import SwitchboardError  # noqa: PLC0415
    from switchboard.harnesses import opencode  # noqa: PLC0415

    if opencode.NAME not in harnesses:
        message = "--prepare is for OpenCode: name it (install opencode --prepare)"
        print(output.error_line(message), file=sys.stderr)
        return True
    print("OpenCode:")
    try:
        opencode.prepare(setup, sys.stdout)
    except SwitchboardError as exc:
        print(output.error_line(str(exc)), file=sys.stderr)
        return True
    return False


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "harness": report.harness,
        "title": report.title,
        "outcomes": [
            {"action": o.action, "path": str(o.path), "diff": o.diff or None, "note": o.note}
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
