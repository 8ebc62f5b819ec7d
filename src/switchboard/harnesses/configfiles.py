"""Merge our entries into harness config files, tag them, back up, and take them out again.

Every installer module (claude.py, codex.py, ...) describes its work as ``Edit`` values: a file
and two pure functions, one adding our entries to its text, one removing them. This module
runs them (``apply``) and holds the rules they share:

- **Merge, never overwrite.** JSON(C) files are edited as text (harnesses/jsonc.py), TOML with
  tomlkit: the user's entries, comments and formatting stay as they were.
- **Tagged.** Our hook entries are recognised by their command (``switchboard ... hook
  HARNESS EVENT``, ``is_ours``), our MCP entries by their key ``switchboard`` and command, our
  files by a first-line marker. Uninstall removes exactly what matches, nothing else.
- **Idempotent.** Adding an entry that is already there (same command) changes nothing; an
  entry of ours that differs (an older install) is replaced, not duplicated.
- **Backed up, and reverted exactly.** Before the first change to a file we copy it to
  ``<file>.switchboard-backup`` (or leave ``<file>.switchboard-created`` when we create it).
  When uninstall leaves a file whose content equals the backup's, it restores the backup byte
  for byte (and removes a file we created, if nothing else was added to it since).
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

BACKUP_SUFFIX: Final = ".switchboard-backup"
CREATED_SUFFIX: Final = ".switchboard-created"
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

    ``uninstall`` returns the new text, or ``None`` to delete the file.
    """

    path: Path
    install: Callable[[str | None], str]
    uninstall: Callable[[str], str | None]


@dataclass(frozen=True)
class Outcome:
    """What happened (or would happen, in a dry run) to one file."""

    path: Path
    action: str  # "created", "updated", "unchanged", "removed", "restored"
    diff: str


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


def install(edit: Edit, *, dry_run: bool) -> Outcome:
    """Apply one edit's ``install``, backing the file up before its first change."""
    old = _read(edit.path)
    new = edit.install(old)
    if new == old:
        return Outcome(edit.path, "unchanged", "")
    diff = _diff(edit.path, old, new)
    if not dry_run:
        backup = edit.path.with_name(edit.path.name + BACKUP_SUFFIX)
        created = edit.path.with_name(edit.path.name + CREATED_SUFFIX)
        if old is None and not backup.exists():
            edit.path.parent.mkdir(parents=True, exist_ok=True)
            created.touch()
        elif old is not None and not backup.exists() and not created.exists():
            _write(backup, old)
        _write(edit.path, new)
    return Outcome(edit.path, "created" if old is None else "updated", diff)


def uninstall(edit: Edit, *, dry_run: bool) -> Outcome:
    """Apply one edit's ``uninstall``; restore the backup when nothing else changed."""
    old = _read(edit.path)
    if old is None:
        return Outcome(edit.path, "unchanged", "")
    new = edit.uninstall(old)
    backup = edit.path.with_name(edit.path.name + BACKUP_SUFFIX)
    created = edit.path.with_name(edit.path.name + CREATED_SUFFIX)
    action = "updated"
    original = _read(backup)
    if (
        new is not None
        and original is not None
        and _value(edit.path, new) == _value(edit.path, original)
    ):
        new, action = original, "restored"
    elif new is not None and created.exists() and _is_skeleton(_value(edit.path, new)):
        new = None
    if new == old:
        return Outcome(edit.path, "unchanged", "")
    if new is None:
        action = "removed"
    diff = _diff(edit.path, old, new)
    if not dry_run:
        if new is None:
            edit.path.unlink()
        else:
            _write(edit.path, new)
        if action in ("restored", "removed"):
            backup.unlink(missing_ok=True)
            created.unlink(missing_ok=True)
    return Outcome(edit.path, action, diff)


def _is_skeleton(value: Any) -> bool:
    """Only empty containers (and a ``version``) left: the shell of a file we created."""
    if isinstance(value, dict):
        return all(key == "version" or _is_skeleton(item) for key, item in value.items())
    if isinstance(value, list):
        return not value
    return False


# -- JSON(C) edits shared by the installers ---------------------------------------------------


def json_edit(
    path: Path, add: Callable[[JsonDoc], None], remove: Callable[[JsonDoc], None]
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

    return Edit(path, do_install, do_uninstall)


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


def write_file_edit(path: Path, content: str) -> Edit:
    """An ``Edit`` that writes a whole file of ours (its first line carries ``FILE_MARKER``)."""
    assert FILE_MARKER in content.split("\n", 1)[0]

    def do_uninstall(text: str) -> str | None:
        return None if FILE_MARKER in text.split("\n", 1)[0] else text

    return Edit(path, lambda _old: content, do_uninstall)
