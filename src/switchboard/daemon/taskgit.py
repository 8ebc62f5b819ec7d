"""What a task changed in a git working directory: a snapshot before, a diff after.

A snapshot is the tree of the whole working directory, untracked files included (ignored
ones not), written with a temporary copy of the index, so the user's own index and staging
are never touched. The task's change is the diff between the snapshot taken when it started
and one taken when it ended: changes that were there before are not the task's, commits the
agent made are. Blocking (it runs git): call it in a thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from typing import Final

# git on a big working tree can take a while; past this, the task just has no diff.
GIT_TIMEOUT: Final = 60.0
#: The diff --stat kept in the log; the patch itself stays on the device, in the task folder.
MAX_STAT_CHARS: Final = 4000


def _git(root: str, *args: str, env: dict[str, str] | None = None) -> str | None:
    clean = {k: v for k, v in (env or os.environ).items() if not k.startswith("GIT_")}
    if env is not None and "GIT_INDEX_FILE" in env:
        clean["GIT_INDEX_FILE"] = env["GIT_INDEX_FILE"]
    try:
        done = subprocess.run(
            ["git", "-C", root, *args], capture_output=True, timeout=GIT_TIMEOUT,
            env=clean, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def top_level(directory: str) -> str | None:
    """The working tree's top directory, or ``None`` outside a git repository."""
    found = _git(directory, "rev-parse", "--show-toplevel")
    return found.strip() if found else None


def snapshot(root: str) -> str | None:
    """The id of a tree holding the working directory as it is now (``None``: git failed)."""
    index = _git(root, "rev-parse", "--git-path", "index")
    with tempfile.TemporaryDirectory(prefix="switchboard-git-") as temp:
        temp_index = os.path.join(temp, "index")
        if index:
            path = os.path.join(root, index.strip())
            with contextlib.suppress(OSError):
                shutil.copyfile(path, temp_index)  # keeps stat data: add -A stays quick
        env = {**os.environ, "GIT_INDEX_FILE": temp_index}
        if _git(root, "add", "-A", env=env) is None:
            return None
        tree = _git(root, "write-tree", env=env)
    return tree.strip() if tree else None


def diff(root: str, before: str, after: str) -> tuple[str, str]:
    """``(diff --stat, patch)`` between two snapshots; empty strings when git fails."""
    stat = _git(root, "diff", "--stat", before, after) or ""
    patch = _git(root, "diff", "--binary", before, after) or ""
    return stat[:MAX_STAT_CHARS], patch


# -- handing work over (daemon/handoff.py) ------------------------------------------------------


def head(root: str) -> tuple[str, str, str]:
    """``(branch, commit, subject)`` of the checkout (``""`` each where there is none)."""
    branch = (_git(root, "rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    line = (_git(root, "log", "-1", "--format=%H %s") or "").strip()
    commit, _, subject = line.partition(" ")
    return ("" if branch == "HEAD" else branch), commit, subject


def uncommitted(root: str) -> tuple[str, str]:
    """``(diff --stat, patch)`` of everything not committed: staged, unstaged and untracked
    files (ignored ones not), against ``HEAD``; the user's index is not touched."""
    now = snapshot(root)
    base = (_git(root, "rev-parse", "HEAD^{tree}") or "").strip()
    if not now or not base or now == base:
        return "", ""
    return diff(root, base, now)


def _run(root: str, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        done = subprocess.run(
            ["git", "-C", root, *args], input=stdin, capture_output=True,
            timeout=GIT_TIMEOUT, env=clean, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return done.returncode, (done.stderr or done.stdout).decode("utf-8", "replace")


def patch_paths(patch: str) -> list[str]:
    """The paths a ``diff --binary`` patch touches (both sides of a rename)."""
    paths: list[str] = []
    for line in patch.splitlines():
        if line.startswith("diff --git a/"):  # "diff --git a/P b/P": both halves alike
            rest = line[len("diff --git a/") :]
            path = rest[: (len(rest) - 3) // 2]
            if rest != f"{path} b/{path}":
                continue  # a rename: its own lines below name both sides
        elif line.startswith(("rename from ", "rename to ")):
            path = line.split(" ", 2)[2]
        else:
            continue
        if path not in paths:
            paths.append(path)
    return paths


def apply(root: str, patch: str) -> str | None:
    """Apply a patch to the checkout, or say why not (``None``: applied).

    Refused, with nothing changed, when a path it touches has local changes here (they are
    never overwritten) or when git's own check fails (the checkout differs too much).
    """
    touched = patch_paths(patch)
    code, status = _run(root, "status", "--porcelain", "--untracked-files=all", "--", *touched)
    if code != 0:
        return f"git status failed: {status.strip()[:300]}"
    if touched and status:
        dirty = ", ".join(line[3:] for line in status.splitlines()[:10])
        return f"local changes here to files the handoff changes: {dirty}"
    code, message = _run(root, "apply", "--check", "--binary", "-", stdin=patch.encode())
    if code != 0:
        return f"the changes do not apply here: {message.strip()[:300]}"
    code, message = _run(root, "apply", "--binary", "-", stdin=patch.encode())
    return None if code == 0 else f"git apply failed: {message.strip()[:300]}"
