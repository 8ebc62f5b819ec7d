"""Repository identity: which repository a directory or file belongs to, whatever its folder is
called.

A repository is named by its ``origin`` remote's URL (normalised, so the SSH and HTTPS forms of
one URL agree), else by its root commit (``root:<sha>``: every clone of a history shares it),
else, for a repository with no commit yet, by its top directory's absolute path (``dir:...``,
this machine only). File leases and edit-collision notices use this key with the path inside
the repository, so two clones in ``proj`` and ``proj-b`` are one repository and two unrelated
repositories both called ``app`` are two.

Outside any git repository there is no identity to read: ``locate`` then keys by the working
directory's last part, as before repositories were recognised.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from pathlib import Path
from typing import Final

# Identities kept per (top directory, config mtime): a daemon asks once per repository.
_CACHE_MAX: Final = 256
_cache: dict[tuple[str, int], str] = {}
# How long ``git rev-list`` may take to name a root commit before we fall back to the path.
GIT_TIMEOUT: Final = 5.0
_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?([\w.-]+):(?!/)(.+)$")  # git@host:owner/repo.git


def find_top(start: Path) -> Path | None:
    """Return the top directory of the git repository holding ``start``, or ``None``."""
    here = start if start.is_dir() else start.parent
    for top in (here, *here.parents):
        if (top / ".git").exists():
            return top
    return None


def normalise_url(url: str) -> str:
    """One spelling per remote: ``host/path`` without scheme, user, ``.git`` or a trailing
    slash, host in lower case (``git@github.com:a/b.git`` = ``https://github.com/a/b``)."""
    url = url.strip()
    scp = _SCP_LIKE.match(url)
    if scp and "://" not in url:
        host, path = scp.groups()
    elif "://" in url:
        rest = url.split("://", 1)[1]
        host, _, path = rest.partition("/")
        host = host.rsplit("@", 1)[-1]
        if host.endswith((":22", ":443")):
            host = host.rsplit(":", 1)[0]
    else:
        return url.rstrip("/").removesuffix(".git")  # a local path remote
    path = path.strip("/").removesuffix(".git")
    return f"{host.lower()}/{path}"


def identity(top: Path) -> str:
    """Return the identity of the repository whose top directory is ``top``."""
    git = top / ".git"
    config = _git_dir(git) / "config"
    try:
        stamp = config.stat().st_mtime_ns
    except OSError:
        stamp = 0
    key = (str(top), stamp)
    found = _cache.get(key)
    if found is None:
        found = _read_identity(top, config)
        if len(_cache) >= _CACHE_MAX:
            _cache.pop(next(iter(_cache)))
        _cache[key] = found
    return found


def repository(start: Path | None = None) -> tuple[Path | None, str]:
    """Return the git top directory above ``start`` (default: here) and its identity, or
    ``(None, "")`` outside a repository."""
    top = find_top((start or Path.cwd()).resolve())
    return (top, identity(top)) if top is not None else (None, "")


def locate(path: str, cwd: str) -> tuple[str, str]:
    """Return ``(repository, path inside it)`` for a file an agent in ``cwd`` touched.

    A relative ``path`` is taken from ``cwd``. Outside a repository (or a path that cannot be
    read) the key is ``cwd``'s last part and the path is relative to ``cwd`` when under it.
    """
    full = os.path.normpath(os.path.join(cwd, path)) if cwd else os.path.normpath(path)
    if os.path.isabs(full):
        top = find_top(Path(full))
        if top is not None:
            return identity(top), os.path.relpath(full, top)
    return folder_key(path, cwd)


def folder_key(path: str, cwd: str) -> tuple[str, str]:
    """Return ``(folder name, path)`` where no repository is known: keyed by ``cwd``'s last
    part, the path relative to ``cwd`` when under it."""
    name = os.path.basename(cwd.rstrip("/"))
    if cwd and os.path.isabs(path):
        relative = os.path.relpath(path, cwd)
        if not relative.startswith(".."):
            return name, relative
    return name, os.path.normpath(path)


def _git_dir(git: Path) -> Path:
    """The git directory of a work tree: ``.git`` itself, or where a ``.git`` file points
    (worktrees, submodules)."""
    if git.is_file():
        try:
            text = git.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return git
        if text.startswith("gitdir:"):
            target = Path(text.split(":", 1)[1].strip())
            target = target if target.is_absolute() else git.parent / target
            common = target / "commondir"  # a worktree shares its main repository's config
            if common.is_file():
                try:
                    shared = common.read_text(encoding="utf-8").strip()
                    return (target / shared).resolve()
                except OSError:
                    return target
            return target
    return git


def _read_identity(top: Path, config_file: Path) -> str:
    config = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        config.read(config_file)
        url = config.get('remote "origin"', "url", fallback="").strip()
    except configparser.Error:
        url = ""
    if url:
        return normalise_url(url)
    try:
        done = subprocess.run(
            ["git", "-C", str(top), "rev-list", "--max-parents=0", "HEAD"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        done = None
    roots = sorted(done.stdout.split()) if done is not None and done.returncode == 0 else []
    return f"root:{roots[0]}" if roots else f"dir:{top}"
