"""`switchboard doctor` through the real CLI: a healthy device passes, each kind of breakage fails
with its fix, and `--json` is one array.

Harness entries are written by the real `switchboard install` into a throwaway user home
(``HOME``); the checks that need a harness's own program (Codex's trust) are in
tests/live/test_codex_trust.py.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_homes import Home
from conftest import Pair

from switchboard.harnesses.asks import GEMINI_AUTH_ENV

STATUSES = frozenset({"ok", "warn", "fail"})


@pytest.fixture
def user_home() -> Iterator[Path]:
    """An empty user home (``HOME``) for the harnesses' config files."""
    path = Path(tempfile.mkdtemp(prefix="sbdoc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def doctor(
    home: Home, user_home: Path, cwd: Path | None = None, path: str | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """Run `doctor --json` (and the text form); return its exit status and its checks."""
    env = {"HOME": str(user_home), **({"PATH": path} if path is not None else {})}
    where = cwd or user_home
    done = home.run("doctor", "--json", code=None, env=env, cwd=where)
    checks = json.loads(done.stdout)
    assert isinstance(checks, list)
    for check in checks:
        assert set(check) == {"name", "status", "detail", "fix"}, check
        assert check["status"] in STATUSES
        assert all(isinstance(check[key], str) for key in check)
        assert check["status"] == "ok" or check["fix"] or check["name"] == "socket", check
    text = home.run("doctor", code=None, env=env, cwd=where)
    assert text.returncode == done.returncode
    assert len(text.stdout.splitlines()) == len(checks)  # one line per check
    for line, check in zip(text.stdout.splitlines(), checks, strict=True):
        assert line.startswith(f"{check['status']:<4}  {check['name']}: ")
        assert not check["fix"] or line.endswith(f"; fix: {check['fix']}")
    return done.returncode, checks


def named(checks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The one check called ``name``."""
    found = [c for c in checks if c["name"] == name]
    assert len(found) == 1, (name, checks)
    return found[0]


def on_path(user_home: Path) -> str:
    """A PATH whose ``switchboard`` is this checkout's (project files run it from PATH)."""
    bin_dir = user_home / "bin"
    bin_dir.mkdir(exist_ok=True)
    launcher = bin_dir / "switchboard"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m switchboard "$@"\n')
    launcher.chmod(0o755)
    return os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])


def failures(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in checks if c["status"] == "fail"]


def install(
    home: Home, user_home: Path, *args: str, cwd: Path | None = None, path: str | None = None
) -> str:
    """Run the real `switchboard install ARGS` into ``user_home``; return its output."""
    env = {"HOME": str(user_home), **({"PATH": path} if path is not None else {})}
    return home.run("install", *args, env=env, cwd=cwd or user_home).stdout


def test_doctor_passes_on_a_healthy_device_with_harness_entries(
    pair: Pair, user_home: Path
) -> None:
    """A running, linked device with Claude Code installed: every check ok, exit 0, and the
    peer's clock is bounded both ways once a message and its receipt went round."""
    install(pair.ha, user_home, "claude", "cursor", "opencode")
    text = "doctor's round trip"
    pair.ha.run("send", "@nova", "--wait", "delivered", "--", text, agent="luna")
    code, checks = doctor(pair.ha, user_home)
    assert failures(checks) == [] and code == 0, checks
    assert named(checks, "daemon")["status"] == "ok"
    assert "owner-only" in named(checks, "socket")["detail"]
    assert named(checks, "link team")["detail"].startswith(f"connected to {pair.relay.url}")
    clock = named(checks, "clock server")
    assert clock["status"] == "ok" and clock["detail"].startswith("within "), clock
    for harness in ("claude", "cursor", "opencode"):
        assert named(checks, f"{harness} user hooks")["status"] == "ok"
    entries = [c for c in checks if c["name"].endswith("user entries")]
    assert len(entries) == 3 and all(c["status"] == "ok" for c in entries), entries


def test_doctor_status_reports_clock_bounds_per_peer(pair: Pair) -> None:
    """`status --json` carries, per other device, the skew bounds the doctor judges."""
    pair.hb.run("send", "@luna", "--wait", "delivered", "--", "for the clock", agent="nova")
    clock = pair.hb.json("status")["clock"]
    assert [peer["device"] for peer in clock] == [pair.a_short]
    low, high = clock[0]["skew_min"], clock[0]["skew_max"]
    # One machine, one clock: the bounds hold 0 between them, and are near it.
    assert low is not None and high is not None
    assert low <= 0.0 <= high
    assert clock[0]["samples"] >= 1


def test_doctor_fails_on_a_stopped_daemon_and_starts_none(
    fresh_home: Home, user_home: Path
) -> None:
    """No daemon: `daemon` fails with the command that starts one; doctor itself starts none."""
    code, checks = doctor(fresh_home, user_home)
    assert code == 1
    daemon = named(checks, "daemon")
    assert daemon["status"] == "fail"
    assert daemon["fix"] == "switchboard daemon start"
    assert named(checks, "socket")["status"] == "warn"
    assert fresh_home.json("daemon", "status")["running"] is False


def test_doctor_fails_on_a_socket_others_can_reach(fresh_home: Home, user_home: Path) -> None:
    """A socket opened to group and others fails, with the chmod that closes it."""
    fresh_home.run("daemon", "start")
    socket = fresh_home.path / "daemon.sock"
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600
    os.chmod(socket, 0o666)
    code, checks = doctor(fresh_home, user_home)
    assert code == 1
    check = named(checks, "socket")
    assert check["status"] == "fail"
    assert "0666" in check["detail"]
    assert check["fix"] == f"chmod 600 {socket}"
    assert [c["name"] for c in failures(checks)] == ["socket"]
    os.chmod(socket, 0o600)
    code, checks = doctor(fresh_home, user_home)
    assert (code, named(checks, "socket")["status"]) == (0, "ok")


def test_doctor_fails_on_an_entry_whose_switchboard_is_gone(
    fresh_home: Home, user_home: Path
) -> None:
    """An entry whose executable no longer exists (a deleted virtualenv) fails with the install
    that rewrites it; its hooks are not run."""
    fresh_home.run("daemon", "start")
    install(fresh_home, user_home, "claude")
    settings = user_home / ".claude" / "settings.json"
    value = json.loads(settings.read_text())
    command = value["hooks"]["Stop"][0]["hooks"][0]["command"]
    program = command.split()[0]
    settings.write_text(settings.read_text().replace(program, "/gone/venv/bin/switchboard"))
    code, checks = doctor(fresh_home, user_home)
    assert code == 1
    check = named(checks, "claude user entries")
    assert check == {
        "name": "claude user entries",
        "status": "fail",
        "detail": check["detail"],
        "fix": "switchboard install claude",
    }
    assert str(settings) in check["detail"] and "/gone/venv/bin/switchboard" in check["detail"]
    assert not [c for c in checks if c["name"] == "claude user hooks"]
    install(fresh_home, user_home, "claude")  # the fix
    code, checks = doctor(fresh_home, user_home)
    assert code == 0, failures(checks)


def test_doctor_fails_on_a_hook_that_does_not_answer(fresh_home: Home, user_home: Path) -> None:
    """A hook command that runs but fails (a broken switchboard script) fails with its stderr
    and the install that rewrites it."""
    fresh_home.run("daemon", "start")
    install(fresh_home, user_home, "codex")
    broken = user_home / "bin" / "switchboard"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: switchboard' >&2\nexit 3\n")
    broken.chmod(0o755)
    hooks = user_home / ".codex" / "hooks.json"
    program = json.loads(hooks.read_text())["hooks"]["Stop"][0]["hooks"][0]["command"].split()[0]
    hooks.write_text(hooks.read_text().replace(program, str(broken)))
    code, checks = doctor(fresh_home, user_home)
    assert code == 1
    check = named(checks, "codex user hooks")
    assert check["status"] == "fail"
    assert "exited 3: ModuleNotFoundError: switchboard" in check["detail"]
    assert check["fix"] == "switchboard install codex"
    assert named(checks, "codex user entries")["status"] == "ok"  # it exists and runs


def test_doctor_and_install_name_what_gemini_and_claude_will_ask(
    fresh_home: Home, user_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project install names Claude Code's pending approval and Gemini CLI's folder trust and
    auth type; once their own files say so, doctor finds nothing left."""
    for name in GEMINI_AUTH_ENV:  # the test's own home decides Gemini's auth, not ours
        monkeypatch.delenv(name, raising=False)
    fresh_home.run("daemon", "start")
    project = user_home / "work" / "app"
    project.mkdir(parents=True)
    path = on_path(user_home)  # the project files run `switchboard` from PATH
    said = install(fresh_home, user_home, "--project", "claude", "gemini", cwd=project, path=path)
    assert "pending approval" in said and "Use this MCP server" in said
    assert f"Gemini CLI has not been told to trust {project}" in said
    assert "no auth type selected" in said
    code, checks = doctor(fresh_home, user_home, cwd=project, path=path)
    claude = named(checks, "claude project setup")
    assert claude["status"] == "warn" and "pending approval" in claude["detail"]
    gemini = [c for c in checks if c["name"] == "gemini project setup"]
    assert [c["status"] for c in gemini] == ["fail", "warn"], gemini
    assert code == 1
    # A project's own approval counts only in a folder whose trust dialog was accepted.
    local = project / ".claude" / "settings.local.json"
    local.write_text(json.dumps({"enabledMcpjsonServers": ["switchboard"]}))
    _, checks = doctor(fresh_home, user_home, cwd=project, path=path)
    assert named(checks, "claude project setup")["status"] == "warn"
    # What the harnesses write when the user answers their dialogs.
    answered = {"hasTrustDialogAccepted": True, "enabledMcpjsonServers": ["switchboard"]}
    (user_home / ".claude.json").write_text(json.dumps({"projects": {str(project): answered}}))
    (user_home / ".gemini").mkdir(exist_ok=True)
    folders = {str(project): "TRUST_FOLDER"}
    (user_home / ".gemini" / "trustedFolders.json").write_text(json.dumps(folders))
    settings = {"security": {"auth": {"selectedType": "gemini-api-key"}}}
    (user_home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    code, checks = doctor(fresh_home, user_home, cwd=project, path=path)
    assert code == 0, failures(checks)
    assert named(checks, "claude project setup")["status"] == "ok"
    assert named(checks, "gemini project setup")["status"] == "ok"
    (user_home / ".gemini" / "trustedFolders.json").write_text(
        json.dumps({str(project): "DO_NOT_TRUST"})
    )
    code, checks = doctor(fresh_home, user_home, cwd=project, path=path)
    gemini_check = named(checks, "gemini project setup")
    assert gemini_check["status"] == "fail" and "distrusts" in gemini_check["detail"]
    assert "/permissions" in gemini_check["fix"]
