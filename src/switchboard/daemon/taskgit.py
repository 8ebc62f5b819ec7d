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
