"""``switchboard install`` / ``uninstall``: wire Switchboard into every harness found.

One module per harness describes its files (claude.py, codex.py, gemini.py with Antigravity,
opencode.py, cursor.py, pi.py); configfiles.py merges, tags and reverts, ledger.py keeps the
bookkeeping in the device's home. This module picks the harnesses (named, or detected), runs
their edits and reports per file: uninstall only what it changed or kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from switchboard.errors import UserError
from switchboard.harnesses import claude, codex, configfiles, cursor, gemini, opencode, pi
from switchboard.harnesses.configfiles import Edit, Outcome
from switchboard.harnesses.jsonc import JsoncError
from switchboard.harnesses.ledger import Ledger
from switchboard.harnesses.setup import Setup


@dataclass(frozen=True)
class Harness:
    """One harness we can wire in."""

    name: str
    title: str
    notes: str
    detect: Callable[[Setup], bool]
    edits: Callable[[Setup], list[Edit]]
    # Notes that depend on the machine (OpenCode's plugin dependencies): (setup, remove) -> text
    advise: Callable[[Setup, bool], str] | None = None
    # After uninstall: what else only we caused (setup, outcomes, dry_run) -> more outcomes
    cleanup: Callable[..., list[Outcome]] | None = None


HARNESSES: Final = {
    h.name: h
    for h in (
        Harness(claude.NAME, claude.TITLE, claude.NOTES, claude.detect, claude.edits),
        Harness(codex.NAME, codex.TITLE, codex.NOTES, codex.detect, codex.edits),
        Harness(gemini.NAME, gemini.TITLE, gemini.NOTES, gemini.detect, gemini.edits),
        Harness(
            gemini.Antigravity.NAME,
            gemini.Antigravity.TITLE,
            gemini.Antigravity.NOTES,
            gemini.Antigravity.detect,
            gemini.Antigravity.edits,
        ),
        Harness(
            opencode.NAME,
            opencode.TITLE,
            opencode.NOTES,
            opencode.detect,
            opencode.edits,
            opencode.advise,
            opencode.cleanup,
        ),
        Harness(cursor.NAME, cursor.TITLE, cursor.NOTES, cursor.detect, cursor.edits),
        Harness(pi.NAME, pi.TITLE, pi.NOTES, pi.detect, pi.edits),
    )
}
ALIASES: Final = {"claude-code": "claude", "agy": "antigravity", "cursor-agent": "cursor"}


@dataclass(frozen=True)
class Report:
    """What one harness's install or uninstall did."""

    harness: str
    title: str
    outcomes: list[Outcome]
    notes: str = ""
    error: str = ""


def select(names: list[str], setup: Setup, *, detect: bool = True) -> list[Harness]:
    """The harnesses named (all names checked), or every one detected when none is named.

    Raises:
        UserError: an unknown name.
    """
    chosen = []
    for raw in names:
        name = ALIASES.get(raw.lower(), raw.lower())
        if name not in HARNESSES:
            raise UserError(f"unknown harness {raw!r}: choose from {', '.join(HARNESSES)}")
        chosen.append(HARNESSES[name])
    if names:
        return chosen
    return [h for h in HARNESSES.values() if not detect or h.detect(setup)]


def run(
    harnesses: list[Harness], setup: Setup, *, remove: bool = False, dry_run: bool = False
) -> list[Report]:
    """Install (or, with ``remove``, uninstall) each harness; one report per harness.

    A config file we cannot parse is left untouched and reported; the other files and
    harnesses go ahead. Uninstall's outcomes are only what it changed or kept (a harness it
    found nothing of has none).
    """
    ledger = Ledger(setup.ledger_path(), setup.root)
    reports = []
    for harness in harnesses:
        outcomes: list[Outcome] = []
        dirs: list[str] = []
        error = ""
        for edit in harness.edits(setup):
            if edit.remove_only and not remove:
                continue
            try:
                if remove:
                    outcome, created = configfiles.uninstall(edit, ledger, dry_run=dry_run)
                    outcomes.append(outcome)
                    dirs += created
                else:
                    outcomes.append(configfiles.install(edit, ledger, dry_run=dry_run))
            except JsoncError as exc:
                error = f"{edit.path}: cannot merge safely ({exc}); left unchanged"
            except ValueError as exc:  # tomlkit's parse errors derive from ValueError
                error = f"{edit.path}: cannot merge safely ({exc}); left unchanged"
        if remove:
            outcomes = [o for o in outcomes if o.action != "unchanged"]
            if not error and harness.cleanup is not None:
                outcomes += harness.cleanup(setup, outcomes, dry_run=dry_run)
            if not error:
                outcomes += configfiles.remove_dirs(ledger, dirs, dry_run=dry_run)
        notes = [] if remove or dry_run else [harness.notes]
        if harness.advise is not None and (outcomes or not remove):
            notes.append(harness.advise(setup, remove))
        text = " ".join(note for note in notes if note)
        reports.append(Report(harness.name, harness.title, outcomes, text, error))
    if not dry_run:
        ledger.save()
    return reports
