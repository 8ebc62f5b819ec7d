"""``switchboard install``/``uninstall`` against temp homes holding realistic configs."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from switchboard.cli.main import main
from switchboard.harnesses.jsonc import parse

HOMES = Path(__file__).with_name("homes")
ALL = ("claude", "codex", "gemini", "antigravity", "opencode", "cursor", "pi")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user home with every harness configured (user entries and comments included)."""
    root = tmp_path / "home"
    shutil.copytree(HOMES / "full", root)
    (root / ".pi" / "agent").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(root))
    monkeypatch.setenv("PATH", "")  # detection by config dirs only: no real harness binaries
    monkeypatch.setenv("SWITCHBOARD_HOME", str(tmp_path / "sb"))
    monkeypatch.chdir(tmp_path)
    return root


def _json(path: Path) -> dict:
    return parse(path.read_text()).value  # type: ignore[no-any-return]


def test_install_detects_every_harness_and_merges(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Install finds all seven harnesses and adds our entries beside the user's."""
    assert main(["install"]) == 0
    printed = capsys.readouterr().out
    for title in (
        "Claude Code",
        "Codex CLI",
        "Gemini CLI",
        "Antigravity CLI",
        "OpenCode",
        "Cursor",
        "Pi",
    ):
        assert f"{title}:" in printed
    claude = _json(home / ".claude.json")
    assert set(claude["mcpServers"]) == {"github", "switchboard"}
    assert claude["mcpServers"]["switchboard"]["args"][-1] == "mcp"
    assert claude["numStartups"] == 42
    settings = _json(home / ".claude" / "settings.json")
    post = settings["hooks"]["PostToolUse"]
    assert post[0]["matcher"] == "Edit|Write" and "hook claude PostToolUse" in json.dumps(post[1])
    idle = [h for g in settings["hooks"]["Stop"] for h in g["hooks"] if h.get("asyncRewake")]
    assert idle and "hook claude Idle" in idle[0]["command"]
    codex = tomllib.loads((home / ".codex" / "config.toml").read_text())
    assert set(codex["mcp_servers"]) == {"docs", "switchboard"}
    assert "# documentation server" in (home / ".codex" / "config.toml").read_text()
    assert "hook codex Stop" in (home / ".codex" / "hooks.json").read_text()
    gemini_text = (home / ".gemini" / "settings.json").read_text()
    assert "// Gemini CLI settings" in gemini_text and "// my server" in gemini_text
    assert set(parse(gemini_text).value["hooks"]) >= {"BeforeTool", "AfterTool", "AfterAgent"}
    agy = _json(home / ".gemini" / "config" / "hooks.json")
    assert set(agy) == {"my-linter", "switchboard"}
    opencode_text = (home / ".config" / "opencode" / "opencode.jsonc").read_text()
    assert "/* filesystem access */" in opencode_text
    assert parse(opencode_text).value["mcp"]["switchboard"]["type"] == "local"
    assert (home / ".config" / "opencode" / "plugins" / "switchboard.js").exists()
    cursor_hooks = _json(home / ".cursor" / "hooks.json")
    assert cursor_hooks["hooks"]["afterFileEdit"][0] == {"command": "./hooks/format.sh"}
    assert cursor_hooks["hooks"]["stop"][0]["loop_limit"] == 3
    assert (home / ".pi" / "agent" / "extensions" / "switchboard.ts").exists()
    assert not list(home.rglob("*switchboard-*")), "bookkeeping lives in SWITCHBOARD_HOME"
    ledger = json.loads((home.parent / "sb" / "installs.json").read_text())
    files = ledger["roots"][str(home)]["files"]
    assert files[".claude.json"]["backup"] is None  # Claude rewrites it: no stale copy
    assert files[".claude/settings.json"]["backup"] is not None


def test_install_twice_changes_nothing(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second install reports every file unchanged and leaves the bytes as they were."""
    assert main(["install"]) == 0
    first = _snapshot(home)
    capsys.readouterr()
    assert main(["install"]) == 0
    assert _snapshot(home) == first
    printed = capsys.readouterr().out
    assert "updated" not in printed and "created" not in printed


def test_uninstall_restores_every_file_exactly(home: Path) -> None:
    """Install then uninstall gives back the original home byte for byte, and leaves no
    bookkeeping behind."""
    before = _snapshot(home)
    assert main(["install"]) == 0
    assert _snapshot(home) != before
    assert main(["uninstall"]) == 0
    assert _snapshot(home) == before
    assert not (home.parent / "sb" / "installs.json").exists()


def test_uninstall_keeps_entries_added_after_install(home: Path) -> None:
    """Entries the user added after installing stay; only ours go."""
    assert main(["install", "claude", "cursor"]) == 0
    settings = home / ".claude" / "settings.json"
    value = _json(settings)
    value["hooks"]["Stop"].append({"hooks": [{"type": "command", "command": "say done"}]})
    settings.write_text(json.dumps(value, indent=2))
    assert main(["uninstall", "claude", "cursor"]) == 0
    after = _json(settings)
    assert after["hooks"]["Stop"] == [{"hooks": [{"type": "command", "command": "say done"}]}]
    assert "switchboard" not in json.dumps(after)
    assert after["hooks"]["PostToolUse"][0]["matcher"] == "Edit|Write"


def test_install_named_harnesses_only(home: Path) -> None:
    """`install claude codex` touches only those two harnesses' files."""
    before = _snapshot(home)
    assert main(["install", "claude", "codex"]) == 0
    changed = {k for k, v in _snapshot(home).items() if before.get(k) != v}
    assert all(k.startswith((".claude", ".codex")) for k in changed), changed


def test_install_dry_run_shows_diff_and_writes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints the diff of every change and leaves every file alone."""
    before = _snapshot(home)
    assert main(["install", "--dry-run"]) == 0
    assert _snapshot(home) == before
    printed = capsys.readouterr().out
    assert "+++ " in printed and '"switchboard"' in printed and "dry run" in printed


def test_install_project_level(home: Path, tmp_path: Path) -> None:
    """--project writes project-level config in the current directory, not the user's."""
    user_before = _snapshot(home)
    assert (
        main(["install", "--project", "claude", "cursor", "gemini", "codex", "opencode", "pi"]) == 0
    )
    assert _snapshot(home) == user_before
    assert "switchboard" in _json(tmp_path / ".mcp.json")["mcpServers"]
    assert "hook claude Stop" in (tmp_path / ".claude" / "settings.json").read_text()
    assert (tmp_path / ".cursor" / "hooks.json").exists()
    assert (tmp_path / ".gemini" / "settings.json").exists()
    assert "switchboard" in (tmp_path / ".codex" / "config.toml").read_text()
    assert (tmp_path / ".switchboard" / "opencode-plugin.js").exists()
    assert _json(tmp_path / "opencode.json")["plugin"] == ["./.switchboard/opencode-plugin.js"]
    assert not (tmp_path / ".opencode").exists()  # no config dir OpenCode would install into
    assert (tmp_path / ".pi" / "extensions" / "switchboard.ts").exists()
    # Created with the $schema OpenCode would otherwise write into it at its next start.
    assert _json(tmp_path / "opencode.json")["$schema"] == "https://opencode.ai/config.json"
    assert main(["uninstall", "--project"]) == 0
    for name in (".mcp.json", ".pi", "opencode.json", ".switchboard", ".claude", ".codex"):
        assert not (tmp_path / name).exists(), name


def test_install_refuses_a_config_it_cannot_parse(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken config file is reported and left untouched; other harnesses still install."""
    broken = home / ".cursor" / "hooks.json"
    broken.write_text('{"version": 1, "hooks": {')
    assert main(["install", "cursor", "pi"]) == 1
    assert broken.read_text() == '{"version": 1, "hooks": {'
    assert "cannot merge safely" in capsys.readouterr().err
    assert (home / ".pi" / "agent" / "extensions" / "switchboard.ts").exists()


def test_install_unknown_harness_is_a_usage_error(home: Path) -> None:
    """An unknown harness name fails with exit 1 and changes nothing."""
    before = _snapshot(home)
    assert main(["install", "vscode"]) == 1
    assert _snapshot(home) == before


def test_reinstall_from_another_path_replaces_entries(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installing again from a moved installation replaces our entries instead of adding more."""
    assert main(["install", "claude"]) == 0
    monkeypatch.setenv("SWITCHBOARD_HOME", str(home / "elsewhere"))
    assert main(["install", "claude"]) == 0
    settings = _json(home / ".claude" / "settings.json")
    ours = [g for g in settings["hooks"]["PostToolUse"] if "switchboard" in json.dumps(g)]
    assert len(ours) == 1 and "elsewhere" in json.dumps(ours[0])
