"""``Setup``: where an install writes (user or project level) and how harnesses run us."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

#: How project-level files start Switchboard: by name, from the PATH of whoever runs the
#: harness, so the files a team commits work on every member's machine with their own install.
PORTABLE_COMMAND: Final = ("switchboard",)


def default_command() -> list[str]:
    """How a harness should start ``switchboard`` from user-level files: our own script, by
    absolute path.

    The script next to this interpreter is the one of this installation (a virtualenv's, a
    pipx/uv tool's); a harness's PATH may not hold it. Without one, ``python -m switchboard``.
    """
    script = Path(sys.executable).parent / "switchboard"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("switchboard")
    return [found] if found else [sys.executable, "-m", "switchboard"]


@dataclass(frozen=True)
class Setup:
    """What installers need: the user's home, the project (``--project``) and our command.

    Args:
        home: the user's home directory (``~``).
        project: the project directory for project-level config, or ``None`` for user level.
        command: argv that runs ``switchboard``.
        switchboard_home: a ``SWITCHBOARD_HOME`` to pin in every entry (``None``: the
            harness's environment decides).
        path: the ``PATH`` to look for harness executables on.
        state: the Switchboard home whose ledger records what install did (``None``: the
            default home).
    """

    home: Path
    project: Path | None = None
    command: list[str] = field(default_factory=default_command)
    switchboard_home: str | None = None
    path: str = ""
    state: Path | None = None

    @classmethod
    def for_project(cls, home: Path, project: Path, **options: Any) -> Setup:
        """A project-level setup: the portable command, no home pinned in any file."""
        return cls(home=home, project=project, command=list(PORTABLE_COMMAND), **options)

    @property
    def root(self) -> Path:
        """The directory this install writes under: the project, or the user's home."""
        return self.project if self.project is not None else self.home

    def ledger_path(self) -> Path:
        """Where the install bookkeeping lives (harnesses/ledger.py)."""
        from switchboard.harnesses.ledger import FILE_NAME  # noqa: PLC0415 - install only

        if self.state is not None:
            return self.state / FILE_NAME
        from switchboard.config import default_home  # noqa: PLC0415 - install only

        return default_home() / FILE_NAME

    def user(self, *parts: str) -> Path:
        """A path under the user's home."""
        return self.home.joinpath(*parts)

    def at(self, user: tuple[str, ...], project: tuple[str, ...]) -> Path:
        """The user-level path, or the project-level one with ``--project``."""
        if self.project is not None:
            return self.project.joinpath(*project)
        return self.user(*user)

    def has_executable(self, *names: str) -> bool:
        """Whether one of ``names`` is on ``path``."""
        return any(shutil.which(name, path=self.path or None) for name in names)

    def argv(self, *args: str) -> list[str]:
        """Our command with ``args`` (and ``--home`` when pinned)."""
        home = ["--home", self.switchboard_home] if self.switchboard_home else []
        return [*self.command, *home, *args]

    def hook_command(self, harness: str, event: str, *extra: str) -> str:
        """The shell command a harness runs for one hook event."""
        return shlex.join(self.argv("hook", harness, event, *extra))

    def mcp_env(self, harness: str) -> dict[str, str]:
        """Environment for our MCP server entry."""
        env = {"SWITCHBOARD_HARNESS": harness}
        if self.switchboard_home:
            env["SWITCHBOARD_HOME"] = self.switchboard_home
        return env

    def mcp_stdio(self, harness: str, **extra: Any) -> dict[str, Any]:
        """The common ``{"command", "args", "env"}`` MCP server entry."""
        return {
            "command": self.command[0],
            "args": [*self.command[1:], "mcp"],
            "env": self.mcp_env(harness),
            **extra,
        }
