"""`doctor` names what Gemini CLI and Claude Code will ask exactly when their own CLIs say so.

The real pinned CLIs (tests/live/harnesses) list our MCP server as ``Disabled`` (Gemini CLI, in
a folder it does not trust) or ``Pending approval`` (Claude Code, a project's ``.mcp.json``);
doctor reads their files and must agree, before and after the fix it names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BIN = Path(__file__).resolve().parent / "harnesses" / "node_modules" / ".bin"
PY = sys.executable
FACTOR = float(os.environ.get("SWITCHBOARD_TEST_TIMEOUT_FACTOR", "1"))


class Homes:
    """A throwaway user home and project, and a Switchboard home."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.project = root / "proj"
        self.home.mkdir()
        self.project.mkdir()
        subprocess.run(["git", "init", "-q", str(self.project)], check=True)
        # The project files run `switchboard` from PATH: this checkout's, through a launcher.
        launcher = root / "bin" / "switchboard"
        launcher.parent.mkdir()
        launcher.write_text(f'#!/bin/sh\nexec {PY} -m switchboard "$@"\n')
        launcher.chmod(0o755)
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "SWITCHBOARD_HOME": str(root / "sb"),
            "PATH": os.pathsep.join([str(BIN), str(launcher.parent), os.environ.get("PATH", "")]),
        }
        for name in list(self.env):
            if name.startswith(("GEMINI_", "GOOGLE_", "CLAUDE_", "ANTHROPIC_")):
                del self.env[name]

    def run(self, *argv: str, code: int | None = 0, stderr: bool = True) -> str:
        """Run a program in the project; its output (stdout, then stderr unless told not)."""
        done = subprocess.run(
            list(argv),
            env=self.env,
            cwd=self.project,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120 * FACTOR,
            check=False,
        )
        if code is not None:
            assert done.returncode == code, (argv, done.stdout, done.stderr)
        return done.stdout + (done.stderr if stderr else "")

    def sb(self, *args: str, code: int | None = 0) -> str:
        return self.run(PY, "-m", "switchboard", *args, code=code, stderr=False)

    def setup_check(self, harness: str) -> list[dict[str, Any]]:
        checks = json.loads(self.sb("doctor", "--json", code=None))
        return [c for c in checks if c["name"] == f"{harness} project setup"]


@pytest.fixture
def homes() -> Iterator[Homes]:
    root = Path(tempfile.mkdtemp(prefix="sbask-", dir="/tmp"))
    found = Homes(root)
    try:
        yield found
    finally:
        found.sb("daemon", "stop", code=None)
        shutil.rmtree(root, ignore_errors=True)


def test_gemini_untrusted_folder_disables_our_server_as_doctor_says(homes: Homes) -> None:
    """Untrusted folder: `gemini mcp list` shows switchboard Disabled and doctor fails; after
    the trust Gemini's dialog records, Connected and no folder finding."""
    said = homes.sb("install", "--project", "gemini")
    assert f"Gemini CLI has not been told to trust {homes.project}" in said
    assert "Disabled" in homes.run("gemini", "mcp", "list")
    (trust,) = [c for c in homes.setup_check("gemini") if "trust" in c["detail"]]
    assert trust["status"] == "fail" and "Trust folder" in trust["fix"]
    (homes.home / ".gemini").mkdir(exist_ok=True)
    rules = {str(homes.project): "TRUST_FOLDER"}
    (homes.home / ".gemini" / "trustedFolders.json").write_text(json.dumps(rules))
    assert "Connected" in homes.run("gemini", "mcp", "list")
    assert not [c for c in homes.setup_check("gemini") if "trust" in c["detail"]]


def test_claude_project_server_pending_approval_as_doctor_says(homes: Homes) -> None:
    """A project's server: `claude mcp list` says Pending approval and doctor warns; after the
    fix doctor names (the user's enabledMcpjsonServers), Connected and ok."""
    said = homes.sb("install", "--project", "claude")
    assert "pending approval" in said
    assert "Pending approval" in homes.run("claude", "mcp", "list")
    (check,) = homes.setup_check("claude")
    assert check["status"] == "warn" and "pending approval" in check["detail"]
    settings = homes.home / ".claude" / "settings.json"
    assert str(settings) in check["fix"]
    settings.parent.mkdir(exist_ok=True)
    value = json.loads(settings.read_text()) if settings.exists() else {}
    settings.write_text(json.dumps({**value, "enabledMcpjsonServers": ["switchboard"]}))
    assert "Connected" in homes.run("claude", "mcp", "list")
    (check,) = homes.setup_check("claude")
    assert check["status"] == "ok"


def test_opencode_lists_our_server_connected(homes: Homes) -> None:
    """After `install opencode`, the real `opencode mcp list` shows switchboard connected.

    OpenCode's first start with a plugin npm-installs its plugin package; the config directory
    is given the state that install leaves (as tests/live/drivers.py does), and npm a dead
    registry, so nothing leaves loopback.
    """
    homes.sb("install", "opencode")
    config = homes.home / ".config" / "opencode"
    dependency = {"@opencode-ai/plugin": "1.18.33"}
    (config / "node_modules").mkdir(parents=True, exist_ok=True)
    (config / "package.json").write_text(json.dumps({"dependencies": dependency}) + "\n")
    lock = {"lockfileVersion": 3, "packages": {"": {"dependencies": dependency}}}
    (config / "package-lock.json").write_text(json.dumps(lock) + "\n")
    homes.env["npm_config_registry"] = "http://127.0.0.1:9/"
    listed = homes.run("opencode", "mcp", "list")
    (line,) = [row for row in listed.splitlines() if "switchboard" in row and "mcp" not in row]
    assert "connected" in line and "failed" not in line, listed
