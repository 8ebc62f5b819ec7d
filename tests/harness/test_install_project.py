"""``install --project`` writes what a team commits; ``uninstall`` leaves nothing of ours."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from harness_kit import PY, Device, events_of, fixture, timeout
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_kit import run

from switchboard.cli.main import main
from switchboard.harnesses.jsonc import parse

HOMES = Path(__file__).with_name("homes")
GIT = shutil.which("git") or "git"  # found before the tests empty PATH
ALL = ("claude", "codex", "gemini", "antigravity", "opencode", "cursor", "pi")
#: What `install --project` writes for every harness: all of it for the team to commit.
PROJECT_FILES = {
    ".mcp.json", ".claude/settings.json", ".codex/config.toml", ".codex/hooks.json",
    ".gemini/settings.json", ".agents/mcp_config.json", ".agents/hooks.json",
    ".cursor/mcp.json", ".cursor/hooks.json", "opencode.json",
    ".switchboard/opencode-plugin.js", ".pi/extensions/switchboard.ts",
}  # fmt: skip


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (``None``) under ``root``."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        [GIT, *args], cwd=repo, capture_output=True, text=True, check=True, timeout=timeout(30)
    )
    return done.stdout


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This machine: a user home with every harness configured, no switchboard on PATH, a
    Switchboard home of its own; the current directory is a fresh project."""
    home = tmp_path / "home"
    shutil.copytree(HOMES / "full", home)
    (home / ".pi" / "agent").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("SWITCHBOARD_HOME", str(tmp_path / "sb"))
    project = tmp_path / "repo"
    project.mkdir()
    monkeypatch.chdir(project)
    return tmp_path


def _project_with_user_files(project: Path) -> None:
    """A project that already has the team's own harness config."""
    (project / ".claude").mkdir()
    shutil.copy(HOMES / "full" / ".claude" / "settings.json", project / ".claude" / "settings.json")
    (project / ".cursor").mkdir()
    shutil.copy(HOMES / "full" / ".cursor" / "hooks.json", project / ".cursor" / "hooks.json")
    (project / "opencode.json").write_text('{\n  "model": "anthropic/claude-sonnet-4-5"\n}\n')
    (project / "README.md").write_text("# repo\n")


def test_install_project_in_git_repo_writes_only_portable_files_to_commit(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a git repository, `install --project` leaves only files a team would commit (no
    markers, no backups), none naming a path of this machine; it says switchboard is not on
    PATH."""
    project = Path.cwd()
    _git(project, "init", "-q")
    assert main(["install", "--project", *ALL]) == 0
    assert "not on this PATH" in capsys.readouterr().out
    status = _git(project, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert {line[3:] for line in status} == PROJECT_FILES
    forbidden = {str(machine), str(machine / "home"), PY, sys.prefix, os.path.expanduser("~")}
    for name in PROJECT_FILES:
        text = (project / name).read_text()
        assert not [f for f in forbidden if f in text], name
        assert "--home" not in text and "SWITCHBOARD_HOME" not in text, name
    assert (
        json.loads((project / ".mcp.json").read_text())["mcpServers"]["switchboard"]["command"]
        == "switchboard"
    )
    assert (
        'const COMMAND = ["switchboard"];'
        in (project / ".pi/extensions/switchboard.ts").read_text()
    )
    ledger = json.loads((machine / "sb" / "installs.json").read_text())
    assert set(ledger["roots"][str(project)]["files"]) == PROJECT_FILES


def _commands(project: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """The hook command each harness runs from the project files, with its first payload."""

    def first(path: str, *keys: Any) -> str:
        value: Any = parse((project / path).read_text()).value
        for key in keys:
            value = value[key]
        return str(value)

    hooks = ["hooks", "SessionStart", 0, "hooks", 0, "command"]
    return {
        "claude": (
            first(".claude/settings.json", *hooks),
            fixture("claude", "SessionStart", "s-claude"),
        ),
        "codex": (first(".codex/hooks.json", *hooks), fixture("codex", "SessionStart", "s-codex")),
        "gemini": (
            first(".gemini/settings.json", *hooks),
            fixture("gemini", "SessionStart", "s-gemini"),
        ),
        "cursor": (
            first(".cursor/hooks.json", "hooks", "sessionStart", 0, "command"),
            fixture("cursor", "sessionStart", "s-cursor"),
        ),
        "antigravity": (
            first(".agents/hooks.json", "switchboard", "PreInvocation", 0, "command"),
            fixture("antigravity", "PreInvocation:First", "s-agy"),
        ),
    }


def test_project_files_work_from_another_home_with_another_switchboard(
    machine: Path, device: Device, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A colleague's clone: another home, another Switchboard home and `switchboard` installed
    elsewhere on PATH. Every hook command, MCP entry, the OpenCode plugin and the Pi extension
    of the committed files reach that colleague's daemon."""
    project = Path.cwd()
    assert main(["install", "--project", *ALL]) == 0
    bin_dir = short_dir / "elsewhere" / "bin"
    bin_dir.mkdir(parents=True)
    launcher = bin_dir / "switchboard"
    launcher.write_text(f'#!/bin/sh\nexec {PY} -m switchboard "$@"\n')
    launcher.chmod(0o755)
    (short_dir / "home2").mkdir()
    env = {
        **device.env,
        "HOME": str(short_dir / "home2"),
        "PATH": os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]),
        "SWITCHBOARD_HARNESS_PID": "4188101",
    }
    for harness, (command, payload) in _commands(project).items():
        done = subprocess.run(
            ["/bin/sh", "-c", command], input=json.dumps(payload), capture_output=True,
            text=True, env=env, cwd=project, timeout=timeout(30), check=False,
        )  # fmt: skip
        assert done.returncode == 0 and done.stdout.strip().startswith("{"), (harness, done)
    codex = tomllib.loads((project / ".codex/config.toml").read_text())["mcp_servers"]
    entries = [
        parse((project / ".mcp.json").read_text()).value["mcpServers"]["switchboard"],
        parse((project / ".cursor/mcp.json").read_text()).value["mcpServers"]["switchboard"],
        parse((project / ".gemini/settings.json").read_text()).value["mcpServers"]["switchboard"],
        parse((project / ".agents/mcp_config.json").read_text()).value["mcpServers"]["switchboard"],
        codex["switchboard"],
    ]
    opencode = parse((project / "opencode.json").read_text()).value["mcp"]["switchboard"]
    assert {(e["command"], tuple(e["args"])) for e in entries} == {("switchboard", ("mcp",))}
    assert opencode["command"] == ["switchboard", "mcp"]
    _list_tools(str(shutil.which("switchboard", path=env["PATH"])), env)
    for name, plugin in (
        ("opencode", ".switchboard/opencode-plugin.js"),
        ("pi", ".pi/extensions/switchboard.ts"),
    ):
        copy = short_dir / f"{name}.mjs"
        shutil.copy(project / plugin, copy)
        event = json.dumps(_plugin_start(name))
        script = (
            f"const m = await import({json.dumps(str(copy))});"
            f"console.log(JSON.stringify(await m.hook({event}, {{session_id: 's-{name}'}})));"
        )
        done = subprocess.run(
            ["node", "--input-type=module", "-e", script], capture_output=True, text=True,
            env=env, timeout=timeout(30), check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    harnesses = {e["data"]["harness"] for e in events_of(device, "agent_registered")}
    assert harnesses == set(ALL)


def _plugin_start(name: str) -> str:
    return "session.created" if name == "opencode" else "session_start"


def _list_tools(command: str, env: dict[str, str]) -> None:
    async def body() -> None:
        params = StdioServerParameters(command=command, args=["mcp"], env=env)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert (await session.list_tools()).tools

    run(body)


def _simulate_harnesses(machine: Path, project: Path | None) -> None:
    """What harnesses do on their own between install and uninstall: Claude Code rewrites its
    state file, OpenCode adds a $schema to a config that lacks one."""
    claude = machine / "home" / ".claude.json"
    state = parse(claude.read_text()).value
    state["numStartups"] = 43
    claude.write_text(json.dumps(state, indent=2))
    if project is not None:
        config = project / "opencode.json"
        config.write_text(
            config.read_text().replace("{", '{\n  "$schema": "https://opencode.ai/config.json",', 1)
        )


@pytest.mark.parametrize("level", ["user", "project"])
@pytest.mark.parametrize("harness", ALL)
def test_install_then_uninstall_leaves_the_tree_as_it_was(
    machine: Path, harness: str, level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Install then uninstall one harness, among the user's own entries: every file and
    directory is as before, except files the harness itself changed meanwhile, which hold
    none of ours; no directory of ours and no bookkeeping is left."""
    project = Path.cwd() if level == "project" else None
    if project is not None:
        _project_with_user_files(project)
    root = machine  # the home and the project (the Switchboard home "sb" is left out)
    before = {k: v for k, v in _tree(root).items() if not k.startswith("sb")}
    flag = ["--project"] if project is not None else []
    assert main(["install", *flag, harness]) == 0
    installed = _tree(root)
    assert {k: v for k, v in installed.items() if not k.startswith("sb")} != before
    _simulate_harnesses(machine, project)
    changed = {k for k, v in _tree(root).items() if k in before and installed[k] != v}
    assert changed <= {"home/.claude.json", "repo/opencode.json"}
    capsys.readouterr()
    assert main(["uninstall", *flag, harness]) == 0
    printed = capsys.readouterr().out
    after = {k: v for k, v in _tree(root).items() if not k.startswith("sb")}
    assert not (machine / "sb" / "installs.json").exists()
    assert set(after) == set(before), set(after) ^ set(before)
    for name, content in after.items():
        if name in changed:
            assert content is not None and b"switchboard" not in content.replace(
                b"switchboard-", b""
            ), name
        else:
            assert content == before[name], name
    assert "unchanged" not in printed


def test_uninstall_lists_only_what_it_changed(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `install claude`, a bare `uninstall` names Claude Code's files and no other
    harness; a second one says there was nothing to remove."""
    assert main(["install", "claude"]) == 0
    capsys.readouterr()
    assert main(["uninstall"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "Claude Code:"
    assert "Antigravity" not in printed and "unchanged" not in printed
    assert main(["uninstall"]) == 0
    assert capsys.readouterr().out.strip() == "nothing of Switchboard's found to remove"


def test_uninstall_keeps_a_directory_of_ours_that_holds_other_files_and_says_why(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory install created is kept when something else was put in it, and the
    output says what it holds; an empty one of ours goes."""
    project = Path.cwd()
    assert main(["install", "--project", "claude", "pi"]) == 0
    (project / ".claude" / "agents").mkdir()
    (project / ".claude" / "agents" / "reviewer.md").write_text("review\n")
    capsys.readouterr()
    assert main(["uninstall", "--project", "claude", "pi"]) == 0
    printed = capsys.readouterr().out
    assert f"kept      {project / '.claude'} (it holds agents, not ours)" in printed
    assert f"removed   {project / '.pi' / 'extensions'}" in printed
    assert sorted(p.name for p in project.iterdir()) == [".claude"]
    assert [p.name for p in (project / ".claude").iterdir()] == ["agents"]


def test_uninstall_takes_out_an_earlier_versions_project_files(machine: Path) -> None:
    """An earlier version's project install (marker files beside ours, the OpenCode plugin in
    .opencode/plugins, where OpenCode then installed its plugin package) is taken out whole;
    the user's own file stays as it was."""
    project = Path.cwd()
    (project / ".cursor").mkdir()
    shutil.copy(HOMES / "full" / ".cursor" / "hooks.json", project / ".cursor" / "hooks.json")
    before = _tree(project)
    assert main(["install", "--project", "cursor", "pi"]) == 0
    ledger = machine / "sb" / "installs.json"
    for name, entry in json.loads(ledger.read_text())["roots"][str(project)]["files"].items():
        marker = ".switchboard-created" if entry["created"] else ".switchboard-backup"
        (project / (name + marker)).write_text(entry["backup"] or "")
    ledger.unlink()
    legacy = project / ".opencode" / "plugins" / "switchboard.js"
    legacy.parent.mkdir(parents=True)
    legacy.write_text((project / ".pi/extensions/switchboard.ts").read_text())
    (project / ".opencode" / "plugins" / "switchboard.js.switchboard-created").touch()
    for name in ("package.json", "package-lock.json", ".gitignore"):
        (project / ".opencode" / name).write_text("{}\n")
    (project / ".opencode" / "node_modules" / "@opencode-ai" / "plugin").mkdir(parents=True)
    assert main(["uninstall", "--project", "cursor", "pi", "opencode"]) == 0
    # The markers named files, not directories: those stay, as no record says they are ours.
    assert _tree(project) == before | {".pi": None, ".pi/extensions": None}


def test_install_opencode_says_when_its_plugin_dependencies_are_not_installed(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OpenCode waits at its first start for @opencode-ai/plugin in its config directory:
    install says so (and names --prepare) until the directory holds it."""
    assert main(["install", "opencode"]) == 0
    printed = capsys.readouterr().out
    assert "install opencode --prepare" in printed and "@opencode-ai/plugin" in printed
    config = machine / "home" / ".config" / "opencode"
    (config / "node_modules" / "@opencode-ai" / "plugin").mkdir(parents=True)
    (config / "package.json").write_text('{"dependencies": {"@opencode-ai/plugin": "1.18.33"}}')
    lock = {"packages": {"": {"dependencies": {"@opencode-ai/plugin": "1.18.33"}}}}
    (config / "package-lock.json").write_text(json.dumps(lock))
    assert main(["install", "opencode"]) == 0
    assert "--prepare" not in capsys.readouterr().out
    assert main(["uninstall", "opencode"]) == 0
    printed = capsys.readouterr().out
    assert f"kept its plugin dependencies in {config}" in printed
    assert (config / "node_modules").is_dir()


OPENCODE = Path(__file__).resolve().parents[1] / "live" / "harnesses" / "node_modules" / ".bin"


def _registry_reachable() -> bool:
    import socket  # noqa: PLC0415

    try:
        socket.create_connection(("registry.npmjs.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


def test_real_opencode_prepare_installs_its_plugin_dependencies(
    machine: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`install opencode --prepare` has the pinned OpenCode install @opencode-ai/plugin into its
    config directory now, with a progress line; install then has nothing more to say of it."""
    assert (OPENCODE / "opencode").exists(), "the pinned OpenCode is missing: make harnesses"
    assert _registry_reachable(), "--prepare installs from the npm registry: unreachable"
    monkeypatch.setenv("PATH", os.pathsep.join([str(OPENCODE), "/usr/bin", "/bin"]))
    config = machine / "home" / ".config" / "opencode"
    assert main(["install", "opencode", "--prepare"]) == 0
    printed = capsys.readouterr().out
    assert f"preparing OpenCode's plugin dependencies (@opencode-ai/plugin) in {config}" in printed
    assert "  prepared  in " in printed
    assert (config / "node_modules" / "@opencode-ai" / "plugin" / "package.json").exists()
    assert main(["install", "opencode"]) == 0
    assert "--prepare" not in capsys.readouterr().out


def test_uninstall_without_its_record_says_what_it_left_empty(
    machine: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uninstall from another Switchboard home finds no record of what install created: it
    takes our entries out, leaves the emptied files, and says why."""
    project = Path.cwd()
    assert main(["install", "--project", "codex"]) == 0
    monkeypatch.setenv("SWITCHBOARD_HOME", str(machine / "other"))
    capsys.readouterr()
    assert main(["uninstall", "--project", "codex"]) == 0
    printed = capsys.readouterr().out
    hooks = project / ".codex" / "hooks.json"
    assert f"updated   {hooks} (left empty: no record says install created it" in printed
    assert "switchboard" not in hooks.read_text()
