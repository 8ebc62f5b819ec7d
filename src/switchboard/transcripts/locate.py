"""Where each harness keeps a session's transcript, from its session id.

The hook of an agent tells the daemon where to look (``source``): the transcript's path when
the harness's hook payload names it (Claude Code, Codex and Gemini CLI send
``transcript_path``), else the harness's session root as the hook process's environment
places it (``roots``: the hook runs in the harness's environment, which may set
``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``, ``GEMINI_CLI_HOME``, ``XDG_DATA_HOME`` or
``PI_CODING_AGENT_DIR``). Without a source, the daemon's own environment gives the roots.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from switchboard.errors import NotFound


def roots(harness: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The directory (OpenCode: the database) under which ``harness`` keeps its sessions."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    if harness == "claude":
        return Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude") / "projects"
    if harness == "codex":
        return Path(env.get("CODEX_HOME") or home / ".codex") / "sessions"
    if harness == "gemini":
        return Path(env.get("GEMINI_CLI_HOME") or home) / ".gemini" / "tmp"
    if harness == "opencode":
        data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
        return data / "opencode" / "opencode.db"
    if harness == "pi":
        return Path(env.get("PI_CODING_AGENT_DIR") or home / ".pi" / "agent") / "sessions"
    return None


def _safe(session: str) -> bool:
    return bool(session) and "/" not in session and "\0" not in session and ".." not in session


def find(harness: str, session: str, source: str = "") -> Path:
    """The transcript of ``session``: ``source`` itself when it is the file, else found under
    ``source`` (a root) or the default root.

    Raises:
        NotFound: no transcript of that session is there.
    """
    where = Path(source) if source else roots(harness)
    if where is None:
        raise NotFound(f"transcripts of {harness or 'unknown'} agents cannot be read")
    if where.is_file():
        return where
    if not _safe(session) or not where.is_dir():
        raise NotFound(f"no {harness} transcript of session {session[:40]!r} on this device")
    patterns = {
        "claude": [f"*/{session}.jsonl"],
        "codex": [f"*/*/*/rollout-*-{session}.jsonl"],
        "gemini": [
            f"*/chats/session-*-{session[:8]}.jsonl",
            f"*/chats/session-*-{session[:8]}.json",
        ],
        "pi": [f"*/*_{session}.jsonl"],
    }.get(harness, [])
    found = sorted((p for pattern in patterns for p in where.glob(pattern)), key=_mtime)
    if found:
        return found[-1]
    raise NotFound(f"no {harness} transcript of session {session[:40]!r} on this device")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
