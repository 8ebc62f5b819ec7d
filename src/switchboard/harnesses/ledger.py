"""``Ledger``: what ``install`` created or changed, kept in the device's home, not beside the files.

Uninstall needs to know which files and directories install created (to remove them once
nothing but our skeleton is left) and what a file held before we first changed it (to give
back its exact bytes when nothing else changed since). That bookkeeping lives in one file in
the Switchboard home (``installs.json``, private to the user: backups may hold the user's
tokens), keyed by the root the install wrote under (the project directory for ``--project``,
else the user's home) and, inside it, by the file's path relative to that root. So a project
holds only the files a team commits, and a clean clone carries no trace of our machine.

Earlier versions left ``FILE.switchboard-created`` / ``FILE.switchboard-backup`` beside the
files; ``adopt_legacy`` moves what they say into the ledger and removes them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

FILE_NAME: Final = "installs.json"
LEGACY_BACKUP: Final = ".switchboard-backup"
LEGACY_CREATED: Final = ".switchboard-created"


@dataclass
class Entry:
    """One file we changed: did we create it, its text before our first change, and the
    directories that did not exist before we wrote it (relative to the root)."""

    created: bool
    backup: str | None = None
    dirs: list[str] = field(default_factory=list)


class Ledger:
    """The install bookkeeping of one root (a project or the user's home).

    Args:
        path: the ledger file (``<switchboard home>/installs.json``).
        root: the directory installs write under.
    """

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root.absolute()
        self._data = self._load()
        self._files: dict[str, Any] = self._data["roots"].setdefault(str(self.root), {})
        self._files.setdefault("files", {})

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {"version": 1, "roots": {}}
        if not isinstance(data, dict) or not isinstance(data.get("roots"), dict):
            return {"version": 1, "roots": {}}
        return data

    def key(self, path: Path) -> str:
        """How ``path`` is named in the ledger: relative to the root when under it."""
        path = path.absolute()
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def resolve(self, key: str) -> Path:
        """The path a ledger name stands for."""
        return self.root / key

    def get(self, path: Path) -> Entry | None:
        """What we recorded for ``path``, or ``None``."""
        raw = self._files["files"].get(self.key(path))
        if not isinstance(raw, dict):
            return None
        backup = raw.get("backup")
        dirs = [str(d) for d in raw.get("dirs", []) if isinstance(d, str)]
        return Entry(bool(raw.get("created")), backup if isinstance(backup, str) else None, dirs)

    def add(self, path: Path, entry: Entry) -> None:
        """Record ``path``'s first change (a later change keeps the first record)."""
        files = self._files["files"]
        files.setdefault(
            self.key(path), {"created": entry.created, "backup": entry.backup, "dirs": entry.dirs}
        )

    def forget(self, path: Path) -> None:
        """Drop what we recorded for ``path`` (it is uninstalled)."""
        self._files["files"].pop(self.key(path), None)

    def missing_dirs(self, directory: Path) -> list[str]:
        """The directories from ``directory`` up that do not exist yet, below the root."""
        missing = []
        directory = directory.absolute()
        while not directory.exists() and directory != self.root and self.root in directory.parents:
            missing.append(self.key(directory))
            directory = directory.parent
        return missing

    def adopt_legacy(self, path: Path, *, dry_run: bool = False) -> Entry | None:
        """Move an earlier version's marker files beside ``path`` into the ledger (with
        ``dry_run``, only read them); return what is recorded for ``path``."""
        created = path.with_name(path.name + LEGACY_CREATED)
        backup = path.with_name(path.name + LEGACY_BACKUP)
        if not created.exists() and not backup.exists():
            return self.get(path)
        text = backup.read_text(encoding="utf-8") if backup.exists() else None
        if dry_run:
            return self.get(path) or Entry(created.exists(), text)
        self.add(path, Entry(created.exists(), text))
        created.unlink(missing_ok=True)
        backup.unlink(missing_ok=True)
        return self.get(path)

    def save(self) -> None:
        """Write the ledger (private to the user), or remove it once it records nothing."""
        roots = self._data["roots"]
        for root, files in list(roots.items()):
            if not files.get("files"):
                del roots[root]
        if not roots:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(self._data, file, indent=1, sort_keys=True)
            file.write("\n")
        os.replace(tmp, self.path)
