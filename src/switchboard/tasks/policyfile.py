"""Edits of ``spawn.toml`` that keep its comments and layout (tomlkit), and its JSON view.

Each edit takes the file's text and returns the new text, which is checked by reading it
back with ``policy.parse`` before anyone writes it, so an edit never leaves a policy the
daemon cannot read.
"""

from __future__ import annotations

from typing import Any

import tomlkit
from tomlkit.items import Table

from switchboard.errors import UserError
from switchboard.tasks.policy import (
    LOCAL_DEFAULT,
    REMOTE_DEFAULT_HARNESSES,
    Grant,
    Policy,
    parse,
)

HEADER = (
    "Who may start agents on this device (switchboard spawn). Edited by `switchboard spawn "
    "allow|deny`; see docs/cli.md. Remote devices may do nothing unless they have a table here."
)


def _doc(text: str) -> tomlkit.TOMLDocument:
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise UserError(f"spawn policy: not valid TOML ({exc})") from None
    if not text.strip():
        doc.add(tomlkit.comment(HEADER))
    return doc


def _table(parent: Any, key: str) -> Table:
    if key not in parent:
        parent[key] = tomlkit.table()
    table = parent[key]
    if not isinstance(table, Table):
        raise UserError(f"spawn policy: {key} is not a table")
    return table


def _union(table: Table, key: str, values: list[str], default: tuple[str, ...]) -> None:
    current = [str(v) for v in table[key]] if key in table else list(default)
    merged = list(dict.fromkeys([*current, *values]))
    table[key] = merged


def allow(
    text: str,
    device: str,
    *,
    local: bool,
    name: str = "",
    harnesses: list[str] | tuple[str, ...] = (),
    dirs: list[str] | tuple[str, ...] = (),
    answer: list[str] | tuple[str, ...] = (),
    term_read: list[str] | tuple[str, ...] = (),
    term_type: list[str] | tuple[str, ...] = (),
) -> str:
    """Let ``device`` (or, with ``local``, this device's user) spawn: add the harnesses and
    directories to what it may already use, the agents (globs) whose permission prompts it
    may answer, and the agents whose terminals it may read or type into (``term_read``,
    ``term_type``: names or globs).

    A device allowed for the first time gets ``REMOTE_DEFAULT_HARNESSES`` when no harness is
    named, and must be given a directory, unless it is given only prompts to answer or
    terminal patterns: then it may spawn nothing.

    Raises:
        UserError: no directory for a new device, or the result is not a valid policy.
    """
    doc = _doc(text)
    if local:
        table = _table(doc, "local")
        table["allowed"] = True
        if harnesses:
            _union(table, "harnesses", list(harnesses), LOCAL_DEFAULT.harnesses)
        if dirs:
            _union(table, "dirs", list(dirs), LOCAL_DEFAULT.dirs)
        if answer:
            _union(table, "answer", list(answer), LOCAL_DEFAULT.answer)
    else:
        devices = _table(doc, "devices")
        is_new = device not in devices
        table = _table(devices, device)
        grants_only = bool(answer or term_read or term_type) and not harnesses and not dirs
        if is_new and not dirs and not grants_only:
            raise UserError("give --dir PATH: a device may spawn only in named directories")
        if name:
            table["name"] = name
        if is_new and grants_only:
            table["harnesses"] = []
            table["dirs"] = []
        elif not grants_only:
            defaults = () if harnesses else REMOTE_DEFAULT_HARNESSES
            _union(table, "harnesses", list(harnesses), defaults)
            _union(table, "dirs", list(dirs), ())
        if answer:
            _union(table, "answer", list(answer), ())
        if term_read:
            _union(table, "term_read", list(term_read), ())
        if term_type:
            _union(table, "term_type", list(term_type), ())
    new_text = tomlkit.dumps(doc)
    parse(tomlkit.parse(new_text).unwrap())
    return new_text


def deny(text: str, device: str, *, local: bool) -> tuple[str, bool]:
    """Take away ``device``'s grant (with ``local``: set ``[local] allowed = false``).

    Returns:
        The new text and whether anything changed.
    """
    doc = _doc(text)
    if local:
        table = _table(doc, "local")
        changed = table.get("allowed", True) is not False
        table["allowed"] = False
        return tomlkit.dumps(doc), changed
    devices = doc.get("devices")
    if not isinstance(devices, Table) or device not in devices:
        return text, False
    del devices[device]
    return tomlkit.dumps(doc), True


def allow_transcripts(
    text: str, device: str, *, agents: list[str] | tuple[str, ...], name: str = ""
) -> str:
    """Let ``device`` read the transcripts of these agents (names or globs) here; a device
    new to the policy gets a table that allows nothing else.

    Raises:
        UserError: the result is not a valid policy.
    """
    doc = _doc(text)
    devices = _table(doc, "devices")
    is_new = device not in devices
    table = _table(devices, device)
    if is_new:
        if name:
            table["name"] = name
        table["harnesses"] = []
        table["dirs"] = []
    _union(table, "transcripts", list(agents), ())
    new_text = tomlkit.dumps(doc)
    parse(tomlkit.parse(new_text).unwrap())
    return new_text


def deny_transcripts(text: str, device: str) -> tuple[str, bool]:
    """Take away ``device``'s reading of transcripts here (its other grants stay).

    Returns:
        The new text and whether anything changed.
    """
    doc = _doc(text)
    devices = doc.get("devices")
    if not isinstance(devices, Table) or device not in devices:
        return text, False
    table = devices[device]
    if not isinstance(table, Table) or not table.get("transcripts"):
        return text, False
    del table["transcripts"]
    return tomlkit.dumps(doc), True


def grant_json(grant: Grant) -> dict[str, Any]:
    """One grant as JSON."""
    return {
        "name": grant.name,
        "allowed": grant.allowed,
        "harnesses": list(grant.harnesses),
        "dirs": list(grant.dirs),
        "answer": list(grant.answer),
        "answer_own": grant.answer_own,
        "max_tasks": grant.max_tasks,
        "max_runtime": grant.max_runtime,
        "transcripts": list(grant.transcripts),
        "term_read": list(grant.term_read),
        "term_type": list(grant.term_type),
    }


def policy_json(policy: Policy, shorts: dict[str, str]) -> dict[str, Any]:
    """The ``spawn policy --json`` shape: limits, the local grant, device grants, harnesses."""
    return {
        "max_tasks": policy.max_tasks,
        "max_runtime": policy.max_runtime,
        "grace": policy.grace,
        "local": grant_json(policy.local),
        "devices": [
            {"device": shorts.get(device, device), "id": device, **grant_json(grant)}
            for device, grant in sorted(policy.devices.items())
        ],
        "harnesses": {
            name: {
                "args": None if rule.args is None else list(rule.args),
                "task": rule.task_via,
                "skip_permissions": rule.skip_permissions,
                "env": sorted(key for key, _ in rule.env),  # names only: values may be keys
            }
            for name, rule in sorted(policy.harnesses.items())
        },
    }
