"""``install`` and ``uninstall``: wire Switchboard into harnesses, or take it out again."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from switchboard.cli import output

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse
    from typing import Any

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
    after = [After() if remove or args.dry_run else _after(r, setup, args.trust) for r in reports]
    if args.json:
        harnesses = [_report_json(r, a) for r, a in zip(reports, after, strict=True)]
        output.print_json({"harnesses": harnesses, "dry_run": args.dry_run, "notes": notes})
        for report, done in zip(reports, after, strict=True):
            for error in (report.error, done.error):
                if error:
                    print(output.error_line(error), file=sys.stderr)
        return 1 if any(r.error or a.error for r, a in zip(reports, after, strict=True)) else 0
    failed = _print_reports(reports, after, dry_run=args.dry_run)
    if remove and not reports:
        print("nothing of Switchboard's found to remove")
    for note in notes:
        print(f"note: {note}")
    if getattr(args, "prepare", False) and not args.dry_run and not remove:
        failed = _prepare(setup, [r.harness for r in reports]) or failed
    if args.dry_run:
        print("dry run: nothing was written")
    return 1 if failed else 0


def _print_reports(reports: list[Any], after: list[After], *, dry_run: bool) -> bool:
    failed = False
    for report, done in zip(reports, after, strict=True):
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
        for line in done.trusted:
            print(f"  trusted   {line}")
        for ask in done.asks:
            print(f"  {'needs' if ask.status == 'fail' else 'ask':<9} {ask.what}; {ask.fix}")
        if done.error:
            failed = True
            print(output.error_line(done.error), file=sys.stderr)
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


@dataclass(frozen=True)
class After:
    """What came after one harness's install: trust recorded, steps the harness still asks."""

    trusted: list[str] = field(default_factory=list)
    asks: list[Any] = field(default_factory=list)
    error: str = ""


def _after(report: Any, setup: Any, trust: bool) -> After:
    """Trust our hooks where asked (``--trust``), then say what the harness still asks."""
    from switchboard.errors import UserError  # noqa: PLC0415
    from switchboard.harnesses import asks  # noqa: PLC0415

    if report.error:
        return After()
    trusted: list[str] = []
    error = ""
    if trust and report.harness == "codex":
        try:
            trusted = asks.trust_codex(setup)
        except UserError as exc:
            error = f"codex: cannot record trust: {exc}"
    return After(trusted, asks.asks_for(report.harness, setup), error)


def _report_json(report: Any, done: After) -> dict[str, Any]:
    return {
        "harness": report.harness,
        "title": report.title,
        "outcomes": [
            {"action": o.action, "path": str(o.path), "diff": o.diff or None, "note": o.note}
            for o in report.outcomes
        ],
        "notes": report.notes,
        "error": report.error or done.error or None,
        "trusted": done.trusted,
        "asks": [{"status": a.status, "what": a.what, "fix": a.fix} for a in done.asks],
    }


def install(args: argparse.Namespace, settings: Settings) -> int:
    """Install into the named harnesses, or every one detected."""
    return _run(args, settings, remove=False)


def uninstall(args: argparse.Namespace, settings: Settings) -> int:
    """Remove exactly our entries from the named harnesses (default: all)."""
    return _run(args, settings, remove=True)
