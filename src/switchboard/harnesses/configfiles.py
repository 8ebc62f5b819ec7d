"""Merge our entries into harness config files, tag them, and take them out again.

Every installer module (claude.py, codex.py, ...) describes its work as ``Edit`` values: a file
and two pure functions, one adding our entries to its text, one removing them. This module
runs them (``install``, ``uninstall``) and holds the rules they share:

- **Merge, never overwrite.** JSON(C) files are edited as text (harnesses/jsonc.py), TOML with
  tomlkit: the user's entries, comments and formatting stay as they were.
- **Tagged.** Our hook entries are recognised by their command (``switchboard ... hook
  HARNESS EVENT``, ``is_ours``), our MCP entries by their key ``switchboard`` and command, our
  files by a first-line marker. Uninstall removes exactly what matches, nothing else.
- **Idempotent.** Adding an entry that is already there (same command) changes nothing; an
  entry of ours that differs (an older install) is replaced, not duplicated.
- **Reverted exactly, with the bookkeeping elsewhere.** Before the first change to a file the
  ledger (harnesses/ledger.py, in the device's home) records whether we created it, its text
  then, and the directories we create for it. Uninstall restores that text byte for byte when
  what is left equals it, removes a file we created once only its skeleton is left, and then
  forgets the record: no backup outlives a successful uninstall. A file the harness itself
  keeps rewriting (``~/.claude.json``) gets no backup at all: removing exactly our keys is its
  restore.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from switchboard.harnesses.jsonc import JsoncError, JsonDoc, parse
from switchboard.harnesses.ledger import Entry, Ledger

#: The first line of every file we write whole (plugins, extensions).
FILE_MARKER: Final = "switchboard: managed file"
SERVER_KEY: Final = "switchboard"
_OUR_COMMAND = re.compile(r"\bhook\s+(?:claude|codex|gemini|antigravity|cursor|opencode|pi)\b")
_HOOK_TAIL = re.compile(r"\bhook\s+([a-z]+)\s+([A-Za-z._]+)")


def is_ours(command: Any) -> bool:
    """Whether a hook command (string or argv list) is one we installed."""
    if isinstance(command, list):
        command = " ".join(str(part) for part in command)
    return (
        isinstance(command, str) and "switchboard" in command and bool(_OUR_COMMAND.search(command))
    )


@dataclass(frozen=True)
class Edit:
    """One file to change: ``install(old text or None) -> new text``, and back.

    ``uninstall`` returns the new text, or ``None`` to delete the file. ``rewritten`` marks a
    file the harness rewrites on its own (no backup is kept of it); ``remove_only`` a place
    only earlier versions wrote to (install leaves it alone and does not list it).
    """

    path: Path
    install: Callable[[str | None], str | None]
    uninstall: Callable[[str], str | None]
    rewritten: bool = False
    remove_only: bool = False


@dataclass(frozen=True)
class Outcome:
    """What happened (or would happen, in a dry run) to one file or directory."""

    path: Path
    action: str  # "created", "updated", "unchanged", "removed", "restored", "kept"
    diff: str
    note: str = ""  # why a file or directory of ours was kept


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.switchboard-tmp")
    tmp.write_text(text, encoding="utf-8")
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o777)
    os.replace(tmp, path)


def _diff(path: Path, old: str | None, new: str | None) -> str:
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        (new or "").splitlines(keepends=True),
        fromfile=str(path) if old is not None else "/dev/null",
        tofile=str(path) if new is not None else "/dev/null",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _value(path: Path, text: str) -> Any:
    """The parsed value of a config text, for comparing contents regardless of formatting."""
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".json", ".jsonc"):
            return parse(text).value
    except (tomllib.TOMLDecodeError, JsoncError):
        return None
    return text


def install(edit: Edit, ledger: Ledger, *, dry_run: bool) -> Outcome:
    """Apply one edit's ``install``, recording the file in the ledger before its first change."""
    old = _read(edit.path)
    new = edit.install(old)
    if new == old or new is None:
        if not dry_run:
            ledger.adopt_legacy(edit.path)
        return Outcome(edit.path, "unchanged", "")
    diff = _diff(edit.path, old, new)
    if not dry_run:
        if ledger.adopt_legacy(edit.path) is None:
            backup = None if old is None or edit.rewritten else old
            dirs = ledger.missing_dirs(edit.path.parent)
            ledger.add(edit.path, Entry(created=old is None, backup=backup, dirs=dirs))
        _write(edit.path, new)
    return Outcome(edit.path, "created" if old is None else "updated", diff)


def uninstall(edit: Edit, ledger: Ledger, *, dry_run: bool) -> tuple[Outcome, list[str]]:
    """Apply one edit's ``uninstall``: restore the recorded text when nothing else changed,
    remove a file we created once only its skeleton is left.

    Returns:
        The outcome, and the directories install created for the file (ledger names), for
        the caller to remove once empty.
    """
    entry = ledger.adopt_legacy(edit.path, dry_run=dry_run)
    dirs = entry.dirs if entry is not None else []
    old = _read(edit.path)
    if old is None:
        if not dry_run:
            ledger.forget(edit.path)
        return Outcome(edit.path, "unchanged", ""), dirs
    new, action = edit.uninstall(old), "updated"
    backup = entry.backup if entry is not None else None
    created = entry is not None and entry.created
    if (
        new is not None
        and backup is not None
        and _value(edit.path, new) == _value(edit.path, backup)
    ):
        new, action = backup, "restored"
    elif new is not None and created and _is_skeleton(_value(edit.path, new)):
        new = None
    note = "it holds entries that are not ours" if created and new is not None else ""
    if entry is None and new not in (None, old) and _is_skeleton(_value(edit.path, new)):
        note = "left empty: no record says install created it (another data directory?)"
    if new == old:
        if not dry_run:
            ledger.forget(edit.path)
        return Outcome(edit.path, "kept" if note else "unchanged", "", note), dirs
    if created and note:
        note = f"kept: {note}"
    diff = _diff(edit.path, old, new)
    if not dry_run:
        if new is None:
            edit.path.unlink()
        else:
            _write(edit.path, new)
        ledger.forget(edit.path)
    return Outcome(edit.path, "removed" if new is None else action, diff, note), dirs


def remove_dirs(ledger: Ledger, names: list[str], *, dry_run: bool) -> list[Outcome]:
    """Remove the directories install created (deepest first) that are empty now; say which
    are kept, and what they hold."""
    outcomes = []
    gone: set[Path] = set()
    for name in sorted(set(names), key=lambda n: (-len(Path(n).parts), n)):
        path = ledger.resolve(name)
        if not path.is_dir():
            continue
        left = sorted(p.name for p in path.iterdir() if p not in gone)
        if left:
            shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
            outcomes.append(Outcome(path, "kept", "", f"it holds {shown}, not ours"))
            continue
        if not dry_run:
            path.rmdir()
        gone.add(path)
        outcomes.append(Outcome(path, "removed", ""))
    return outcomes


#: Keys that only describe a file (Cursor's ``version``, OpenCode's ``$schema``): a file of ours
#: holding nothing else is empty.
SKELETON_KEYS: Final = frozenset({"version", "$schema"})


def _is_skeleton(value: Any) -> bool:
    """Only empty containers (and ``SKELETON_KEYS``) left: the shell of a file we created."""
    if isinstance(value, dict):
        return all(key in SKELETON_KEYS or _is_skeleton(item) for key, item in value.items())
    if isinstance(value, list):
        return not value
    return False


# -- JSON(C) edits shared by the installers ---------------------------------------------------


def json_edit(
    path: Path,
    add: Callable[[JsonDoc], None],
    remove: Callable[[JsonDoc], None],
    *,
    rewritten: bool = False,
) -> Edit:
    """An ``Edit`` of a JSON(C) file by functions that change a ``JsonDoc``."""

    def do_install(text: str | None) -> str:
        doc = JsonDoc(text or "{}\n")
        add(doc)
        return doc.text

    def do_uninstall(text: str) -> str | None:
        doc = JsonDoc(text)
        remove(doc)
        return doc.text

    return Edit(path, do_install, do_uninstall, rewritten)


def set_server(doc: JsonDoc, path: list[str], entry: dict[str, Any]) -> None:
    """Put our MCP server entry at ``path`` (``[..., "switchboard"]``) unless it is there."""
    current = doc.node(list(path))
    if current is None or current.value != entry:
        doc.set(path, entry)


def remove_server(doc: JsonDoc, path: list[str]) -> None:
    """Remove our MCP server entry at ``path`` (only if it runs switchboard), then its parent
    object if that is left empty."""
    node = doc.node(list(path))
    if node is None or "switchboard" not in json.dumps(node.value):
        return
    doc.delete(list(path))
    prune(doc, path[:-1])


def add_item(doc: JsonDoc, path: list[str], item: Any, key: Callable[[Any], str]) -> None:
    """Append ``item`` to the array at ``path``; replace an entry of ours with the same ``key``
    (an older install), and do nothing if an identical one is there."""
    node = doc.node(list(path))
    items = node.value if node is not None and isinstance(node.value, list) else []
    for index, existing in enumerate(items):
        if existing == item:
            return
        if key(existing) == key(item):
            doc.delete([*path, index])
            break
    doc.append(path, item)


def remove_items(doc: JsonDoc, path: list[str], ours: Callable[[Any], bool]) -> None:
    """Remove every item of the array at ``path`` that is ours; prune emptied parents."""
    node = doc.node(list(path))
    if node is None or not isinstance(node.value, list):
        return
    for index in reversed(range(len(node.value))):
        if ours(node.value[index]):
            doc.delete([*path, index])
    prune(doc, path)


def prune(doc: JsonDoc, path: list[str]) -> None:
    """Delete the container at ``path`` if empty, then its parents while they become empty."""
    while path:
        node = doc.node(list(path))
        if node is None or node.value not in ({}, []):
            return
        doc.delete(list(path))
        path = path[:-1]


def group_key(group: Any) -> str:
    """The identity of a hook group of ours: the ``HARNESS EVENT`` of its commands.

    Two installs from different paths (a moved virtualenv) have the same key, so a reinstall
    replaces the old entry instead of adding a second one.
    """
    if not isinstance(group, dict):
        return ""
    commands = [h.get("command") for h in group.get("hooks", []) if isinstance(h, dict)]
    commands.append(group.get("command"))
    tails = [_HOOK_TAIL.findall(str(c)) for c in commands if is_ours(c)]
    return "|".join(" ".join(t) for found in tails for t in found)


def group_is_ours(group: Any) -> bool:
    """Whether a hook group (or a flat Cursor hook entry) holds only our commands."""
    if not isinstance(group, dict):
        return False
    if "command" in group:
        return is_ours(group["command"])
    hooks = group.get("hooks", [])
    return bool(hooks) and all(isinstance(h, dict) and is_ours(h.get("command")) for h in hooks)


def write_file_edit(path: Path, content: str, *, install: bool = True) -> Edit:
    """An ``Edit`` that writes a whole file of ours (its first line carries ``FILE_MARKER``);
    with ``install`` off, one that only removes it (a place earlier versions wrote to)."""
    assert FILE_MARKER in content.split("\n", 1)[0]

    def do_uninstall(text: str) -> str | None:
        return None if FILE_MARKER in text.split("\n", 1)[0] else text

    if not install:
        return Edit(path, lambda old: old, do_uninstall, remove_only=True)
    return Edit(path, lambda _old: content, do_uninstall)
