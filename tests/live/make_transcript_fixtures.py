"""Regenerate tests/fixtures/transcripts: one real turn of each pinned harness, its own files.

Each harness runs the live tests' scripted turn (a shell tool call, then a final answer)
headless against the model stand-in in a throwaway home, without Switchboard; the session
files it wrote there are copied to ``tests/fixtures/transcripts/<harness>/``, paths relative
to that home (Claude Code's ``.claude/projects``, Codex's ``.codex/sessions``, Gemini CLI's
``.gemini/tmp``, OpenCode's database under ``.local/share/opencode``, Pi's
``.pi/agent/sessions``). Run it with the repo's Python after ``make harnesses``:

    PYTHONPATH=src .venv/bin/python tests/live/make_transcript_fixtures.py [HARNESS...]
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drivers import DRIVERS
from live_kit import Home, check_installed
from standin import Standin

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts"
# Where each harness keeps its sessions, relative to the home.
SESSIONS = {
    "claude": ".claude/projects",
    "codex": ".codex/sessions",
    "gemini": ".gemini/tmp",
    "opencode": ".local/share/opencode",
    "pi": ".pi/agent/sessions",
}
# OpenCode's data directory holds more than sessions: only its database is kept.
KEEP = {"opencode": ("opencode.db",)}


class _NoDevice:
    """What a Home needs of a device when no Switchboard is installed: a home path."""

    def __init__(self, home: Path) -> None:
        self.home = home


def regenerate(name: str) -> list[Path]:
    """Run one turn of harness ``name`` and copy its session files; the files written."""
    driver = DRIVERS[name]
    root = Path(tempfile.mkdtemp(prefix="sbt-", dir="/tmp"))
    standin = Standin(driver.dialect)
    try:
        home = Home(root / "home", _NoDevice(root / "sb"))  # type: ignore[arg-type]
        driver.prepare(home, standin.url)
        turn = driver.turn(home, standin)
        assert turn.code == 0, turn.describe()
        source = home.path(SESSIONS[name])
        target = FIXTURES / name
        shutil.rmtree(target, ignore_errors=True)
        written = []
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            if name in KEEP and path.name not in KEEP[name]:
                continue
            if name == "gemini" and "chats" not in path.parts:
                continue
            out = target / SESSIONS[name] / path.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".db":
                _copy_database(path, out)
            else:
                shutil.copyfile(path, out)
            written.append(out)
        (target / "HOME").write_text(str(home.root) + "\n")  # the home the paths were under
        return written
    finally:
        standin.close()
        shutil.rmtree(root, ignore_errors=True)


def _copy_database(path: Path, out: Path) -> None:
    """A consistent single-file copy of a SQLite database (its WAL folded in)."""
    out.unlink(missing_ok=True)
    source = sqlite3.connect(path)
    try:
        source.execute(f"VACUUM INTO '{out}'")
    finally:
        source.close()


def main(argv: list[str]) -> int:
    versions = check_installed()
    for name in argv or sorted(DRIVERS):
        written = regenerate(name)
        print(f"{name} {versions[name]}: {[str(p.relative_to(FIXTURES)) for p in written]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
